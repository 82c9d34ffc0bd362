"""Pipeline schedules: in which order each stage of a pipelined (or plain) run runs its
micro-batches' forward and backward passes, and which tasks a pass of a chunk runs. A
lowering decision, made once here; the event level executes it (runtime/event_level.py) and
the analytic level's closed form (the step composition) assumes the same schedule.

- 1F1B (Narayanan et al. 2021, PipeDream-Flush): stage s warms up with pp - s - 1 forwards,
  then alternates one forward and one backward, then cools down with the remaining backwards.
- Interleaved 1F1B (Narayanan et al. 2021, Megatron-LM's virtual pipeline): each stage holds
  v chunks of its layers; a micro-batch passes virtual stages c pp + s in order; micro-batches
  go in groups of pp per chunk; the warm-up is (pp - s - 1) 2 + (v - 1) pp forwards. It needs
  the micro-batches to be a multiple of pp; otherwise the run is plain 1F1B (Plan.notes).
- GPipe (Huang et al. 2019): every forward, then every backward.
- Inference: the forwards in order."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .plan import Phase, Placement, Task


@dataclass(frozen=True)
class Pass:
    """One entry of a stage's program: the forward or backward of a micro-batch's chunk."""

    backward: bool
    micro_batch: int
    chunk: int

    def __str__(self) -> str:
        return f"{'B' if self.backward else 'F'}{self.micro_batch}" + (f".{self.chunk}" if self.chunk else "")


@dataclass(frozen=True)
class Schedule:
    name: str  # "1f1b", "interleaved 1f1b", "gpipe", "forward only"
    pp: int
    chunks: int  # v: chunks of layers per stage (1 but for interleaved 1F1B)
    micro_batches: int
    train: bool

    @cached_property
    def programs(self) -> tuple[tuple[Pass, ...], ...]:
        """Per stage, the passes in the order it runs them; spelled out only when asked (the
        event level, the plan's dump): the analytic level's closed form needs none of it."""
        return _programs(self.pp, self.micro_batches, self.chunks, self.name == "gpipe", self.train)

    def virtual_stage(self, s: int, chunk: int) -> int:
        return chunk * self.pp + s

    def rows(self, tasks: tuple[Task, ...], s: int, chunk: int, backward: bool) -> list[int]:
        """The tasks a pass of chunk `chunk` on stage s runs, in order: its share of the layers
        (Task.on_stage on its virtual stage: the ops before the layers on the first, after
        them on the last); a backward pass runs the recomputation (forward order), then the
        backward tasks in reverse order."""
        vs, last = self.virtual_stage(s, chunk), self.chunks * self.pp

        def mine(i):
            return tasks[i].on_stage(vs, last)
        n = range(len(tasks))
        if not backward:
            return [i for i in n if tasks[i].phase == Phase.FORWARD and mine(i)]
        return [i for i in n if tasks[i].phase == Phase.RECOMPUTE and mine(i)] + \
               [i for i in reversed(n) if tasks[i].phase == Phase.BACKWARD and mine(i)]

    def scale(self, task: Task) -> float:
        """The share of a task one chunk runs: 1/v of a layer task, all of the others."""
        return 1.0 / self.chunks if task.placement == Placement.EVERY_STAGE else 1.0

    def dump(self, limit: int = 24) -> list[str]:
        out = [f"  schedule {self.name}" + (f", {self.chunks} chunks per stage" if self.chunks > 1 else "")]
        for s, prog in enumerate(self.programs):
            shown = " ".join(str(p) for p in prog[:limit])
            out.append(f"    stage {s}: {shown}" + (f" … ({len(prog)} passes)" if len(prog) > limit else ""))
        return out


def build(pp: int, micro_batches: int, interleave: int, schedule: str, train: bool) -> Schedule:
    """Every stage's program for `micro_batches` micro-batches over pp stages."""
    v = interleave if pp > 1 and interleave > 1 and micro_batches % pp == 0 else 1
    name = ("gpipe" if schedule == "gpipe" else "interleaved 1f1b" if v > 1 else "1f1b") if train else "forward only"
    return Schedule(name, pp, v, micro_batches, train)


def _programs(pp: int, m: int, v: int, gpipe: bool, train: bool) -> tuple[tuple[Pass, ...], ...]:
    def mb(k):  # the k-th pass of a stage runs this micro-batch (groups of pp per chunk)
        return (k // (pp * v)) * pp + k % pp
    forwards = [Pass(False, mb(k), (k // pp) % v) for k in range(m * v)]
    backwards = [Pass(True, mb(k), v - 1 - (k // pp) % v) for k in range(m * v)]
    programs = []
    for s in range(pp):
        if train and gpipe:
            order = forwards + backwards
        elif train:
            warm = min((pp - s - 1) if v == 1 else (pp - s - 1) * 2 + (v - 1) * pp, m * v)
            order = forwards[:warm]
            for k in range(m * v - warm):
                order += [forwards[warm + k], backwards[k]]
            order += backwards[m * v - warm:]
        else:
            order = list(forwards)
        programs.append(tuple(order))
    return tuple(programs)


# Weight streaming (Cerebras MemoryX): a task standing for `count` repeats of a layer is cut into
# up to this many pieces, so that one repeat's weights stream in while the one before computes.
STREAM_PIECES = 64


def stream_pieces(task: Task) -> int:
    """Pieces a weight-streaming run cuts a task into (the event level streams each piece's
    weights while the piece before computes; double buffering)."""
    return max(1, min(STREAM_PIECES, int(round(task.count))))
