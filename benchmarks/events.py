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

Usage: python benchmarks/events.py [--quick] [--no-wafer]
       python benchmarks/events.py --case mesh 757 996   (one case; ARCHC_EVENTS_LOCAL=0: no local repair)
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


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--case":
        print(json.dumps(run_case(argv[1:])))
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
