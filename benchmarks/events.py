"""Speed and memory of the event simulator (runtime/events.py) on synthetic task graphs.

Cases (each in its own process, so peak memory is its own; resource.getrusage ru_maxrss):
  mesh N M  an N x M mesh of tiles (one resource each; links in all four directions, as a
            wafer has). ROUNDS rounds of: a compute task per tile (1 us +-10%), then a flow of
            64 KiB to its east and its south neighbour (one hop, dimension-order route; 32 GB/s
            links, 20 ns latency); a tile's next compute waits for its own and its west/north
            neighbours' incoming flows. A last compute closes it.
  hop N M K the same mesh with each tile sending east over K hops (X-first routes): flows
            overlap on links, so the max-min components are whole rows (local repairs).
  link n H  n flows on one link, all from t = 0: equal sizes (one recomputation at the start,
            one at the common end); distinct sizes (n ends, each re-rates the one route class:
            O(n log n)); distinct sizes and distinct routes (each flow also has a private link:
            n classes in one component, every end re-rates the rest: O(n^2 log n), the worst case).

  pipeline  the event level of a GPT pipeline with 4,096 micro-batches (the issue's run:
            archc run samples/h100.arch --run gpt_train --level event --set pp=4 --set dp=1
            --set global_batch=4096 --set micro_batch=1): the task graph built pass by pass (the
            reference, PIPELINE_BULK = False) and in bulk (each kind of pass recorded once and
            replicated), alternately in one process (medians): graph build, finalize, engine,
            the whole event level (graph, simulation, report), tasks, events/s; peak memory
            (ru_maxrss) of a process doing one event level of each; and the whole command's
            wall time (ARCHC_EVENT_BULK=0 and 1, alternately).

Usage: python benchmarks/events.py [--quick] [--no-wafer] [--no-pipeline]
       python benchmarks/events.py --case mesh 757 996   (one case; ARCHC_EVENTS_LOCAL=0: no local repair)
       python benchmarks/events.py --pipeline [--repeats N] [--global-batch N]   (the pipeline case only)
Prints wall time (graph building and simulation separately), events/s and peak memory.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROUNDS = 2
LINK_BW = 32e9
FLOW_BYTES = 65536.0
FLOW_LAT = 20e-9
T_COMPUTE = 1e-6


def mesh_links(n: int, m: int):
    """Directed links of an n x m mesh: east, west, south, north blocks. Returns the count and
    functions giving the east / south link id of tile (i, j)."""
    ne = n * (m - 1)
    ns = (n - 1) * m
    total = 2 * ne + 2 * ns
    east = lambda i, j: i * (m - 1) + j                 # noqa: E731  (i, j) -> (i, j+1)
    south = lambda i, j: 2 * ne + i * m + j             # noqa: E731  (i, j) -> (i+1, j)
    return total, east, south


def build_mesh(n: int, m: int, hops: int = 1, rounds: int = ROUNDS, seed: int = 0):
    from archc.runtime.events import TaskGraph

    rng = np.random.default_rng(seed)
    tiles = n * m
    n_links, east, south = mesh_links(n, m)
    g = TaskGraph(n_resources=tiles)
    g.add_links(np.full(n_links, LINK_BW))
    ii, jj = np.divmod(np.arange(tiles, dtype=np.int64), m)
    # senders east: tiles with j + hops < m; route: the `hops` east links from (i, j)
    se = np.flatnonzero(jj + hops < m)
    e_links = (east(ii[se], jj[se])[:, None] + np.arange(hops)[None, :]).reshape(-1)
    e_ptr = np.arange(se.size + 1, dtype=np.int64) * hops
    e_dst = se + hops
    ss = np.flatnonzero(ii + 1 < n) if hops == 1 else np.zeros(0, np.int64)
    s_links = south(ii[ss], jj[ss])
    s_ptr = np.arange(ss.size + 1, dtype=np.int64)
    s_dst = ss + m
    prev_comp = None
    prev_in = None  # (flow ids, destination tiles) of the last round
    for k in range(rounds + 1):
        comp = g.add_computes(T_COMPUTE * rng.uniform(0.9, 1.1, tiles), np.arange(tiles, dtype=np.int32))
        if prev_comp is not None:
            g.add_deps(prev_comp, comp)
            fids, dst = prev_in
            g.add_deps(fids, comp[dst])
        if k == rounds:
            break
        fe = g.add_flows(FLOW_BYTES, e_ptr, e_links, latency=FLOW_LAT)
        fs = g.add_flows(FLOW_BYTES, s_ptr, s_links, latency=FLOW_LAT)
        g.add_deps(comp[se], fe)
        g.add_deps(comp[ss], fs)
        prev_comp = comp
        prev_in = (np.concatenate([fe, fs]), np.concatenate([e_dst, s_dst]))
    return g


def build_link(n: int, how: str):
    """n flows over one link from t = 0. equal: same sizes; distinct: sizes s, 2s, ..., ns;
    private: distinct sizes and each flow also crosses a private link of its own (2x the
    bandwidth), so no two routes are equal: n route classes in one component."""
    from archc.runtime.events import TaskGraph

    g = TaskGraph(link_bw=[LINK_BW])
    sizes = FLOW_BYTES * (np.ones(n) if how == "equal" else np.arange(1, n + 1))
    if how == "private":
        own = g.add_links(np.full(n, 2 * LINK_BW))
        g.add_flows(sizes, np.arange(n + 1) * 2, np.stack([np.zeros(n, np.int32), own], axis=1).reshape(-1))
    else:
        g.add_flows(sizes, np.arange(n + 1), np.zeros(n, np.int32))
    return g


def run_case(case: list[str]) -> dict:
    from archc.runtime.events import kernel, simulate

    kernel()  # build or load outside the timings
    t0 = time.perf_counter()
    if case[0] == "mesh":
        g = build_mesh(int(case[1]), int(case[2]))
        label = f"mesh {case[1]} x {case[2]}, nearest neighbour, {ROUNDS} rounds"
    elif case[0] == "hop":
        g = build_mesh(int(case[1]), int(case[2]), hops=int(case[3]))
        label = f"mesh {case[1]} x {case[2]}, {case[3]}-hop east flows, {ROUNDS} rounds"
    else:
        g = build_link(int(case[1]), case[2])
        label = {"equal": f"{case[1]} equal flows on one link",
                 "distinct": f"{case[1]} flows of distinct sizes on one link (one route)",
                 "private": f"{case[1]} flows of distinct sizes on one link, distinct routes (worst case)"}[case[2]]
    fg = g.finalize()
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    r = simulate(fg, local=os.environ.get("ARCHC_EVENTS_LOCAL", "1") != "0")
    t_sim = time.perf_counter() - t1
    st = r.stats
    events = st["events"]
    return dict(label=label, tasks=fg.n_tasks, links=fg.n_links, resources=fg.n_resources,
                flows=int((fg.kind == 1).sum()), build_s=t_build, sim_s=t_sim, kernel_s=st["seconds"],
                events=events, events_per_s=events / st["seconds"], tasks_per_s=fg.n_tasks / st["seconds"],
                recomputations=st["recomputations"], expansions=st["expansions"],
                rate_changes=st["rate_changes"],
                flow_rate_changes=st["flow_rate_changes"], classes=fg.n_classes,
                component_links=st["component_links"], makespan=r.makespan,
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


PIPELINE_SETS = {"pp": 4, "dp": 1, "global_batch": 4096, "micro_batch": 1}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pipeline_run(global_batch: int):
    from archc.runtime import pipeline as pl

    sets = dict(PIPELINE_SETS, global_batch=global_batch)
    return dict(pl.check(os.path.join(ROOT, "samples", "h100.arch"), sets, "gpt_train").runs)["gpt_train"]


def _pipeline_once(run, bulk: bool) -> dict:
    """One event level of `run`, timed stage by stage (the kernel warm)."""
    from archc.codegen.lower import lower
    from archc.runtime import event_level as el
    from archc.runtime import events as ev
    from archc.runtime import pipeline as pl
    from archc.runtime.execute import analyze, event_report

    el.PIPELINE_BULK = bulk
    plan = lower(run)
    R = analyze(pl.build(run.machine), plan)
    t0 = time.perf_counter()
    b = el._Builder(plan, R)
    b.build_stages()
    t1 = time.perf_counter()
    g = b.g.finalize()
    t2 = time.perf_counter()
    r = ev.simulate(g)
    t3 = time.perf_counter()
    event_report(plan, R)  # the event level as `archc run` does it: graph, simulation, report
    t4 = time.perf_counter()
    return dict(build_s=t1 - t0, finalize_s=t2 - t1, sim_s=t3 - t2, kernel_s=r.stats["seconds"],
                event_level_s=t4 - t3, tasks=g.n_tasks, events=r.stats["events"], makespan=r.makespan)


def _hwm_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    parent a subprocess was forked from)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipeline_mem(bulk: bool, global_batch: int) -> dict:
    """--pipeline-mem: a fresh process's peak memory after one event level."""
    from archc.runtime import events as ev

    run = _pipeline_run(global_batch)
    ev.kernel()
    before = _hwm_mb()
    d = _pipeline_once(run, bulk)
    d.update(peak_mb=_hwm_mb(), start_mb=before)
    return d


def pipeline(repeats: int = 3, global_batch: int = 4096) -> None:
    from archc.runtime import events as ev

    med = lambda xs: float(np.median(xs))  # noqa: E731
    print(f"- GPT pipeline, h100 gpt_train pp=4 dp=1 micro_batch=1 global_batch={global_batch} "
          f"({global_batch} micro-batches, 1F1B); in one process, reference and bulk alternately, "
          f"medians of {repeats}; a shared 2-core machine (noisy)")
    run = _pipeline_run(global_batch)
    ev.kernel()
    _pipeline_once(run, True)  # warm: imports, the analytic kernel
    out = {False: [], True: []}
    for _ in range(repeats):
        for bulk in (False, True):
            out[bulk].append(_pipeline_once(run, bulk))
    mem = {}
    for bulk in (False, True):
        p = subprocess.run([sys.executable, __file__, "--pipeline-mem", "1" if bulk else "0", str(global_batch)],
                           capture_output=True, text=True)
        mem[bulk] = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
    cli = {False: [], True: []}
    cmd = [sys.executable, "-m", "archc", "run", os.path.join(ROOT, "samples", "h100.arch"), "--run", "gpt_train",
           "--level", "event"] + [a for k, v in dict(PIPELINE_SETS, global_batch=global_batch).items()
                                  for a in ("--set", f"{k}={v}")]
    for _ in range(2):
        for bulk in (False, True):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, ARCHC_EVENT_BULK=str(int(bulk))))
            cli[bulk].append((time.perf_counter() - t0, p.returncode, p.stdout))
    same_cli = cli[False][0][2] == cli[True][0][2] and all(c[1] == 0 for b in cli for c in cli[b])
    for bulk in (False, True):
        d = out[bulk]
        k = med([x["kernel_s"] for x in d])
        m = mem[bulk]
        print(f"    {'bulk     ' if bulk else 'reference'}: {d[0]['tasks']:,} tasks; graph build {med([x['build_s'] for x in d]):.3f} s, "
              f"finalize {med([x['finalize_s'] for x in d]):.3f} s, simulate {med([x['sim_s'] for x in d]):.3f} s "
              f"(engine {k:.3f} s, {d[0]['events'] / k / 1e6:.1f} M events/s); whole event level (graph, simulation, "
              f"report) {med([x['event_level_s'] for x in d]):.3f} s; peak memory "
              + (f"{m['peak_mb']:.0f} MB (process at start {m['start_mb']:.0f} MB)" if m else "n/a")
              + f"; `archc run` whole process {med([c[0] for c in cli[bulk]]):.2f} s")
    r, b = out[False], out[True]
    print(f"    ratios reference / bulk: graph build {med([x['build_s'] for x in r]) / med([x['build_s'] for x in b]):.0f}x, "
          f"build + finalize {med([x['build_s'] + x['finalize_s'] for x in r]) / med([x['build_s'] + x['finalize_s'] for x in b]):.0f}x, "
          f"whole event level {med([x['event_level_s'] for x in r]) / med([x['event_level_s'] for x in b]):.1f}x, "
          f"command {med([c[0] for c in cli[False]]) / med([c[0] for c in cli[True]]):.1f}x; bulk build / engine "
          f"{med([x['build_s'] for x in b]) / med([x['kernel_s'] for x in b]):.2f}, (build + finalize) / engine "
          f"{med([x['build_s'] + x['finalize_s'] for x in b]) / med([x['kernel_s'] for x in b]):.2f}; same makespan: "
          f"{len({x['makespan'] for x in r + b}) == 1}; same report from the command: {same_cli}")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--case":
        print(json.dumps(run_case(argv[1:])))
        return 0
    if argv and argv[0] == "--pipeline-mem":
        print(json.dumps(pipeline_mem(argv[1] == "1", int(argv[2]))))
        return 0
    opt = lambda name, default: int(argv[argv.index(name) + 1]) if name in argv else default  # noqa: E731
    if "--pipeline" in argv:
        pipeline(opt("--repeats", 3), opt("--global-batch", 4096))
        return 0
    quick = "--quick" in argv
    cases = [["mesh", "64", "64"], ["mesh", "256", "256"], ["hop", "64", "64", "4"], ["hop", "256", "256", "4"],
             ["link", "10000", "equal"], ["link", "100000", "distinct"], ["link", "1000", "private"],
             ["link", "10000", "private"]]
    if not quick:
        cases += [["mesh", "512", "512"], ["link", "1000000", "equal"], ["link", "1000000", "distinct"]]
        if "--no-wafer" not in argv:
            cases += [["mesh", "757", "996"], ["hop", "757", "996", "4"]]
    print(f"event simulator benchmark ({'quick' if quick else 'full'}); peak memory = ru_maxrss of the "
          f"case's own process (Python + numpy + graph + kernel)")
    for case in cases:
        p = subprocess.run([sys.executable, __file__, "--case", *case], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{' '.join(case)}: FAILED\n{p.stderr[-2000:]}")
            continue
        d = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"- {d['label']}: {d['tasks']:,} tasks ({d['flows']:,} flows), {d['links']:,} links, "
              f"{d['resources']:,} resources")
        print(f"    build {d['build_s']:.2f} s, simulate {d['sim_s']:.2f} s "
              f"(kernel {d['kernel_s']:.2f} s): {d['events']:,} events = {d['events_per_s'] / 1e6:.2f} M events/s, "
              f"{d['tasks_per_s'] / 1e6:.2f} M tasks/s; {d['recomputations']:,} max-min repairs "
              f"({d['expansions']:,} widened) over {d['component_links']:,} links in all; {d['classes']:,} route classes, "
              f"{d['rate_changes']:,} class rate changes ({d['flow_rate_changes']:,} flow rate changes); "
              f"makespan {d['makespan'] * 1e6:.3f} us; peak memory {d['peak_mb']:.0f} MB")
    if "--no-pipeline" not in argv:
        pipeline(opt("--repeats", 1 if quick else 3), opt("--global-batch", 4096))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
