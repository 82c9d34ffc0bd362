"""Collectives: how a group of chips exchanges data over the machine's levels, defined once.
`decompose` turns one collective into its steps, level by level; the analytic level times the
steps (`time`), the event level turns each step into flows over the links of the members that
take part (`pairs`). Adding an algorithm means adding its steps here.

A machine is a hierarchy of levels (codegen sees `Machine.levels`, innermost first): level l
joins `fanout` members, each a unit of prod(fanout[:l]) chips, with a network whose per-member
bandwidth is the link bandwidth (x 2 or x 4 for a ring embedded in a mesh or torus, which uses
both directions of its links). A group of p chips `stride` apart spans the levels where it
grows: from g_prev to g_l chips at level l, i.e. rings of pl = g_l / g_prev members, one per
position inside the members. Every chip of a member communicates at once, so a chip gets the
member's bandwidth over the chips in it (the event level finds that share by max-min fairness
on the member's link, when and only when those chips do communicate at once).

Per level, for D bytes per chip (data = D / g_prev left by the inner levels):
- ring all-reduce: 2(pl-1) steps of data/pl (reduce-scatter, then all-gather; Patarasuk and
  Yuan 2009): 2(pl-1)/pl data / B + 2(pl-1) latencies;
- all-gather, reduce-scatter: pl-1 steps of data/pl;
- tree all-reduce (`allreduce = tree`, NCCL's pipelined double binary tree): the data up and
  down once each, 2 data / B, after 2 ceil(log2 pl) latencies;
- mesh2d all-reduce (`allreduce = mesh2d`, the level's whole px x py grid; as TPU pods and
  Dojo reduce over a 2-D torus): ring reduce-scatter along the rows, ring all-reduce of the
  1/px pieces along the columns, ring all-gather along the rows;
- point to point (a pipeline send): all D in one flow at the first level the pair spans;
- all-to-all (expert parallelism; pairwise exchange, Thakur et al. 2005): each chip sends D/p
  to every other chip of the group; at level l, pl-1 steps in which every member sends to the
  member k places on (k = 1 .. pl-1) what its g_prev chips hold for that member's g_prev chips:
  D g_prev / p each, (g_l - g_prev) D / p in all."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from archc.dsl.ir import Machine
from archc.dsl.vocab import AllReduce, Collective

# A ring embedded in a mesh or torus uses both directions of each link on its path (x 2) and,
# in a torus, the wrap-around links too (x 4).
LINK_FACTOR = {"mesh": 2.0, "torus": 4.0, "ring": 2.0}


class Pattern(IntEnum):
    """Who sends to whom in a step, within each ring of a level."""

    RING = 0  # each member to the next
    ROWS = 1  # each member to the next in its row of the level's grid (mesh2d)
    COLS = 2  # ... in its column
    P2P = 3  # the group's first chip to its second (a pipeline send)
    SHIFT = 4  # each member to the one `shift` places on (all-to-all)


@dataclass(frozen=True)
class Step:
    """`repeats` identical steps at one level: every member sends `data` x D bytes (D: the
    collective's bytes per chip) to its peer under `pattern`, after `latencies` of the level's
    latency; a step ends when all its sends have."""

    level: int
    pattern: Pattern
    repeats: int
    data: float
    latencies: float
    members: int  # pl: members of the level in each ring
    inner: int  # g_prev: chips of the group inside one member
    shift: int = 1  # Pattern.SHIFT: how many places on the peer is

    def show(self) -> str:
        what = {Pattern.SHIFT: f"shift {self.shift}"}.get(self.pattern, self.pattern.name.lower())
        return (f"level {self.level}: {self.repeats} x {what} of {self.members} (x{self.inner} inside), "
                f"{self.data:.4g} D, {self.latencies:g} latencies")


@dataclass(frozen=True)
class Network:
    """The machine's levels as the collectives see them."""

    fanout: tuple[int, ...]
    bandwidth: tuple[float, ...]  # per member, B/s (x LINK_FACTOR)
    latency: tuple[float, ...]  # s
    energy: tuple[float, ...]  # J/B
    allreduce: tuple[AllReduce, ...]
    cols: tuple[int, ...]  # members per row of the level's grid

    @staticmethod
    def of(machine: Machine) -> "Network":
        lv = machine.levels
        return Network(tuple(x.fanout for x in lv),
                       tuple(x.network.link_bandwidth * LINK_FACTOR.get(x.network.topology, 1.0) for x in lv),
                       tuple(x.network.latency_s for x in lv), tuple(x.network.energy_per_byte or 0.0 for x in lv),
                       tuple(AllReduce.of(x.network.allreduce) for x in lv), tuple(x.cols for x in lv))

    def chips_per_member(self, level: int) -> int:
        return math.prod(self.fanout[:level])


def spans(net: Network, kind: Collective, p: float, stride: float) -> list[tuple[int, float, float]]:
    """(level, g_prev, pl) of each level where a group of p chips `stride` apart grows (a
    point-to-point transfer: only the first)."""
    out = []
    g_prev, c_prev = 1.0, 1.0
    for level, f in enumerate(net.fanout):
        c_l = c_prev * f
        g_l = min(max(c_l / stride, 1.0), float(p))
        if g_l > g_prev:
            out.append((level, g_prev, g_l / g_prev))
            if kind == Collective.P2P:
                return out
            g_prev = g_l
        c_prev = c_l
    return out


def decompose(net: Network, kind: Collective, p: float, stride: float) -> tuple[Step, ...]:
    """The steps of one collective of `kind` over p chips `stride` apart (none if p <= 1)."""
    if kind == Collective.NONE or p <= 1.0:
        return ()
    steps: list[Step] = []
    for level, g_prev, pl in spans(net, kind, p, stride):
        n, g = max(1, round(pl)), max(1, round(g_prev))
        if kind == Collective.P2P:
            steps.append(Step(level, Pattern.P2P, 1, 1.0, 1.0, n, g))
            continue
        px = net.cols[level]
        py = pl / px if px else 0.0
        alg = net.allreduce[level]
        if kind == Collective.ALLREDUCE and alg == AllReduce.TREE and pl > 2.0:
            depth = math.ceil(math.log2(pl) - 1e-9)
            steps.append(Step(level, Pattern.RING, 2, 1.0 / g_prev, depth, n, g))
        elif kind == Collective.ALLREDUCE and alg == AllReduce.MESH2D and pl == net.fanout[level] \
                and px > 1 and py > 1.0:
            row, col = 1.0 / (g_prev * px), 1.0 / (g_prev * px * py)
            steps += [Step(level, Pattern.ROWS, px - 1, row, 1.0, n, g),
                      Step(level, Pattern.COLS, 2 * (round(py) - 1), col, 1.0, n, g),
                      Step(level, Pattern.ROWS, px - 1, row, 1.0, n, g)]
        elif kind == Collective.ALLTOALL:
            steps += [Step(level, Pattern.SHIFT, 1, g_prev / p, 1.0, n, g, shift=k) for k in range(1, n)]
        else:  # ring all-reduce (reduce-scatter + all-gather), or one of the halves
            repeats = (2 if kind == Collective.ALLREDUCE else 1) * (n - 1)
            steps.append(Step(level, Pattern.RING, repeats, 1.0 / (g_prev * pl), 1.0, n, g))
    return tuple(steps)


def time(net: Network, steps: tuple[Step, ...], nbytes: float) -> tuple[float, float]:
    """(seconds, joules per chip) of the steps uncontended: each step's data at the chip's
    share of its member's bandwidth, plus the level's latencies."""
    t = e = 0.0
    if nbytes <= 0.0:
        return t, e
    for s in steps:
        share = net.bandwidth[s.level] / net.chips_per_member(s.level)
        moved = s.repeats * s.data * nbytes
        t += moved / share + s.repeats * s.latencies * net.latency[s.level]
        e += moved * net.energy[s.level]
    return t, e


def rings(step: Step, base: int, p: int, stride: int) -> list[list[int]]:
    """The chips of each ring of the step's level in the group whose first chip is `base`: one
    ring per position inside the members (and per outer repetition of the level)."""
    g, n = step.inner, step.members
    return [[base + stride * (inner + g * k + g * n * outer) for k in range(n)]
            for outer in range(max(1, p // (g * n))) for inner in range(g)]


def pairs(step: Step, net: Network, base: int, p: int, stride: int) -> list[tuple[int, int]]:
    """(sender, receiver) chips of one step for the group whose first chip is `base`."""
    if step.pattern == Pattern.P2P:
        return [(base, base + stride)]
    out = []
    px = net.cols[step.level]
    for ring in rings(step, base, p, stride):
        if step.pattern == Pattern.RING:
            cycles = [ring]
        elif step.pattern == Pattern.ROWS:
            cycles = [ring[r * px:(r + 1) * px] for r in range(len(ring) // px)]
        elif step.pattern == Pattern.COLS:
            cycles = [ring[c::px] for c in range(px)]
        else:  # SHIFT
            out += [(ring[k], ring[(k + step.shift) % len(ring)]) for k in range(len(ring))]
            continue
        out += [(c[k], c[(k + 1) % len(c)]) for c in cycles for k in range(len(c))]
    return out
