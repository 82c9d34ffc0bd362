"""The IR: resolved, SI-normalised, immutable. Sizes in bytes, times in s, rates per second."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace

from . import ast
from .source import Span
from .vocab import AllReduce

_span = lambda: field(default=None, compare=False, repr=False)  # noqa: E731


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # float | posit | int | fixed | mx
    bits: int  # storage bits per element (MX: per element, excluding the shared scale)
    params: tuple[tuple[str, object], ...]
    span: Span | None = _span()

    @property
    def bytes(self) -> float:
        return self.bits / 8

    def param(self, key, default=None):
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class Analog:
    """An analog in-memory MAC array (IBM aihwkit's model): inputs through a DAC, weights as
    conductances with programming noise, sums with additive output noise, read by an ADC."""

    dac_bits: int  # input resolution
    adc_bits: int  # output resolution
    out_noise: float  # output noise, in units of the normalised weight range
    program_noise: float  # weight programming noise, fraction of the largest weight
    bound: float  # ADC range, in units of the normalised weight range
    rows: int  # array size: inputs summed per column
    cols: int


@dataclass(frozen=True)
class Engine:
    """A matrix unit's geometry: `arrays` systolic arrays of rows x cols MACs per tile with a
    dataflow (codegen's kernel pads and folds every GEMM onto them), and/or the instruction
    shape (`fragment`, M x N x K) a GPU's tensor cores compute, to which every GEMM dimension
    of a thread-block tile is padded. A zero field is not declared."""

    rows: int = 0
    cols: int = 0
    arrays: int = 0  # per tile: the unit's MAC rate over rows x cols
    dataflow: str = ""  # "weight_stationary" or "output_stationary" (systolic arrays)
    fragment: tuple[int, int, int] = (0, 0, 0)
    double_buffered: bool = False  # the next fold's stationary operand loads while this one streams


@dataclass(frozen=True)
class MatrixUnit:
    a: str
    b: str
    acc: str
    flops_per_cycle: float
    energy_per_flop: float | None  # J; None: derived from the cost model
    sram_per_flop: float  # bytes of SRAM operand traffic per FLOP (memory-to-memory datapaths)
    analog: Analog | None = None
    area_m2: float | None = None  # declared silicon area (the rate was derived from it)
    energy_derived: bool = False
    engine: Engine | None = None  # the geometry utilisation is derived from (None: peak)
    operand_bytes: tuple[float, float] = (2.0, 2.0)  # storage bytes of an element of A and of B
    span: Span | None = _span()


@dataclass(frozen=True)
class VectorUnit:
    fmt: str
    flops_per_cycle: float
    energy_per_flop: float | None
    span: Span | None = _span()


@dataclass(frozen=True)
class Tile:
    name: str
    clock_hz: float
    sram_bytes: float
    sram_bandwidth: float  # B/s
    sram_latency_s: float
    sram_energy_per_byte: float | None
    matrix: tuple[MatrixUnit, ...]
    vector: tuple[VectorUnit, ...]
    derived: tuple[str, ...] = ()  # figures archc derived (cost model), for the report
    sustained_hz: float | None = None  # the clock held at the power limit under dense load
    boost_hz: float | None = None  # the declared clock, once the tile runs at its sustained one
    span: Span | None = _span()

    @property
    def peak_clock_hz(self) -> float:
        """The clock datasheet peaks (and so utilisation, MFU) are quoted at."""
        return self.boost_hz or self.clock_hz

    def at_sustained_clock(self) -> Tile:
        """This tile at its sustained clock: its matrix and vector rates (per cycle) follow the
        clock, so does the SRAM's bandwidth, and its latency stretches by the same ratio."""
        if not self.sustained_hz:
            return self
        r = self.sustained_hz / self.clock_hz
        return replace(self, clock_hz=self.sustained_hz, sram_bandwidth=self.sram_bandwidth * r,
                       sram_latency_s=self.sram_latency_s / r, boost_hz=self.clock_hz)


ALLREDUCE = AllReduce.words()  # all-reduce algorithms a network may declare


@dataclass(frozen=True)
class Reliability:
    """A component kind's failure rate, declared on a chip (chip, memory, link, tile) or a
    system (node, link): `count` such components per chip or per member, each failing as a
    Poisson process of `rate_per_s` (1 / MTBF; FIT = failures per 1e9 device-hours).
    `spares` tiles absorb tile failures on a wafer; `spares` nodes (with their `repair_s`)
    stand in for a failed node (runtime/goodput.py)."""

    kind: str  # chip | memory | link | tile (on a chip); node | link (on a system)
    rate_per_s: float  # failures per second of one component
    count: int = 1  # components of this kind per chip (tile: the chip's tiles) or per member
    spares: int = 0
    repair_s: float = 0.0  # time to bring a failed node back (spare-node pool)
    source: str = ""  # where the figure comes from, as the file says
    given: str = "mtbf"  # mtbf | fit: how it was written
    span: Span | None = _span()


@dataclass(frozen=True)
class Storage:
    """Where a system writes its checkpoints: `bandwidth` is the aggregate the whole system
    writes at (a parallel file system's sustained throughput)."""

    name: str
    bandwidth: float  # B/s
    span: Span | None = _span()


@dataclass(frozen=True)
class Network:
    """A network joining the members of a chip (NoC) or of a system (links, switches)."""

    topology: str  # mesh | torus | ring | crossbar | switch | alltoall | fat_tree
    link_bandwidth: float  # B/s per direction: per link (mesh/torus/ring) or per member port
    latency_s: float  # per hop (mesh/torus/ring) or end to end (switched)
    energy_per_byte: float | None
    allreduce: str = "ring"  # ring | tree (double binary tree) | mesh2d (rows, then columns) | dims (every dimension)
    span: Span | None = _span()


@dataclass(frozen=True)
class Memory:
    """One memory level. `shared`: one memory all the tiles (chips) inside it use, its capacity
    and bandwidth the level's (an L2, HBM); not shared: one such memory per tile (per chip),
    capacity and bandwidth each."""

    name: str
    capacity: float
    bandwidth: float
    efficiency: float
    latency_s: float
    energy_per_byte: float | None
    shared: bool = True
    span: Span | None = _span()


@dataclass(frozen=True)
class Chip:
    name: str
    tile: str
    rows: int
    cols: int
    noc: Network
    memories: tuple[Memory, ...]  # the chip's memory levels, innermost (an L2, CMEM) first
    process_nm: float | None
    power_w: float | None
    idle_power_w: float | None
    launch_s: float  # fixed overhead per op (kernel launch, task activation)
    efficiency: tuple[tuple[str, float], ...]  # op class -> fraction of compute peak reached
    wave: tuple[int, int, int] | None  # a GPU thread block's tile (M x N, and K per main-loop step)
    bsp: bool = False  # bulk-synchronous supersteps: an op computes, syncs, then exchanges
    in_cycles: tuple[str, ...] = ()  # figures declared in tile cycles: noc_bandwidth noc_latency launch
    power_scaling: str = "cubic"  # how power follows the clock under the limit: cubic (DVFS) | linear (fixed voltage)
    dims: tuple[int, ...] = ()  # an N-D tile grid's sizes (`grid 2 x 8 x 8`, stacked dies); () = (rows, cols)
    reliability: tuple[Reliability, ...] = ()  # failure rates of its components (chip, memory, link, tile)
    cost_usd: float | None = None  # the declared `cost` of one chip; None: not declared
    span: Span | None = _span()

    @property
    def tiles(self) -> int:
        return self.rows * self.cols

    @property
    def grid(self) -> tuple[int, ...]:
        """The tile grid's sizes, every dimension (rows x cols for a 2-D chip)."""
        return self.dims or (self.rows, self.cols)

    @property
    def memory(self) -> Memory | None:
        """The outermost level: where the model's tensors live (HBM), None for an SRAM chip."""
        return self.memories[-1] if self.memories else None

    @property
    def power_alpha(self) -> float:
        """How energy per operation follows the clock under the power limit, as r^alpha at a
        clock r times the run's: 2 with voltage following the clock (cubic), 0 at fixed voltage."""
        return 2.0 if self.power_scaling == "cubic" else 0.0

    def at_clock_ratio(self, r: float) -> Chip:
        """This chip with its tiles' clock scaled by r: the figures declared in cycles follow it
        (a NoC of so many bytes per cycle, a launch of so many cycles); the rest keep their own."""
        def k(figure: str) -> float:
            return r if figure in self.in_cycles else 1.0
        noc = replace(self.noc, link_bandwidth=self.noc.link_bandwidth * k("noc_bandwidth"),
                      latency_s=self.noc.latency_s / k("noc_latency"))
        return replace(self, noc=noc, launch_s=self.launch_s / k("launch"))


@dataclass(frozen=True)
class System:
    name: str
    member: str  # a chip or a system
    member_kind: str  # chip | system
    rows: int
    cols: int
    network: Network
    memories: tuple[Memory, ...]  # pooled memory levels outside the chips (MemoryX, host), innermost first
    dims: tuple[int, ...] = ()  # the grid's sizes, outermost first (`grid 4 x 4 x 4`); () = (rows, cols)
    reliability: tuple[Reliability, ...] = ()  # failure rates of each instance (node) and its members' links
    storage: tuple[Storage, ...] = ()  # where checkpoints can be written
    # its declared `cost`, else its members' costs added up; None when a member's is not declared
    cost_usd: float | None = None
    cost_basis: str = ""  # how cost_usd was found, for reports ("" when it is None)
    span: Span | None = _span()

    @property
    def memory(self) -> Memory | None:
        return self.memories[-1] if self.memories else None

    @property
    def count(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Level:
    """One level of a flattened machine: `fanout` members joined by `network`."""

    name: str
    fanout: int
    rows: int
    cols: int
    network: Network
    dims: tuple[int, ...] = ()  # an N-D grid's sizes, first dimension outermost (members numbered row-major)
    reliability: tuple[Reliability, ...] = ()  # the level's system's: its instances (node), its members' links
    storage: tuple[Storage, ...] = ()

    @property
    def grid(self) -> tuple[int, ...]:
        """The level's grid: its declared dimensions, else rows x columns (a 1 x N list: (N,))."""
        return self.dims or ((self.rows, self.cols) if self.rows > 1 else (self.cols,))


@dataclass(frozen=True)
class Machine:
    """A system flattened into its chip and levels, innermost first."""

    name: str
    chip: Chip
    tile: Tile
    levels: tuple[Level, ...]
    memory: Memory | None  # pooled memory outside the chips (MemoryX, Dojo DIPs)
    cost_usd: float | None = None  # the whole machine's cost (System.cost_usd, Chip.cost_usd); None: not declared
    cost_basis: str = ""  # how it was found: "declared" or the members it adds up

    @property
    def chips(self) -> int:
        n = 1
        for lv in self.levels:
            n *= lv.fanout
        return n

    def at_sustained_clock(self) -> Machine:
        """This machine with its tiles at their sustained clock (Tile.at_sustained_clock), and the
        chip's figures declared in cycles with them."""
        tile = self.tile.at_sustained_clock()
        return replace(self, tile=tile, chip=self.chip.at_clock_ratio(tile.clock_hz / self.tile.clock_hz))


@dataclass(frozen=True)
class Param:
    name: str
    default: ast.Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Callable_:
    """A model or block: parameters and a body, instantiated per run."""

    kind: str  # model | block
    name: str
    params: tuple[Param, ...]
    body: tuple
    span: Span | None = _span()


@dataclass(frozen=True)
class Tensor:
    id: int
    shape: tuple[int, ...]
    dtype: str | None = None  # declared storage (inputs such as int32 tokens); None: run precision

    @property
    def elems(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def line(self) -> str:
        return f"t{self.id}{list(self.shape)}" + (f":{self.dtype}" if self.dtype else "")


@dataclass(frozen=True)
class Gemm:
    batch: int
    m: int
    n: int
    k: int

    def line(self) -> str:
        return f"{self.batch}x{self.m}x{self.n}x{self.k}"


@dataclass(frozen=True)
class Op:
    """One operator instance of a model graph, forward direction, counted `count` times."""

    name: str
    kind: str
    cls: str  # matmul conv attention elementwise norm softmax embedding reduction pool loss collective
    count: int
    inputs: tuple[Tensor, ...]
    output: Tensor
    weight_elems: int
    matrix_flops: float
    vector_flops: float
    extra_bytes_elems: float  # elements moved besides inputs/outputs/weights (scores, KV cache)
    gemms: tuple[Gemm, ...]
    attrs: tuple[tuple[str, object], ...]
    layer: str  # the repeat body (layer) the op belongs to, "" outside any
    loops: tuple[int, ...] = ()  # ids of the repeats (Graph.loops) around the op, outermost first
    span: Span | None = _span()

    @property
    def flops(self) -> float:
        return self.matrix_flops + self.vector_flops

    def attr(self, key, default=None):
        return dict(self.attrs).get(key, default)

    def line(self) -> str:
        """The op on one line (the IR dump): what it reads and writes, its work, where it repeats."""
        ins = ", ".join(t.line() for t in self.inputs)
        parts = [f"{self.name} [{self.kind}/{self.cls}] x{self.count} ({ins}) -> {self.output.line()}"]
        for key, v in (("params", self.weight_elems), ("mflops", self.matrix_flops), ("vflops", self.vector_flops),
                       ("extra", self.extra_bytes_elems)):
            if v:
                parts.append(f"{key}={v:.10g}")
        if self.gemms:
            parts.append("gemm=" + ",".join(g.line() for g in self.gemms))
        if self.attrs:
            parts.append(" ".join(f"{k}={v}" for k, v in self.attrs))
        if self.layer:
            parts.append(f"layer={self.layer} loops={list(self.loops)}")
        return " ".join(parts)


@dataclass(frozen=True)
class Loop:
    """One `repeat` of the model as it ran: `trips` times each time its enclosing loops run.
    `carried`: the tensors the body reads from before it and replaces, as (entering, leaving)
    tensor ids: what one trip hands the next."""

    id: int
    label: str
    trips: int
    carried: tuple[tuple[int, int], ...]

    def line(self) -> str:
        return f"loop {self.id} '{self.label}' x{self.trips} carries {list(self.carried)}"


@dataclass(frozen=True)
class Graph:
    model: str
    ops: tuple[Op, ...]
    inputs: tuple[Tensor, ...]
    output: Tensor | None
    params_elems: int
    layers: tuple[tuple[str, int], ...]  # repeat bodies and their trip counts
    loops: tuple[Loop, ...] = ()
    views: tuple[tuple[int, int], ...] = ()  # (tensor, the tensor it is a view of: reshape, flatten)


# PyTorch DistributedDataParallel's default bucket_cap_mb = 25 (MiB): gradients are all-reduced
# in buckets of about this many bytes, each as soon as its gradients are complete
DDP_BUCKET = 25 * 2.0 ** 20


@dataclass(frozen=True)
class Mapping:
    strategy: str  # single | data | parallel | spatial | weight_streaming
    tp: int
    pp: int
    dp: int
    interleave: int
    micro_batch: int
    global_batch: int  # samples per step over the whole machine
    recompute: str  # none | selective | full
    seq_parallel: bool
    overlap_dp: bool
    schedule: str = "one_f_one_b"  # one_f_one_b (1F1B) | gpipe: the order of a pipeline stage's micro-batches
    region_rows: int = 0  # spatial: the height in tiles of the bands regions are laid out in (0: archc's choice)
    placement: str = "adjacent"  # spatial: adjacent | raster | serpentine (dsl/runs.py PLACEMENTS)
    bucket: float = DDP_BUCKET  # overlap_dp: bytes of gradient per all-reduce bucket
    # training: the weight-gradient GEMM adds into the gradient buffer in its epilogue (Megatron-LM's
    # --gradient-accumulation-fusion) instead of a kernel of its own after it
    accumulate_in_gemm: bool = False
    # expert parallelism: a mixture of experts' experts split over ep of the dp replicas, tokens
    # exchanged all-to-all among them (GShard; DeepSpeed-MoE); ep divides dp
    ep: int = 1
    span: Span | None = _span()

    @property
    def chips(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def micro_batches(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp)


@dataclass(frozen=True)
class Checkpoint:
    """A training run's checkpoints: every `every_s` of work (None: the optimum, Daly 2006), to
    a system's `storage` or to the memory of peer chips (`to` = "peers"), and the time a
    restart takes (None: the checkpoint read back, a lower bound)."""

    every_s: float | None
    to: str  # a Storage's name, or "peers"
    restart_s: float | None
    declared: bool = True  # False: the defaults of a run that declares no `checkpoint`
    span: Span | None = _span()


@dataclass(frozen=True)
class Train:
    """How much a training run trains: `amount` of `what` (tokens, samples, steps), and the
    steps that makes."""

    what: str  # tokens | samples | steps
    amount: float
    steps: float
    span: Span | None = _span()


@dataclass(frozen=True)
class Precision:
    name: str  # what the user wrote (a format or amp)
    matrix: str  # operand format of matrix ops
    acc: str  # accumulator format
    vector: str  # format of vector ops
    weights: str  # storage format of weights seen by compute
    master_bytes: float  # bytes per parameter of master weights + optimizer state (training)
    grad_bytes: float  # bytes per gradient element exchanged in data parallel


@dataclass(frozen=True)
class Run:
    name: str
    params: tuple[tuple[str, object], ...]  # resolved parameter values, for the report
    model: str
    machine: Machine
    graph: Graph
    mode: str  # train | infer
    mapping: Mapping
    precision: Precision
    optimizer: str
    throughput_items: float  # items per step (0: the unit is FLOP/s)
    throughput_unit: str
    footprint: tuple[tuple[str, float], ...]  # bytes per chip and the capacity it fits in
    format_bytes: tuple[tuple[str, float], ...]  # storage bytes of the formats the run uses
    fusion: str  # none | elementwise (elementwise ops into one kernel) | epilogue (into the producing op)
    accuracy: tuple[tuple[str, str], ...] = ()  # run parameters of the reduced accuracy instance
    clock: str = "boost"  # boost | sustained: the tile clock the run is estimated at
    dispatch: str = "graph"  # eager | graph | declared: the host software's cost per launched op
    dispatch_s: float = 0.0  # seconds the host takes to issue one op (runtime overlaps it with the device)
    checkpoint: Checkpoint | None = None  # training: where and how often the state is saved
    train: Train | None = None  # training: how much, for the time to train
    span: Span | None = _span()


@dataclass(frozen=True)
class Design:
    source: str
    formats: tuple[tuple[str, Format], ...]
    tiles: tuple[tuple[str, Tile], ...]
    chips: tuple[tuple[str, Chip], ...]
    systems: tuple[tuple[str, System], ...]
    models: tuple[tuple[str, Callable_], ...]
    blocks: tuple[tuple[str, Callable_], ...]
    runs: tuple[tuple[str, Run], ...]
    warnings: tuple = field(default=(), compare=False)  # Diagnostics of a valid design, for stderr

    def run(self, name: str) -> Run:
        return dict(self.runs)[name]


def _lines(v) -> bool:
    """A non-empty tuple of one-line values (ops, tensors, loops), dumped below its field."""
    return isinstance(v, tuple) and bool(v) and all(hasattr(x, "line") for x in v)


def dump(node, indent: int = 0) -> str:
    """Stable text form of any IR value, used for `--emit ir` and golden files."""
    pad = "  " * indent
    if is_dataclass(node):
        if isinstance(node, (ast.Node,)):
            return ast.expr_text(node) if not isinstance(node, (ast.Prop, ast.Assign)) else "<stmt>"
        if hasattr(node, "line"):  # ops, tensors, loops: one line each
            return node.line()
        parts = [f"{type(node).__name__.rstrip('_')}"]
        body = []
        for f in fields(node):
            if f.name in ("span", "body", "warnings"):
                continue
            v = getattr(node, f.name)
            text = dump(v, indent + 1)
            if "\n" in text or _lines(v):
                body.append(f"{pad}  {f.name}:\n{text}")
            else:
                body.append(f"{pad}  {f.name}: {text}")
        return parts[0] + "\n" + "\n".join(body) if indent == 0 else "\n".join(
            [f"{pad}{parts[0]}"] + body)
    if isinstance(node, tuple):
        if not node:
            return "()"
        if all(hasattr(x, "line") for x in node):  # one line each, always below their field
            return "\n".join(f"{pad}  {x.line()}" for x in node)
        if all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in node):
            items = []
            for k, v in node:
                text = dump(v, indent + 1)
                items.append(f"{pad}  {k}:\n{text}" if "\n" in text else f"{pad}  {k}: {text}")
            return "\n".join(items)
        if all(not is_dataclass(x) and not isinstance(x, tuple) for x in node):
            return "(" + ", ".join(dump(x) for x in node) + ")"
        return "\n".join(dump(x, indent + 1) for x in node)
    if isinstance(node, float):
        return f"{node:.10g}"
    if isinstance(node, str):
        return repr(node)
    return str(node)
