"""Analytic estimates of every sample run, in one process, against a closed-form peer run in
the same process: milliseconds per estimate and the ratio.

archc, per estimate: `archc.load(FILE).runs[NAME].estimate(**params)` with every run parameter
passed explicitly (the run is checked again with them: parameters, mapping, precision, memory
footprint), lowered to its task table (memory levels and re-reads, collectives decomposed per
network level), the analytic kernel's per-task roofline, the step composed (pipeline bubble,
gradient exchange, power limit), and the full report (per-op rows, memory levels,
communication, goodput). Two columns: the model's graph kept from an earlier point with the same
model arguments (what a sweep over mapping, batch or precision parameters pays), and the model
instantiated again (what a point that changes a model argument pays).

Peer: a Calculon-style closed form (Isaev et al., SC'23: per-layer FLOPs and bytes, time the
max of compute at the peak and memory traffic at the bandwidth, ring all-reduces 2(p-1)/p S/B,
1F1B bubble (p-1)/m, footprint weights + Adam state + activations), in pure Python over the
same run's task table, which it is handed ready-made (not timed: Calculon's LLM model writes
its layers' formulas by hand, so it parses and checks nothing). It is a lower bound on what a
closed form costs; Calculon itself (github.com/calculon-ai/calculon, not on PyPI, so not run
here) takes 2-4 ms for GPT-3 175B on this machine class by the issue's measurement.

Whole processes (h100.arch gpt_train, or the first run given): `archc run FILE --run NAME` at the
shell (kernel cached: interpreter start, imports, the file read and checked, the estimate, the
text report) against a Python process that imports NumPy, reads the peer's inputs from JSON and
evaluates the closed form.

Usage: python benchmarks/estimates.py [--repeat N] [--no-processes] [SAMPLE ...]"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peer_inputs(plan) -> dict:
    """What the closed form is handed: per task (FLOPs, bytes, instances per step, bytes a
    collective moves and over how many chips), the chip's peak and memory bandwidth, the link."""
    run, m = plan.run, plan.run.machine
    mb = plan.micro_batches
    tasks = [(t.mflops + t.vflops, t.mem_bytes if m.chip.memory else t.sram_bytes, t.reps(mb),
              t.comm.nbytes if t.comm else 0.0, t.comm.p if t.comm else 1, t.weight_bytes)
             for t in plan.tasks]
    unit = m.tile.matrix[0]
    peak = unit.flops_per_cycle * m.tile.clock_hz * m.chip.tiles
    bw = m.chip.memory.bandwidth if m.chip.memory else m.tile.sram_bandwidth * m.chip.tiles
    link = min((lv.network.link_bandwidth for lv in m.levels), default=bw)
    mp = run.mapping
    return dict(tasks=tasks, peak=peak, bw=bw, link=link, tp=mp.tp, pp=mp.pp, dp=mp.dp, m=max(1, mb),
                params=run.graph.params_elems, train=run.mode == "train")


def closed_form(x: dict) -> dict:
    """The peer's estimate of one step: a roofline per task, collectives on rings, the 1F1B
    bubble and the data-parallel exchange, the footprint."""
    compute = comm = grads = 0.0
    peak, bw, link = x["peak"], x["bw"], x["link"]
    for flops, nbytes, reps, cbytes, p, wbytes in x["tasks"]:
        compute += max(flops / peak, nbytes / bw) * reps
        if cbytes and p > 1:
            comm += 2.0 * (p - 1) / p * cbytes / link * reps
        grads += wbytes
    pp, m, dp = x["pp"], x["m"], x["dp"]
    bubble = (pp - 1) / m * (compute + comm)
    exchange = 2.0 * (dp - 1) / dp * grads / link if x["train"] and dp > 1 else 0.0
    step = compute + comm + bubble + exchange
    memory = x["params"] * (16.0 if x["train"] else 2.0) / (x["tp"] * pp)
    return {"step_s": step, "memory": memory}


def main() -> int:
    import archc
    from archc.codegen.lower import lower
    from archc.dsl.check import forget_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=15, help="estimates per run and column (median)")
    ap.add_argument("--no-processes", action="store_true", help="skip the whole-process comparison")
    a = ap.parse_args()
    files = a.files or sorted((ROOT / "samples").glob("*.arch"))
    rows = []
    print(f"{'file':11s} {'run':16s} {'archc':>9s} {'rebuilt':>9s} {'peer':>9s} {'ratio':>7s}   (ms per estimate, "
          f"medians of {a.repeat}, interleaved)")
    for f in files:
        design = archc.load(f)
        for name, handle in design.runs.items():
            params = dict(handle.estimate().params)  # every parameter, as --set values (booleans too)
            x = peer_inputs(lower(handle.resolve(**params)))
            ours, rebuilt, peer = [], [], []
            for _ in range(a.repeat):  # interleaved: the machine's load falls on all three alike
                t = time.perf_counter()
                handle.estimate(**params)
                ours.append(time.perf_counter() - t)
                forget_models()
                t = time.perf_counter()
                handle.estimate(**params)
                rebuilt.append(time.perf_counter() - t)
                t = time.perf_counter()
                closed_form(x)
                peer.append(time.perf_counter() - t)
            o, r, p = (statistics.median(v) * 1e3 for v in (ours, rebuilt, peer))
            rows.append((f.name, name, o, r, p))
            print(f"{f.name:11s} {name:16s} {o:9.2f} {r:9.2f} {p:9.3f} {o / p:6.0f}x", flush=True)
    med = [statistics.median(r[i] for r in rows) for i in (2, 3, 4)]
    worst = max(rows, key=lambda r: r[2])
    print(f"{len(rows)} runs: median {med[0]:.2f} ms per estimate (model kept), {med[1]:.2f} ms (model rebuilt); "
          f"peer {med[2]:.3f} ms; median ratio {statistics.median(r[2] / r[4] for r in rows):.0f}x; "
          f"slowest {worst[2]:.2f} ms ({worst[0]} {worst[1]})")
    if not a.no_processes:
        f = files[0] if a.files else ROOT / "samples" / "h100.arch"
        name = next(iter(archc.load(f).runs)) if a.files else "gpt_train"
        processes(f, name, archc.load(f).runs[name], max(3, a.repeat // 3))
    return 0


PEER_CHILD = """import json, sys
import numpy
sys.path.insert(0, {here!r})
from estimates import closed_form
print(closed_form(json.load(open(sys.argv[1])))["step_s"])
"""


def processes(f: Path, name: str, handle, repeat: int) -> None:
    """Whole processes, interleaved, medians: the archc command against the peer's process."""
    import json
    import subprocess
    import tempfile
    from archc.codegen.lower import lower
    with tempfile.TemporaryDirectory(prefix="archc-peer-") as tmp:
        inputs = Path(tmp) / "inputs.json"
        inputs.write_text(json.dumps(peer_inputs(lower(handle.ir))))
        ours_cmd = [sys.executable, "-m", "archc", "run", str(f), "--run", name]
        peer_cmd = [sys.executable, "-c", PEER_CHILD.format(here=str(Path(__file__).resolve().parent)), str(inputs)]
        subprocess.run(ours_cmd, check=True, capture_output=True)  # the kernel in the cache first
        ours, peer = [], []
        for _ in range(repeat):
            for cmd, out in ((ours_cmd, ours), (peer_cmd, peer)):
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                out.append(time.perf_counter() - t)
    o, p = statistics.median(ours), statistics.median(peer)
    print(f"whole processes ({f.name} {name}, medians of {repeat}): archc run {o:.3f} s; "
          f"peer (python, numpy, the closed form) {p:.3f} s; ratio {o / p:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
