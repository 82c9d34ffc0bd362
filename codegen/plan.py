"""The plan: a run lowered for one chip and one step, as typed, printable tasks. Every later
stage (the analytic kernel, the event level, the report, the gradient buckets) reads these
fields; `Plan.table` packs them into the float array the generated kernels take, once, and is
the only place the column codes exist.

A task is one op in one phase (forward, backward, recompute) or a step-level job (optimizer,
gradient exchange, pipeline transfers). Its figures are per instance per chip; `count`
instances run per micro-batch (per step for step-level jobs). Two rules every consumer shares
live here and nowhere else: how many times a task runs in a step (`Task.reps`) and which
pipeline stages run it (`Task.on_stage`)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np

from archc.dsl.ir import Run
from archc.dsl.vocab import Collective, OpClass, Strategy

from .collectives import Step


class Phase(IntEnum):
    FORWARD = 0
    BACKWARD = 1
    RECOMPUTE = 2
    OPTIMIZER = 3
    GRADIENT_EXCHANGE = 4
    PIPELINE_TRANSFER = 5

    @property
    def word(self) -> str:
        return self.name.lower().replace("_", " ")

    @property
    def per_micro_batch(self) -> bool:
        """An op's pass, run for every micro-batch (the rest are step-level jobs)."""
        return self <= Phase.RECOMPUTE


class Placement(IntEnum):
    """Which pipeline stages run a task: all of them (an op inside the repeated layers, a
    pipeline transfer), the first (ops before the layers) or the last (after them), or once
    per step on every chip (the optimizer, the gradient exchange)."""

    EVERY_STAGE = 0
    FIRST_STAGE = 1
    LAST_STAGE = 2
    STEP = 3


@dataclass(frozen=True)
class Gemm:
    """The GEMM one chip computes for a task (batch x m x n, summing k), for wave quantisation."""

    b: float
    m: float
    n: float
    k: float


@dataclass(frozen=True)
class Comm:
    """A task's collective: `nbytes` per chip over a group of `p` chips `stride` apart, in the
    steps codegen/collectives.py decomposes it into, which take `seconds` and `joules` per
    chip uncontended (what the analytic level charges; the event level simulates the steps)."""

    kind: Collective
    nbytes: float
    p: float
    stride: float
    steps: tuple[Step, ...] = ()
    seconds: float = 0.0
    joules: float = 0.0


@dataclass(frozen=True)
class Task:
    label: str  # the op's name, or the job's ("optimizer step", "gradient all-reduce", ...)
    kind: str  # what the report calls it: the op's kind, "accumulation", or the phase
    op: int  # index into run.graph.ops; -1 for a step-level job
    phase: Phase
    placement: Placement
    count: float  # instances per micro-batch (per step for step-level jobs)
    cls: OpClass
    unit: int  # index of the tile's matrix unit
    vunit: int  # index of its vector unit, -1: none
    colocate: bool = False  # spatial: runs in place on the region of the op before it
    mflops: float = 0.0
    vflops: float = 0.0
    gemm: Gemm | None = None
    levels: tuple[float, ...] = ()  # bytes at each of the plan's memory levels, innermost first
    sram_bytes: float = 0.0
    noc_bytes: float = 0.0
    comm: Comm | None = None
    # the weights the op holds (a spatial region's SRAM need); on backward tasks, the weight
    # gradient the task completes (the accumulation task's when a pass of its own adds it
    # into the buffer): what the gradient buckets count
    weight_bytes: float = 0.0
    launches: float = 1.0

    def reps(self, micro_batches: float) -> float:
        """Instances per step on one chip: `count` for every micro-batch, or once per step."""
        return self.count * (1.0 if self.placement == Placement.STEP else micro_batches)

    def on_stage(self, s: int, pp: int) -> bool:
        """Whether pipeline stage s (of pp) runs this task for each micro-batch."""
        p = self.placement
        return p == Placement.EVERY_STAGE or (p == Placement.FIRST_STAGE and s == 0) or \
            (p == Placement.LAST_STAGE and s == pp - 1)

    @property
    def mem_bytes(self) -> float:
        """Bytes at the outermost memory level (where the tensors live, or stream from)."""
        return self.levels[-1] if self.levels else 0.0

    @property
    def comm_kind(self) -> Collective:
        return self.comm.kind if self.comm is not None else Collective.NONE

    @property
    def comm_bytes(self) -> float:
        return self.comm.nbytes if self.comm is not None else 0.0

    @property
    def comm_p(self) -> float:
        return self.comm.p if self.comm is not None else 0.0

    @property
    def comm_stride(self) -> float:
        return self.comm.stride if self.comm is not None else 0.0


# Column layout of the packed task table the generated kernels read (templates use the same
# list, so it cannot drift). Only Plan.table writes it.
# region: a spatial run's op pass on a region of its own (1), in place on the region of the op
# before it (2), or no region (0); backward: the task's matrix work is a backward pass's two
# products (dX = dY W^T and dW = X^T dY), each quantised in waves in its own shape.
# After these, one column per memory level of the plan (Plan.memories): the bytes at it.
COLUMNS = ("region", "backward", "count", "unit", "vunit", "cls", "mflops", "vflops",
           "gb", "gm", "gn", "gk", "sram_bytes", "noc_bytes", "comm_s", "comm_j",
           "weight_bytes", "launches")
COL = {name: i for i, name in enumerate(COLUMNS)}


def _row(t: Task, spatial: bool, n_levels: int) -> tuple:
    g = t.gemm or Gemm(0.0, 0.0, 0.0, 0.0)
    c = t.comm or Comm(Collective.NONE, 0.0, 0.0, 0.0)
    region = (2 if t.colocate else 1) if spatial and t.phase.per_micro_batch else 0
    levels = tuple(t.levels) + (0.0,) * (n_levels - len(t.levels))
    return (region, float(t.phase == Phase.BACKWARD), t.count, t.unit, t.vunit, int(t.cls),
            t.mflops, t.vflops, g.b, g.m, g.n, g.k, t.sram_bytes, t.noc_bytes, c.seconds,
            c.joules, t.weight_bytes, t.launches) + levels


@dataclass(frozen=True)
class Plan:
    run: Run
    tasks: tuple[Task, ...]
    strategy: Strategy
    micro_batches: int  # per chip per step
    flops: dict  # "forward", "backward", "recompute": FLOPs of the whole step, every replica
    notes: tuple[str, ...] = ()  # assumptions the report prints
    schedule: object = None  # codegen/schedule.py's Schedule: each stage's passes; None: spatial
    memories: tuple = ()  # the memory levels a task's `levels` count bytes at (memory_levels)

    @property
    def mapping(self):
        return self.run.mapping

    @property
    def train(self) -> bool:
        return self.run.mode == "train"

    @cached_property
    def table(self) -> np.ndarray:
        """The tasks as float64 [n, len(COLUMNS)]: what the generated kernels read."""
        spatial, n = self.strategy == Strategy.SPATIAL, len(self.memories)
        return np.array([_row(t, spatial, n) for t in self.tasks], dtype=np.float64).reshape(
            len(self.tasks), len(COLUMNS) + n)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        return tuple(t.label for t in self.tasks)

    @cached_property
    def reps(self) -> np.ndarray:
        """Task.reps of every task, as an array (per chip per step)."""
        return np.array([t.reps(self.micro_batches) for t in self.tasks], dtype=np.float64)

    def first(self, phase: Phase) -> int | None:
        """Index of the first task of `phase`, or None."""
        return next((i for i, t in enumerate(self.tasks) if t.phase == phase), None)


def num(x: float) -> str:
    """A figure to 4 significant digits (whole numbers as such), for printed plans."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def memory_levels(machine) -> tuple:
    """The memory levels of a machine its kernel and its plans count bytes at, innermost
    first: the chip's (an L2, HBM), else a system's pooled memory (what weight streaming
    streams from)."""
    chip = machine.chip
    if chip.memories:
        return chip.memories
    return (machine.memory,) if machine.memory is not None else ()
