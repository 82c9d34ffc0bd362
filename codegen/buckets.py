"""Overlapped data parallelism's gradient buckets, decided at lowering: the order one
micro-batch's backward completes its gradients, and which bucket each belongs to.

PyTorch DDP (and Megatron's overlapped gradient reduction) all-reduce the gradients in buckets of
about `bucket` bytes, each as soon as every gradient in it is complete, one bucket after another
on one communication stream. With gradient accumulation only the last micro-batch's backward
completes them (the earlier ones run under no_sync). The event level builds that backward piece
by piece and starts each bucket's flows after its piece; the analytic level runs the same
recurrence on the per-task times (runtime/buckets.py)."""
from __future__ import annotations

from .plan import Phase


def backward_pieces(plan, rows, scale=None) -> list[tuple[int, float]]:
    """The task rows of one micro-batch's backward as (row, fraction of the row) pieces, in the
    order their gradients complete: the ops after the repeated layers first, then each repeat
    body (the last one first) instance by instance (an instance's recomputation, then its
    backward), then the ops before the layers. `rows` lists the rows as a stage runs them
    (recompute rows in forward order, then backward rows in reverse); a row of n repeats is n
    pieces of 1/n (n x scale(row) pieces where a stage runs scale(row) of the row: an
    interleaved chunk's share of its layers)."""
    ops, T = plan.run.graph.ops, plan.tasks
    op_of = {i: ops[T[i].op] for i in rows}
    layered = [i for i in rows if op_of[i].layer]
    if not layered:
        return [(i, 1.0) for i in rows]
    first = min(T[i].op for i in layered)
    bodies: dict[str, list[int]] = {}
    for i in layered:
        bodies.setdefault(op_of[i].layer, []).append(i)
    out = [(i, 1.0) for i in rows if not op_of[i].layer and T[i].op > first]
    for body in sorted(bodies.values(), key=lambda b: -min(T[i].op for i in b)):
        n = {i: max(1, int(round(T[i].count * (scale(i) if scale else 1.0)))) for i in body}
        for k in range(max(n.values())):
            out += [(i, 1.0 / n[i]) for i in body if k < n[i]]
    return out + [(i, 1.0) for i in rows if not op_of[i].layer and T[i].op < first]


def weights_of(plan, rows, scale=None) -> float:
    """The weight bytes the backward rows among `rows` hold (x scale(row): an interleaved
    chunk's share of a layer row)."""
    T = plan.tasks
    return sum(T[i].weight_bytes * T[i].count * (scale(i) if scale else 1.0)
               for i in rows if T[i].phase == Phase.BACKWARD)


def bucket_closings(plan, pieces, total_bytes: float, bucket: float, scale=None) -> dict[int, float]:
    """{piece index: bytes} of the buckets: the pieces' gradients (their rows' weights x
    scale(row), in proportion, `total_bytes` in all) fill a bucket until it holds `bucket`
    bytes or more (a tensor is never split between buckets, as in DDP); the last bucket closes
    with the last piece that has gradients."""
    T = plan.tasks
    w = [T[i].weight_bytes * T[i].count * f * (scale(i) if scale else 1.0)
         if T[i].phase == Phase.BACKWARD else 0.0 for i, f in pieces]
    whole = sum(w)
    if whole <= 0 or total_bytes <= 0:
        return {}
    last = max(k for k, x in enumerate(w) if x > 0)
    out, fill = {}, 0.0
    for k, x in enumerate(w):
        fill += x / whole * total_bytes
        if fill > 0 and (fill >= bucket or k == last):
            out[k], fill = fill, 0.0
    return out


def first_stage_backward(plan) -> list[int]:
    """The rows of the first stage's backward pass, in the order it runs them (recomputation,
    then the backward rows in reverse): the first stage's backward ends a step last, so its
    gradients are the last to complete."""
    T, pp = plan.tasks, plan.mapping.pp
    rows = range(len(T))
    return [i for i in rows if T[i].phase == Phase.RECOMPUTE and T[i].on_stage(0, pp)] + \
           [i for i in reversed(rows) if T[i].phase == Phase.BACKWARD and T[i].on_stage(0, pp)]


def step_buckets(plan) -> tuple[list[tuple[int, float]], dict[int, float]]:
    """(pieces, closings) of an overlap_dp step's buckets over the first stage's last backward."""
    ar = plan.first(Phase.GRADIENT_EXCHANGE)
    if ar is None:
        return [], {}
    pieces = backward_pieces(plan, first_stage_backward(plan))
    return pieces, bucket_closings(plan, pieces, plan.tasks[ar].comm.nbytes, plan.mapping.bucket)
