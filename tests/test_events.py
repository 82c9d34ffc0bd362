"""The event-level simulator (runtime/events.py + codegen/templates/events.pyx.j2) against
hand calculations written out below. Times are float64; "exact" means equal to the formula up
to float rounding (relative 1e-12), except where the arithmetic is exact in binary."""
from __future__ import annotations

import json

import numpy as np
import pytest

from archc.runtime import events as ev
from archc.runtime.events import TaskGraph, simulate

pytestmark = pytest.mark.build

GB = 1e9


def close(x, y, rel=1e-12):
    return x == pytest.approx(y, rel=rel, abs=1e-18)


# ---- flows on links ----------------------------------------------------------------------------

def test_one_flow_takes_bytes_over_bandwidth_plus_latency():
    S, B, lat = 3 * GB, 4 * GB, 2e-6
    g = TaskGraph(link_bw=[B])
    f = g.add_flow(S, [0], latency=lat)
    r = simulate(g)
    # latency first (no link used), then S bytes at the whole bandwidth
    assert close(r.end[f], lat + S / B)  # 2e-6 + 0.75
    assert r.start[f] == 0.0
    assert close(r.makespan, lat + S / B)
    assert close(r.link_busy[0], S / B)
    assert r.link_bytes[0] == S


def test_two_equal_flows_on_one_link_take_twice_as_long():
    S, B = 1 * GB, 8 * GB
    g = TaskGraph(link_bw=[B])
    a = g.add_flow(S, [0])
    b = g.add_flow(S, [0])
    r = simulate(g)
    # each gets B/2: S / (B/2) = 2S/B = 0.25 s (exact in binary)
    assert r.end[a] == 2 * S / B and r.end[b] == 2 * S / B
    g1 = TaskGraph(link_bw=[B])
    g1.add_flow(S, [0])
    assert simulate(g1).makespan * 2 == r.makespan


@pytest.mark.parametrize("bw_a, bw_b, rate1, rate2", [
    # link a = 1 GB/s, link b = 3 GB/s. Fair shares: a: 1/1 = 1, b: 3/2 = 1.5. a saturates first:
    # flow 1 (on a, b) gets 1 GB/s; b has 3 - 1 = 2 GB/s left for flow 2.
    (1 * GB, 3 * GB, 1 * GB, 2 * GB),
    # link a = 3 GB/s, link b = 2 GB/s. Shares: a: 3, b: 2/2 = 1. b saturates first: both 1 GB/s.
    (3 * GB, 2 * GB, 1 * GB, 1 * GB),
])
def test_two_flows_max_min_rates_by_hand(bw_a, bw_b, rate1, rate2):
    g = TaskGraph(link_bw=[bw_a, bw_b])
    # equal sizes would end together; sizes chosen so each flow's own rate is visible:
    # both flows run to the end of flow 1 at the rates above (flow 2 is the larger one)
    S1 = 2 * GB
    S2 = 100 * GB
    f1 = g.add_flow(S1, [0, 1])
    f2 = g.add_flow(S2, [1])
    r = simulate(g)
    t1 = S1 / rate1
    assert close(r.end[f1], t1)
    # after flow 1 ends, flow 2 has link b alone
    left = S2 - rate2 * t1
    assert close(r.end[f2], t1 + left / bw_b)
    assert close(r.link_busy[0], t1) and close(r.link_busy[1], r.end[f2])
    assert r.link_bytes[0] == S1 and r.link_bytes[1] == S1 + S2


def test_flow_that_ends_frees_bandwidth_for_the_other():
    B = 1 * GB
    g = TaskGraph(link_bw=[B])
    a = g.add_flow(3 * GB, [0])                 # starts at 0
    d = g.add_delay(1.0)                        # flow b starts at 1 s
    b = g.add_flow(1 * GB, [0], after=[d])
    r = simulate(g)
    # [0, 1): a alone at 1 GB/s: 1 GB moved, 2 GB left.
    # [1, 3): a and b at 0.5 GB/s each: b's 1 GB takes 2 s -> b ends at 3; a moved 1 GB, 1 GB left.
    # [3, 4): a alone at 1 GB/s: ends at 4.
    assert r.end[b] == 3.0
    assert r.end[a] == 4.0
    assert r.link_busy[0] == 4.0
    # and the other way round: two flows from 0, the smaller ends first, the larger gets all
    g = TaskGraph(link_bw=[B])
    a = g.add_flow(1 * GB, [0])
    b = g.add_flow(2.5 * GB, [0])
    r = simulate(g)
    # both at B/2 until a ends at 2 s; b has 2.5 - 1 = 1.5 GB left at B: ends at 3.5 s
    assert r.end[a] == 2.0
    assert r.end[b] == 3.5


def test_three_links_progressive_filling():
    # links x (2), y (3), z (10) GB/s; flows: A on x,z; B on y,z; C on z; D on x.
    # shares: x 2/2 = 1, y 3/1 = 3, z 10/3 = 3.33 -> x saturates: A = D = 1.
    # then y: 3/1 = 3, z: (10 - 1)/2 = 4.5 -> y: B = 3. z: 10 - 1 - 3 = 6 -> C = 6.
    g = TaskGraph(link_bw=[2 * GB, 3 * GB, 10 * GB])
    big = 1000 * GB
    A = g.add_flow(1 * GB, [0, 2])  # ends first, at 1 s
    B = g.add_flow(big, [1, 2])
    C = g.add_flow(big, [2])
    D = g.add_flow(big, [0])
    r = simulate(g)
    assert close(r.end[A], 1.0)
    # bytes moved by 1 s: B 3, C 6, D 1 GB. After A: x: D alone at 2; y: B at 3 (its share);
    # z: 10 - 3 = 7 left for C.
    # C: 994 GB at 7 -> ends at 1 + 994/7 = 143 s (first).
    assert close(r.end[C], 1 + 994 / 7)
    # B stays bottlenecked on y at 3 GB/s throughout: 1 + 997/3
    assert close(r.end[B], 1 + 997 / 3)
    # D: 999 GB at 2 -> 1 + 499.5
    assert close(r.end[D], 1 + 999 / 2)


# ---- compute resources ---------------------------------------------------------------------------

def test_chain_of_compute_tasks_on_one_resource():
    g = TaskGraph(n_resources=1)
    a = g.add_compute(1.0, 0)
    b = g.add_compute(2.0, 0, after=[a])
    c = g.add_compute(3.0, 0, after=[b])
    r = simulate(g)
    assert list(r.start) == [0.0, 1.0, 3.0]
    assert list(r.end) == [1.0, 3.0, 6.0]
    assert r.busy[0] == 6.0 and r.makespan == 6.0
    assert r.critical() == [(a, "source"), (b, "dependency"), (c, "dependency")]


def test_two_independent_tasks_on_one_resource_serialize():
    g = TaskGraph(n_resources=1)
    a = g.add_compute(2.0, 0)
    b = g.add_compute(1.0, 0)
    r = simulate(g)
    # both ready at 0: the lower id first
    assert (r.start[a], r.end[a], r.start[b], r.end[b]) == (0.0, 2.0, 2.0, 3.0)
    assert r.busy[0] == 3.0
    # b waited for the resource: the critical path says so
    assert r.critical() == [(a, "source"), (b, "resource")]


def test_resource_serves_in_program_order():
    g = TaskGraph(n_resources=1)
    d = g.add_delay(0.5)
    a = g.add_compute(1.0, 0, after=[d])  # ready at 0.5
    b = g.add_compute(1.0, 0)             # ready at 0, the resource idle: runs at once
    c = g.add_compute(1.0, 0)             # ready at 0 too, but a (lower id) waits too by t = 1
    r = simulate(g)
    assert (r.start[b], r.start[a], r.start[c]) == (0.0, 1.0, 2.0)
    assert r.ready[a] == 0.5


def test_stream_keeps_its_order_through_a_slow_stage():
    """Samples through two ops on one tile (a slow one, then a fast one, like a conv and the
    norm colocated with it): the norm of sample j runs before the conv of sample j + 1 even
    though all the convs were ready earlier, so samples leave one per conv time plus norm
    time, in order (ready-time order would run every conv first)."""
    g = TaskGraph(n_resources=1)
    m, conv, norm = 5, 2.0, 0.5
    norms = []
    for j in range(m):
        c = g.add_compute(conv, 0)
        norms.append(g.add_compute(norm, 0, after=[c]))
    r = simulate(g)
    assert [r.end[n] for n in norms] == [(j + 1) * (conv + norm) for j in range(m)]


# ---- collectives and pipelines -------------------------------------------------------------------

@pytest.mark.parametrize("p", [2, 4, 8])
def test_ring_all_reduce(p):
    S, B, lat = 1.5 * GB, 50 * GB, 3e-6
    g = TaskGraph(link_bw=[B] * p)  # link i: chip i -> chip (i + 1) % p, one direction
    prev = None
    for step in range(2 * (p - 1)):   # reduce-scatter (p - 1 steps), then all-gather (p - 1)
        cur = []
        for i in range(p):            # chip i sends a chunk of S/p bytes to chip i + 1
            after = [] if prev is None else [prev[(i - 1) % p]]  # what chip i received last step
            cur.append(g.add_flow(S / p, [i], latency=lat, after=after))
        prev = cur
    r = simulate(g)
    # every step: latency, then S/p bytes over an uncontended link
    assert close(r.makespan, 2 * (p - 1) * (S / p / B + lat))
    assert close(r.makespan, 2 * (p - 1) / p * S / B + 2 * (p - 1) * lat)
    assert np.allclose(r.link_bytes, 2 * (p - 1) * S / p, rtol=1e-15)
    assert np.allclose(r.link_busy, 2 * (p - 1) * S / p / B, rtol=1e-12)


def _gpipe(p, m, t_f, t_b=None, comm=None):
    """p stages (resource s each), m micro-batches; F(s, j) after F(s-1, j) [and a flow of
    `comm` seconds between stages]; with t_b, a flush then B(s, j) after B(s+1, j)."""
    g = TaskGraph(n_resources=p, link_bw=[1 * GB] * p)
    fwd = [[None] * m for _ in range(p)]
    for j in range(m):
        for s in range(p):
            after = []
            if s > 0:
                after = [fwd[s - 1][j]]
                if comm is not None:
                    after = [g.add_flow(comm * GB, [s], after=after)]
            fwd[s][j] = g.add_compute(t_f, s, after=after)
    if t_b is not None:
        flush = g.add_delay(0.0, after=[fwd[p - 1][m - 1]])
        bwd = [[None] * m for _ in range(p)]
        for j in range(m):
            for s in reversed(range(p)):
                after = [flush] if s == p - 1 else [bwd[s + 1][j]]
                bwd[s][j] = g.add_compute(t_b, s, after=after)
    return g


@pytest.mark.parametrize("p, m", [(2, 1), (4, 4), (4, 16), (8, 3)])
def test_gpipe_bubble(p, m):
    t = 0.25
    r = simulate(_gpipe(p, m, t))
    assert r.makespan == (m + p - 1) * t
    assert close(r.bubble_fraction(), (p - 1) / (m + p - 1))
    # each stage busy m * t
    assert np.all(r.busy == m * t)


@pytest.mark.parametrize("p, m", [(4, 8), (3, 2)])
def test_gpipe_forward_backward_with_flush(p, m):
    t_f, t_b = 0.5, 1.0
    r = simulate(_gpipe(p, m, t_f, t_b))
    # forward (m + p - 1) t_f, then backward (m + p - 1) t_b; bubble unchanged
    assert r.makespan == (m + p - 1) * (t_f + t_b)
    assert close(r.bubble_fraction(), (p - 1) / (m + p - 1))


def test_gpipe_with_transfers_between_stages():
    p, m, t, c = 4, 6, 1.0, 0.25  # a transfer takes c: c GB over a 1 GB/s link
    r = simulate(_gpipe(p, m, t, comm=c))
    # F(s, j) starts at s (t + c) + j t
    assert r.makespan == (p - 1) * (t + c) + m * t


# ---- critical path -----------------------------------------------------------------------------

def test_critical_path_of_a_diamond():
    g = TaskGraph(n_resources=4, link_bw=[1 * GB])
    a = g.add_compute(1.0, 0)
    b = g.add_compute(3.0, 1, after=[a])     # the long branch
    c = g.add_flow(1 * GB, [0], after=[a])   # 1 s
    d = g.add_compute(1.0, 2, after=[b, c])
    r = simulate(g)
    assert r.end[d] == 5.0
    assert r.critical() == [(a, "source"), (b, "dependency"), (d, "dependency")]
    # lengthen the other branch: the path moves to the flow
    g2 = TaskGraph(n_resources=4, link_bw=[1 * GB])
    a = g2.add_compute(1.0, 0)
    b = g2.add_compute(3.0, 1, after=[a])
    c = g2.add_flow(5 * GB, [0], after=[a])
    d = g2.add_compute(1.0, 2, after=[b, c])
    r = simulate(g2)
    assert r.end[d] == 7.0
    assert r.critical() == [(a, "source"), (c, "dependency"), (d, "dependency")]


def test_critical_path_through_a_resource_wait():
    g = TaskGraph(n_resources=2)
    a = g.add_compute(1.0, 0)
    b = g.add_compute(4.0, 1)            # occupies resource 1 until 4
    c = g.add_compute(1.0, 1, after=[a])  # ready at 1, starts at 4
    r = simulate(g)
    assert r.ready[c] == 1.0 and r.start[c] == 4.0
    assert r.dep_pred[c] == a and r.res_pred[c] == b
    assert r.critical() == [(b, "source"), (c, "resource")]


# ---- odds and ends --------------------------------------------------------------------------

def test_zero_byte_flows_zero_durations_and_barriers():
    g = TaskGraph(n_resources=1, link_bw=[1 * GB])
    a = g.add_flow(0, [0], latency=1e-6)   # no bytes: just its latency
    b = g.add_flow(1 * GB, [], latency=0)  # no links: instantaneous
    c = g.add_delay(0.0, after=[a, b])     # barrier
    d = g.add_compute(0.0, 0, after=[c])
    e = g.add_compute(2.0, 0, after=[d])
    r = simulate(g)
    assert r.end[a] == 1e-6 and r.end[b] == 0.0 and r.end[c] == 1e-6 and r.end[d] == 1e-6
    assert r.end[e] == 1e-6 + 2.0
    assert r.link_bytes[0] == 0 and r.link_busy[0] == 0


def test_empty_graph():
    r = simulate(TaskGraph())
    assert r.makespan == 0.0 and r.critical_path.size == 0


def test_cycle_and_bad_inputs_are_errors():
    g = TaskGraph(n_resources=1)
    a = g.add_compute(1.0, 0)
    b = g.add_compute(1.0, 0, after=[a])
    g.add_dep(b, a)
    with pytest.raises(ValueError, match="cycle"):
        simulate(g)
    with pytest.raises(ValueError, match="resource 3"):
        g = TaskGraph(n_resources=1)
        g.add_compute(1.0, 3)
        g.finalize()
    with pytest.raises(ValueError, match="bandwidth"):
        g = TaskGraph(link_bw=[0.0])
        g.add_flow(1.0, [0])
        g.finalize()
    with pytest.raises(ValueError, match="link outside"):
        g = TaskGraph(link_bw=[1.0])
        g.add_flow(1.0, [1])
        g.finalize()


def test_array_builders_match_scalar_builders():
    def scalar():
        g = TaskGraph(n_resources=2, link_bw=[1 * GB, 2 * GB])
        c0 = g.add_compute(1.0, 0)
        c1 = g.add_compute(0.5, 1)
        f0 = g.add_flow(1 * GB, [0, 1], latency=1e-3, after=[c0])
        f1 = g.add_flow(2 * GB, [1], after=[c1])
        g.add_compute(1.0, 1, after=[f0, f1])
        return g

    g2 = TaskGraph(n_resources=2)
    g2.add_links([1 * GB, 2 * GB])
    c = g2.add_computes([1.0, 0.5], [0, 1])
    f = g2.add_flows([1 * GB, 2 * GB], [0, 2, 3], [0, 1, 1], latency=[1e-3, 0.0])
    last = g2.add_computes(1.0, [1])
    g2.add_deps(c, f)
    g2.add_deps(f, [last[0], last[0]])
    a, b = simulate(scalar()), simulate(g2)
    assert np.array_equal(a.start, b.start) and np.array_equal(a.end, b.end)
    assert a.critical() == b.critical()


def _random_graph(seed, n_links=12, n_flows=300, n_res=4, n_comp=200):
    rng = np.random.default_rng(seed)
    g = TaskGraph(n_resources=n_res, link_bw=rng.choice([1.0, 2.0, 5.0, 7.5], n_links) * GB)
    ids = []
    for i in range(n_flows + n_comp):
        after = sorted(set(rng.choice(ids, size=min(len(ids), rng.integers(0, 3)), replace=False).tolist())) \
            if ids and rng.random() < 0.6 else []
        if i % 3 == 0 and n_comp:
            ids.append(g.add_compute(float(rng.uniform(0, 0.5)), int(rng.integers(n_res)), after=after))
        else:
            route = rng.choice(n_links, size=int(rng.integers(1, 5)), replace=False).tolist()
            ids.append(g.add_flow(float(rng.uniform(0.01, 2.0)) * GB, route,
                                  latency=float(rng.choice([0.0, 1e-3])), after=after))
    return g


def test_deterministic_bit_for_bit():
    a, b = simulate(_random_graph(7)), simulate(_random_graph(7))
    for name in ("start", "end", "ready", "dep_pred", "res_pred", "busy", "link_bytes", "link_busy",
                 "critical_path", "critical_reason"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.makespan == b.makespan
    assert {k: v for k, v in a.stats.items() if k != "seconds"} == \
        {k: v for k, v in b.stats.items() if k != "seconds"}


def _reference_flows(starts, routes, sizes, bw):
    """Flows only, by brute force: global progressive filling after every event."""
    n = len(sizes)
    rem = np.array(sizes, float)
    end = np.full(n, np.nan)
    t = 0.0
    while np.isnan(end).any():
        active = [i for i in range(n) if np.isnan(end[i]) and starts[i] <= t]
        rate = np.zeros(n)
        frozen = set()
        cap = np.array(bw, float)
        while len(frozen) < len(active):
            share = {}
            for l in range(len(bw)):
                users = [i for i in active if i not in frozen and l in routes[i]]
                if users:
                    share[l] = cap[l] / len(users)
            lvl = min(share.values())
            lnk = min(share, key=lambda l: (share[l], l))
            for i in active:
                if i not in frozen and lnk in routes[i]:
                    frozen.add(i)
                    rate[i] = lvl
                    for m in routes[i]:
                        cap[m] -= lvl
        nxt = min([starts[i] for i in range(n) if starts[i] > t] + [t + rem[i] / rate[i] for i in active])
        for i in active:
            rem[i] -= rate[i] * (nxt - t)
            if rem[i] <= 1e-6 * sizes[i]:
                end[i] = nxt
        t = nxt
    return end


@pytest.mark.parametrize("seed", range(5))
def test_incremental_max_min_matches_global_recomputation(seed):
    rng = np.random.default_rng(100 + seed)
    n_links, n = 8, 25
    bw = rng.choice([1.0, 2.0, 3.0, 8.0], n_links) * GB
    starts = np.round(rng.uniform(0, 2, n), 2)
    routes = [sorted(rng.choice(n_links, size=int(rng.integers(1, 4)), replace=False).tolist()) for _ in range(n)]
    sizes = np.round(rng.uniform(0.1, 3, n), 3) * GB
    g = TaskGraph(link_bw=bw)
    for i in range(n):
        d = g.add_delay(float(starts[i]))
        g.add_flow(float(sizes[i]), routes[i], after=[d])
    ref = _reference_flows(starts, routes, sizes, bw)
    for local in (True, False):
        r = simulate(g, local=local)
        assert np.allclose(r.end[1::2], ref, rtol=1e-6)


def _chain_flows(seed, n_links, n, max_hops, bws=(1.0, 2.0, 3.0)):
    """Flows over contiguous stretches of a line of links: one long connected component in
    which a change's effect on the max-min rates can travel far, or not at all."""
    rng = np.random.default_rng(seed)
    bw = rng.choice(bws, n_links) * GB
    starts = np.round(rng.uniform(0, 3, n), 2)
    hops = rng.integers(1, max_hops + 1, n)
    first = rng.integers(0, n_links - hops + 1)
    routes = [list(range(int(a), int(a + h))) for a, h in zip(first, hops)]
    sizes = np.round(rng.uniform(0.1, 3, n), 3) * GB
    g = TaskGraph(link_bw=bw)
    for i in range(n):
        d = g.add_delay(float(starts[i]))
        g.add_flow(float(sizes[i]), routes[i], after=[d])
    return g, (starts, routes, sizes, bw)


@pytest.mark.parametrize("seed", range(4))
def test_local_repair_matches_reference_on_a_chain(seed):
    g, (starts, routes, sizes, bw) = _chain_flows(200 + seed, n_links=12, n=30, max_hops=5)
    r = simulate(g)
    assert np.allclose(r.end[1::2], _reference_flows(starts, routes, sizes, bw), rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_local_repair_matches_whole_component_recomputation(seed):
    # a long chain, many overlapping flows: local repairs must give the same rates as
    # progressive filling over the whole component, and some must have needed widening
    g, _ = _chain_flows(300 + seed, n_links=300, n=3000, max_hops=8)
    loc, full = simulate(g, local=True), simulate(g, local=False)
    assert np.allclose(loc.end, full.end, rtol=1e-9, atol=0)
    assert np.allclose(loc.link_busy, full.link_busy, rtol=1e-9, atol=1e-15)
    assert loc.stats["expansions"] > 0


def test_local_repair_stays_local_on_a_mesh_with_multi_hop_flows():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "events.py"
    spec = importlib.util.spec_from_file_location("_archc_bench_events", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = bench.build_mesh(64, 64, hops=4).finalize()  # every tile sends 4 hops east
    loc, full = simulate(g, local=True), simulate(g, local=False)
    assert np.allclose(loc.end, full.end, rtol=1e-9, atol=0)
    # rows are whole components; the repairs touch a fraction of them
    assert loc.stats["component_links"] * 2 < full.stats["component_links"]


def test_chrome_trace_is_valid_json():
    g = TaskGraph(n_resources=2, link_bw=[1 * GB])
    a = g.add_compute(1e-3, 0)
    f = g.add_flow(1e6, [0], after=[a])
    g.add_compute(2e-3, 1, after=[f])
    r = simulate(g)
    trace = json.loads(json.dumps(ev.to_chrome_trace(r, names=["fwd", "send", "bwd"])))
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [e["name"] for e in xs] == ["fwd", "send", "bwd"]
    assert xs[0]["ts"] == 0.0 and xs[0]["dur"] == pytest.approx(1e3)
    assert xs[1]["pid"] == 1 and xs[1]["tid"] == 0 and xs[1]["dur"] == pytest.approx(1e3)
    assert xs[2]["ts"] == pytest.approx(2e3) and xs[2]["tid"] == 1


def test_chrome_trace_streamed_and_capped(tmp_path):
    """A long chain of 10 tasks on one resource and, in parallel, a slower chain of 3: a trace
    capped at 4 tasks holds the first 4 by start time and the critical path (the slow chain),
    and says so; uncapped, the streamed file equals to_chrome_trace."""
    g = TaskGraph(n_resources=2)
    prev = None
    for _ in range(10):
        prev = g.add_compute(1.0, 0, after=[prev] if prev is not None else [])
    slow = [g.add_compute(5.0, 1)]
    slow += [g.add_compute(5.0, 1, after=[slow[-1]]) for _ in range(2)]
    r = simulate(g)
    path = tmp_path / "t.json"
    assert ev.write_chrome_trace(path, r) == 13
    assert json.loads(path.read_text()) == json.loads(json.dumps(ev.to_chrome_trace(r)))
    assert ev.write_chrome_trace(path, r, max_tasks=4) == 6
    trace = json.loads(path.read_text())
    tasks = sorted(e["args"]["task"] for e in trace["traceEvents"] if e["ph"] == "X")
    # the first 4 by start time: 0 and slow[0] (t = 0), 1 (t = 1), 2 (t = 2); the critical
    # path (makespan 15): the slow chain 10, 11, 12
    assert tasks == [0, 1, 2, 10, 11, 12]
    assert trace["otherData"]["tasks"] == 13 and trace["otherData"]["tasks_written"] == len(tasks)


def test_rendered_kernel_header_and_determinism():
    src = ev.render_events("9.9.9")
    assert src.startswith("# Generated by archc 9.9.9: do not edit.\n# content key: ")
    assert src == ev.render_events("9.9.9")
    assert "MACHINE = {\n}" in src
    # the place for machine constants: one typed constant each, exported in MACHINE
    src = ev.render_events("9.9.9", constants=(("NOC_HOP_S", 1e-9, "per-hop latency\nof the NoC"),))
    assert "cdef double NOC_HOP_S = 1e-09  # per-hop latency?of the NoC\n" in src
    assert '    "NOC_HOP_S": 1e-09,\n' in src


@pytest.mark.parametrize("weak_hash", [False, True])
def test_route_classes_are_exact(monkeypatch, weak_hash):
    if weak_hash:  # multiplier 1: permutations of a route collide; classes must still be exact
        monkeypatch.setattr(ev, "_H1", np.uint64(1))
    rng = np.random.default_rng(3)
    T = 3000
    kind = rng.integers(0, 3, T).astype(np.int8)
    lens = np.where(kind == 1, rng.integers(0, 4, T), 0)
    ptr = np.zeros(T + 1, np.int64)
    np.cumsum(lens, out=ptr[1:])
    links = rng.integers(0, 5, ptr[-1]).astype(np.int32)
    fc, cp, cl = ev.route_classes(kind, ptr, links, 5)
    seen = {}
    for f in range(T):
        route = tuple(links[ptr[f]:ptr[f + 1]])
        if kind[f] != 1 or not route:
            assert fc[f] == -1
            continue
        assert tuple(cl[cp[fc[f]]:cp[fc[f] + 1]]) == route
        seen.setdefault(route, set()).add(int(fc[f]))
    if not weak_hash:  # one class per distinct route
        assert all(len(v) == 1 for v in seen.values()) and len(cp) - 1 == len(seen)


def test_many_flows_on_one_link_share_one_class():
    # n flows of sizes s, 2s, ..., ns on one link B, all from 0: flow k ends when the k smallest
    # are through: t_k = sum_{i<=k} (n - i + 1) s_i... in closed form, with s_i = i s:
    # between ends, n - k + 1 flows share B; each needs s more than the last one to end:
    # t_k = t_{k-1} + (n - k + 1) s / B
    n, s, B = 200, 1e6, 1e9
    g = TaskGraph(link_bw=[B])
    g.add_flows(s * np.arange(1, n + 1), np.arange(n + 1), np.zeros(n, np.int32))
    r = simulate(g)
    expect = np.cumsum((n - np.arange(1, n + 1) + 1) * s / B)
    assert np.allclose(r.end, expect, rtol=1e-12)
    assert close(r.makespan, n * (n + 1) / 2 * s / B)
    # one class: each end re-rates one class, not the n - k flows left
    assert g.finalize().n_classes == 1
    assert r.stats["rate_changes"] <= n + 1


def test_route_crossing_a_link_twice_uses_it_twice():
    # a flow over link 0 twice (there and back) counts as two users of it: alone, B/2
    g = TaskGraph(link_bw=[1 * GB, 1 * GB])
    a = g.add_flow(1 * GB, [0, 1, 0])
    r = simulate(g)
    assert r.end[a] == 2.0
    assert r.link_busy[0] == 2.0 and r.link_bytes[0] == 2 * GB and r.link_bytes[1] == 1 * GB
    # with a second flow on link 0: 3 users of 1 GB/s, each 1/3: a gets 1/3 (it is limited
    # on link 0 where it holds 2 of the 3 shares), b gets 1/3
    g = TaskGraph(link_bw=[1 * GB, 1 * GB])
    a = g.add_flow(1 * GB, [0, 1, 0])
    b = g.add_flow(1 * GB, [0])
    r = simulate(g)
    # both at 1/3 GB/s: both end at 3 s
    assert close(r.end[a], 3.0) and close(r.end[b], 3.0)


def test_add_repeated_equals_the_copies_built_one_by_one():
    """TaskGraph.add_repeated: `times` copies of a graph of tasks (scalar and array calls,
    flows over the host's links, computes on its resources, dependencies of both kinds) give
    the same graph as making the same calls `times` times, and the same simulation; the host's
    own tasks before and dependencies between the copies stay where they are."""
    def calls(g, tag):
        c = g.add_compute(1e-6 * (1 + tag), 0)
        f = g.add_flow(1000.0, [0, 1], latency=5e-9, after=[c])
        ids = g.add_computes([2e-6, 3e-6], [1, 0])
        fl = g.add_flows([500.0, 700.0], [0, 1, 3], [1, 0, 1], latency=1e-9)
        g.add_deps([f, f], ids)
        g.add_deps(ids, fl)
        return g.add_delay(0.0, after=[int(fl[0]), int(fl[1])])

    def host():
        g = TaskGraph(n_resources=2, link_bw=[1e9, 2e9])
        g.add_compute(5e-7, 1)
        return g
    ref = host()
    for _ in range(3):
        calls(ref, 0)
    ref.add_deps([1 + 7 * 0 + 6, 1 + 7 * 1 + 6], [1 + 7 * 1, 1 + 7 * 2])  # copy k + 1 after copy k's end
    rep = host()
    part = TaskGraph()
    calls(part, 0)
    first = rep.add_repeated(part, 3)
    assert list(first) == [1, 8, 15] and rep.n_tasks == ref.n_tasks == 22
    rep.add_deps(first[:2] + 6, first[1:])
    a, b = ref.finalize(), rep.finalize()
    for name in ("kind", "duration", "resource", "bytes", "latency", "route_ptr", "route_links", "n_preds",
                 "succ_ptr", "link_bw", "flow_class", "class_ptr", "class_links"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for t in range(a.n_tasks):  # the same successors (their order within a task may differ)
        assert sorted(a.succ[a.succ_ptr[t]:a.succ_ptr[t + 1]]) == sorted(b.succ[b.succ_ptr[t]:b.succ_ptr[t + 1]])
    ra, rb = simulate(a), simulate(b)
    assert np.array_equal(ra.end, rb.end) and ra.makespan == rb.makespan
    with pytest.raises(ValueError, match="resources and links must be"):
        rep.add_repeated(TaskGraph(n_resources=1), 2)


def test_add_made_is_add_tasks_add_deps_and_late_deps():
    """TaskGraph.add_made (an event kernel's arrays at once) makes the graph that add_tasks,
    add_deps and add_deps_late make one after the other, scalar dependencies before it
    included (they stay ahead of the late ones in each task's successors)."""
    from conftest import assert_same_graph

    def build(made: bool):
        g = ev.TaskGraph(n_resources=2, link_bw=[1e9, 2e9])
        a = g.add_compute(1.0, 0)
        b = g.add_delay(0.5, after=[a])  # a scalar dependency before the block
        kind = np.array([0, 1, 2, 0], np.int8)
        cols = (kind, np.array([2.0, 0.0, 0.25, 1.0]), np.array([1, -1, -1, 0], np.int32),
                np.array([0.0, 4e9, 0.0, 0.0]), np.array([0.0, 1e-6, 0.0, 0.0]), np.array([0, 2, 0, 0], np.int64),
                np.array([0, 1], np.int32))
        src, dst = np.array([2, 3, 2], np.int32), np.array([3, 4, 5], np.int32)
        late = (np.array([b, 4], np.int64), np.array([2, 5], np.int64))
        if made:
            first = g.add_made(*cols, src, dst, late)
        else:
            first = g.add_tasks(*cols)
            g.add_deps(src, dst)
            g.add_deps_late(*late)
        g.add_dep(5, g.add_delay(0.0))  # a scalar dependency after it
        return first, g.finalize()

    (f1, g1), (f2, g2) = build(True), build(False)
    assert f1 == f2 == 2
    assert_same_graph(g1, g2)
    # written out: task 1 (the delay) precedes the block's first task 2 (late); task 2 precedes
    # 3 and 5 (array); task 4 precedes 5 (late); task 5 the final delay 6 (scalar, after)
    succ = {t: g1.succ[g1.succ_ptr[t]:g1.succ_ptr[t + 1]].tolist() for t in range(7)}
    assert succ == {0: [1], 1: [2], 2: [3, 5], 3: [4], 4: [5], 5: [6], 6: []}
    with pytest.raises(ValueError, match="route_len must sum"):
        ev.TaskGraph().add_made(kind=np.zeros(1, np.int8), duration=0.0, resource=-1, nbytes=0.0, latency=0.0,
                                route_len=np.ones(1, np.int64), route_links=np.zeros(0, np.int32),
                                src=np.zeros(0, np.int32), dst=np.zeros(0, np.int32),
                                late=(np.zeros(0, np.int32), np.zeros(0, np.int32)))


def test_successors_are_a_stable_sort_by_source():
    """The event kernel's successors (TaskGraph.finalize's CSR) lists each task's successors
    in the order its dependencies were given, as a stable argsort by source does, and counts
    each task's predecessors as a bincount does; a dependency outside the tasks is refused."""
    rng = np.random.default_rng(5)
    k = ev.kernel()
    for T, D in ((1, 0), (7, 30), (1000, 20000)):
        src, dst = rng.integers(0, T, D).astype(np.int32), rng.integers(0, T, D).astype(np.int32)
        ptr, succ, npred = k.successors(src, dst, T)
        order = np.argsort(src, kind="stable")
        assert succ.tolist() == dst[order].tolist()
        assert ptr.tolist() == [0] + np.cumsum(np.bincount(src, minlength=T)).tolist()
        assert npred.tolist() == np.bincount(dst, minlength=T).tolist()
    with pytest.raises(ValueError, match=r"dependency 1 \(3 -> 0\) is outside 0..2"):
        k.successors(np.array([0, 3], np.int32), np.array([1, 0], np.int32), 3)
