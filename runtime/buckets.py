"""How much of overlapped data parallelism's gradient all-reduce the backward hides, at the
analytic level: the buckets codegen/buckets.py decides, each started when its gradients are
complete and the bucket before has ended, timed with the collectives' steps."""
from __future__ import annotations

from archc.codegen import collectives
from archc.codegen.buckets import step_buckets
from archc.codegen.plan import Phase
from archc.codegen.render import RC


def exposed_exchange(piece_times, closings: dict[int, float], allreduce) -> float:
    """The all-reduce time left after the backward ends: bucket b starts when its last piece
    has ended and bucket b - 1 has ended, and takes allreduce(bytes)."""
    clock = end = 0.0
    for k, t in enumerate(piece_times):
        clock += t
        if k in closings:
            end = max(end, clock) + allreduce(closings[k])
    return max(0.0, end - clock)


def analytic_exposure(plan, R) -> float:
    """The analytic level's exposed gradient exchange of an overlap_dp training step: the walk
    of backward_pieces over one chip's rows (with pipeline stages, the first stage's: its
    backward ends last; interleaved, its chunks' last backwards taken as one, back to back, as
    the 1F1B cool-down runs them), each piece taking its row's time per micro-batch."""
    T = plan.tasks
    ar = plan.first(Phase.GRADIENT_EXCHANGE)
    if ar is None:
        return 0.0
    pieces, closings = step_buckets(plan)
    comm = T[ar].comm
    launch = R[ar, RC["time"]] - R[ar, RC["link"]]
    net = collectives.Network.of(plan.run.machine)
    return exposed_exchange([R[i, RC["time"]] * T[i].count * f for i, f in pieces], closings,
                            lambda nbytes: collectives.time(net, comm.steps, nbytes)[0] + launch)
