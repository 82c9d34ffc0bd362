"""Plans, printed: `archc compile --emit plan` and the lowering's golden cases
(tests/data/plan-*.test) show a plan as this module writes it: the mapping, one line per task
with what it computes and moves, the schedule, the gradient buckets and each collective's steps,
figures to 4 significant digits."""
from __future__ import annotations

from .buckets import step_buckets
from .plan import Plan, num


def dump(plan: Plan) -> str:
    """The plan, readably: the mapping, then one line per task with what it moves."""
    mp, run = plan.mapping, plan.run
    out = [f"plan {run.name}: model {run.model} on {run.machine.name}, {run.mode}, {plan.strategy.word}",
           f"  mapping tp={mp.tp} pp={mp.pp} dp={mp.dp} micro_batches={plan.micro_batches}"
           + (f" recompute={mp.recompute}" if mp.recompute != "none" else "")
           + (f" overlap_dp bucket={num(mp.bucket)}B" if mp.overlap_dp else ""),
           "  flops " + " ".join(f"{k}={num(v)}" for k, v in plan.flops.items())]
    for i, t in enumerate(plan.tasks):
        parts = [f"{i:>3} {t.phase.word:<17} {t.placement.name.lower():<11} x{num(t.count):<6} "
                 f"{t.label} [{t.kind}, {t.cls.word}]"]
        for name in ("mflops", "vflops"):
            if getattr(t, name):
                parts.append(f"{name}={num(getattr(t, name))}")
        parts += [f"{lv.name}={num(b)}" for lv, b in zip(plan.memories, t.levels) if b]
        for name in ("sram_bytes", "noc_bytes", "weight_bytes"):
            if getattr(t, name):
                parts.append(f"{name}={num(getattr(t, name))}")
        if t.gemm is not None and t.gemm.m:
            parts.append(f"gemm={num(t.gemm.b)}x{num(t.gemm.m)}x{num(t.gemm.n)}x{num(t.gemm.k)}")
        if t.comm is not None:
            parts.append(f"{t.comm.kind.word}({num(t.comm.nbytes)}B p={num(t.comm.p)} "
                         f"stride={num(t.comm.stride)}: {num(t.comm.seconds)}s)")
        if t.colocate:
            parts.append("colocated")
        if t.launches != 1.0:
            parts.append(f"launches={num(t.launches)}")
        out.append(" ".join(parts))
    if plan.schedule is not None:
        out += plan.schedule.dump()
    if mp.overlap_dp and plan.train:
        out += _buckets(plan)
    comms = {}
    for t in plan.tasks:
        if t.comm is not None and t.comm.steps:
            comms.setdefault((t.comm.kind, t.comm.p, t.comm.stride), t.comm.steps)
    for (kind, p, stride), steps in comms.items():
        out.append(f"  {kind.word} over {num(p)} chips {num(stride)} apart:")
        out += [f"    {s.show()}" for s in steps]
    out += [f"  note {n}" for n in plan.notes]
    return "\n".join(out) + "\n"


def _buckets(plan: Plan) -> list[str]:
    """The gradient buckets of an overlap_dp step: which backward piece closes each, and its bytes."""
    pieces, closings = step_buckets(plan)
    T = plan.tasks
    return [f"  bucket {n + 1}: {num(b)} B, closed by piece {k} ({T[pieces[k][0]].label}, "
            f"{T[pieces[k][0]].phase.word})" for n, (k, b) in enumerate(sorted(closings.items()))]
