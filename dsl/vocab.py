"""The language's closed vocabularies, defined once: mapping strategies, network topologies,
all-reduce algorithms, op classes and collectives. The checker accepts their words; the plan
(codegen/plan.py) and the kernels use their codes (an enum member's value, packed as a number
only at the Cython boundary). Adding a word here is the one edit a new member needs."""
from __future__ import annotations

from enum import IntEnum


class Vocab(IntEnum):
    """An enum whose members are written in the language as their lower-case names."""

    @property
    def word(self) -> str:
        return self.name.lower()

    @classmethod
    def words(cls) -> tuple[str, ...]:
        return tuple(m.word for m in cls)

    @classmethod
    def of(cls, word: str):
        """The member written `word` (KeyError if none)."""
        return cls[word.upper()]

    def __str__(self) -> str:
        return self.word


class Strategy(Vocab):
    """How a run maps its model onto the machine (`strategy ...` in a run)."""

    SINGLE = 0
    DATA = 1
    PARALLEL = 2  # tensor x pipeline x data parallel (Megatron-LM)
    SPATIAL = 3  # layer-pipelined regions of a fabric (Cerebras, Dojo)
    WEIGHT_STREAMING = 4  # layers in turn, weights streamed in (Cerebras MemoryX)


class Topology(Vocab):
    """A network's shape (`noc ...` of a chip, `network ...` of a system)."""

    MESH = 0
    TORUS = 1
    RING = 2
    CROSSBAR = 3
    ALLTOALL = 4
    SWITCH = 5
    FAT_TREE = 6


class AllReduce(Vocab):
    """The all-reduce algorithm a network runs (`allreduce = ...`)."""

    RING = 0
    TREE = 1  # pipelined double binary tree (NCCL)
    MESH2D = 2  # rows, columns, rows of a 2-D grid
    DIMS = 3  # reduce-scatter then all-gather along every dimension of an N-D grid, all at once


class OpClass(Vocab):
    """What an op is for costing: its unit, its efficiency class (`efficiency matmul = ...`)."""

    MATMUL = 0
    CONV = 1
    ATTENTION = 2
    ELEMENTWISE = 3
    NORM = 4
    SOFTMAX = 5
    EMBEDDING = 6
    REDUCTION = 7
    POOL = 8
    LOSS = 9
    COLLECTIVE = 10
    OPTIMIZER = 11
    MOVEMENT = 12  # data movement without arithmetic: transpose, permute, concat, split, slice, pad


class Collective(Vocab):
    """Collective communication: an op's, a gradient exchange's, a pipeline transfer's."""

    NONE = 0
    ALLREDUCE = 1
    ALLGATHER = 2
    REDUCE_SCATTER = 3
    P2P = 4  # one point-to-point transfer (pipeline send/recv)
    ALLTOALL = 5  # every member sends a distinct 1/p of its data to each other (expert parallelism)
