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
- dims all-reduce (`allreduce = dims`, the level's whole N-D grid of d dimensions; TPU pods
  reduce over their 3-D torus this way): reduce-scatter along each dimension in turn, then
  all-gather back in the reverse order, each dimension's ring bidirectional (a torus: half the
  data each way round, 2 links per chip; a mesh: the ring's way back over the line's reverse
  links). With the dimensions all equal the data is split in d parts that take the dimensions
  in rotated orders, so every phase keeps all 2d links of a chip busy (Kumar and Jouppi et al.'s
  multi-dimensional all-reduce on TPU v4's twisted tori, ISCA 2023; Chan et al. 2007's
  dimension-wise bucket algorithm): on an n^d torus of N chips with link bandwidth B per
  direction, 2 D (N - 1) / (N 2d B) + 2d(n - 1) latencies, the bandwidth lower bound. With unequal
  dimensions one part takes them in turn. All-gather and reduce-scatter are each one half.
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
    DIM = 5  # each member to its neighbours along one dimension of the level's N-D grid (dims)
    ROUTED = 6  # every member to every other over a mesh's or torus's links, dimension-ordered (all-to-all)


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
    dim: int = 0  # Pattern.DIM: the phase; part q runs along dimension (q + dim) % d (one part: dim)
    parts: int = 1  # Pattern.DIM: parts of the data, each on its own dimension at once
    hops: float = 0.0  # Pattern.ROUTED: the links a chip's byte crosses on average (for energy)

    def show(self) -> str:
        what = {Pattern.SHIFT: f"shift {self.shift}",
                Pattern.DIM: f"dimension {self.dim}" + (f" (x{self.parts} parts rotated)" if self.parts > 1 else ""),
                Pattern.ROUTED: f"dimension-ordered exchange ({self.hops:.3g} hops)"}.get(self.pattern, self.pattern.name.lower())
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
    dims: tuple[tuple[int, ...], ...] = ()  # each level's grid, first dimension outermost
    link: tuple[float, ...] = ()  # each level's link bandwidth per direction, B/s (Pattern.DIM's flows)
    wrap: tuple[bool, ...] = ()  # each level's grid wraps around (a torus)
    routed: tuple[bool, ...] = ()  # each level's members are joined by a mesh or torus of links

    @staticmethod
    def of(machine: Machine) -> "Network":
        lv = machine.levels
        return Network(tuple(x.fanout for x in lv),
                       tuple(x.network.link_bandwidth * LINK_FACTOR.get(x.network.topology, 1.0) for x in lv),
                       tuple(x.network.latency_s for x in lv), tuple(x.network.energy_per_byte or 0.0 for x in lv),
                       tuple(AllReduce.of(x.network.allreduce) for x in lv), tuple(x.cols for x in lv),
                       tuple(x.grid for x in lv), tuple(x.network.link_bandwidth for x in lv),
                       tuple(x.network.topology == "torus" for x in lv),
                       tuple(x.network.topology in ("mesh", "torus") for x in lv))

    def dim_share(self, level: int) -> float:
        """A chip's bandwidth along one dimension of the level's grid (Pattern.DIM): both links of a
        torus dimension, one of a mesh's (its ring comes back the other way), shared by the chips
        of the member."""
        return self.link[level] * (2.0 if self.wrap[level] else 1.0) / self.chips_per_member(level)

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
        elif (kind in (Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER)
              and alg == AllReduce.DIMS and pl == net.fanout[level]):
            steps += _dims_steps(net, kind, level, n, g, g_prev)
        elif kind == Collective.ALLTOALL and net.routed and net.routed[level] and pl == net.fanout[level] \
                and n > 1:
            steps.append(_routed_step(net, level, n, g))
        elif kind == Collective.ALLTOALL:
            steps += [Step(level, Pattern.SHIFT, 1, g_prev / p, 1.0, n, g, shift=k) for k in range(1, n)]
        else:  # ring all-reduce (reduce-scatter + all-gather), or one of the halves
            repeats = (2 if kind == Collective.ALLREDUCE else 1) * (n - 1)
            steps.append(Step(level, Pattern.RING, repeats, 1.0 / (g_prev * pl), 1.0, n, g))
    return tuple(steps)


def _dims_steps(net: Network, kind: Collective, level: int, n: int, g: int, g_prev: float) -> list[Step]:
    """A dims collective over the level's whole grid: the reduce-scatter phases (dimension by
    dimension, each part's data shrinking by the size of the dimension it has reduced), then
    the all-gather phases in reverse. Each phase: n_k - 1 ring steps of the part's data / n_k."""
    sizes = [x for x in net.dims[level] if x > 1]
    d = len(sizes)
    parts = d if d > 1 and len(set(sizes)) == 1 else 1
    phases, held = [], 1.0 / (parts * g_prev)
    for j in range(d):
        k = sizes[j]  # with parts, every dimension has this size
        phases.append((j, k, held / k))
        held /= k
    rs = [Step(level, Pattern.DIM, k - 1, data, 1.0, n, g, dim=j, parts=parts) for j, k, data in phases]
    ag = list(reversed(rs))
    if kind == Collective.REDUCE_SCATTER:
        return rs
    if kind == Collective.ALLGATHER:
        return ag
    return rs + ag


def line_load(k: int, wrap: bool) -> float:
    """The most one link of a line of k members (a ring if `wrap`) carries in one direction when
    every member sends one unit to every other the shortest way (a tie, half-way round an even
    ring, split between the two ways). On a line the middle link carries floor(k/2) ceil(k/2)
    units (the members on either side of it, pairwise); on a ring every link carries the same,
    sum of d for d = 1..m (m = floor((k-1)/2): a unit travelling d hops loads d links, and
    k members' units spread over k links) plus k/4 from the ties of an even k (Dally and Towles,
    Principles and Practices of Interconnection Networks, 2004, Sec. 3.3: channel load of
    uniform traffic on k-ary n-cubes)."""
    if wrap:
        m = (k - 1) // 2
        return m * (m + 1) / 2 + (k / 4 if k % 2 == 0 else 0.0)
    return float((k // 2) * ((k + 1) // 2))


def mean_hops(k: int, wrap: bool) -> float:
    """The links a unit crosses on average between two members of a line (ring) of k, the
    member itself included as one of the k destinations: (k^2 - 1) / (3k) on a line."""
    if wrap:
        return sum(min(d, k - d) for d in range(k)) / k
    return sum(abs(a - b) for a in range(k) for b in range(k)) / (k * k)


def _routed_step(net: Network, level: int, n: int, g: int) -> Step:
    """An all-to-all over the whole of a mesh or torus level, each member's data routed
    dimension by dimension (dimension-ordered routing: along dimension 0 to the destination's
    coordinate, then dimension 1, ...), the dimensions' links busy at once. Every line of
    dimension i carries, for each ordered pair of its positions, the data of n / k_i member
    pairs (its sources' other coordinates free below i, its destinations' above): g D / k_i per
    pair, with D a chip's bytes and g chips per member. The step lasts as long as the most
    loaded link: max over i of line_load(k_i) g D / k_i over one link's bandwidth in one
    direction; it is the bisection bound of the grid (on a 4 x 4 x 4 torus, D / 2 per link).
    Latency: a unit crosses up to k_i / 2 (torus) or k_i - 1 (mesh) hops per dimension."""
    grid = [x for x in net.dims[level] if x > 1] if net.dims else [n]
    wrap = net.wrap[level]
    data = max(line_load(k, wrap) * g / k for k in grid)
    lat = sum(k // 2 if wrap else k - 1 for k in grid)
    return Step(level, Pattern.ROUTED, 1, data, float(lat), n, g, hops=sum(mean_hops(k, wrap) for k in grid))


def routed_flows(step: Step, net: Network, base: int, p: int, stride: int) -> list[tuple[float, list]]:
    """A Pattern.ROUTED step's flows for the group whose first chip is `base`, each a segment of
    a dimension-ordered route along one line of the grid: (its bytes as a fraction of D, its
    hops (member of the level, dimension, +1 or -1) in order). Per ring of chips (one chip a
    member), each line of dimension i and each ordered pair of its positions a flow of D / k_i
    the shortest way round (a tie on an even torus: two flows of half, one each way). The
    segments of one route run at once (as a wormhole route's do), so every link carries what
    _routed_step counts."""
    grid = net.dims[step.level] if net.dims else (step.members,)
    wrap = net.wrap[step.level]
    per = net.chips_per_member(step.level)
    flows = []
    for ring in rings(step, base, p, stride):
        for i, k in enumerate(grid):
            if k < 2:
                continue
            s = math.prod(grid[i + 1:])
            for j, chip in enumerate(ring):
                a = (j // s) % k
                for b in range(k):
                    if b == a:
                        continue
                    fwd = (b - a) % k if wrap else None
                    ways = ([(+1, fwd), (-1, k - fwd)] if wrap and 2 * fwd == k else
                            [(+1, fwd) if fwd < k - fwd else (-1, k - fwd)] if wrap else
                            [(+1 if b > a else -1, abs(b - a))])
                    for sign, d in ways:
                        hops = [(ring[j + ((a + sign * h) % k - a) * s] // per, i, sign) for h in range(d)]
                        flows.append((1.0 / k / len(ways), hops))
    return flows


def cost(net: Network, s: Step, nbytes: float) -> tuple[float, float, float]:
    """(bytes each chip sends, seconds, joules per chip) of one step entry (all its repeats)
    uncontended: the data at the chip's share of its member's bandwidth, plus the level's
    latencies. Every part of a DIM step moves its data at once, on links of its own. A ROUTED
    step (an all-to-all over a whole mesh or torus level) lasts as long as its most loaded link,
    one direction, takes; a chip sends what is not its own, (n - 1) / n of its bytes, and every
    hop a byte crosses costs the level's energy."""
    if s.pattern == Pattern.ROUTED:
        return (nbytes * (s.members - 1) / s.members,
                s.data * nbytes / net.link[s.level] + s.latencies * net.latency[s.level],
                nbytes * s.hops * net.energy[s.level])
    share = net.dim_share(s.level) if s.pattern == Pattern.DIM else \
        net.bandwidth[s.level] / net.chips_per_member(s.level)
    moved = s.repeats * s.data * nbytes
    return (moved * s.parts, moved / share + s.repeats * s.latencies * net.latency[s.level],
            moved * s.parts * net.energy[s.level])


def time(net: Network, steps: tuple[Step, ...], nbytes: float) -> tuple[float, float]:
    """(seconds, joules per chip) of the steps uncontended (`cost` summed)."""
    t = e = 0.0
    if nbytes <= 0.0:
        return t, e
    for s in steps:
        _, dt, de = cost(net, s, nbytes)
        t += dt
        e += de
    return t, e


def by_level(net: Network, steps: tuple[Step, ...], nbytes: float) -> dict[int, tuple[float, float, float]]:
    """(bytes each chip sends, seconds, joules per chip) of the steps at each level they cross,
    uncontended: what `time` charges, level by level."""
    out: dict[int, tuple[float, float, float]] = {}
    if nbytes <= 0.0:
        return out
    for s in steps:
        b, t, e = cost(net, s, nbytes)
        b0, t0, e0 = out.get(s.level, (0.0, 0.0, 0.0))
        out[s.level] = (b0 + b, t0 + t, e0 + e)
    return out


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


def dim_flows(step: Step, net: Network, base: int, p: int, stride: int) -> tuple[float, list]:
    """A Pattern.DIM step's flows for the group whose first chip is `base`: (the fraction of the
    step's data each flow carries, [(sender, receiver, hops)]) where hops are the links it
    crosses, (member of the level, dimension, +1 or -1), in order. On a torus every member sends half to
    each neighbour along the dimension (one link each); on a mesh the ring's last member sends
    back to the first over the line's reverse links, one hop per member (dimension-ordered)."""
    grid = net.dims[step.level]
    axes = [i for i, x in enumerate(grid) if x > 1]
    per = net.chips_per_member(step.level)
    flows = []
    for ring in rings(step, base, p, stride):
        for q in range(step.parts):
            a = axes[(q + step.dim) % len(axes)] if step.parts > 1 else axes[step.dim]
            size, s = grid[a], math.prod(grid[a + 1:])
            for k, chip in enumerate(ring):
                c = (k // s) % size
                if net.wrap[step.level]:
                    up, down = k + ((c + 1) % size - c) * s, k + ((c - 1) % size - c) * s
                    flows += [(chip, ring[up], [(chip // per, a, 1)]), (chip, ring[down], [(chip // per, a, -1)])]
                elif c < size - 1:
                    flows.append((chip, ring[k + s], [(chip // per, a, 1)]))
                else:
                    flows.append((chip, ring[k - c * s], [(ring[k - i * s] // per, a, -1) for i in range(c)]))
    return (0.5 if net.wrap[step.level] else 1.0), flows

