"""Executing a plan: the machine's analytic kernel built, the per-task figures, the step at the
analytic or the event level, and the Report. runtime/pipeline.py drives the stages in order."""
from __future__ import annotations

import numpy as np

from archc.codegen.collectives import Network, by_level
from archc.codegen.plan import Phase, Placement, Plan
from archc.dsl.vocab import Collective, Strategy
from archc.codegen.render import BOUNDS, RC, RESULTS, module_stem, render_analytic
from archc.dsl.diagnostics import BuildError, RunError
from archc.dsl.ir import Run

from . import cache
from .buckets import analytic_exposure
from .report import SCHEMA, OpRow, Report



def build_kernel(machine, version: str, progress=None):
    """The machine's analytic kernel: its generated source built (or loaded from the cache)."""
    src = render_analytic(machine, version)
    try:
        return cache.build(src, module_stem(machine), archc_version=version, progress=progress,
                           label=f"the analytic kernel of {machine.name}")
    except cache.BuildError as e:
        raise BuildError(f"building the kernel for '{machine.name}' failed: {e}") from None


def analyze(mod, plan: Plan) -> np.ndarray:
    """The analytic kernel's per-task figures of the plan (both levels start here): R, one row
    per task, RESULTS columns and then the time at each memory level (Plan.memories)."""
    run = plan.run
    spatial = run.mapping.strategy == "spatial"
    R = np.zeros((len(plan.tasks), len(RESULTS) + len(plan.memories)), dtype=np.float64)
    mod.analyze(plan.table, R, run.mapping.pp if spatial else 0, plan.micro_batches,
                float(run.mapping.region_rows) if spatial else 0.0, run.dispatch_s)
    return R


def analytic_report(mod, plan: Plan, R: np.ndarray) -> Report:
    """The analytic level: the step composed in closed form from the per-task figures."""
    return make_report(plan, R, compose(plan, R), "analytic")


def compose(plan: Plan, R: np.ndarray) -> dict:
    """One step of the run from per-task times, per chip, with the plan's rules of which stage
    runs a task (Task.on_stage) and how often (Task.reps).

    1F1B pipelines (Narayanan et al. 2021): with m micro-batches, p stages and v interleaved
    chunks a step takes m t_slowest + (sum of the stage times - t_slowest) / v; the second term
    is the bubble (GPipe's is the same: (p - 1) stage times). Inference streams m batches
    through the same stages. A spatial pipeline: one sample passes every region in turn, the
    others follow one (slowest) region apart. Then the gradient exchange (or what overlap_dp
    leaves exposed: runtime/buckets.py) and the step-level jobs."""
    T, mp = plan.tasks, plan.mapping
    m, pp = float(plan.micro_batches), mp.pp
    v = float(plan.schedule.chunks) if plan.schedule is not None else 1.0
    t = R[:, RC["time"]] * np.array([x.count for x in T])
    exchange = np.array([x.phase == Phase.GRADIENT_EXCHANGE for x in T], dtype=bool)
    per_mb = np.array([x.placement != Placement.STEP for x in T], dtype=bool) & ~exchange

    def stage(s: int) -> float:  # one micro-batch's time on pipeline stage s
        return float(t[per_mb & np.array([x.on_stage(s, pp) for x in T], dtype=bool)].sum())
    once = float(t[~per_mb & ~exchange].sum())
    fill = 0.0
    if plan.strategy == Strategy.SPATIAL:
        fill = stage(0)  # every region holds a part of every sample's pass
        per_sample = [R[i, RC["time"]] for i, x in enumerate(T) if x.phase.per_micro_batch]
        slowest = max(per_sample, default=0.0)
        total, bubble = fill + (m - 1.0) * slowest, 0.0
    elif pp > 1:
        first, last = stage(0), stage(pp - 1)
        slowest = max(first, last)
        bubble = (first + last + (pp - 2.0) * (stage(1) if pp > 2 else 0.0) - slowest) / v
        total = m * slowest + bubble
    else:
        slowest = stage(0)
        total, bubble = m * slowest, 0.0
    exposed = (analytic_exposure(plan, R) if plan.train else 0.0) if mp.overlap_dp else float(t[exchange].sum())
    return {"latency_s": total + exposed + once, "stage_s": slowest, "bubble_s": bubble, "dp_exchange_s": exposed,
            "step_once_s": once, "micro_batches": m, "fill_s": fill}


def event_report(plan: Plan, R: np.ndarray, progress=None, trace=None, capture: dict | None = None) -> Report:
    """The event level (runtime/event_level.py): the plan's task graph simulated; `trace`: a
    path to write the Chrome trace to (atomically); `capture`: a dict that receives the task
    graph builder and the simulation result (for plots)."""
    import dataclasses

    from . import event_level as el

    try:
        b, result = el.simulate(plan, R, progress)
    except el.EventLevelError as e:
        raise RunError(str(e)) from None
    if capture is not None:
        capture.update(builder=b, result=result)
    step = el.step_figures(plan, b, result)
    rep = make_report(plan, el.event_R(plan, R, b, result), step, "event")
    notes = tuple(el.summary_notes(b, result))
    if trace is not None:
        try:
            n = el.write_trace(trace, b, result)
        except OSError as e:
            raise RunError(f"cannot write the trace {trace}: {e.strerror or e}") from None
        if n < result.start.shape[0]:
            notes += (f"event level: the trace holds {n:,} of the {result.start.shape[0]:,} tasks (the first by "
                      f"start time and the critical path)",)
    return dataclasses.replace(rep, notes=tuple(rep.notes) + notes)


def make_report(plan: Plan, R: np.ndarray, step: dict, level: str) -> Report:
    run = plan.run
    m = run.machine
    chip, tile = m.chip, m.tile
    mb = step["micro_batches"]
    chips = run.mapping.chips
    # per task, per chip per step (Task.reps)
    reps = plan.reps
    power_clock = _power_clock(plan, R, step["latency_s"])  # before the step is held to the limit
    R, step, notes = _within_power(plan, R, step)
    latency = step["latency_s"]
    dyn = float((R[:, RC["energy"]] * reps).sum())
    t_tot = R[:, RC["time"]] * reps
    busy = float(t_tot.sum()) or 1.0
    eff = dict(chip.efficiency)
    in_memory = bool(chip.memory or m.memory)
    net = Network.of(m)
    comm_levels = [by_level(net, t.comm.steps, t.comm.nbytes) if t.comm else {} for t in plan.tasks]
    ops, step_levels = _op_rows(plan, R, reps, t_tot, busy, comm_levels, in_memory, eff, tile.clock_hz)
    by_res: dict[str, float] = {b: 0.0 for b in BOUNDS}
    for i in range(len(plan.tasks)):
        by_res[BOUNDS[int(R[i, RC["bound"]])]] += t_tot[i]
    by_res["pipeline bubble"] = step["bubble_s"]
    total_res = sum(by_res.values()) or 1.0
    by_res = {k: v / total_res for k, v in by_res.items()}
    bottleneck = max(sorted(by_res), key=lambda k: by_res[k])
    flops = plan.flops["forward"] + plan.flops["backward"] + plan.flops["recompute"]
    model_flops = plan.flops["forward"] + plan.flops["backward"]
    achieved = flops / latency
    unit = next(u for u in tile.matrix if (u.a, u.b) == (run.precision.matrix, run.precision.matrix))
    peak = unit.flops_per_cycle * tile.peak_clock_hz * chip.tiles  # the datasheet peak, at boost
    energy = (dyn + (chip.idle_power_w or 0.0) * latency) * chips
    fp = dict(run.footprint)
    thr_value = run.throughput_items / latency if run.throughput_items else achieved
    once = np.array([t.placement == Placement.STEP for t in plan.tasks], dtype=bool)
    breakdown = {"busy": busy - float(t_tot[once].sum()),
                 "pipeline bubble": step["bubble_s"], "gradient exchange": step["dp_exchange_s"],
                 "optimizer": step["step_once_s"]}
    return Report(
        schema=SCHEMA, run=run.name, system=m.name, model=run.model, level=level, mode=run.mode,
        params=dict(run.params), latency_s=latency,
        throughput={"value": thr_value, "unit": run.throughput_unit},
        flops=flops, model_flops=model_flops, achieved_flops_per_s=achieved,
        achieved_flops_per_s_per_chip=achieved / chips, peak_flops_per_s_per_chip=peak,
        utilization=achieved / chips / peak, energy_j=energy, power_w=energy / latency,
        bottleneck=bottleneck, bottleneck_reason=_reason(bottleneck, ops, run, step), chips=chips,
        mapping={"strategy": run.mapping.strategy, "tp": run.mapping.tp, "pp": run.mapping.pp,
                 "dp": run.mapping.dp, "interleave": run.mapping.interleave,
                 "micro_batch": run.mapping.micro_batch, "global_batch": run.mapping.global_batch,
                 "micro_batches_per_chip": int(mb), "recompute": run.mapping.recompute,
                 "seq_parallel": run.mapping.seq_parallel, "schedule": run.mapping.schedule,
                 "region_rows": run.mapping.region_rows, "placement": run.mapping.placement,
                 "overlap_dp": run.mapping.overlap_dp, "accumulate_in_gemm": run.mapping.accumulate_in_gemm,
                 "ep": run.mapping.ep,
                 "bucket_bytes": run.mapping.bucket if run.mapping.overlap_dp else None,
                 "dispatch": run.dispatch, "dispatch_s": run.dispatch_s},
        precision={"name": run.precision.name, "matrix": run.precision.matrix, "acc": run.precision.acc,
                   "vector": run.precision.vector},
        memory={**{k: v for k, v in fp.items()}, "where": _where(run)},
        breakdown=breakdown, time_by_resource=by_res,
        machine={"chip": chip.name, "tile": tile.name, "tiles_per_chip": chip.tiles,
                 "clock_hz": tile.clock_hz, "clock": run.clock if tile.sustained_hz else None,
                 "clock_from_power_hz": power_clock,
                 "efficiency": dict(chip.efficiency),
                 "launch_s": chip.launch_s, "wave": list(chip.wave) if chip.wave else None,
                 "power": {"limit_w": chip.power_w, "idle_w": chip.idle_power_w, "scaling": chip.power_scaling,
                           "clock_from_limit": bool(chip.power_w) and not tile.boost_hz},
                 "derived": list(tile.derived)},
        notes=notes, ops=ops, memory_levels=step_levels,
        communication=_communication(plan, comm_levels, reps))


def _op_rows(plan: Plan, R: np.ndarray, reps: np.ndarray, t_tot: np.ndarray, busy: float,
             comm_levels: list[dict], in_memory: bool, eff: dict, clock_hz: float) -> tuple[tuple, dict]:
    """The report's rows, one per op label in order of first appearance, each summing its tasks
    (all passes), and the step's bytes and time at each memory level. Grouped sums with
    np.bincount, which adds each group's terms in task order, as a loop over the tasks would."""
    tasks = plan.tasks
    n = len(tasks)
    names = [x.name for x in plan.memories]
    index: dict[str, int] = {}
    group = np.fromiter((index.setdefault(t.label, len(index)) for t in tasks), dtype=np.int64, count=n)
    k = len(index)

    def total(w) -> np.ndarray:
        return np.bincount(group, weights=w, minlength=k)
    mflops = np.fromiter((t.mflops for t in tasks), dtype=np.float64, count=n)
    flops = np.fromiter((t.mflops + t.vflops for t in tasks), dtype=np.float64, count=n)
    moved = np.fromiter(((t.mem_bytes if in_memory else t.sram_bytes) for t in tasks), dtype=np.float64, count=n)
    comm = np.fromiter(((t.comm.nbytes if t.comm else 0.0) for t in tasks), dtype=np.float64, count=n)
    link = np.fromiter((sum(b for b, _, _ in c.values()) for c in comm_levels), dtype=np.float64, count=n)
    bound = R[:, RC["bound"]].astype(np.int64)
    time_g, clocked_g = total(t_tot), total(t_tot * R[:, RC["clock"]])
    flops_g, bytes_g = total(flops * reps), total(moved * reps)
    comm_g, link_g, energy_g = total(comm * reps), total(link * reps), total(R[:, RC["energy"]] * reps)
    ideal_g = total(mflops * reps)
    waved_g = total(np.where(mflops > 0, mflops * reps * R[:, RC["wave"]], 0.0))
    bound_g = np.bincount(group * len(BOUNDS) + bound, weights=t_tot, minlength=k * len(BOUNDS)).reshape(k, len(BOUNDS))
    touched = np.bincount(group * len(BOUNDS) + bound, minlength=k * len(BOUNDS)).reshape(k, len(BOUNDS)) > 0
    lv_bytes = np.zeros((n, len(names)))
    reached = np.zeros((n, len(names)), dtype=bool)
    for i, t in enumerate(tasks):  # a task's levels: the innermost first, as many as it reaches
        if t.levels:
            lv_bytes[i, :len(t.levels)] = t.levels[:len(names)]
            reached[i, :len(t.levels)] = True
    lv_b = lv_bytes * reps[:, None]
    lv_t = np.where(reached, R[:, len(RESULTS):len(RESULTS) + len(names)] * reps[:, None], 0.0)
    lv_bg = [total(lv_b[:, j]) for j in range(len(names))]
    lv_tg = [total(lv_t[:, j]) for j in range(len(names))]
    first: dict[int, object] = {}
    for g, t in zip(group.tolist(), tasks):
        first.setdefault(g, t)
    # plain lists: indexing NumPy arrays element by element costs more than the sums did
    time_l, clocked_l, flops_l, bytes_l = time_g.tolist(), clocked_g.tolist(), flops_g.tolist(), bytes_g.tolist()
    comm_l, link_l, energy_l = comm_g.tolist(), link_g.tolist(), energy_g.tolist()
    ideal_l, waved_l = ideal_g.tolist(), waved_g.tolist()
    bound_l, touched_l = bound_g.tolist(), touched.tolist()
    lv_bl, lv_tl = [x.tolist() for x in lv_bg], [x.tolist() for x in lv_tg]
    ops = []
    for label, g in index.items():
        t0 = first[g]
        bound_t = {BOUNDS[b]: bound_l[g][b] for b in range(len(BOUNDS)) if touched_l[g][b]}
        tm = time_l[g]
        ops.append(OpRow(label, t0.kind, tm, flops_l[g], bytes_l[g], comm_l[g],
                         max(sorted(bound_t), key=bound_t.__getitem__), energy_l[g], tm / busy,
                         eff.get(t0.cls.word), ideal_l[g] / waved_l[g] if waved_l[g] else 1.0,
                         {nm: {"bytes": lv_bl[j][g], "time_s": lv_tl[j][g]} for j, nm in enumerate(names)},
                         clock_hz * (clocked_l[g] / tm if tm else 1.0), link_l[g]))
    one = np.zeros(n, dtype=np.int64)  # the whole step as one group: summed in task order too
    step_levels = {nm: {"bytes": float(np.bincount(one, weights=lv_b[:, j], minlength=1)[0]),
                        "time_s": float(np.bincount(one, weights=lv_t[:, j], minlength=1)[0])}
                   for j, nm in enumerate(names)}
    return tuple(ops), step_levels


_COLLECTIVE = {Collective.ALLREDUCE: "all-reduce", Collective.ALLGATHER: "all-gather",
               Collective.REDUCE_SCATTER: "reduce-scatter", Collective.P2P: "send/recv",
               Collective.ALLTOALL: "all-to-all"}


def _communication(plan: Plan, comm_levels: list[dict], reps: np.ndarray) -> tuple:
    """Every collective and transfer of the step per (kind, level) it crosses: bytes each chip
    sends, the steps' uncontended time and the links' energy, per chip per step (what the
    analytic level charges: codegen/collectives.py), in the order the plan first uses them."""
    levels = plan.run.machine.levels
    out: dict[tuple, dict] = {}
    for i, task in enumerate(plan.tasks):
        for lv, (b, t, e) in sorted(comm_levels[i].items()):
            key = (_COLLECTIVE[task.comm.kind], lv)
            c = out.get(key)
            if c is None:
                net = levels[lv].network
                c = out[key] = {"collective": key[0], "level": levels[lv].name, "network": net.topology,
                                "bytes": 0.0, "time_s": 0.0, "energy_j": 0.0,
                                "energy_declared": net.energy_per_byte is not None, "ops": []}
            c["bytes"] += b * reps[i]
            c["time_s"] += t * reps[i]
            c["energy_j"] += e * reps[i]
            if task.label not in c["ops"]:
                c["ops"].append(task.label)
    return tuple({**c, "bytes": float(c["bytes"]), "time_s": float(c["time_s"]), "energy_j": float(c["energy_j"])}
                 for c in out.values())


def _step_clock_ratio(plan: Plan, R: np.ndarray, latency: float) -> float | None:
    """The clock, as a fraction of the run's, at which the step as a whole draws exactly the
    chip's power limit: idle + (E / t) r^(1 + alpha) = limit, the step's times scaling as 1/r
    and its dynamic energy E as r^alpha (Chip.power_alpha). None without a limit or a step."""
    chip = plan.run.machine.chip
    dyn = float((R[:, RC["energy"]] * plan.reps).sum())
    if not chip.power_w or latency <= 0 or dyn <= 0:
        return None
    return ((chip.power_w - (chip.idle_power_w or 0.0)) * latency / dyn) ** (1.0 / (1.0 + chip.power_alpha))


def _power_clock(plan: Plan, R: np.ndarray, latency: float) -> float | None:
    """For a run at a declared `sustained` clock on a chip with a power limit: the clock the
    limit would give the step as a whole (_step_clock_ratio, at most the boost clock), shown
    beside the declared one. None otherwise."""
    tile = plan.run.machine.tile
    if not tile.boost_hz:
        return None
    r = _step_clock_ratio(plan, R, latency)
    return None if r is None else min(tile.boost_hz, tile.clock_hz * r)


def _within_power(plan: Plan, R: np.ndarray, step: dict) -> tuple[np.ndarray, dict, tuple]:
    """The step within the chip's power limit. The kernel holds each op's clock to the limit
    (clock_ratio in the analytic template), but ops that run together (a spatial run's
    regions) or a clock declared `sustained` can still draw more over the step: then the
    whole step's clock is lowered by r (_step_clock_ratio), its times stretched by 1/r and its
    dynamic energy scaled by r^alpha."""
    chip = plan.run.machine.chip
    notes = tuple(plan.notes)
    latency = step["latency_s"]
    r = _step_clock_ratio(plan, R, latency)
    drawn = (chip.idle_power_w or 0.0) + float((R[:, RC["energy"]] * plan.reps).sum()) / latency if r else 0.0
    if r is None or drawn <= chip.power_w * (1 + 1e-9):
        return R, step, notes
    R = R.copy()
    for c in ("time", "compute", "sram"):
        R[:, RC[c]] /= r
    R[:, RC["energy"]] *= r ** chip.power_alpha
    R[:, RC["clock"]] *= r

    def watts(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"
    notes += (f"the step's ops together draw {watts(drawn)} W per chip at their clocks, over the "
              f"{watts(chip.power_w)} W limit: the clock is held at {r:.1%} of it, the step {1 / r - 1:.1%} longer",)
    return R, {k: (v / r if k.endswith("_s") else v) for k, v in step.items()}, notes


def _where(run: Run) -> str:
    chip = run.machine.chip
    if run.mapping.strategy in ("spatial", "weight_streaming") or chip.memory is None:
        return f"on-chip SRAM of {chip.name}"
    return f"{chip.memory.name} of {chip.name}"


def _reason(bottleneck: str, ops: tuple, run: Run, step: dict) -> str:
    top = max(ops, key=lambda r: (r.time_s, r.name))
    if bottleneck == "compute":
        heavy = [r for r in ops if r.bound_by == "compute"]
        r = max(heavy, key=lambda r: (r.time_s, r.name)) if heavy else top
        parts = [f"{r.name} ({r.kind}) takes {r.share * 100:.0f}% of the busy time"]
        if r.efficiency is not None:
            parts.append(f"the {run.machine.chip.name} '{_cls(r)}' efficiency is declared {r.efficiency:.0%} "
                         f"(the matrix engines' geometry derives {r.utilisation:.1%})")
        elif r.utilisation < 0.999:
            parts.append(f"the matrix engines' geometry keeps {r.utilisation:.1%} of their peak busy (derived)")
        return "; ".join(parts)
    if bottleneck == "pipeline bubble":
        return (f"{run.mapping.pp} stages with {int(step['micro_batches'])} micro-batches idle "
                f"{step['bubble_s'] / step['latency_s']:.0%} of the step")
    heavy = [r for r in ops if r.bound_by == bottleneck] or [top]
    r = max(heavy, key=lambda r: (r.time_s, r.name))
    what = {"memory": "off-chip memory bandwidth", "sram": "SRAM bandwidth", "noc": "the on-chip network",
            "link": "chip-to-chip links", "overhead": "fixed per-op overheads"}.get(bottleneck, bottleneck)
    return f"{r.name} ({r.kind}) is limited by {what} and takes {r.share * 100:.0f}% of the busy time"


def _cls(r: OpRow) -> str:
    return {"linear": "matmul", "matmul": "matmul", "conv2d": "conv", "conv_transpose2d": "conv"}.get(r.kind, r.kind)
