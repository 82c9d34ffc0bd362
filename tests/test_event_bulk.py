"""The pipeline schedule's task graph built in bulk (runtime/event_level.py `_passes_bulk`: each
kind of pass recorded once, replicated with NumPy) against the reference, which builds every
pass op by op (`PIPELINE_BULK = False`): the final graph array for array, every task's, link's
and resource's name, the op instances, the simulation and the report, on small instances of
each kind of schedule the event level lowers without tiles. And the vectorised report helpers
(_per_op_times, step_figures, task_rows) against the loops they replaced, kept here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from archc.codegen.lower import lower
from archc.codegen.plan import Phase
from archc.runtime import event_level as el
from archc.runtime import events as ev
from archc.runtime import pipeline as pl
from archc.runtime.execute import analyze, event_report

from conftest import SAMPLES, assert_same_graph

pytestmark = pytest.mark.build

# small training and inference runs on the H100 cluster, with the schedule options the
# samples do not set (gpipe, overlap_dp and its buckets)
WORKLOAD = """
import std.formats
import std.models
import "machines/h100.arch"

run gt(layers = 4, hidden = 256, heads = 4, ffn = 4 * hidden, seq = 128, vocab = 1024,
       global_batch = 8, micro_batch = 1, tp = 1, pp = 4, dp = 1, interleave = 1,
       recompute = full, sched = one_f_one_b) {
  model gpt(layers, hidden, heads, ffn, seq, vocab, micro_batch, true)
  on h100_cluster
  mode train
  strategy parallel, tp = tp, pp = pp, dp = dp, interleave = interleave, micro_batch = micro_batch,
           global_batch = global_batch, recompute = recompute, schedule = sched
  precision amp
  optimizer adam
}

run go(layers = 4, hidden = 256, heads = 4, ffn = 4 * hidden, seq = 128, vocab = 1024,
       global_batch = 8, micro_batch = 1, tp = 1, pp = 4, dp = 2, interleave = 1,
       recompute = full, bucket = 1 MB) {
  model gpt(layers, hidden, heads, ffn, seq, vocab, micro_batch, true)
  on h100_cluster
  mode train
  strategy parallel, tp = tp, pp = pp, dp = dp, interleave = interleave, micro_batch = micro_batch,
           global_batch = global_batch, recompute = recompute, overlap_dp = true, bucket = bucket
  precision amp
  optimizer adam
}

run gi(layers = 4, hidden = 256, heads = 4, ffn = 4 * hidden, seq = 128, vocab = 1024,
       global_batch = 8, micro_batch = 1, tp = 1, pp = 4, dp = 1) {
  model gpt(layers, hidden, heads, ffn, seq, vocab, micro_batch, true)
  on h100_cluster
  mode infer
  strategy parallel, tp = tp, pp = pp, dp = dp, micro_batch = micro_batch, global_batch = global_batch
  precision bf16
}
"""

# (file, run, --set values, ARCHC_EVENT_TILES): "W" is WORKLOAD
CASES = {
    "1f1b pp=4 m=8": ("h100", "gpt_train", dict(pp=4, dp=1, global_batch=8, micro_batch=1), None),
    "interleaved v=2": ("h100", "gpt_train", dict(pp=4, dp=1, global_batch=8, micro_batch=1, interleave=2), None),
    "gpipe": ("W", "gt", dict(sched="gpipe"), None),
    "1f1b recompute full, m=12": ("W", "gt", dict(global_batch=12, recompute="full"), None),
    "recompute none": ("W", "gt", dict(recompute="none"), None),
    "overlap_dp buckets": ("W", "go", {}, None),
    "overlap_dp interleaved": ("W", "go", dict(interleave=2), None),
    "overlap_dp tp+dp selective": ("W", "go", dict(pp=2, tp=2, recompute="selective"), None),
    "overlap_dp data parallel": ("W", "go", dict(pp=1, dp=4, global_batch=16, bucket="100 kB"), None),
    "tp+dp+pp collectives": ("h100", "gpt_train", dict(pp=2, dp=2, tp=2, global_batch=8, micro_batch=1), None),
    "data parallel": ("h100", "gpt_train", dict(pp=1, dp=4, global_batch=16, micro_batch=1), None),
    "inference pipeline": ("W", "gi", {}, None),
    "bsp chip (gc200) bert": ("gc200", "bert_train", dict(batch=8, chips=16, layers=8), None),
    "bsp chip (gc200) gpt tp+dp+pp": ("gc200", "gpt_train", dict(global_batch=48, layers=12), None),
    "weight streaming, non-wafer (wse2 per region)": ("wse2", "bert_train", dict(batch=8192, layers=2), "0"),
    "weight streaming, non-wafer (dojo per region)": ("dojo", "gpt_train", dict(global_batch=100, layers=2), "0"),
    "weight streaming on the wafer (wse2 rows)": ("wse2", "gpt_train", dict(global_batch=256, layers=2), None),
}


def _run(tmp_path, case):
    name, run, sets, tiles = CASES[case]
    if name == "W":
        f = tmp_path / "w.arch"
        f.write_text(WORKLOAD)
        design = pl.check(f, sets, run, include=[SAMPLES])
    else:
        design = pl.check(SAMPLES / f"{name}.arch", sets, run)
    return dict(design.runs)[run], tiles


def _build(run, bulk, monkeypatch, tiles):
    monkeypatch.setattr(el, "PIPELINE_BULK", bulk)
    if tiles is not None:
        monkeypatch.setenv("ARCHC_EVENT_TILES", tiles)
    plan = lower(run)
    R = analyze(pl.build(run.machine), plan)
    b, r = el.simulate(plan, R)
    return plan, R, b, r


@pytest.mark.parametrize("case", list(CASES))
def test_bulk_graph_equals_the_reference(tmp_path, monkeypatch, case):
    run, tiles = _run(tmp_path, case)
    plan, R, ref, rr = _build(run, False, monkeypatch, tiles)
    _, _, bulk, rb = _build(run, True, monkeypatch, tiles)
    assert plan.micro_batches >= 4  # passes beyond the first: the replicated ones
    # the graph the kernel takes, array for array
    assert_same_graph(ref.final, bulk.final)
    assert ref.final.n_tasks > 100
    names = list(bulk.names)
    if "bsp" in case:  # each op a superstep: compute and sync, then the exchange
        assert run.machine.chip.bsp and sum(n.endswith(" exchange") for n in names) > 100
    if "non-wafer" in case:  # each op's weights a flow over the memory link
        assert bulk.streaming and sum(n.endswith(" weights") for n in names) > 100
    if "on the wafer" in case:  # each op's weights a flow per row of tiles, over the memory link and the row's edge
        assert bulk.streaming and bulk.wafer is not None and sum(" weights row " in n for n in names) > 1000
    if "overlap_dp" in case:
        assert any(n.startswith("gradient bucket 2 of") for n in names)
    if "interleave" in case:
        assert any(" chunk 1 " in n for n in names)
    # names, op instances, jobs, collapsed collectives, stage bookkeeping
    assert list(ref.names) == list(bulk.names)
    assert list(ref.net.names) == list(bulk.net.names)
    assert list(ref.res_names) == list(bulk.res_names)
    for x, y in zip(ref.instances.arrays(5), bulk.instances.arrays(5)):
        assert np.array_equal(x, y)
    for x, y in zip(ref.extents.arrays(3), bulk.extents.arrays(3)):
        assert np.array_equal(x, y)
    assert (ref.collapsed, ref.stage_res, ref.stage_end, ref.last_f, ref.last_b, ref.ar_span) == \
        (bulk.collapsed, bulk.stage_res, bulk.stage_end, bulk.last_f, bulk.last_b, bulk.ar_span)
    # the simulation
    for f in ("start", "end", "ready", "dep_pred", "res_pred", "busy", "link_bytes", "link_busy",
              "critical_path", "critical_reason"):
        assert np.array_equal(getattr(rr, f), getattr(rb, f)), f
    assert rr.makespan == rb.makespan


@pytest.mark.parametrize("case", ["1f1b pp=4 m=8", "interleaved v=2", "overlap_dp buckets",
                                  "bsp chip (gc200) gpt tp+dp+pp", "weight streaming, non-wafer (dojo per region)"])
def test_bulk_report_and_trace_equal_the_reference(tmp_path, monkeypatch, case):
    """Every figure of the report and every task of the trace (names, times) are the same."""
    run, tiles = _run(tmp_path, case)
    out = {}
    for bulk in (False, True):
        plan, R, _, _ = _build(run, bulk, monkeypatch, tiles)
        trace = tmp_path / f"trace{bulk}.json"
        rep = pl.with_goodput(run, event_report(plan, R, trace=trace))
        out[bulk] = (rep.to_json(), rep.to_text(), json.loads(trace.read_text()))
    assert out[False][0] == out[True][0]
    assert out[False][1] == out[True][1]
    assert out[False][2] == out[True][2]
    assert len(out[True][2]["traceEvents"]) > 100


# ---- the loops the vectorised report helpers replaced (runtime/event_level.py before them) ----

def _rows(b, width):
    """b.instances / b.extents as tuples, None where the builder had None (no compute)."""
    cols = (b.instances if width == 5 else b.extents).arrays(width)
    out = []
    for t in zip(*(c.tolist() for c in cols)):
        if width == 5:
            i, s, c, last, flow = t
            t = (i, s, None if c < 0 else c, None if last < 0 else last, flow)
        out.append(t)
    return out


def _per_op_times_loop(b, r):
    tot = np.zeros(len(b.T))
    stages = [set() for _ in range(len(b.T))]
    prev_end_on_chain = {}
    for i, s, c, last, flow in _rows(b, 5):
        if c is None:
            t = r.end[last] - r.ready[last] if last is not None else 0.0
            if b.exchanges and i == b.exchanges[0] and b.ar_span and b.ar_span[s]:
                t = max(0.0, r.end[last] - r.end[b.ar_span[s][0]]) if b.ar_span[s][0] is not None else t
            if flow >= 0:
                t = r.end[flow] - r.start[flow]
        else:
            t = r.end[last] - r.start[c]
            if flow >= 0:
                t += max(0.0, r.start[c] - prev_end_on_chain.get(s, r.start[c]))
            prev_end_on_chain[s] = r.end[last]
        tot[i] += t
        stages[i].add(s)
    for i, t in b.adjust:
        tot[i] += t
        stages[i].add(0)
    return np.array([tot[i] / max(1, len(stages[i])) for i in range(len(tot))])


def _step_loop(plan, b, r):
    bubble = exchange = once = 0.0
    ends = [r.end[x] for x in b.last_b if x is not None]
    window = max(ends) if ends else 0.0
    if b.mp.pp > 1:
        busy = np.zeros(b.mp.pp)
        for i, s, c, last, flow in _rows(b, 5):
            if c is not None and plan.tasks[i].phase.per_micro_batch:
                busy[s] += r.end[last] - r.start[c]
        bubble = max(0.0, window - float(busy.mean()))
    for span in b.ar_span:
        if span and span[0] is not None:
            exchange = max(exchange, r.end[span[1]] - r.end[span[0]])
    for i, s, c, last, flow in _rows(b, 5):
        if plan.tasks[i].phase == Phase.OPTIMIZER and c is not None:
            once = max(once, r.end[c] - r.start[c])
    return {"latency_s": r.makespan, "bubble_s": bubble, "dp_exchange_s": exchange, "step_once_s": once,
            "micro_batches": plan.micro_batches}


def _task_rows_loop(b):
    row = np.full(len(b.names), -1, dtype=np.int64)
    for i, _s, c, last, flow in _rows(b, 5):
        first = c if c is not None else (flow if flow is not None and flow >= 0 else last)
        if first is not None and last is not None and first >= 0:
            row[first:last + 1] = i
    for i, first, last in _rows(b, 3):
        row[first:last + 1] = i
    return row


def _path_loop(b, r, row):
    path = []
    for t in r.critical_path:
        t = int(t)
        if r.kind[t] == 2 and r.end[t] == r.start[t]:
            continue
        op = b.plan.tasks[row[t]].label if t < row.size and row[t] >= 0 else b.names[t]
        if not path or path[-1] != op:
            path.append(op)
    return path


@pytest.mark.parametrize("case", ["1f1b pp=4 m=8", "interleaved v=2", "overlap_dp buckets", "overlap_dp interleaved",
                                  "tp+dp+pp collectives", "bsp chip (gc200) bert",
                                  "weight streaming, non-wafer (wse2 per region)",
                                  "weight streaming, non-wafer (dojo per region)", "inference pipeline"])
def test_vectorised_report_helpers_equal_their_loops(tmp_path, monkeypatch, case):
    run, tiles = _run(tmp_path, case)
    plan, R, b, r = _build(run, True, monkeypatch, tiles)
    assert np.array_equal(el._per_op_times(b, r), _per_op_times_loop(b, r))
    assert el.step_figures(plan, b, r) == _step_loop(plan, b, r)
    row = _task_rows_loop(b)
    assert np.array_equal(el.task_rows(b), row)
    assert (row >= 0).sum() > 0.5 * row.size
    path = _path_loop(b, r, row)
    shown = path if len(path) <= 12 else path[:6] + ["…"] + path[-6:]
    notes = el.summary_notes(b, r)
    assert f"event level: critical path ({len(r.critical_path)} tasks): {' -> '.join(shown)}" in notes


def test_overlapping_extents_keep_the_last_recorded(tmp_path, monkeypatch):
    """task_rows where intervals overlap (not a pipeline's, but a wafer's jobs may): the one
    recorded last wins, as the slice assignments of the loop did."""
    run, tiles = _run(tmp_path, "1f1b pp=4 m=8")
    plan, R, b, r = _build(run, True, monkeypatch, tiles)
    T = len(b.names)
    b.extents.append((0, 0, T - 1))  # covers everything, recorded after every instance
    b.extents.append((1, 5, 9))
    row = el.task_rows(b)
    assert np.array_equal(row, _task_rows_loop(b))
    assert set(row[:5]) == {0} and set(row[5:10]) == {1} and set(row[10:]) == {0}


def test_add_tasks_and_late_deps_order_successors_as_scalar_calls():
    """A graph made by scalar calls and the same graph made by add_tasks/add_deps_late (with
    add_deps between) finalize to the same arrays: successors listed add_deps first, then the
    scalar and late ones in call order."""
    a = ev.TaskGraph(n_resources=2, link_bw=[1e9, 2e9])
    c0 = a.add_compute(1.0, 0)
    f1 = a.add_flow(100.0, [0, 1], latency=1e-6, after=[c0])
    d2 = a.add_delay(0.5, after=[c0])
    c3 = a.add_compute(2.0, 1, after=[f1, d2])
    a.add_deps([c0, c0], [c3, f1])
    c4 = a.add_compute(1.0, 0, after=[c0, c3])

    b = ev.TaskGraph(n_resources=2, link_bw=[1e9, 2e9])
    first = b.add_tasks([0, 1, 2, 0, 0], [1.0, 0.0, 0.5, 2.0, 1.0], [0, -1, -1, 1, 0], [0, 100.0, 0, 0, 0],
                        [0, 1e-6, 0, 0, 0], [0, 2, 0, 0, 0], [0, 1])
    assert first == 0 and b.n_tasks == 5
    b.add_dep(0, 1)
    b.add_deps_late([0, 1], [2, 3])
    b.add_dep(2, 3)
    b.add_deps([0, 0], [3, 1])
    b.add_deps_late(np.array([0, 3]), np.array([4, 4]))
    ga, gb = a.finalize(), b.finalize()
    assert_same_graph(ga, gb)
    assert list(ga.succ[ga.succ_ptr[0]:ga.succ_ptr[1]]) == [c3, f1, f1, d2, c4]
    with pytest.raises(ValueError, match="route_len"):
        b.add_tasks([1], [0.0], [-1], [1.0], [0.0], [2], [0])


def test_rows_keep_tuples_and_give_columns():
    rows = el._Rows()
    rows.append((3, 0, None, 7, -1))
    rows.add_block(([1, 2], [0, 1], [10, 11], [12, 13], [-1, 14]))
    rows.append((4, 1, 15, 16, -1))
    assert len(rows) == 4
    assert list(rows) == [(3, 0, None, 7, -1), (1, 0, 10, 12, -1), (2, 1, 11, 13, 14), (4, 1, 15, 16, -1)]
    cols = rows.arrays(5)
    assert [c.tolist() for c in cols] == [[3, 1, 2, 4], [0, 0, 1, 1], [-1, 10, 11, 15], [7, 12, 13, 16],
                                          [-1, -1, 14, -1]]
    rows.append((5, 0, 1, 2, 3))
    assert rows.arrays(5)[0].tolist() == [3, 1, 2, 4, 5]


def test_too_many_tasks_is_the_same_error(tmp_path, monkeypatch):
    run, tiles = _run(tmp_path, "1f1b pp=4 m=8")
    monkeypatch.setattr(el, "MAX_TASKS", 1000)  # the graph has 1,828
    msgs = []
    for bulk in (False, True):
        with pytest.raises(el.EventLevelError) as ei:
            _build(run, bulk, monkeypatch, tiles)
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1] and "exceeds 1000 tasks" in msgs[0]


def test_kernel_tile_and_replicate_against_numpy():
    """The event kernel's copies of recorded blocks against NumPy's fancy indexing."""
    mod = ev.kernel()
    rng = np.random.default_rng(1)
    sizes = np.array([3, 0, 5, 2], np.int64)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    which = rng.integers(0, 4, 50).astype(np.int64)
    idx = np.concatenate([np.arange(ptr[w], ptr[w + 1]) for w in which]).astype(np.int64)
    for dt in (np.int8, np.int32, np.int64, np.float64):
        lib = rng.integers(-100, 100, ptr[-1]).astype(dt)
        out = np.empty(idx.size, dt)
        mod.tile(lib, ptr, which, out)
        assert np.array_equal(out, lib[idx])
    lib = rng.integers(-3, 40, ptr[-1]).astype(np.int64)  # -1..-3: outside tasks
    lib[[0, 4, 9]] = [-3, -1, -2]
    offset = rng.integers(0, 10**6, which.size).astype(np.int64)
    outside = rng.integers(-1, 10**6, (which.size, 3)).astype(np.int64)
    owner = np.repeat(np.arange(which.size), sizes[which])
    expect = np.where(lib[idx] >= 0, lib[idx] + offset[owner], outside[owner, np.maximum(-1 - lib[idx], 0)])
    out = np.empty(idx.size, np.int64)
    mod.replicate(lib, ptr, which, offset, outside, out)
    assert np.array_equal(out, expect)
    with pytest.raises(ValueError, match="which of copy"):
        mod.tile(lib, ptr, np.array([4], np.int64), np.empty(0, np.int64))
    with pytest.raises(ValueError, match="out has"):
        mod.tile(lib, ptr, which, np.empty(idx.size + 1, np.int64))
    with pytest.raises(ValueError, match="beyond the 2 columns"):
        mod.replicate(lib, ptr, which, offset, outside[:, :2].copy(), out)
    with pytest.raises(TypeError, match="dtype"):
        mod.tile(lib, ptr, which, np.empty(idx.size, np.float64))
