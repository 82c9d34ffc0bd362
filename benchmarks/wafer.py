"""Speed and memory of the wafer event level (runtime/event_level.py's spatial lowering on
samples/wse2.arch, the full 757 x 996 WSE-2): one-layer decodes of hidden 1,024, 4,096 and
12,288, the sample's llm_decode as written (32 layers of hidden 4,096), its gpt_train as
written (weight streaming: every matmul on every row of tiles, 16 micro-batches), and
resnet50_infer (256 samples: the layout chosen by simulating the 5 best-estimated layouts
with 8 and 16 samples, then the run).

Two ways to simulate each, in one process (kernels warm, the run checked, lowered and analysed
once, outside the timings), `--reps` times each after one unmeasured run, medians printed. Each
way's repetitions run back to back, as a sweep or a search runs the event level, each a whole
report: the ways are not interleaved, since a run of the reference way frees up to a gigabyte
and the run after it would time the page faults and cold caches that leaves (the bands way's
graph then takes up to twice as long, the engine up to 1.5x; see the README):
  bands      each band's top row stands for the band's rows (the default; exact, _bands), a
             sample's region visits made in one kernel call (_region_ops), the layouts
             ranked in the kernel's typed loops (codegen/layout.py _ranked), and a streaming
             run's passes recorded once and copied (el.PIPELINE_BULK)
  every row  every row of every region simulated (el.REGION_EVERY_ROW), each visit made by its
             own _region_op call (el.REGION_OP_EACH) and the layouts ranked height by height
             in Python (codegen/layout.py REFERENCE), and a streaming run's micro-batches
             built pass by pass (el.PIPELINE_BULK off): the per-tile graph the event level
             built before, without its sample-by-sample construction (a spatial run's samples
             are one sample's tasks repeated either way)
Phases: layouts (codegen/layout.py layouts(): the estimate ranking every band height's
layouts), graph (the rest of the build: the task graph, and for resnet50_infer the trial
simulations' graphs), finalize (the CSR arrays), engine (the kernel, trials included),
report (step, per-op times, notes). Tasks: the run's graph (trials' graphs not counted).
graph/engine: the graph's time over the engine's. Memory: in a process of its own per case
and way, the peak of what the event level allocates (tracemalloc, which sees numpy's arrays)
and the process's peak RSS (VmHWM: Python, archc, numpy, the kernels and the event level).

The two ways' reports are checked equal (every figure and note) before anything is printed.

Usage: python benchmarks/wafer.py [--reps N] [--quick] [--no-memory]
  --quick: the decodes of hidden 1,024 and 12,288 only, one repetition
"""
from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WSE2 = ROOT / "samples" / "wse2.arch"
CASES = {
    "decode hidden 1,024": ("llm_decode", {"layers": "1", "hidden": "1024", "heads": "8", "kv_heads": "8",
                                           "ffn": "4096"}),
    "decode hidden 4,096": ("llm_decode", {"layers": "1"}),
    "decode hidden 12,288": ("llm_decode", {"layers": "1", "hidden": "12288", "heads": "96"}),
    "decode 32 layers": ("llm_decode", {}),
    "gpt_train streaming": ("gpt_train", {}),
    "resnet50_infer": ("resnet50_infer", {}),
}
WAYS = ("bands", "every row")


def _prepare(name: str):
    from archc.api import check
    from archc.runtime import events as ev
    from archc.runtime import pipeline as P

    run_name, sets = CASES[name]
    run = check(WSE2, sets, run_name).run(run_name)
    ev.kernel()
    plan = P.lower(run)
    R = P.analyze(P.build(run.machine), plan)
    return plan, R


def _way(way: str) -> None:
    from archc.codegen import layout as L
    from archc.runtime import event_level as el
    el.REGION_EVERY_ROW = el.REGION_OP_EACH = L.REFERENCE = way == "every row"
    el.PIPELINE_BULK = way != "every row"


def _event_level(plan, R) -> dict:
    """One event-level report of (plan, R), its phases timed."""
    from archc.runtime import event_level as el
    from archc.runtime import events as ev
    from archc.runtime.execute import make_report

    spent = {"finalize": 0.0, "engine": 0.0, "layouts": 0.0}
    sim, fin, lay = ev.simulate, ev.TaskGraph.finalize, el.layouts

    def layouts(*a, **kw):
        t = time.perf_counter()
        try:
            return lay(*a, **kw)
        finally:
            spent["layouts"] += time.perf_counter() - t

    def finalize(self):
        t = time.perf_counter()
        try:
            return fin(self)
        finally:
            spent["finalize"] += time.perf_counter() - t

    def simulate(graph, **kw):
        g = graph.finalize() if isinstance(graph, ev.TaskGraph) else graph
        t = time.perf_counter()
        try:
            return sim(g, **kw)
        finally:
            spent["engine"] += time.perf_counter() - t
    ev.simulate, ev.TaskGraph.finalize, el.layouts = simulate, finalize, layouts
    try:
        t0 = time.perf_counter()
        b, r = el.simulate(plan, R)
        t1 = time.perf_counter()
        rep = make_report(plan, el.event_R(plan, R, b, r), el.step_figures(plan, b, r), "event")
        notes = el.summary_notes(b, r)
        t2 = time.perf_counter()
    finally:
        ev.simulate, ev.TaskGraph.finalize, el.layouts = sim, fin, lay
    build = t1 - t0 - spent["finalize"] - spent["engine"]
    return dict(build=build, layouts=spent["layouts"], graph=build - spent["layouts"], finalize=spent["finalize"],
                engine=spent["engine"], report=t2 - t1, total=t2 - t0, tasks=int(b.final.n_tasks),
                links=int(b.final.n_links), resources=int(b.final.n_resources),
                figures=json.loads(rep.to_json()) | {"event notes": notes})


def _memory(name: str, way: str) -> dict:
    """In this process: the event level's peak allocation (tracemalloc) and the process's peak RSS."""
    import tracemalloc
    plan, R = _prepare(name)
    _way(way)
    tracemalloc.start()
    _event_level(plan, R)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return dict(peak_mb=peak / 1e6, rss_mb=_peak_rss_mb())


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (Linux; unlike ru_maxrss it does not carry over the
    parent's across fork and exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--memory":
        print(json.dumps(_memory(argv[1], argv[2])))
        return 0
    quick = "--quick" in argv
    reps = int(argv[argv.index("--reps") + 1]) if "--reps" in argv else (1 if quick else 3)
    names = ["decode hidden 1,024", "decode hidden 12,288"] if quick else list(CASES)
    print(f"wafer event level (samples/wse2.arch, 757 x 996 tiles): medians of {reps} repetitions of each way, "
          f"back to back after one unmeasured run; a noisy shared 2-core machine")
    head = (f"{'case':<22} {'way':<10} {'tasks':>10} {'layouts':>8} {'graph':>8} {'final.':>8} {'engine':>8} "
            f"{'report':>8} {'total':>8} {'graph/':>7} {'peak MB':>8} {'RSS MB':>7}\n"
            f"{'':<22} {'':<10} {'':>10} {'ms':>8} {'ms':>8} {'ms':>8} {'ms':>8} {'ms':>8} {'ms':>8} "
            f"{'engine':>7}")
    rows = []
    for name in names:
        plan, R = _prepare(name)
        got: dict = {w: [] for w in WAYS}
        for w in WAYS:
            _way(w)
            gc.collect()  # the other way's garbage (up to a GB) collected outside the timings
            _event_level(plan, R)  # unmeasured: the first run after the other way
            for _ in range(reps):
                got[w].append(_event_level(plan, R))
        _way("bands")
        a, b = got["bands"][0]["figures"], got["every row"][0]["figures"]
        if a != b:
            print(f"{name}: the two ways' reports differ: " +
                  ", ".join(k for k in a if a.get(k) != b.get(k)))
            return 1
        for w in WAYS:
            med = {k: statistics.median(x[k] for x in got[w]) for k in ("layouts", "graph", "finalize", "engine",
                                                                         "report", "total")}
            mem = {"peak_mb": float("nan"), "rss_mb": float("nan")}
            if "--no-memory" not in argv:
                p = subprocess.run([sys.executable, __file__, "--memory", name, w], capture_output=True, text=True,
                                   cwd=str(ROOT), env=dict(os.environ, PYTHONIOENCODING="utf-8"))
                if p.returncode != 0:
                    print(p.stderr[-2000:])
                    return 1
                mem = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append((name, w, got[w][0]["tasks"], med, mem))
    print(head)
    for name, w, tasks, med, mem in rows:
        ms = {k: v * 1e3 for k, v in med.items()}
        print(f"{name:<22} {w:<10} {tasks:>10,} {ms['layouts']:>8.1f} {ms['graph']:>8.1f} {ms['finalize']:>8.1f} "
              f"{ms['engine']:>8.1f} {ms['report']:>8.1f} {ms['total']:>8.1f} {med['graph'] / med['engine']:>7.1f} "
              f"{mem['peak_mb']:>8.1f} {mem['rss_mb']:>7.0f}")
    print("every row / bands (total time):")
    for name in names:
        t = {w: next(m["total"] for n, ww, _, m, _ in rows if n == name and ww == w) for w in WAYS}
        n = {w: next(k for nn, ww, k, _, _ in rows if nn == name and ww == w) for w in WAYS}
        print(f"  {name}: {t['every row'] / t['bands']:.1f}x the time, {n['every row'] / n['bands']:.0f}x the tasks")
    print("reports of the two ways equal: yes (every figure and note)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
