"""The event level: a run lowered into an event task graph (runtime/events.py) and simulated.

How a run becomes a task graph
------------------------------
- Per-op durations come from the analytic kernel: lower() the run, analyze() its task table,
  and take each task's local time R[time] - R[link] (compute / memory / SRAM / NoC roofline plus
  the fixed launch cost), times the task's count (a task stands for `count` repeats of an op:
  one compute task of count x the time). Collectives become flows; for weight streaming the
  off-chip part is a flow too (below).
- Resources: one per pipeline stage (the stage's chip; tensor- and data-parallel replicas of a
  stage are identical, so one compute resource stands for all of them). Spatial mappings: one
  resource per op region (ops that run in place share the region of the op before them).
- Links: one per member of a level per direction (out and in), of the level's per-member
  bandwidth as the analytic kernel uses it (render.py: link bandwidth x the ring factor of a
  mesh / torus / ring). A member at level l is a unit of prod(fanout[:l]) chips; every flow of
  every chip of that unit leaving (entering) it shares its out (in) link, max-min fairly. So
  contention is not assumed, it happens: the analytic kernel gives each chip LEVEL_BW / (chips
  per member), and the event level gets the same share when (and only when) all those chips
  communicate at once. To make that so, a collective is emitted for the representative
  replica's group *and* every concurrent group of the same collective (the other tensor-
  parallel ranks' gradient all-reduces, the other replicas' pipeline sends) that shares a link
  with it; groups that share no link with it are left out (they cannot change its timing).
- Collectives: chips numbered t + tp*d + tp*dp*s (tensor rank, data replica, stage). A
  collective runs the steps codegen/collectives.py decomposes it into, the same the analytic
  level times: per step, every member of each ring of the step's level sends to its peer (the
  next in the ring, row or column, the member k places on for an all-to-all, or the pair of a
  point-to-point send) as one flow over its member's out link and the peer member's in link.
  Every flow pays the level's latency before its bytes move; a step ends when all its flows
  have (a barrier). Uncontended, a ring all-reduce of S bytes over p chips takes
  2(p-1)/p * S/B + 2(p-1) * latency, exactly the analytic figure. A task
  repeated `count` times does its collective once with count x the bytes and count x the
  latency. An op's collective whose links no other collective of the run uses (tensor
  parallelism inside a node) is one delay of the time its flows would take (find_private).
- Schedules (non-spatial): each stage runs 1F1B (warm-up forwards, one forward / one backward,
  cool-down backwards; inference: forwards only), or with `schedule = gpipe` every forward then
  every backward, in that order (consecutive items chained);
  a forward waits for the previous stage's forward of that micro-batch and its point-to-point
  transfer, a backward for the next stage's backward and its transfer. The bubble emerges from
  the graph. Full recomputation runs just before its micro-batch's backward. Then the stage's
  gradient all-reduce, then its optimizer step. Interleaved 1F1B (interleave = v > 1, m a
  multiple of pp): v chunks per stage, each 1/v of its layers, in Megatron's order; the last
  stage hands chunk c to the first stage's chunk c + 1. overlap_dp: the last micro-batch's
  backward (each chunk's last, interleaved) runs layer instance by layer instance and each
  gradient bucket's all-reduce starts when its gradients are complete (codegen/buckets.py). On a
  bulk-synchronous chip (`bsp true`) an op is two tasks: compute and sync, then exchange.
- Built in bulk (PIPELINE_BULK; ARCHC_EVENT_BULK=0 builds op by op, the reference): a stage's
  passes differ only in their micro-batch and in the tasks outside them (the stage's task
  before, the arrival barrier, the memory flow before, the next stage's arrival), so each kind
  of pass (forward or backward of a chunk on a stage) is built once by the same code into a
  scratch graph with placeholders for those (_record), and its tasks, dependencies (in the
  order TaskGraph lists successors) and op instances are copied for every pass at offset ids
  by the event kernel's typed tile/replicate (_emit), its names kept lazy (a range whose
  formatter puts the micro-batch into the recorded name when a trace or a note asks);
  the first pass of a stage, overlap_dp's bucketed backwards and the stage's end are built
  directly. tests/test_event_bulk.py holds the result to the reference array for array.
- Weight streaming: each op's weight (and, in the backward, gradient) traffic is a flow over a
  link of the memory's bandwidth, the op's compute waits for it; the flow of op i+1 runs while
  op i computes (double buffering: the flow of op i waits for the compute of op i-2).
- Spatial: each sample passes every region in turn (the op's analytic time there),
  consecutive samples pipeline through the regions; the chip-to-chip transfer of a sample is a
  flow on a link of the level's per-chip bandwidth.
- Resources run their waiting tasks in program order (lowest task id first; the engine).
- Mesh chips (a wafer) are lowered at tile granularity instead (ARCHC_EVENT_TILES=0: the
  per-region model above): one resource per tile (or per s x s block when the graph would
  exceed TILE_TASKS tasks; links then s x the bandwidth, s x the hop latency). Spatial: the
  regions (the analytic sizes, in op order) are split over the chips by running demand and
  laid out on each chip's grid as rectangles of whole blocks (codegen/layout.py); an op's compute scales
  by its analytic size over the tiles it got. A sample visits the instances of a repeated
  layer one after the other; an op that runs in place is folded into the task of its region's
  op. Every tile of a region computes in parallel, starting when the input wavefront (one flow
  per tile over its west link, the row's input entering over the region's west boundary)
  reaches it; partial results reduce back west along each row (a chain of one-hop flows); the
  next op starts when the rows have reduced. The analytic level overlaps the wavefront and
  reduction hops with the compute (a max), the event level adds them: on the full wafer a
  region of side ~200-700 tiles adds ~0.4-1.2 us to each op. Bands are region_rows tall if
  the run says so. With placement = raster | serpentine (not the default adjacent) a region
  that starts a band gets its input carried from the band before (_handover: a flow per row
  over a staircase of fabric links, contending with the other samples' flows); serpentine
  bands run east to west in turn. The rows of a band are indistinguishable: the same tasks,
  each row's on its own blocks and links, which no other row uses (_bands has the argument),
  so each band's top row stands for the band and only those rows' blocks and links are made;
  the figures of the whole grid (busiest tile, most loaded links, the heatmaps) are read from
  them (_Wafer.tile_grid, link_grid, top_links). Exact: the report equals every row simulated
  (REGION_EVERY_ROW; tests/test_wafer_scale.py). Not where an input is carried between bands
  (its flows take a different staircase per row) or regions share blocks: there every row is
  simulated. So the graph grows with the regions' widths, not their areas. The block size s
  is the one the graph of every row would need, so the figures stay those of that graph.
  A sample's tasks are built once and repeated for each sample (TaskGraph.add_repeated; a
  single sample is built in place). The build works from the plan's arrays in the event
  kernel's typed loops: spatial_visits lays out the regions and a sample's visits (as
  codegen/layout.py's regions and visits do), region_layout the placed rectangles' tiles,
  directions and bands, and region_visits a run of visits (between inputs carried over the
  fabric) with their times (_region_ops; REGION_OP_EACH makes them one _region_op call each,
  the reference the tests hold them to, array for array); the candidate layouts are ranked in
  the kernel's typed loops too (codegen/layout.py; its REFERENCE, in Python, agrees).
  Weight streaming: each matmul row runs on every tile of the wafer, after its weights have
  streamed in (one flow per tile row: the memory link, then that row's west edge link) and
  passed along the row to it (one hop a tile); the tiles of a row differ only in that arrival,
  so the row's easternmost tile, which ends last, stands for the row (exact; STREAM_EVERY_TILE
  simulates them all). Other ops are one task as above. Its passes are built in bulk as a
  pipeline's are.
"""
from __future__ import annotations

import functools
import math
import os
from collections import Counter

import numpy as np

from archc.codegen.plan import COL, Phase, Plan
from archc.dsl.vocab import Collective
from archc.codegen import collectives
from archc.codegen.buckets import backward_pieces, bucket_closings, weights_of
from archc.codegen.layout import _Ranked, layouts, regions, visits
from archc.codegen.schedule import stream_pieces
from archc.codegen.render import RC, RESULTS  # noqa: F401  (RESULTS: the column names, for callers of event_R)

from . import events as ev
from .report import si

MAX_TASKS = 3_000_000
TILE_TASKS = 6_000_000  # budget of a tile-granular wafer graph; beyond it tiles are grouped in blocks
STREAM_EVERY_TILE = False  # weight streaming: simulate every tile, not each row's last (tests check the two agree)
REGION_EVERY_ROW = False  # spatial: simulate every row of a region, not its band's top row (tests check they agree)
REGION_OP_EACH = False  # spatial: make a sample's region visits one _region_op call each, not in one kernel call
# (_region_ops; tests check the two graphs agree array by array)
SAMPLE = "\x00"  # a sample's number in the names of a spatial run's per-sample tasks (build_spatial_tiles)
TRACE_TASKS = 250_000  # tasks a trace holds at most (Perfetto / chrome://tracing stay responsive)
# pipeline schedules (build_stages): each kind of pass recorded once and copied for every
# micro-batch (_passes_bulk, _emit); False (or ARCHC_EVENT_BULK=0): every pass built op by op, the reference the
# tests hold the bulk graph to, array for array
PIPELINE_BULK = os.environ.get("ARCHC_EVENT_BULK", "1") != "0"


class _Labels:
    """A list of names that also holds ranges named by a function (millions of tile tasks
    without millions of strings): append(name), add_range(n, fn(k) -> name), [i], len()."""

    def __init__(self):
        self._items: list = []   # str, or (first, n, fn)
        self._starts: list[int] = []
        self._n = 0

    def append(self, name: str) -> None:
        self._items.append(name)
        self._starts.append(self._n)
        self._n += 1

    def add_range(self, n: int, fn) -> None:
        if n > 0:
            self._items.append((self._n, n, fn))
            self._starts.append(self._n)
            self._n += n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> str:
        import bisect

        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        it = self._items[bisect.bisect_right(self._starts, i) - 1]
        return it if isinstance(it, str) else it[2](i - it[0])

    def __iter__(self):
        return (self[i] for i in range(self._n))


class _Shifted:
    """names[k + by] for k (a recording's names without its placeholders, looked up lazily)."""

    def __init__(self, names, by: int):
        self.names, self.by = names, by

    def __getitem__(self, k: int) -> str:
        return self.names[k + self.by]


class _Rows:
    """Rows of ints (or None) in order: tuples appended one at a time, or blocks of columns
    (int64 arrays, -1 for None) added at once. Iterating gives the tuples as appended (a
    block's rows as tuples of ints); arrays() the columns of all rows (None -> -1)."""

    def __init__(self):
        self._parts: list = []  # list of tuples, or a tuple of columns
        self._n = 0
        self._cols = None

    def append(self, row: tuple) -> None:
        if not self._parts or not isinstance(self._parts[-1], list):
            self._parts.append([])
        self._parts[-1].append(row)
        self._n += 1
        self._cols = None

    def add_block(self, cols) -> None:
        cols = tuple(np.asarray(c, np.int64).reshape(-1) for c in cols)
        if cols and cols[0].size:
            self._parts.append(cols)
            self._n += int(cols[0].size)
            self._cols = None

    def arrays(self, width: int) -> tuple:
        """The columns (read-only; cached until the next row)."""
        if self._cols is None:
            blocks = [p if not isinstance(p, list) else
                      tuple(np.array(c, np.int64) for c in zip(*[[-1 if x is None else x for x in r] for r in p]))
                      for p in self._parts]
            self._cols = tuple(np.concatenate([b[k] for b in blocks]) if blocks else np.zeros(0, np.int64)
                               for k in range(width))
            for c in self._cols:
                c.flags.writeable = False
        return self._cols

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        for p in self._parts:
            if isinstance(p, list):
                yield from p
            else:
                yield from zip(*(c.tolist() for c in p))


class _Adjust:
    """(row, seconds) pairs added to rows' event times (per_row_times), in order: pairs
    appended one at a time, or arrays of them added at once. Iterating gives the pairs;
    arrays() the (rows, seconds) columns."""

    def __init__(self):
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._r: list[int] = []
        self._s: list[float] = []

    def _flush(self) -> None:
        if self._r:
            self._chunks.append((np.array(self._r, np.int64), np.array(self._s, np.float64)))
            self._r, self._s = [], []

    def append(self, pair: tuple) -> None:
        self._r.append(int(pair[0]))
        self._s.append(float(pair[1]))

    def add(self, rows, seconds, times: int = 1) -> None:
        """The pairs (rows[k], seconds[k]) in order, `times` times over."""
        self._flush()
        r, t = np.asarray(rows, np.int64).reshape(-1), np.asarray(seconds, np.float64).reshape(-1)
        if r.size and times > 0:
            self._chunks.append((np.tile(r, times), np.tile(t, times)) if times != 1 else (r, t))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self._flush()
        if not self._chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        if len(self._chunks) > 1:
            self._chunks = [(np.concatenate([c[0] for c in self._chunks]),
                             np.concatenate([c[1] for c in self._chunks]))]
        return self._chunks[0]

    def __len__(self) -> int:
        return sum(c[0].size for c in self._chunks) + len(self._r)

    def __iter__(self):
        r, t = self.arrays()
        return zip(r.tolist(), t.tolist())


class _MicroBatch:
    """The micro-batch of a recorded pass: formats as NUL, which its names' formatter
    replaces with the micro-batch of each copy."""

    def __format__(self, spec) -> str:
        return "\0"

    __str__ = __repr__ = lambda self: "\0"


_PREV, _ARR, _MEM, _DST = range(4)  # a recorded pass's outside tasks (ids of placeholders)


class EventLevelError(Exception):
    pass


class _Net:
    """The machine's links: (level, member, direction) -> link id, made on first use. How a
    collective decomposes into steps, and who sends to whom in each, is codegen/collectives.py's."""

    def __init__(self, g: ev.TaskGraph, machine):
        self.g = g
        self.levels = machine.levels
        self.spec = collectives.Network.of(machine)
        self.fanout = list(self.spec.fanout)
        self.bw = list(self.spec.bandwidth)
        self.lat = list(self.spec.latency)
        self.inner = [self.spec.chips_per_member(l) for l in range(len(self.fanout))]  # chips per member
        self.ids: dict[tuple, int] = {}
        self.names = _Labels()

    def link(self, l: int, member: int, direction: str) -> int:
        key = (l, member, direction)
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = self.g.add_link(self.bw[l])
            self.names.append(f"{self.levels[l].name} member {member} {direction}")
        return i

    def grid_link(self, l: int, member: int, dim: int, sign: int) -> int:
        """The link from `member` of level l to its neighbour along dimension `dim` (+1 or -1 in
        that coordinate) of the level's grid: the level's link bandwidth per direction."""
        key = (l, member, dim, sign)
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = self.g.add_link(self.spec.link[l])
            self.names.append(f"{self.levels[l].name} member {member} dimension {dim} {'+' if sign > 0 else '-'}")
        return i

    def extra_link(self, bw: float, name: str) -> int:
        self.names.append(name)
        return self.g.add_link(bw)

    def member(self, l: int, chip: int) -> int:
        return chip // self.inner[l]

    def steps(self, kind: Collective, p: int, stride: int, groups: list[int]):
        """Per step of the collective (collectives.decompose): (bytes factor, latency,
        route_ptr, route_links, link bandwidth) for the flows of all the groups (given by their
        first chip): each pair's sender's member's out link and its receiver's member's in link."""
        out = []
        for st in collectives.decompose(self.spec, kind, p, stride):
            if st.pattern == collectives.Pattern.DIM:  # over the grid's own links, hop by hop
                links, ptr = [], [0]
                for b in groups:
                    frac, flows = collectives.dim_flows(st, self.spec, b, p, stride)
                    for _, _, hops in flows:
                        links += [self.grid_link(st.level, m, a, d)
                                  for m, a, d in hops]
                        ptr.append(len(links))
                out += [(st.data * frac, st.latencies * self.lat[st.level], np.asarray(ptr, np.int64),
                         np.asarray(links, np.int32), self.spec.link[st.level])] * st.repeats
                continue
            if st.pattern == collectives.Pattern.ROUTED:  # dimension-ordered segments, over the grid's links
                links, ptr, frac = [], [0], []
                for b in groups:
                    for f, hops in collectives.routed_flows(st, self.spec, b, p, stride):
                        links += [self.grid_link(st.level, m, a, d) for m, a, d in hops]
                        ptr.append(len(links))
                        frac.append(f)
                out.append((np.asarray(frac), st.latencies * self.lat[st.level], np.asarray(ptr, np.int64),
                            np.asarray(links, np.int32), self.spec.link[st.level]))
                continue
            links = []
            for b in groups:
                for a, c in collectives.pairs(st, self.spec, b, p, stride):
                    links += [self.link(st.level, self.member(st.level, a), "out"),
                              self.link(st.level, self.member(st.level, c), "in")]
            ptr = np.arange(0, len(links) + 1, 2, dtype=np.int64)
            arr = np.asarray(links, np.int32)
            out += [(st.data, st.latencies * self.lat[st.level], ptr, arr, self.bw[st.level])] * st.repeats
        return out

    def links_of(self, kind: Collective, p: int, stride: int, base: int) -> set:
        s = set()
        for l, _, _ in collectives.spans(self.spec, kind, p, stride):
            for j in range(p if kind != Collective.P2P else 2):
                s.add((l, self.member(l, base + j * stride)))
        return s


class _VisitNames:
    """The names of the tasks of consecutive region visits made at once (_region_ops), as
    _region_op names them: k -> the name of the k-th task from the first visit's start.
    label(v): visit v's label; op, reg, starts: each visit's op row, region and first task
    (from the first visit's); regs: per region (y, x, h, w, tiles given, direction);
    bands: only a region's top row simulated; nbytes: each op row's input bytes."""

    def __init__(self, label, op, reg, starts, regs, bands, nbytes):
        self.label, self.op, self.reg, self.starts = label, op, reg, starts
        self.regs, self.bands, self.nbytes = regs, bands, nbytes

    def __call__(self, k: int) -> str:
        v = int(np.searchsorted(self.starts, k, side="right")) - 1
        y, x, h, w, _, sign = self.regs[int(self.reg[v])].tolist()
        label = self.label(v)
        hs = 1 if self.bands else h
        k -= int(self.starts[v])
        n = hs * w
        tile_name, input_name, reduce_name = _visit_names(label, y, x, w, sign)
        if k == 0:
            return f"{label} start"
        k -= 1
        if k < n:
            return tile_name(k)
        k -= n
        if self.nbytes[self.op[v]] > 0:
            if k < n:
                return input_name(k)
            k -= n
        return reduce_name(k) if k < hs * (w - 1) else f"{label} done"


def _visit_names(label: str, y: int, x: int, w: int, d: int):
    """The names of a region visit's tasks (_region_op): its blocks' computes, their inputs
    and the reduce chain, as functions of the index in their range (rows of w blocks from
    block (y, x), running east to west if d < 0)."""
    def at(j):  # the tile of entry j of a (rows x w) range
        return f"({y + j // w}, {x + j % w if d > 0 else x + w - 1 - j % w})"
    return (lambda j: f"{label} tile {at(j)}", lambda j: f"{label} input to {at(j)}",
            lambda j: f"{label} reduce ({y + j // (w - 1)}, {x + j % (w - 1) + 1 if d > 0 else x + w - 2 - j % (w - 1)})")


class _Wafer:
    """The chip's tile grid for the tile-granular lowerings, in blocks of s x s tiles (s = 1:
    tile granularity). A block is one resource; between horizontally adjacent blocks an east
    and a west link of s x the tile link bandwidth (the s parallel tile links), s x the hop
    latency; one injection link per block row on the wafer's west edge (the same bandwidth).
    Between vertically adjacent blocks a south and a north link (placed layouts carry inputs
    over them); weight streaming (row_tiles) makes only the edge links. `chips` grids are stacked (rows of
    chip c: c x the chip's block rows onwards); no link joins them (chip-to-chip transfers
    are flows of their own).

    `bands` [(top row, height)] (sorted, disjoint): only each band's top row is made (its
    blocks, their east, west and edge links; no south or north links), standing for the band's
    rows (_Builder.build_spatial_tiles, which proves them indistinguishable); a block of another
    row of a band is its top row's block. Without `bands` every row is made. Figures per block
    or link of the whole grid: tile_grid, link_grid, top_links."""

    def __init__(self, b: "_Builder", s: int, chips: int = 1, row_tiles: bool = False, bands=None):
        chip = b.m.chip
        self.s = s
        self.chip_rows = -(-chip.rows // s)
        self.rows, self.cols = self.chip_rows * chips, -(-chip.cols // s)
        self.bw = chip.noc.link_bandwidth * s
        self.hop = chip.noc.latency_s * s
        nr, nc = self.rows, self.cols
        # row_tiles (weight streaming): a resource per row of blocks, standing for the row's
        # easternmost block, whose timeline bounds the others' (_stream_tiles); no fabric links
        self.row_tiles = row_tiles
        self.bands = None if bands is None else [(int(y), int(h)) for y, h in bands]
        self.q = None  # row -> index of the simulated row (bands), None: every row is simulated
        if row_tiles:
            self.res0 = int(b.g.add_resources(nr)[0])
            b.res_names.add_range(nr, lambda k, nc=nc, s=s: (
                f"tile row {k} (tiles ({k}, 0..{nc - 1}))" if s == 1 else
                f"tile rows {k * s}.. (blocks ({k}, 0..{nc - 1}) of {s}x{s})"))
            self.e0 = self.w0 = self.x0 = int(b.g.add_links(np.full(nr, self.bw))[0])
            b.net.names.add_range(nr, lambda k: f"wafer west edge row {k}")
            return
        if self.bands is not None:
            made = np.array([y for y, _ in self.bands], np.int64)  # the rows made, in order
            self.q = np.full(nr, -1, np.int64)
            self.q[made] = np.arange(made.size)
        else:
            made = np.arange(nr, dtype=np.int64)
        self.made = made
        nq = made.size
        self.res0 = int(b.g.add_resources(nq * nc)[0])
        b.res_names.add_range(nq * nc, lambda k, nc=nc, s=s, rows=made: (
            f"tile ({rows[k // nc]}, {k % nc})" if s == 1 else
            f"tiles ({rows[k // nc] * s}.., {k % nc * s}..) [{s}x{s} block]"))
        ne = nq * max(0, nc - 1)
        ns = max(0, nr - 1) * nc if self.bands is None else 0
        ids = b.g.add_links(np.full(2 * ne + nq + 2 * ns, self.bw))
        self.e0 = int(ids[0])
        self.w0 = self.e0 + ne
        self.x0 = self.e0 + 2 * ne
        self.s0 = self.x0 + nq
        self.n0 = self.s0 + ns
        self.n_links = 2 * ne + nq + 2 * ns
        names = b.net.names
        names.add_range(ne, lambda k, nc=nc, rows=made: f"fabric ({rows[k // (nc - 1)]}, {k % (nc - 1)}) east")
        names.add_range(ne, lambda k, nc=nc, rows=made: f"fabric ({rows[k // (nc - 1)]}, {k % (nc - 1) + 1}) west")
        names.add_range(nq, lambda k, rows=made: f"wafer west edge row {rows[k]}")
        names.add_range(ns, lambda k, nc=nc: f"fabric ({k // nc}, {k % nc}) south")
        names.add_range(ns, lambda k, nc=nc: f"fabric ({k // nc + 1}, {k % nc}) north")

    @functools.cached_property
    def cls(self) -> np.ndarray:
        """Row -> the index of the made row standing for it (-1: none), when only bands' top
        rows are made."""
        made, hs = (np.array(c, np.int64) for c in zip(*self.bands))
        cls = np.full(self.rows, -1, np.int64)
        before = np.cumsum(hs) - hs
        cls[np.arange(int(hs.sum())) - np.repeat(before - made, hs)] = np.repeat(np.arange(made.size), hs)
        return cls

    def _row(self, a):
        """The index among the made rows of row(s) a (every row: a itself)."""
        if self.q is None:
            return a
        q = self.q[a]
        assert np.all(q >= 0), "a row that is not a band's top row"
        return q

    def tile(self, a, c):   # the resource of block (a, c)
        return self.res0 + self._row(a) * self.cols + c

    def east(self, a, b):   # link (a, b) -> (a, b + 1)
        return self.e0 + self._row(a) * (self.cols - 1) + b

    def west(self, a, b):   # link (a, b + 1) -> (a, b)
        return self.w0 + self._row(a) * (self.cols - 1) + b

    def edge(self, a):
        return self.x0 + self._row(a)

    def south(self, a, b):  # link (a, b) -> (a + 1, b)
        assert self.bands is None
        return self.s0 + a * self.cols + b

    def north(self, a, b):  # link (a + 1, b) -> (a, b)
        assert self.bands is None
        return self.n0 + a * self.cols + b

    def along(self, r: int, c0: int, c1: int) -> np.ndarray:
        """The links from block (r, c0) to block (r, c1) along the row."""
        if c1 >= c0:
            return np.asarray(self.east(r, np.arange(c0, c1)), np.int64)
        return np.asarray(self.west(r, np.arange(c0 - 1, c1 - 1, -1)), np.int64)

    def down(self, r0: int, r1: int, c: int) -> np.ndarray:
        """The links from block (r0, c) to block (r1, c) along the column."""
        if r1 >= r0:
            return np.asarray(self.south(np.arange(r0, r1), c), np.int64)
        return np.asarray(self.north(np.arange(r0 - 1, r1 - 1, -1), c), np.int64)

    def route(self, r0: int, c0: int, r1: int, c1: int, turn: int) -> np.ndarray:
        """The links from block (r0, c0) to block (r1, c1): along row r0 to column `turn`,
        along that column to row r1, along row r1 to c1 (a staircase; flows given different
        turning columns cross between rows in parallel)."""
        return np.concatenate([self.along(r0, c0, turn), self.down(r0, r1, turn), self.along(r1, turn, c1)])

    # figures of the whole grid (a band's rows are its top row's)
    def _spread(self, made_rows: np.ndarray, width: int) -> np.ndarray:
        """(rows x width) grid of per-made-row values (nq x width): a band's rows alike, rows
        outside the bands (no region) 0."""
        if self.q is None:
            return made_rows
        out = np.zeros((self.rows, width), dtype=made_rows.dtype)
        cls = self.cls
        on = cls >= 0
        out[on] = made_rows[cls[on]]
        return out

    def tile_grid(self, per_resource) -> np.ndarray:
        """(rows x cols) grid of a per-resource figure (busy time, utilisation) of the blocks."""
        v = np.asarray(per_resource)
        return self._spread(v[self.res0:self.res0 + self.made.size * self.cols].reshape(-1, self.cols), self.cols)

    def link_grid(self, per_link, direction: str) -> np.ndarray:
        """(rows x cols - 1) grid of a per-link figure of the east (west) links between blocks."""
        v = np.asarray(per_link)
        base = self.e0 if direction == "east" else self.w0
        n = self.made.size * (self.cols - 1)
        return self._spread(v[base:base + n].reshape(-1, self.cols - 1), self.cols - 1)

    def top_links(self, per_link, n: int, names) -> list[tuple[str, float]]:
        """The n links with the highest figure, (name, figure), in the order the whole grid's
        links (every row made) would rank them: by figure, ties by the link id they would have
        (east links row by row, west links, edge links, then any made after the grid). A link
        of a band's top row stands for the same link of each row of the band."""
        v = np.asarray(per_link, dtype=float)
        top = np.argsort(-v, kind="stable")[:n]
        if self.q is None or self.row_tiles:
            return [(names[int(l)], float(v[l])) for l in top]
        nr, nc, nq = self.rows, self.cols, self.made.size
        ne, ne_all = nq * (nc - 1), nr * (nc - 1)
        full = 2 * ne_all + nr + 2 * max(0, nr - 1) * nc  # the links of every row
        cand = []  # (figure, full id, name)
        ids = np.arange(v.size)
        inside = (ids >= self.e0) & (ids < self.e0 + self.n_links)
        out_ids = ids[~inside]
        for l in out_ids[np.argsort(-v[out_ids], kind="stable")[:n]]:
            l = int(l)
            cand.append((v[l], l if l < self.e0 else l - self.n_links + full, names[l]))
        ins = ids[inside]
        for l in ins[np.argsort(-v[ins], kind="stable")[:n]]:
            k = int(l) - self.e0
            kind, k = (0, k) if k < ne else (1, k - ne) if k < 2 * ne else (2, k - 2 * ne)
            q, b = (k // (nc - 1), k % (nc - 1)) if kind < 2 else (k, 0)
            y, h = self.bands[q]
            for a in range(y, y + min(h, n)):
                if kind == 0:
                    cand.append((v[l], self.e0 + a * (nc - 1) + b, f"fabric ({a}, {b}) east"))
                elif kind == 1:
                    cand.append((v[l], self.e0 + ne_all + a * (nc - 1) + b, f"fabric ({a}, {b + 1}) west"))
                else:
                    cand.append((v[l], self.e0 + 2 * ne_all + a, f"wafer west edge row {a}"))
        cand.sort(key=lambda c: (-c[0], c[1]))
        return [(name, float(x)) for x, _, name in cand[:n]]

def _bands(rects):
    """The bands [(top row, height)] of a layout's regions, sorted, if every two regions' rows
    are the same or disjoint (None otherwise): a band's top row then stands for its rows.

    Why that is exact (build_spatial_tiles, _region_op), when no input is carried between
    bands (_handover) and no two regions share a block: a region's rows y..y+h-1 get the same
    tasks (the same durations; flows of the same bytes and latencies), depending on the same
    tasks (the visit's start, the one before's end) and ending into the same barrier; row a's
    tasks run on the blocks of row a, which no other row's tasks use, and row a's flows use
    the east, west and edge links of row a between and at the region's columns, which only
    that region's row a uses (a region's entry link is the link into its first column, which
    no other region enters by). So the rows share no resource and no link, each row's
    max-min rates are those of its own links alone, and the engine (events at equal times in
    task-id order) gives every row the same times as the top row: the barriers (visit
    starts, ends) see the same times when only the top row is simulated, and every other
    block's and link's busy time is its top row's counterpart's. tests/test_wafer_scale.py
    checks it against every row simulated (REGION_EVERY_ROW)."""
    r = np.asarray(rects, np.int64).reshape(-1, 4)
    bands = sorted(set(zip(r[:, 0].tolist(), r[:, 2].tolist())))
    for (y0, h0), (y1, _) in zip(bands, bands[1:]):
        if y1 < y0 + h0:
            return None
    return bands


def _wafer_ok(m) -> bool:
    chip = m.chip
    return chip.noc is not None and chip.noc.topology in ("mesh", "torus") and chip.rows * chip.cols > 1 \
        and os.environ.get("ARCHC_EVENT_TILES", "1") != "0"


def _block_size(tiles_fn, budget: int, max_s: int) -> int:
    """The smallest s (1, 2, 4, ...) whose estimated task count tiles_fn(s) is within budget."""
    s = 1
    while s < max_s and tiles_fn(s) > budget:
        s *= 2
    return s


# R's columns compute, memory, sram, region and noc, for the event kernel's spatial loops
_LOCAL_COLS = np.array([RC[k] for k in ("compute", "memory", "sram", "region", "noc")], np.int64)


class _Builder:
    def __init__(self, plan: Plan, R: np.ndarray):
        self.plan, self.R, self.T = plan, R, plan.tasks
        self.exchanges: list[int] = []  # the gradient exchange rows (build_stages)
        run = plan.run
        self.run, self.mp, self.m = run, run.mapping, run.machine
        self.g = ev.TaskGraph()
        self.net = _Net(self.g, self.m)
        self.names = _Labels()       # per event task
        self.res_names = _Labels()
        self.wafer = None              # the tile grid (_Wafer), made by the tile-granular lowerings
        self._coll_cache: dict = {}
        self._private: set = set()  # collectives no other shares a link with (find_private)
        self.collapsed = 0  # op collectives simulated as one delay
        self.streaming = self.mp.strategy == "weight_streaming"
        self.mem_links: dict[int, int] = {}
        self.instances = _Rows()  # (row, stage, first compute, last task, flow or -1)
        self.extents = _Rows()  # (row, first task, last task) of jobs made of many tasks
        self.max_tasks = MAX_TASKS
        self.tile_notes: list[str] = []
        self.adjust = _Adjust()  # (row, seconds) added to a row's event time

    @functools.cached_property
    def launch(self) -> np.ndarray:
        """Per row: the launch time of its kernels (the tile lowerings)."""
        return self.m.chip.launch_s * self.plan.table[:, COL["launches"]]

    @functools.cached_property
    def noc_bytes(self) -> np.ndarray:
        """Per row: its NoC input bytes (the tile lowerings)."""
        return np.ascontiguousarray(self.plan.table[:, COL["noc_bytes"]])

    @functools.cached_property
    def rcol(self) -> dict[str, list[float]]:
        """The columns of R as Python floats: the same values, read without NumPy's per-item cost."""
        return {name: self.R[:, k].tolist() for name, k in RC.items()}

    # -- tasks
    def _check_size(self, more: int = 0) -> None:
        """The graph's tasks named so far, and `more` about to be added, within max_tasks."""
        if len(self.names) + more > self.max_tasks:
            raise EventLevelError(f"the event graph of run '{self.run.name}' exceeds {self.max_tasks} tasks; "
                                  f"simulate a smaller instance (--set)")

    def _name(self, tid: int, name: str) -> int:
        assert tid == len(self.names)
        self.names.append(name)
        self._check_size()
        return tid

    def compute(self, dur, res, after, name):
        return self._name(self.g.add_compute(max(dur, 0.0), res, after=[a for a in after if a is not None]), name)

    def barrier(self, after, name):
        return self._name(self.g.add_delay(0.0, after=[a for a in after if a is not None]), name)

    def resource(self, name):
        self.res_names.append(name)
        return self.g.add_resource()

    # -- collectives
    def _key(self, kind, p, stride, stage):
        return kind, int(round(p)), max(1, int(round(stride))), stage

    def _links(self, key) -> set:
        """(level, member) of every link the collective `key` and its concurrent groups use."""
        kind, p, stride, stage = key
        out = set()
        for b in self._groups(kind, p, stride, stage):
            out |= self.net.links_of(kind, p, stride, b)
        return out

    def find_private(self, keys) -> None:
        """Of the collectives `keys` (every one the run emits), those whose links no other
        uses: an op's collective there (one at a time on its stage: the stage's ops are a
        chain) can never be contended, and is simulated as one delay of its uncontended time
        (collective(), private) instead of its flows; the flows of the rest are simulated."""
        links = {k: self._links(k) for k in set(keys)}
        used: dict = {}
        for k, ls in links.items():
            for x in ls:
                used[x] = used.get(x, 0) + 1
        self._private = {k for k, ls in links.items() if all(used[x] == 1 for x in ls)}

    def collective(self, kind, nbytes, p, stride, stage, count, after, name, chained=False):
        """Flows of one collective (and its concurrent sibling groups); returns the last barrier.
        `chained`: one at a time on its stage (an op's own collective): if no other collective
        shares its links (find_private) it is one delay of the time its flows would take
        alone: per step, the latency and the bytes of the most loaded link's flows."""
        p, stride = int(round(p)), max(1, int(round(stride)))
        if kind == Collective.NONE or p <= 1 or nbytes <= 0 or not self.net.fanout:
            return after
        key = (kind, p, stride, stage)
        steps = self._coll_cache.get(key)
        if steps is None:
            steps = self._coll_cache[key] = self.net.steps(kind, p, stride, self._groups(kind, p, stride, stage))
        if chained and key in self._private:
            t = 0.0
            for factor, lat, ptr, links, bw in steps:  # factor: one for all flows, or one per flow
                w = np.repeat(np.broadcast_to(np.asarray(factor, np.float64), (ptr.size - 1,)), np.diff(ptr))
                load = float(np.bincount(links, weights=w).max()) if links.size else 0.0
                t += lat * count + load * nbytes * count / bw
            d = self._name(self.g.add_delay(t, after=[after] if after is not None else []), f"{name} (uncontended)")
            self.collapsed += 1
            return d
        last = after
        for k, (factor, lat, ptr, links, _) in enumerate(steps):
            ids = self.g.add_flows(nbytes * factor * count, ptr, links, latency=lat * count)
            for t in ids:
                self._name(int(t), f"{name} step {k + 1}")
            if last is not None:
                self.g.add_deps(np.full(ids.size, last, np.int32), ids)
            last = self._name(self.g.add_delay(0.0), f"{name} step {k + 1} done")
            self.g.add_deps(ids, np.full(ids.size, last, np.int32))
        return last

    def _groups(self, kind, p, stride, stage):
        """First chips of the groups emitted: the representative's (stage `stage`, tensor rank 0,
        replica 0) and every concurrent group of the stage sharing a link with it."""
        per_stage = self.mp.tp * self.mp.dp
        if kind == Collective.P2P:  # stage `stage` sends to stage + 1: every chip of the stage
            lo = stage * per_stage
            bases = list(range(lo, lo + per_stage))
            rep = lo
        else:
            span = p * stride
            lo, hi = (stage * per_stage, (stage + 1) * per_stage) if span <= per_stage else (0, max(self.mp.chips, span))
            rep = lo
            bases = [b for b in range(lo, hi) if (b - lo) % span < stride and b + (p - 1) * stride < hi]
        mine = self.net.links_of(kind, p, stride, rep)
        return [b for b in bases if b == rep or self.net.links_of(kind, p, stride, b) & mine]

    # -- ops
    def local(self, i):
        R, T = self.R, self.T
        if self.streaming:
            t = max(R[i, RC["compute"]], R[i, RC["sram"]], R[i, RC["noc"]]) + self.m.chip.launch_s * T[i].launches
        else:
            t = R[i, RC["time"]] - R[i, RC["link"]]
        return t * T[i].count

    def op(self, i, s, res, after, tag, prev2=None, scale=1.0):
        """One task-table row on stage s: (memory flow,) compute, (collective). Returns (first compute, last)."""
        T = self.T
        if self.streaming and self.wafer is not None and T[i].mflops > 0:
            return self._stream_tiles(i, s, after, tag, prev2, scale)
        label = self.plan.labels[i]
        deps = list(after)
        flow = -1
        if self.streaming and T[i].mem_bytes > 0:
            link = self._mem_link(s)
            fdeps = [x for x in (self._mem_prev.get(s), prev2) if x is not None]
            flow = self._name(self.g.add_flow(T[i].mem_bytes * T[i].count * scale, [link], after=fdeps),
                              f"{label} {tag} weights")
            self._mem_prev[s] = flow
            deps.append(flow)
        t = self.local(i) * scale
        x = self.R[i, RC["noc"]] * T[i].count * scale if self.m.chip.bsp and not self.streaming else 0.0
        if x > 0:  # a superstep: compute and sync, then the exchange (the chip busy throughout)
            c = self.compute(t - x, res, deps, f"{label} {tag} compute + sync")
            end = self.compute(x, res, [c], f"{label} {tag} exchange")
        else:
            c = end = self.compute(t, res, deps, f"{label} {tag}")
        last = self.collective(T[i].comm_kind, T[i].comm_bytes, T[i].comm_p,
                               T[i].comm_stride, s, T[i].count * scale, end, f"{label} {tag} collective",
                               chained=True)
        self.instances.append((i, s, c, last, flow))
        return c, last

    def seq(self, rows, s, res, after, tag, scale=None, pieces=None, each=None):
        """The rows in order on stage s, the first after the tasks `after`; returns the last task.
        Weight streaming: a row of `count` repeats is cut into up to 64 pieces so that the
        weights of one repeat stream in while the one before computes. `pieces`: the
        [(row, fraction of the row)] to run instead; `each(k, task)`: called after piece k."""
        if pieces is None:
            pieces = []
            for i in rows:
                p = stream_pieces(self.T[i]) if self.streaming else 1
                pieces += [(i, 1.0 / p)] * p
        deps, last, computes = list(after), None, [None, None]
        if not pieces:
            return self.barrier(deps, f"{tag} (nothing to do)")
        for k, (i, f) in enumerate(pieces):
            c, last = self.op(i, s, res, deps, tag, prev2=computes[0],
                              scale=(scale(i) if scale is not None else 1.0) * f)
            deps, computes = [last], [computes[1], c]
            if each is not None:
                each(k, last)
        return last

    def bucketed_backward(self, rows, s, res, after, tag, scale, ar, share=1.0, bucket=None):
        """The last micro-batch's backward (of a chunk, interleaved) under overlap_dp: its rows
        piece by piece in the order the gradients complete (buckets.backward_pieces), each
        gradient bucket's all-reduce (its launch, then its flows) started once its last piece
        and the bucket before (`bucket`: the chunk before's last) have ended. `share`: the part
        of the stage's gradients these rows complete. Returns (the last piece, the last
        bucket's end or None)."""
        T = self.T
        pieces = backward_pieces(self.plan, rows, scale)
        closings = bucket_closings(self.plan, pieces, T[ar].comm_bytes * share, self.mp.bucket, scale)
        n = 0

        def each(k, last):
            nonlocal bucket, n
            if k in closings:
                n += 1
                go = self._name(self.g.add_delay(self.local(ar), after=[x for x in (last, bucket) if x is not None]),
                                f"gradient bucket {n} of {tag} stage {s} launch")
                bucket = self.collective(Collective.ALLREDUCE, closings[k], T[ar].comm_p, T[ar].comm_stride, s, 1.0, go,
                                         f"gradient bucket {n} of {tag} stage {s}")
                self.extents.append((ar, go, bucket))
        last = self.seq(rows, s, res, after, tag, scale, pieces, each)
        return last, bucket

    # -- schedules
    def build_stages(self):
        T, mp = self.T, self.mp
        pp = mp.pp
        train = self.run.mode == "train"
        self._mem_prev: dict[int, int] = {}
        phase = [t.phase for t in T]
        n = len(T)

        xfer = self.plan.first(Phase.PIPELINE_TRANSFER)
        ar = self.plan.first(Phase.GRADIENT_EXCHANGE)
        # every gradient exchange row: the first (all the replicas' gradients; overlap_dp's
        # buckets), then any over fewer replicas (a mixture of experts' expert gradients)
        self.exchanges = [i for i in range(n) if phase[i] == Phase.GRADIENT_EXCHANGE]
        opt = self.plan.first(Phase.OPTIMIZER)
        keys = []
        for s in range(pp):
            keys += [self._key(T[i].comm_kind, T[i].comm_p, T[i].comm_stride, s)
                     for i in range(n) if phase[i].per_micro_batch and T[i].on_stage(s, pp) and T[i].comm_kind != Collective.NONE
                     and T[i].comm_p > 1.5 and T[i].comm_bytes > 0]
            if xfer is not None and s < pp - 1:
                keys.append(self._key(Collective.P2P, 2, T[xfer].comm_stride, s))
            for x in self.exchanges if train else ():
                if T[x].comm_p > 1.5:
                    keys.append(self._key(Collective.ALLREDUCE, T[x].comm_p, T[x].comm_stride, s))
        stride = T[xfer].comm_stride if xfer is not None else 1.0
        sched = self.plan.schedule  # codegen/schedule.py: each stage's passes, its chunks
        v = sched.chunks
        if v > 1 and xfer is not None:
            keys.append(self._key(Collective.P2P, 2, (pp - 1) * stride, 0))  # the hand-over between the ends
        if self.net.fanout:
            self.find_private(keys)
        last_v = v * pp - 1
        f_in, b_in = {}, {}

        def arrive(d, what, i, s_, c):
            if (i, s_, c) not in d:
                d[(i, s_, c)] = self.barrier([], f"{what} {i} chunk {c} arrives at stage {s_}")
            return d[(i, s_, c)]

        def arrive_ref(forward, i, s_, c):
            return arrive(f_in if forward else b_in, "forward" if forward else "backward", i, s_, c)

        def send(x_after, i, s_, c, forward, arrive):
            """The hand-over of micro-batch i after chunk c on stage s_ to the next virtual stage
            (forward) or the one before (backward); returns nothing, wires the arrival."""
            nbytes = T[xfer].comm_bytes
            if forward:
                dst = (s_ + 1, c) if s_ < pp - 1 else (0, c + 1)
            else:
                dst = (s_ - 1, c) if s_ > 0 else (pp - 1, c - 1)
            if (s_ == pp - 1 and forward) or (s_ == 0 and not forward):  # the wrap between the ends
                x = self.collective(Collective.P2P, nbytes, 2, (pp - 1) * stride, 0, 1.0, x_after,
                                    f"send {'forward' if forward else 'backward'} mb {i} chunk {c} "
                                    f"stage {s_}->{dst[0]}")
            else:
                lo = s_ if forward else s_ - 1  # the groups of the lower stage of the pair
                x = self.collective(Collective.P2P, nbytes, 2, stride, lo, 1.0, x_after,
                                    f"send {'forward' if forward else 'backward'} mb {i} stage {s_}->{dst[0]}")
            self.g.add_dep(x, arrive(forward, i, *dst))
        self.stage_res, self.stage_end, self.last_f, self.last_b, self.ar_span = [], [], [], [], []
        bulk = PIPELINE_BULK
        if bulk:
            self._arrivals = {}  # (forward, stage) -> int64[v, m]: the arrival barriers made so far (-1: none)
        for s in range(pp):
            res = self.resource(f"stage {s} (chip {s * mp.tp * mp.dp})")
            self.stage_res.append(res)

            def rows(c, backward, s=s):
                return sched.rows(T, s, c, backward)

            def scale(i):
                return sched.scale(T[i])
            order = [("B" if x.backward else "F", x.micro_batch, x.chunk) for x in sched.programs[s]]
            # overlap_dp: each chunk's last backward runs piece by piece and starts the buckets
            # of the gradients it completes (its share of the stage's weights)
            last_b_at, share = {}, {}
            if train and ar is not None and mp.overlap_dp:
                last_b_at = {c: k for k, (what, _, c) in enumerate(order) if what == "B"}
                held = {c: weights_of(self.plan, rows(c, True), scale) for c in last_b_at}
                share = {c: x / (sum(held.values()) or 1.0) for c, x in held.items()}

            def one_pass(what, i, c, prev, arrive, bucketed=False, buckets_end=None, s=s, res=res, rows=rows,
                         scale=scale, share=share):
                """Pass (what, i, c) of stage s after the task `prev`: its tasks, its hand-over to
                the next virtual stage; returns (its last task, the last bucket's end)."""
                vs = c * pp + s
                tag = f"mb {i}" + (f" chunk {c}" if v > 1 else "")
                if what == "F":
                    dep = [prev, arrive(True, i, s, c)] if vs > 0 else [prev]
                    prev = self.seq(rows(c, False), s, res, dep, f"forward {tag}", scale)
                    if vs < last_v and xfer is not None:
                        send(prev, i, s, c, True, arrive)
                else:
                    dep = [prev, arrive(False, i, s, c)] if vs < last_v else [prev]
                    if bucketed:
                        prev, buckets_end = self.bucketed_backward(rows(c, True), s, res, dep, f"backward {tag}",
                                                                   scale, ar, share[c], buckets_end)
                    else:
                        prev = self.seq(rows(c, True), s, res, dep, f"backward {tag}", scale)
                    if vs > 0 and xfer is not None:
                        send(prev, i, s, c, False, arrive)
                return prev, buckets_end
            if bulk:
                prev, last_f, last_b, buckets_end = self._passes_bulk(s, order, last_b_at, one_pass, v, last_v)
            else:
                prev, last_f, last_b, buckets_end = None, None, None, None
                for at, (what, i, c) in enumerate(order):
                    prev, buckets_end = one_pass(what, i, c, prev, arrive_ref, last_b_at.get(c) == at, buckets_end)
                    if what == "F":
                        last_f = prev
                    else:
                        last_b = prev
            end = prev
            span = None
            if train and ar is not None:
                if buckets_end is not None:  # overlap_dp: the buckets ran during the last backward
                    a = buckets_end
                else:  # after the last backward: its fixed cost (a launch), then the flows
                    go = self._name(self.g.add_delay(self.local(ar), after=[prev]), f"gradient all-reduce stage {s} launch")
                    a = self.collective(Collective.ALLREDUCE, T[ar].comm_bytes, T[ar].comm_p, T[ar].comm_stride,
                                        s, 1.0, go, f"gradient all-reduce stage {s}")
                self.instances.append((ar, s, None, a, -1))
                if buckets_end is None:
                    self.extents.append((ar, go, a))
                for x in self.exchanges[1:]:  # in turn, after the first
                    go = self._name(self.g.add_delay(self.local(x), after=[a]), f"{T[x].label} stage {s} launch")
                    a = self.collective(Collective.ALLREDUCE, T[x].comm_bytes, T[x].comm_p, T[x].comm_stride,
                                        s, 1.0, go, f"{T[x].label} stage {s}")
                    self.instances.append((x, s, None, a, -1))
                    self.extents.append((x, go, a))
                span = (prev, a)
                end = self.barrier([prev, a], f"gradients ready stage {s}")
            if train and opt is not None:
                end = self.compute(self.local(opt), res, [end], f"optimizer step stage {s}")
                self.instances.append((opt, s, end, end, -1))
            self.stage_end.append(end)
            self.last_f.append(last_f)
            self.last_b.append(last_b if train else last_f)
            self.ar_span.append(span)

    # -- the pipeline schedule in bulk
    def _record(self, s, what, c, one_pass, templates) -> dict:
        """Pass (what, c) of stage s built once by one_pass (the reference code) into a scratch
        graph, for any micro-batch: its tasks, dependencies (in both of TaskGraph's orders), names
        (NUL for the micro-batch), instances, with the tasks outside the pass as placeholders
        (_PREV: the stage's task before, _ARR: its arrival barrier if another stage makes it,
        _MEM: the stage's memory flow before, _DST: the next virtual stage's arrival barrier if
        that stage made it). Links and resources are made in the real graph, in the order the
        reference makes them (on first use; passes are recorded where they first occur)."""
        pp = self.mp.pp
        real = (self.g, self.names, self.instances, self.extents, self.collapsed, self._mem_prev.get(s))
        g = ev.TaskGraph()
        names = _Labels()
        for _ in range(4):
            g.add_delay(0.0)
            names.append("")
        self.g, self.names, self.instances, self.extents, self.collapsed = g, names, _Rows(), _Rows(), 0
        self._mem_prev[s] = _MEM
        made = {"arr": -1, "dst": -1, "dst_at": None}

        def arrive(forward, i, s_, c_):
            # the stage built first makes an arrival barrier: the sender (forward to stages > 0,
            # backward to the last stage: its sender, stage 0, comes first) or the receiver
            word = "forward" if forward else "backward"
            if s_ == s:  # this pass's own arrival
                if (forward and s == 0) or (not forward and s < pp - 1):
                    made["arr"] = self.barrier([], f"{word} {i} chunk {c_} arrives at stage {s_}")
                    return made["arr"]
                return _ARR
            made["dst_at"] = (forward, s_, c_)
            if (forward and s_ > 0) or (not forward and s_ == pp - 1):
                made["dst"] = self.barrier([], f"{word} {i} chunk {c_} arrives at stage {s_}")
                return made["dst"]
            return _DST
        try:
            last, _ = one_pass(what, _MicroBatch(), c, _PREV, arrive)
            mem_out = self._mem_prev.get(s)
            collapsed = self.collapsed
            inst = self.instances.arrays(5)
        finally:
            self.g, self.names, self.instances, self.extents, self.collapsed, mem = real
            if mem is None:
                self._mem_prev.pop(s, None)
            else:
                self._mem_prev[s] = mem
        g._flush()
        cols = [np.concatenate([ch[k] for ch in g._chunks]) for k in range(7)]
        n = g.n_tasks - 4
        rel = lambda x: np.where(np.asarray(x, np.int64) < 4, -1 - np.asarray(x, np.int64),  # noqa: E731
                                 np.asarray(x, np.int64) - 4)
        src = np.concatenate([d[0] for d in g._dep_chunks] + [np.zeros(0, np.int32)])
        dst = np.concatenate([d[1] for d in g._dep_chunks] + [np.zeros(0, np.int32)])
        row, stage, c0, lst, flow = inst
        k = len(templates)
        t = dict(index=k, n=n, kind=cols[0][4:], dur=cols[1][4:], res=cols[2][4:], bytes=cols[3][4:],
                 lat=cols[4][4:], rlen=cols[5][4:], links=cols[6],
                 dep=(rel(src), rel(dst)), late=(rel(g._dep_src), rel(g._dep_dst)),
                 names=_Shifted(names, 4), last=int(last) - 4,
                 mem=int(mem_out) - 4 if mem_out is not None and mem_out >= 4 else -1,
                 arr=made["arr"] - 4 if made["arr"] >= 0 else -1, dst=made["dst"] - 4 if made["dst"] >= 0 else -1,
                 dst_at=made["dst_at"], own=(what == "F", s, c), collapsed=collapsed,
                 inst=(row, stage, np.where(c0 >= 4, c0 - 4, -1), lst - 4, np.where(flow >= 4, flow - 4, -1)))
        assert t["last"] >= 0 and np.all(lst >= 4) and (mem_out is None or mem_out == _MEM or mem_out >= 4)
        templates.append(t)
        return t

    def _arrivals_of(self, forward, s):
        a = self._arrivals.get((forward, s))
        if a is None:
            a = self._arrivals[(forward, s)] = np.full((self.plan.schedule.chunks, self.plan.micro_batches), -1,
                                                       np.int64)
        return a

    def _passes_bulk(self, s, order, last_b_at, one_pass, v, last_v):
        """Stage s's passes `order` as build_stages' reference loop makes them, task for task:
        the first pass and overlap_dp's bucketed backwards by one_pass itself, the others in
        runs between them, each kind of pass (forward or backward of a chunk) recorded once
        (_record) and its tasks, dependencies, names and instances copied with offset ids
        for every micro-batch (_emit). Returns (the last task, the last forward's, the last backward's,
        the last bucket's end)."""
        n = len(order)
        if n == 0:
            return None, None, None, None

        def arrive(forward, i, s_, c):  # the reference's arrival barriers, in arrays
            a = self._arrivals_of(forward, s_)
            if a[c, i] < 0:
                a[c, i] = self.barrier([], f"{'forward' if forward else 'backward'} {i} chunk {c} arrives at stage {s_}")
            return int(a[c, i])
        back = np.fromiter((w == "B" for w, _, _ in order), bool, n)
        mb = np.fromiter((i for _, i, _ in order), np.int64, n)
        ch = np.fromiter((c for _, _, c in order), np.int64, n)
        key = back * v + ch
        direct = sorted({0} | {k for k in last_b_at.values()})
        templates: list[dict] = []
        by_key: dict[int, dict] = {}
        prev = last_f = last_b = buckets_end = None
        cuts = direct + [n]
        for d, nxt in zip(direct, cuts[1:]):
            what, i, c = order[d]
            prev, buckets_end = one_pass(what, i, c, prev, arrive, what == "B" and last_b_at.get(c) == d, buckets_end)
            if what == "F":
                last_f = prev
            else:
                last_b = prev
            if nxt > d + 1:
                lo, hi = d + 1, nxt
                ks = key[lo:hi]
                uniq, first = np.unique(ks, return_index=True)
                for kk in uniq[np.argsort(first)]:  # recorded in the order they first occur
                    if int(kk) not in by_key:
                        what_k = "B" if kk >= v else "F"
                        by_key[int(kk)] = self._record(s, what_k, int(kk) % v, one_pass, templates)
                prev, lf, lb = self._emit(s, ks, by_key, mb[lo:hi], back[lo:hi], prev)
                last_f = lf if lf is not None else last_f
                last_b = lb if lb is not None else last_b
        return prev, last_f, last_b, buckets_end

    def _emit(self, s, keys, by_key, mb, back, prev):
        """The passes of kinds `keys` (by_key: each kind's recording) for micro-batches `mb`,
        after the task `prev`: added to the graph in bulk (the event kernel's tile and
        replicate copy the recordings' columns, shifting task ids). Returns (last task, last
        forward's, last backward's)."""
        J = keys.size
        uniq, kk = np.unique(keys, return_inverse=True)
        kk = kk.reshape(-1).astype(np.int64)
        order = [by_key[int(k)] for k in uniq]  # the library of this run of passes
        mod = ev.kernel()

        def lib(f, dt):
            """A column of the recordings, one after the other, and where each one's starts."""
            parts = [np.asarray(f(t), dt) for t in order]
            ptr = np.zeros(len(order) + 1, np.int64)
            np.cumsum([x.size for x in parts], out=ptr[1:])
            return np.concatenate(parts), ptr

        def tile(f, dt, offset=None, outside=None):
            col, ptr = lib(f, dt)
            out = np.empty(int(np.diff(ptr)[kk].sum()), dt)
            if offset is None:
                mod.tile(col, ptr, kk, out)
            else:
                mod.replicate(col, ptr, kk, offset, outside, out)
            return out
        n_j = np.array([t["n"] for t in order], np.int64)[kk]
        seg_rel = np.zeros(J, np.int64)
        np.cumsum(n_j[:-1], out=seg_rel[1:])
        total = int(n_j.sum())
        base = self.g.n_tasks
        self._check_size(total)
        seg = base + seg_rel
        first = self.g.add_tasks(tile(lambda t: t["kind"], np.int8), tile(lambda t: t["dur"], np.float64),
                                 tile(lambda t: t["res"], np.int32), tile(lambda t: t["bytes"], np.float64),
                                 tile(lambda t: t["lat"], np.float64), tile(lambda t: t["rlen"], np.int64),
                                 tile(lambda t: t["links"], np.int32))
        assert first == base
        # the outside tasks of each pass: the task before it, its arrival, the memory flow before, its destination
        ext = np.full((J, 4), -1, np.int64)
        last_rel = np.array([t["last"] for t in order], np.int64)[kk]
        lasts = seg + last_rel
        ext[0, _PREV] = -1 if prev is None else prev
        ext[1:, _PREV] = lasts[:-1]
        for k, t in enumerate(order):
            js = np.flatnonzero(kk == k)
            fwd, st, c = t["own"]
            if t["arr"] < 0:
                ext[js, _ARR] = self._arrivals_of(fwd, st)[c, mb[js]]
            else:
                self._arrivals_of(fwd, st)[c, mb[js]] = seg[js] + t["arr"]
            if t["dst_at"] is not None:
                dfwd, ds, dc = t["dst_at"]
                if t["dst"] < 0:
                    ext[js, _DST] = self._arrivals_of(dfwd, ds)[dc, mb[js]]
                else:
                    self._arrivals_of(dfwd, ds)[dc, mb[js]] = seg[js] + t["dst"]
            # every outside task a pass depends on exists (the arrivals were made by the stages
            # before), but the memory flow before, which may not yet (that dependency is not made)
            used = np.unique(np.concatenate([t["dep"][0], t["dep"][1], t["late"][0], t["late"][1]]))
            for code in used[used < 0]:
                assert -1 - code == _MEM or np.all(ext[js, -1 - code] >= 0), (t["own"], code)
        mem_rel = np.array([t["mem"] for t in order], np.int64)[kk]
        mem0 = self._mem_prev.get(s)
        outs = np.where(mem_rel >= 0, seg + mem_rel, -1)
        at = np.maximum.accumulate(np.where(outs >= 0, np.arange(J), -1))
        after_j = np.where(at >= 0, outs[np.maximum(at, 0)], -1 if mem0 is None else mem0)
        ext[0, _MEM] = -1 if mem0 is None else mem0
        ext[1:, _MEM] = after_j[:-1]
        if after_j[-1] >= 0:
            self._mem_prev[s] = int(after_j[-1])
        for which, add in (("dep", self.g.add_deps), ("late", self.g.add_deps_late)):
            src = tile(lambda t: t[which][0], np.int64, seg, ext)
            dst = tile(lambda t: t[which][1], np.int64, seg, ext)
            if src.size:
                missing = np.flatnonzero((src < 0) | (dst < 0))  # on the memory flow before: none yet
                if missing.size:
                    src, dst = np.delete(src, missing), np.delete(dst, missing)
                add(src, dst)
        # instances, with offset ids (-1 stays -1: no compute, no memory flow)
        none = np.full((J, 1), -1, np.int64)
        inst = [tile(lambda t, k=k: t["inst"][k], np.int64) for k in (0, 1)]
        inst += [tile(lambda t, k=k: t["inst"][k], np.int64, seg, none) for k in (2, 3, 4)]
        self.instances.add_block(inst)
        self.collapsed += int(np.array([t["collapsed"] for t in order], np.int64)[kk].sum())
        # names: the recording's, the micro-batch put in
        tnames = [t["names"] for t in order]

        def name(k, seg_rel=seg_rel, kk=kk, mb=mb, tnames=tnames):
            j = int(np.searchsorted(seg_rel, k, side="right")) - 1
            return tnames[kk[j]][k - seg_rel[j]].replace("\0", str(int(mb[j])))
        self.names.add_range(total, name)
        lf = lasts[np.flatnonzero(~back)[-1]] if np.any(~back) else None
        lb = lasts[np.flatnonzero(back)[-1]] if np.any(back) else None
        return int(lasts[-1]), (None if lf is None else int(lf)), (None if lb is None else int(lb))

    def _spatial_link(self) -> tuple:
        """The pipeline-transfer task of a spatial run, the link between its chips (bandwidth
        chosen so the analytic transfer time holds) and that link's latency."""
        T, R = self.plan.tasks, self.R
        xfer = self.plan.first(Phase.PIPELINE_TRANSFER)
        if xfer is None or not self.net.fanout:
            return xfer, None, 0.0
        pl = collectives.spans(self.net.spec, Collective.P2P, 2, 1)
        lat_s = self.net.lat[pl[0][0]] if pl else 0.0
        bw = T[xfer].comm_bytes / max(R[xfer, RC["link"]] - lat_s, 1e-30)
        return xfer, self.net.extra_link(bw, "chip-to-chip (spatial pipeline)"), lat_s

    def _to_next_chip(self, xfer, xlink, lat_s, prev, j):
        """Sample j's activations sent to the next chip of a spatial pipeline after `prev`
        (nothing to send on the last chip or a single one); returns the task the sample ends with."""
        if xlink is None:
            return prev
        cnt = self.T[xfer].count
        f = self._name(self.g.add_flow(self.T[xfer].comm_bytes * cnt, [xlink], latency=lat_s * cnt,
                                       after=[prev]), f"chip-to-chip sample {j}")
        self.instances.append((xfer, 0, None, f, f))
        return f

    def _spatial_optimizer(self, ends) -> None:
        """A spatial training step's optimizer step, after every sample has ended."""
        opt = self.plan.first(Phase.OPTIMIZER)
        if opt is not None and self.run.mode == "train":
            o = self.compute(self.R[opt, RC["time"]], self.resource("optimizer"), ends, "optimizer step")
            self.instances.append((opt, 0, o, o, -1))

    def build_spatial(self):
        T, n = self.T, len(self.T)
        m = self.plan.micro_batches
        phase = [t.phase for t in T]
        rows = [i for i in range(n) if phase[i].per_micro_batch and phase[i] != Phase.PIPELINE_TRANSFER]
        fwd = [i for i in rows if phase[i] == Phase.FORWARD]
        bwd = [i for i in rows if phase[i] != Phase.FORWARD]
        owner, row_regs = regions(self.T, fwd, bwd)
        total, seen = Counter(owner), Counter()
        res = []
        for i in owner:
            res.append(self.resource(f"region of {self.plan.labels[i]}" + (f" [{seen[i]}]" if total[i] > 1 else "")))
            seen[i] += 1
        row_res = {i: [res[r] for r in regs] for i, regs in row_regs.items()}
        xfer, xlink, lat_s = self._spatial_link()
        order = visits(self.plan, fwd, False) + visits(self.plan, bwd, True)
        ends = []
        feed = None  # a sample enters once the one before has left the first region
        for j in range(m):
            prev, first = feed, None
            for i, k in order:
                regs = row_res[i]
                prev = self.compute(self.R[i, RC["time"]] * T[i].count / len(regs), regs[k], [prev],
                                    f"{self.plan.labels[i]} sample {j}")
                first = prev if first is None else first
                self.instances.append((i, 0, prev, prev, -1))
            feed = first
            ends.append(self._to_next_chip(xfer, xlink, lat_s, prev, j))
        self._spatial_optimizer(ends)

    # -- tile-granular lowerings (a mesh chip)
    def _range(self, ids, fn):
        """Names for the consecutive task ids `ids` (fn(k): the name of the k-th)."""
        if ids.size == 0:
            return
        assert int(ids[0]) == len(self.names)
        self.names.add_range(int(ids.size), fn)
        self._check_size()

    def _tile_local(self, i, scale=1.0):
        """An op's time on each tile of its region without the NoC part (which is flows here);
        `scale`: the analytic region size over the tiles the op got."""
        c = self.rcol
        return max(c["compute"][i] * scale, c["memory"][i], c["sram"][i] * scale) + \
            self.m.chip.launch_s * self.T[i].launches

    def _visit_times(self, i, scale, followers, w) -> tuple[float, float]:
        """A region visit's compute time per block (the op of row i, its followers [(row, scale)]
        folded in after it) and its tail (the followers' reduce-and-broadcast along a row of w
        blocks, if they reduce); the per-op times (self.adjust) give each follower its share."""
        local, tail = self._tile_local(i, scale), 0.0
        for f, fs in followers:
            lf = self._tile_local(f, fs)
            rf = 2.0 * self.wafer.hop * (w - 1) if self.rcol["noc"][f] > 0 else 0.0
            local += lf
            tail += rf
            self.adjust.append((f, lf + rf))
            self.adjust.append((i, -(lf + rf)))
        return local, tail

    def _region_op(self, i, rect, after, label, scale=1.0, followers=(), direction=1, routed=False):
        """One visit of a sample to a region rect = (y, x, h, w) of blocks: the op of row i and
        the ops `followers` [(row, scale)] that run in place after it (elementwise ops, norms,
        softmax), folded into one compute task per block (they run back to back on the same
        tiles). Returns (start, end). Every block computes the ops' local times; the op's input
        enters the region over its west boundary, row by row, and spreads east as a wavefront
        (the flow into block k of a row carries the shares of blocks k..w-1, its bytes moving
        once the header arrives: (k + 1) hops), and a block starts computing when the
        wavefront reaches it. The partial results reduce back west along each row (a chain of
        one-hop flows of one block's share). A follower that reduces across the region (norm,
        softmax, reduction, loss) adds a reduce-and-broadcast back along the row: 2 hops per
        block of the row's width, after the chain. The per-op times (self.adjust) split the
        visit between the ops: a follower gets its local time and its reduce time.
        direction -1: the region runs east to west (odd bands of a serpentine placement), its
        input entering over its east boundary. routed: the input has been carried to the
        region's first column already (_handover), no boundary link to cross."""
        W, T, g = self.wafer, self.T, self.g
        y, x, h, w = rect
        hs = 1 if W.bands is not None else h  # the rows simulated: a band's top row stands for all
        n = hs * w
        S = self._name(g.add_delay(0.0, after=[a for a in after if a is not None]), f"{label} start")
        a = np.repeat(np.arange(y, y + hs, dtype=np.int64), w)
        k = np.tile(np.arange(w, dtype=np.int64), hs)  # blocks from the entry side
        col = x + k if direction > 0 else x + w - 1 - k
        res = np.asarray(W.tile(a, col)).astype(np.int32)

        tile_name, input_name, reduce_name = _visit_names(label, y, x, w, direction)
        local, tail = self._visit_times(i, scale, followers, w)
        nbytes = T[i].noc_bytes
        comp = g.add_computes(local + W.hop * (k + 1), res)
        self._range(comp, tile_name)
        g.add_deps(np.full(n, S, np.int32), comp)
        inflow = None
        if nbytes > 0:
            brow = nbytes / h
            if direction > 0:
                links = np.where(k == 0, (W.east(a, x - 1) if x > 0 else W.edge(a)), W.east(a, col - 1))
            else:
                links = np.where(k == 0, (W.west(a, x + w - 1) if x + w < W.cols else W.edge(a)), W.west(a, col))
            has = np.ones(n, bool) if not routed else k > 0
            ptr = np.concatenate([[0], np.cumsum(has)]).astype(np.int64)
            inflow = g.add_flows(brow * (w - k) / w, ptr, links[has].astype(np.int32), latency=W.hop * (k + 1))
            self._range(inflow, input_name)
            g.add_deps(np.full(n, S, np.int32), inflow)
        chain = None
        if w > 1:
            m_ = k >= 1
            ca, ck = a[m_], k[m_]
            cc = col[m_]
            chain = g.add_flows(nbytes / (h * w), np.arange(ca.size + 1, dtype=np.int64),
                                (W.west(ca, cc - 1) if direction > 0 else W.east(ca, cc)).astype(np.int32),
                                latency=W.hop)
            self._range(chain, reduce_name)
            g.add_deps(comp[m_], chain)
            if inflow is not None:
                g.add_deps(inflow[m_], chain)
            nxt = np.flatnonzero(ck <= w - 2)  # chain (a, k + 1) before chain (a, k)
            g.add_deps(chain[nxt + 1], chain[nxt])
        E = self._name(g.add_delay(tail), f"{label} done")
        if chain is not None:  # the row heads: block 0's compute and input, the chain's last flow
            first = k == 0
            g.add_deps(comp[first], E)
            if inflow is not None:
                g.add_deps(inflow[first], E)
            g.add_deps(chain[np.arange(hs) * (w - 1)], E)
        else:
            g.add_deps(comp, E)
            if inflow is not None:
                g.add_deps(inflow, E)
        return S, E

    def _region_ops(self, op, reg, routed, fop, fvisit, regs, prev):
        """Consecutive visits of a sample to regions, visit v as _region_op(op[v], the rect of
        region reg[v], [prev], label, its scale, its followers, its direction, routed[v]) would
        make it, the first after `prev` and each after the one before: their times
        (_visit_times), tasks and dependencies worked out by the event kernel's region_visits in
        one call, in the same order (REGION_OP_EACH makes them one call each;
        tests/test_wafer_scale.py compares the graphs). op, reg, routed: arrays, one entry per
        visit; fop, fvisit: the followers' op rows, in order, and the visit each follows;
        regs: per region (y, x, h, w, tiles given, direction). Returns (starts,
        ends): each visit's start and end task."""
        W, g = self.wafer, self.g
        q = W.q if W.q is not None else np.arange(W.rows, dtype=np.int64)
        first = g.n_tasks
        assert first == len(self.names)
        kind, dur, res, nb, lat, rlen, rlinks, src, dst, S, E, adj_rows, adj = ev.kernel().region_visits(
            first, op, reg, routed, fop, fvisit, regs, W.bands is not None, self.R, _LOCAL_COLS, self.launch,
            self.noc_bytes, q, W.cols, W.res0, W.e0, W.w0, W.x0, W.hop)
        self.adjust.add(adj_rows, adj)
        g.add_made(kind, dur, res, nb, lat, rlen, rlinks, src, dst,
                   (np.concatenate([[prev], E[:-1]]), S) if prev is not None else (E[:-1], S[1:]))
        labels = self.plan.labels
        self.names.add_range(g.n_tasks - first, _VisitNames(lambda v: f"{labels[op[v]]} sample {SAMPLE}", op, reg,
                                                            S - first, regs, W.bands is not None, self.noc_bytes))
        assert len(self.names) == g.n_tasks
        self._check_size()
        return S, E

    def _carries(self, src, d_src, dst, d_dst, i) -> bool:
        """Whether _handover carries the input of row i from region src to region dst over
        the fabric (flows of their own): dst does not start where src ends in the same band,
        and the op has an input."""
        y0, x0, h0, w0 = src
        y1, x1, h1, w1 = dst
        exit_col = x0 + w0 - 1 if d_src > 0 else x0
        outside = x1 - 1 if d_dst > 0 else x1 + w1
        return not ((y0, h0) == (y1, h1) and exit_col == outside) and self.T[i].noc_bytes > 0

    def _handover(self, src, d_src, dst, d_dst, i, after, label):
        """The input of the op of row i carried from the region before, src = (y, x, h, w) of
        direction d_src, to region dst: nothing when dst's entry boundary borders src's exit
        side in the same band (the boundary link of _region_op carries it); otherwise one flow
        per row of dst from src's exit column (its row in proportion) to dst's first column,
        after `after`. A flow turns between the rows at its own column, spread evenly over
        the columns the two regions span (a compiler's static routes; one turning column
        would put every row's data on one column of links). Returns (the task the op waits
        for, whether the input was routed)."""
        W = self.wafer
        y0, x0, h0, w0 = src
        y1, x1, h1, w1 = dst
        exit_col = x0 + w0 - 1 if d_src > 0 else x0
        if not self._carries(src, d_src, dst, d_dst, i):
            return after, False
        nbytes = self.T[i].noc_bytes
        first = x1 if d_dst > 0 else x1 + w1 - 1
        lo, hi = min(x0, x1, exit_col, first), max(x0 + w0, x1 + w1, exit_col + 1, first + 1) - 1
        routes = [W.route(y0 + j * h0 // h1, exit_col, y1 + j, first, lo + (hi - lo) * (2 * j + 1) // (2 * h1))
                  for j in range(h1)]
        ptr = np.concatenate([[0], np.cumsum([r.size for r in routes])]).astype(np.int64)
        fl = self.g.add_flows(nbytes / h1, ptr, np.concatenate(routes).astype(np.int32),
                              latency=np.diff(ptr) * W.hop)  # the header's hops
        self._range(fl, lambda j, label=label, y=y1, c=first: f"{label} input carried to ({y + j}, {c})")
        if after is not None:
            self.g.add_deps(np.full(h1, after, np.int32), fl)
        done = self.barrier([], f"{label} input carried")
        self.g.add_deps(fl, np.full(h1, done, np.int32))
        return done, True

    def spatial_visits(self, chips: int) -> tuple:
        """The regions of a spatial run and a sample's visits to them (the event kernel's
        spatial_visits, as codegen/layout.py regions and visits lay them out, the per-region
        figures as build_spatial_tiles added them in Python; tests/test_wafer_scale.py checks
        both): per region its owner row, demand (the analytic size), compute / SRAM time at that
        size (its ops, colocated ones included), NoC input time at the analytic side (for the
        layout's choice) and chip (consecutive regions, split where the running demand crosses
        a chip's tiles); per visit its op row, instance, region and whether it joins the visit
        before (a forward visit of a colocated op in the same region: the groups of visits are
        the visits made, their joiners run in place after them)."""
        ops, codes = self.plan.run.graph.ops, {}
        fwd: list[int] = []
        bwd: list[int] = []
        info = []  # per row: instances, colocated, forward, op, layer code (-1: none)
        for i, t in enumerate(self.T):
            p = t.phase
            if p.per_micro_batch and p != Phase.PIPELINE_TRANSFER:  # the rows a sample passes
                (fwd if p == Phase.FORWARD else bwd).append(i)
                layer = ops[int(t.op)].layer
                info.append((max(1, int(round(t.count))), bool(t.colocate), p == Phase.FORWARD, int(t.op),
                             codes.setdefault(layer, len(codes)) if layer else -1))
            else:
                info.append((1, False, False, 0, -1))
        return ev.kernel().spatial_visits(np.array(fwd, np.int64), np.array(bwd, np.int64),
                                          np.array(info, np.int64).reshape(-1, 5), self.R, _LOCAL_COLS, self.launch,
                                          self.m.chip.noc.latency_s, chips)

    def build_spatial_tiles(self, rank: int = 0, samples: int | None = None, memo: dict | None = None) -> bool:
        """Spatial run on a mesh chip at tile granularity (blocks of s x s tiles if the graph
        would exceed TILE_TASKS): each op instance gets a rectangle of the grid (the analytic
        region size, in op order, packed left to right in bands), see _region_op. `rank`: the
        layout codegen/layout.py's estimate ranks rank-th best (False if there is none); `samples`: pass
        only that many samples (a trial of the layout; the block size stays the whole run's);
        `memo`: layouts (and a sample's tasks) already worked out for this plan, by block size
        and rank. Each band is simulated as its top row where that is exact (_bands)."""
        m = self.plan.micro_batches
        chip = self.m.chip
        chips = max(1, self.mp.pp)
        _, want_a, work, entry, chip_of, vi, _, vr, _, heads, fv, gof = self.spatial_visits(chips)
        want, work, entry = want_a.tolist(), work.tolist(), entry.tolist()

        memo = {} if memo is None else memo

        def lay_out(s, rank=0):
            if (s, rank) not in memo:
                memo[s, rank] = place(s, rank)
            return memo[s, rank]

        def place(s, rank):
            """The rank-th layout at block size s: ((regions, 4) array of (y, x, h, w), wrapped)."""
            nr = -(-chip.rows // s)
            rect_a, wrapped = np.zeros((len(want), 4), np.int64) if chips > 1 else None, False
            for c in range(chips):
                ids = np.flatnonzero(chip_of == c).tolist() if chips > 1 else None
                if ("ranked", s, c) not in memo:  # every rank's, worked out once
                    figures = (want, work, entry) if ids is None else ([x[r] for r in ids] for x in (want, work, entry))
                    memo["ranked", s, c] = layouts(
                        nr, -(-chip.cols // s), s, *figures, m, -(-self.mp.region_rows // s),
                        self.mp.placement == "serpentine",
                        chip.noc.latency_s * s if self.mp.placement != "adjacent" else None, ev.kernel())
                ranked, wr = memo["ranked", s, c]
                if rank >= len(ranked):
                    return None, wr
                wrapped |= wr
                got = ranked.array(rank) if isinstance(ranked, _Ranked) else \
                    np.array(ranked[rank], np.int64).reshape(-1, 4)
                if chips == 1:
                    return got.copy(), wrapped
                rect_a[ids] = got
                rect_a[ids, 0] += c * nr
            return rect_a, wrapped

        seq = vr[heads]  # the region of each visit made

        def graph_size(rects, wrapped, s):
            """Tasks of the whole run on `rects`, and the links of a placed layout's carried
            inputs (one flow a row, across the band and down), which count against the budget."""
            ry, _, rh, rw = rects.T
            q, r = seq[:-1], seq[1:]
            across = (q != r) & (ry[q] != ry[r])
            routed = 0 if self.mp.placement == "adjacent" or wrapped else m * int(
                (rh[r] * (-(-chip.cols // s) + rh[r]))[across].sum())
            return m * int((3 * rh * rw + 2)[seq].sum()), routed
        # the block size: the smallest s (1, 2, 4, ...) whose graph (laid out) fits TILE_TASKS
        s, top = 1, max(chip.rows, chip.cols)
        while True:
            rects, wrapped = lay_out(s)
            tasks, routed = graph_size(rects, wrapped, s)
            if tasks + routed <= TILE_TASKS or s >= top:
                break
            s *= 2
        if rank:
            rects, wrapped = lay_out(s, rank)
            if rects is None:
                return False
            tasks, _ = graph_size(rects, wrapped, s)
        self.max_tasks = max(MAX_TASKS, int(tasks * 1.05) + 100_000)
        # an op runs on its placed rectangle: its compute and SRAM time scale by the analytic
        # region size over the tiles it got
        # per region (regs): y, x, h, w, tiles given, direction (odd bands of a serpentine
        # placement run east to west); the least and most share of the analytic size given; the
        # layout's bands (_bands)
        nrc = -(-chip.rows // s)
        rect_a = rects
        regs, least, most, layout_bands = ev.kernel().region_layout(
            rect_a, want_a, s, chip.rows * chip.cols, self.mp.placement == "serpentine" and not wrapped, nrc)
        where = f" x {chips} chips" if chips > 1 else ""
        self.tile_notes = [
            f"event level: spatial at tile granularity on the {chip.rows} x {chip.cols} grid{where}" if s == 1 else
            f"event level: spatial on the {chip.rows} x {chip.cols} grid{where} in blocks of {s} x {s} tiles "
            f"(tile granularity would exceed {TILE_TASKS:,} tasks)"]
        if wrapped:
            self.tile_notes.append("event level: the chip has fewer blocks than the run has regions; "
                                   "regions share blocks")
        elif least < 0.995 or most > 1.005:
            self.tile_notes.append(f"event level: the regions, laid out as rectangles of whole blocks, get "
                                   f"{least:.0%} to {most:.0%} of the tiles the analytic level sizes "
                                   f"them to (their compute scales accordingly)")
        asked = min(-(-self.mp.region_rows // s), nrc)  # the band height the layout was given, in blocks
        if self.mp.region_rows and not wrapped and bool(np.any(rect_a[:, 2] != asked)):
            self.tile_notes.append(f"event level: the regions do not fit in bands of region_rows = "
                                   f"{self.mp.region_rows} tile rows; laid out in bands of archc's choice")
        # the rows simulated: each band's top row for the band (see _bands), unless an input is
        # carried between bands (its flows differ row by row) or regions share blocks. A placed
        # layout hands each op's input over from the region before where the region changes on
        # a chip (_handover): those visits start a run of their own
        hand = self.mp.placement != "adjacent" and not wrapped
        rects = sign = given = None  # their Python forms, for the hand-overs and the reference
        if hand or REGION_OP_EACH:
            rects, sign, given = [tuple(r) for r in rect_a.tolist()], regs[:, 5].tolist(), regs[:, 4].tolist()
        turns = (np.flatnonzero((seq[1:] != seq[:-1]) & (chip_of[seq[1:]] == chip_of[seq[:-1]])) + 1).tolist() \
            if hand else []
        carried = any(self._carries(rects[seq[g - 1]], sign[seq[g - 1]], rects[seq[g]], sign[seq[g]], int(vi[heads[g]]))
                      for g in turns)
        bands = None if REGION_EVERY_ROW or wrapped or carried else layout_bands
        self.wafer = _Wafer(self, s, chips, bands=bands)
        xfer, xlink, lat_s = self._spatial_link()
        labels = self.plan.labels

        def one_sample(direct=False):
            """The tasks of one sample, its number written SAMPLE, into a graph of their own:
            (graph, names, instances, adjust, the first task (its entry), the first region's
            end, the last task). Every sample's tasks are the same but for their ids. A run of
            visits between handovers is made by one _region_ops call (REGION_OP_EACH: each
            visit by its own _region_op call, the reference). `direct`: into this builder's
            own graph, instances and adjustments (a single sample in an empty graph: what
            copying it once would make), the names still apart."""
            main = self.g, self.names, self.instances, self.adjust
            self.names = _Labels()
            if not direct:
                self.g, self.instances, self.adjust = ev.TaskGraph(), _Rows(), _Adjust()
            try:
                gi, gr = vi[heads], seq
                fi, fg = vi[fv], gof[fv]  # the followers: their op rows, the visit (group) each follows
                routed = np.zeros(gi.size, np.int64)
                S, E = np.zeros(gi.size, np.int64), np.zeros(gi.size, np.int64)
                prev = None
                for a, b in zip([0] + turns, turns + [gi.size]):
                    if a == b:  # no visits at all
                        continue
                    if a:
                        label = f"{labels[gi[a]]} sample {SAMPLE}"
                        q, r = gr[a - 1], gr[a]
                        prev, ro = self._handover(rects[q], sign[q], rects[r], sign[r], int(gi[a]), prev, label)
                        routed[a] = ro
                    if REGION_OP_EACH:
                        region = self.rcol["region"]
                        for v in range(a, b):
                            i = int(gi[v])
                            S[v], E[v] = prev, _ = self._region_op(
                                i, rects[gr[v]], [prev], f"{labels[i]} sample {SAMPLE}", region[i] / given[gr[v]],
                                [(int(f), region[f] / given[gr[v]]) for f in fi[fg == v]], sign[gr[v]], bool(routed[v]))
                            prev = int(E[v])
                    else:
                        if not turns:  # one run: every visit
                            S, E = self._region_ops(gi, gr, routed, fi, fg, regs, prev)
                        else:
                            fa, fb = np.searchsorted(fg, [a, b]).tolist()
                            S[a:b], E[a:b] = self._region_ops(gi[a:b], gr[a:b], routed[a:b], fi[fa:fb],
                                                              fg[fa:fb] - a, regs, prev)
                        prev = int(E[b - 1])
                self.instances.add_block((gi, np.zeros_like(gi), S, E, np.full_like(gi, -1)))
                entry, first = (int(S[0]), int(E[0])) if gi.size else (None, None)
                last = self._to_next_chip(xfer, xlink, lat_s, prev, SAMPLE)
                return self.g, self.names, self.instances, self.adjust, entry, first, last
            finally:
                self.g, self.names, self.instances, self.adjust = main
        key = ("sample", s, rank)
        if key not in memo and (samples or m) == 1 and self.g.n_tasks == 0 and not self.instances and \
                not self.adjust:  # one sample into an empty graph: made in place
            _, tnames, _, _, _, _, last = one_sample(direct=True)
            self.names.add_range(len(tnames), lambda k, t=tnames: t[k].replace(SAMPLE, "0"))
            self._spatial_optimizer([last] if last is not None else [])
            return True
        if key not in memo:  # the same tasks (links and resources are made in the same order) for any samples
            memo[key] = one_sample()
        tg, tnames, tinst, tadj, entry, first, last = memo[key]
        # the samples in turn, sample j's tasks at base + j nt: as if built one by one
        nt, times, base = tg.n_tasks, samples or m, self.g.n_tasks
        assert base == len(self.names)
        self._check_size(times * nt)
        self.g.add_repeated(tg, times)
        self.names.add_range(times * nt, lambda k, t=tnames, nt=nt: t[k % nt].replace(SAMPLE, str(k // nt)))
        if times > 1 and entry is not None:  # a sample enters once the one before has left the first region
            j = np.arange(times - 1, dtype=np.int64)
            self.g.add_deps(base + j * nt + first, base + (j + 1) * nt + entry)
        if tinst:  # the sample's op instances for every sample, task ids offset (-1: none, stays -1)
            cols = tinst.arrays(5)
            off = base + np.arange(times, dtype=np.int64)[:, None] * nt  # sample j's rows: j-th row of each
            self.instances.add_block([np.tile(cols[0], times), np.tile(cols[1], times)] +
                                     [np.where(c >= 0, c + off, -1).reshape(-1) if times > 1 or base else c
                                      for c in cols[2:]])
        self.adjust.add(*tadj.arrays(), times=times)
        self._spatial_optimizer([base + j * nt + last for j in range(times)] if last is not None else [])
        return True

    def _stream_tiles(self, i, s, after, tag, prev2, scale):
        """A weight-streaming matmul row on the whole wafer: the weights stream in from the
        memory over the wafer's west edge (one flow per row: the memory link, then the row's
        edge link) and pass along the row, reaching its k-th tile k hops after the edge; a
        tile computes the op's local time once its weights are in and the op before has ended
        on every tile. The tiles of a row differ only in that arrival, so each row's
        easternmost tile ends last and bounds the row (W.row_tiles: one task per row for
        it, its arrival (cols - 1) hops after the edge; exact for the step, the critical
        path and every tile's busy time, which equals its row's: tests/test_wafer_scale.py
        checks it against every tile simulated, STREAM_EVERY_TILE). Returns (end barrier,
        last task)."""
        W, T, g = self.wafer, self.T, self.g
        label = f"{self.plan.labels[i]} {tag}"
        S = self._name(g.add_delay(0.0, after=[a for a in after if a is not None]), f"{label} start")
        nr, nc = W.rows, W.cols
        cols = np.array([nc - 1]) if W.row_tiles else np.arange(nc)  # the tiles simulated in each row
        nb = nr * cols.size
        comp = g.add_computes(self.local(i) * scale, W.res0 + np.arange(nb, dtype=np.int32))
        if W.row_tiles:
            self._range(comp, lambda j, label=label, nc=nc: f"{label} tile ({j}, {nc - 1})")
        else:
            self._range(comp, lambda j, label=label, nc=nc: f"{label} tile ({j // nc}, {j % nc})")
        g.add_deps(np.full(nb, S, np.int32), comp)
        mem = T[i].mem_bytes * T[i].count * scale
        if mem > 0:
            link = self._mem_link(s)
            route = np.stack([np.full(nr, link, np.int64), W.edge(np.arange(nr, dtype=np.int64))], axis=1)
            fl = g.add_flows(mem / nr, np.arange(nr + 1, dtype=np.int64) * 2, route.reshape(-1).astype(np.int32))
            self._range(fl, lambda j, label=label: f"{label} weights row {j}")
            for d in (self._mem_prev.get(s), prev2):
                if d is not None:
                    g.add_deps(np.full(nr, d, np.int32), fl)
            self._mem_prev[s] = self.barrier([int(x) for x in fl[[0, -1]]] if nr > 1 else [int(fl[0])],
                                             f"{label} weights in")
            if nr > 2:
                g.add_deps(fl[1:-1], np.full(nr - 2, self._mem_prev[s], np.int32))
            hops = g.add_delays(np.tile(cols * W.hop, nr))  # along the row to the tile
            self._range(hops, lambda j, label=label, k=cols.size, c0=int(cols[0]):
                        f"{label} weights along row {j // k} to column {c0 + j % k}")
            g.add_deps(np.repeat(fl, cols.size), hops)
            g.add_deps(hops, comp)
        E = self._name(g.add_delay(0.0), f"{label} done")
        g.add_deps(comp, np.full(nb, E, np.int32))
        last = self.collective(T[i].comm_kind, T[i].comm_bytes, T[i].comm_p,
                               T[i].comm_stride, s, T[i].count * scale, E, f"{label} collective")
        self.instances.append((i, s, S, last, -1))
        return E, last

    def _mem_link(self, s):
        link = self.mem_links.get(s)
        if link is None:
            mem = self.m.chip.memory or self.m.memory
            link = self.mem_links[s] = self.net.extra_link(mem.bandwidth * mem.efficiency, f"{mem.name} -> stage {s}")
        return link

    def setup_stream_tiles(self):
        """Weight streaming on a mesh chip: matmul rows on every tile of the wafer, simulated
        as each row's easternmost tile (_stream_tiles); rows grouped in bands of s (a power of
        two) only if even that graph would exceed TILE_TASKS."""
        T = self.T
        chip = self.m.chip
        n = len(T)
        m = self.plan.micro_batches
        pp = self.mp.pp
        mm = [i for i in range(n) if T[i].phase.per_micro_batch and T[i].mflops > 0]
        other = sum(1 for i in range(n) if T[i].phase.per_micro_batch and T[i].mflops <= 0)
        every = STREAM_EVERY_TILE

        def estimate(s):
            nr, nc = -(-chip.rows // s), -(-chip.cols // s)
            per = sum(stream_pieces(T[i]) for i in mm)
            return m * pp * (per * (nr * (2 * nc if every else 2) + nr + 3) + other * 64)
        s = 1 if every else _block_size(estimate, TILE_TASKS, max(chip.rows, chip.cols))
        self.max_tasks = max(MAX_TASKS, int(estimate(s) * 1.05) + 100_000)
        self.wafer = _Wafer(self, s, row_tiles=not every)
        self.tile_notes = [
            f"event level: weight streaming at tile granularity ({chip.rows} x {chip.cols} tiles; the tiles of a "
            f"row get their weights one hop apart, its easternmost tile, which ends last, is simulated for the "
            f"row)" if s == 1 else
            f"event level: weight streaming on the {chip.rows} x {chip.cols} grid in bands of {s} tile rows "
            f"(one task per row would exceed {TILE_TASKS:,} tasks); matmuls per band, other ops on the whole "
            f"wafer as one task"]


def _per_op_times(b: _Builder, r: ev.EventResult) -> np.ndarray:
    """Event time of each task-table row summed over its instances (in their order), per chip
    that runs it."""
    n = len(b.T)
    row, st, c, last, flow = b.instances.arrays(5)
    op = c >= 0
    # an op: from its compute's start to its last task's end
    t = np.zeros(row.size)
    k = np.flatnonzero(op)
    t[k] = r.end[last[k]] - r.start[c[k]]
    # a collective alone (no compute): from its first flow's readiness to its end
    solo = np.flatnonzero(~op)
    lz, fz = np.maximum(last, 0), np.maximum(flow, 0)
    t[solo] = np.where(last[solo] >= 0, r.end[lz[solo]] - r.ready[lz[solo]], 0.0)
    if b.exchanges and getattr(b, "ar_span", None):
        # the first gradient exchange: from the stage's last backward on (overlap_dp overlaps the rest)
        first = np.array([sp[0] if sp and sp[0] is not None else -1 for sp in b.ar_span], np.int64)
        has = np.array([bool(sp) for sp in b.ar_span] + [False])
        sc = np.minimum(st, len(b.ar_span))  # stages past ar_span: none
        x = (c < 0) & (row == b.exchanges[0]) & has[sc]
        f0 = np.where(x, first[np.minimum(sc, len(b.ar_span) - 1)], -1)
        x = np.flatnonzero(x & (f0 >= 0))
        t[x] = np.maximum(0.0, r.end[lz[x]] - r.end[f0[x]])
    x = solo[flow[solo] >= 0]
    t[x] = r.end[fz[x]] - r.start[fz[x]]
    # weight streaming (an op with a memory flow): the wait for the weights beyond the end of
    # the stage's op before it
    if k.size and np.any(flow[k] >= 0):
        by = k[np.argsort(st[k], kind="stable")]  # each stage's ops in order
        prev_end = np.empty(by.size)
        prev_end[1:] = r.end[last[by[:-1]]]
        new = np.ones(by.size, bool)
        new[1:] = st[by[1:]] != st[by[:-1]]
        prev_end[new] = r.start[c[by[new]]]
        w = flow[by] >= 0
        t[by[w]] += np.maximum(0.0, r.start[c[by[w]]] - prev_end[w])
    tot = np.bincount(row, weights=t, minlength=n)[:n] if row.size else np.zeros(n)
    adj_rows, adj = b.adjust.arrays()
    np.add.at(tot, adj_rows, adj)  # in order, as tot[i] += x pair by pair
    # the stages (chips) each row runs on
    seen = np.zeros((n, int(st.max(initial=0)) + 1), bool)
    seen[row, st] = True
    seen[adj_rows, 0] = True
    return tot / np.maximum(1, seen.sum(axis=1))


# Wafer layouts: the estimate (codegen/layout.py) ranks candidate layouts; a long pipelined run simulates
# the best few with TRIAL_SAMPLES samples each and keeps the one whose projected step is
# shortest. Only from TRIAL_MIN_SAMPLES samples on, where the trials cost at most half the
# run's own simulation (fewer trial samples project the period less well: 6-15% off on a
# small wafer at 4 and 8, exact at 8 and 16)
LAYOUT_TRIALS = 5
TRIAL_SAMPLES = (8, 16)
TRIAL_MIN_SAMPLES = 2 * LAYOUT_TRIALS * sum(TRIAL_SAMPLES)


def _pick_layout(plan, R, memo: dict) -> tuple[int, str | None]:
    """The rank of the layout to simulate, and a note saying how it was chosen. Each of the
    LAYOUT_TRIALS best-estimated layouts passes TRIAL_SAMPLES samples (a, b); its step is
    projected as T(b) + (m - b) (T(b) - T(a)) / (b - a), the later samples following at the
    pipeline's period. Runs of fewer than TRIAL_MIN_SAMPLES samples keep the estimate's choice."""
    m = plan.micro_batches
    a, b_ = TRIAL_SAMPLES
    if m < TRIAL_MIN_SAMPLES:
        return 0, None
    projected = []
    for rank in range(LAYOUT_TRIALS):
        times = []
        for k in TRIAL_SAMPLES:
            tb = _Builder(plan, R)
            if not tb.build_spatial_tiles(rank, samples=k, memo=memo):
                break
            times.append(float(ev.simulate(tb.g.finalize()).end.max()))
        if len(times) < 2:
            break
        projected.append((times[1] + (m - b_) * (times[1] - times[0]) / (b_ - a), rank))
    if len(projected) < 2:
        return 0, None
    best = min(projected)[1]
    return best, (f"event level: of the {len(projected)} layouts the estimate ranks best, #{best + 1} is "
                  f"simulated (projected from {a} and {b_} samples: "
                  + ", ".join(f"#{r + 1} {si(t, 's')}" for t, r in sorted(projected, key=lambda x: x[1])) + ")")


def simulate(plan: Plan, R: np.ndarray, progress=None) -> tuple["_Builder", ev.EventResult]:
    """The plan's task graph (with the analytic per-task figures R) built and simulated:
    (builder, EventResult). runtime/pipeline.py drives it."""
    run = plan.run
    b = _Builder(plan, R)
    if PIPELINE_BULK and run.mapping.strategy != "spatial":
        ev.kernel(progress=progress)  # _emit copies the recorded passes with it
    if run.mapping.strategy == "spatial":
        if _wafer_ok(run.machine):
            memo: dict = {}
            rank, note = _pick_layout(plan, R, memo)
            b.build_spatial_tiles(rank, memo=memo)
            if note:
                b.tile_notes.append(note)
        else:
            b.build_spatial()
    else:
        if b.streaming and _wafer_ok(run.machine):
            b.setup_stream_tiles()
        b.build_stages()
    b.final = b.g.finalize()
    return b, ev.simulate(b.final, progress=progress)


def step_figures(plan: Plan, b: _Builder, r: ev.EventResult) -> dict:
    m = plan.micro_batches
    bubble = exchange = once = 0.0
    row, st, c, last, _ = b.instances.arrays(5)
    per_mb = np.array([t.phase.per_micro_batch for t in plan.tasks] + [False])
    is_opt = np.array([t.phase == Phase.OPTIMIZER for t in plan.tasks] + [False])
    if hasattr(b, "stage_res"):
        ends = [r.end[x] for x in b.last_b if x is not None]
        window = max(ends) if ends else 0.0
        if b.mp.pp > 1:
            # idle time of a stage before its last backward (inference: forward): the window less
            # its op instances (compute and the collectives inside ops), averaged over the stages
            mine = (c >= 0) & per_mb[row]
            busy = np.bincount(st[mine], weights=r.end[last[mine]] - r.start[c[mine]], minlength=b.mp.pp)
            bubble = max(0.0, window - float(busy.mean()))
        for span in b.ar_span:
            if span and span[0] is not None:
                exchange = max(exchange, r.end[span[1]] - r.end[span[0]])
    opt = (c >= 0) & is_opt[row]
    if np.any(opt):
        once = max(once, float((r.end[c[opt]] - r.start[c[opt]]).max()))
    return {"latency_s": r.makespan, "bubble_s": bubble, "dp_exchange_s": exchange, "step_once_s": once,
            "micro_batches": m}


def event_R(plan: Plan, R: np.ndarray, b: _Builder, r: ev.EventResult) -> np.ndarray:
    """R with each row's time replaced by its event time per instance (make_report multiplies
    by the instances per step, Task.reps, as for the analytic level)."""
    per_op = _per_op_times(b, r)
    reps = plan.reps
    R2 = R.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        R2[:, RC["time"]] = np.where(reps > 0, per_op / np.where(reps > 0, reps, 1.0), 0.0)
    return R2


def task_rows(b: _Builder) -> np.ndarray:
    """The plan task (row) each event task belongs to (-1: none): an op instance's tasks are
    made in a row, from its first compute to its last task (its collective's flows and barriers
    included); a job's (extents) from its first to its last; where these overlap, the one
    recorded last."""
    T = len(b.names)
    row, _, c, last, flow = b.instances.arrays(5)
    first = np.where(c >= 0, c, np.where(flow >= 0, flow, last))
    er, ef, el_ = b.extents.arrays(3)
    rows = np.concatenate([row, er])
    lo = np.concatenate([first, ef])
    hi = np.concatenate([last, el_])
    ok = (lo >= 0) & (hi >= 0) & (lo < T)
    rows, lo, hi = rows[ok], lo[ok], np.minimum(hi[ok], T - 1)
    n = np.maximum(hi - lo + 1, 0)
    by = np.argsort(lo, kind="stable")
    if np.all(lo[by[1:]] > hi[by[:-1]]):  # disjoint: each task in one interval at most
        rows, lo, n = rows[by], lo[by], n[by]
        pos = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()), dtype=np.int64)
        out = np.full(T, -1, np.int64)
        out[pos] = np.repeat(rows, n)
        return out
    pos = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()), dtype=np.int64)
    who = np.full(T, -1, np.int64)
    np.maximum.at(who, pos, np.repeat(np.arange(rows.size, dtype=np.int64), n))  # the last recorded wins
    out = np.full(T, -1, np.int64)
    out[who >= 0] = rows[who[who >= 0]]
    return out


def summary_notes(b: _Builder, r: ev.EventResult, n_path: int = 12, n_links: int = 3) -> list[str]:
    notes = list(b.tile_notes)
    # the plan task each event task belongs to: an op instance's tasks are made in a row, from
    # its first compute to its last task (its collective's flows and barriers included)
    row = task_rows(b)
    cp = r.critical_path.astype(np.int64)
    cp = cp[~((r.kind[cp] == 2) & (r.end[cp] == r.start[cp]))]  # not the barriers
    rw = np.where(cp < row.size, row[np.minimum(cp, row.size - 1)], -1) if row.size else np.full(cp.size, -1)
    # each task's op label (or its own name), as a code: consecutive repeats are one entry
    labels, code = [], {}
    row_code = np.array([code.setdefault(t.label, len(code)) for t in b.plan.tasks] + [-1], np.int64)
    labels = list(code)
    codes = row_code[rw]
    for j in np.flatnonzero(rw < 0):
        name = b.names[int(cp[j])]
        codes[j] = code.get(name, -1)
        if codes[j] < 0:
            codes[j] = code[name] = len(labels)
            labels.append(name)
    keep = np.ones(codes.size, bool)
    keep[1:] = codes[1:] != codes[:-1]
    path = [labels[k] for k in codes[keep]]
    shown = path if len(path) <= n_path else path[:n_path // 2] + ["…"] + path[-n_path // 2:]
    notes.append(f"event level: critical path ({len(r.critical_path)} tasks): {' -> '.join(shown)}")
    notes.append(critical_split(b, r))
    if r.link_busy.size:
        if b.wafer is not None:  # its links as the whole grid's (a band's top row stands for its rows)
            top = b.wafer.top_links(r.link_busy, n_links, b.net.names)
        else:
            top = [(b.net.names[l], r.link_busy[l]) for l in np.argsort(-r.link_busy, kind="stable")[:n_links]]
        loaded = [f"{name} {busy / r.makespan:.0%} busy" for name, busy in top if busy > 0 and r.makespan > 0]
        if loaded:
            notes.append("event level: most loaded links: " + ", ".join(loaded))
    if b.collapsed:
        notes.append(f"event level: {b.collapsed:,} collectives inside ops use links no other traffic shares; "
                     f"each is one task of its uncontended time (what its flows would take)")
    return notes


def critical_split(b: _Builder, r: ev.EventResult) -> str:
    """What the critical path's time went to: compute, transfers (their uncontended time:
    latency + bytes at the slowest link of the route), link contention (a transfer's time
    beyond that: other flows shared its links) and fixed delays; and the busiest resource's
    share of the step (a pipeline runs at the pace of its busiest stage or region)."""
    g = getattr(b, "final", None)
    if g is None or r.makespan <= 0 or r.critical_path.size == 0:
        return "event level: critical path empty"
    cp = r.critical_path.astype(np.int64)
    dur = r.end[cp] - r.start[cp]
    kind = r.kind[cp]
    flows = cp[kind == 1]
    lens = g.route_ptr[flows + 1] - g.route_ptr[flows]
    bw = np.full(flows.size, math.inf)
    has = lens > 0
    if np.any(has):  # the slowest link of each route
        lk = g.route_links[np.repeat(g.route_ptr[flows[has]], lens[has])
                           + np.arange(int(lens[has].sum())) - np.repeat(np.cumsum(lens[has]) - lens[has], lens[has])]
        bw[has] = np.minimum.reduceat(g.link_bw[lk], np.cumsum(lens[has]) - lens[has])
    ideal = g.latency[flows] + g.bytes[flows] / bw
    fdur = dur[kind == 1]
    parts = {"compute": float(dur[kind == 0].sum()),
             "transfers": float(np.minimum(fdur, ideal).sum()),
             "link contention": float(np.maximum(fdur - ideal, 0.0).sum()),
             "fixed delays": float(dur[kind == 2].sum())}
    total = r.makespan
    shown = ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items() if v / total >= 0.005)
    top = int(np.argmax(r.busy)) if r.busy.size else -1
    busiest = f"; busiest: {b.res_names[top]}, busy {r.busy[top] / total:.0%} of the step" \
        if top >= 0 and r.busy[top] > 0 else ""
    return f"event level: critical path time: {shown or 'compute 0%'}{busiest}"


def write_trace(path, b: _Builder, r: ev.EventResult) -> int:
    """The Chrome trace, written as runtime/outputs.py writes every output: atomically (a
    temporary file in the same directory, fsync'ed, renamed), onto a new path or a regular file
    only (a symlink to one is written through), with the umask's mode; at most TRACE_TASKS
    tasks (the first by start time, and the critical path). Returns the tasks written; an
    OutputError (`cannot write the trace PATH: ...`) when it cannot be written."""
    from .outputs import replacing
    with replacing(path, suffix=".json", what="the trace") as tmp:
        return ev.write_chrome_trace(tmp, r, b.names, resource_names=b.res_names, link_names=b.net.names,
                                     max_tasks=TRACE_TASKS)
