"""Rendering: Jinja2 environment (strict, deterministic) and the machine view the analytic
template loops over. Logic lives here; the template only loops and prints."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from archc.dsl.ir import Machine
from archc.dsl.vocab import OpClass

from .collectives import LINK_FACTOR
from .plan import COLUMNS, memory_levels
from .mangle import comment, identifier, number

RESULTS = ("time", "compute", "memory", "sram", "noc", "link", "bound", "region", "wave", "energy", "clock")
RC = {name: i for i, name in enumerate(RESULTS)}  # result column -> index, as plan.COL
BOUNDS = ("compute", "memory", "sram", "noc", "link", "overhead")
TEMPLATE_VERSION = "1"


@lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archc.codegen", "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True, autoescape=False)


@dataclass(frozen=True)
class _Unit:
    comment: str
    peak: str
    energy: str


@dataclass(frozen=True)
class _Engine:
    """A matrix unit's geometry as the kernel reads it (0: not declared)."""
    comment: str
    rows: int
    cols: int
    arrays: int  # per tile
    os: int  # 1: output stationary, 0: weight stationary
    db: int  # 1: double-buffered (the next fold loads while one streams)
    frag_m: int
    frag_n: int
    frag_k: int
    a_bytes: str  # operand element sizes, for the feed of a GPU thread block's tile
    b_bytes: str


@dataclass(frozen=True)
class _Level:
    comment: str
    bw: str
    energy: str


@dataclass(frozen=True)
class _Class:
    name: str
    eff: str
    declared: int  # 1: the chip declares this class's efficiency (it overrides the derived utilisation)


def c_int(x: int, what: str) -> int:
    """A whole number written into generated code as a C `int`/`long`. The checker bounds every
    such figure (MAX_MEMBERS, MAX_WAVE); one out of range here is a bug in archc, refused
    rather than left to overflow silently in C."""
    if isinstance(x, bool) or int(x) != x or not -(2**31) <= x < 2**31:
        raise AssertionError(f"{what} = {x!r} does not fit a C int; the checker should have refused it")
    return int(x)


def machine_view(m: Machine) -> dict:
    chip, tile = m.chip, m.tile
    n = chip.tiles
    eff = dict(chip.efficiency)
    mem = chip.memory or m.memory
    topo = chip.noc.topology
    grid = chip.grid
    if topo in ("mesh", "torus") and chip.memory is not None:
        # what an op reads from and writes to the chip's memory enters and leaves the grid
        # across its boundary: 2 (rows + columns) edge links (a 1 x 1 grid: its 4 links); an
        # N-D grid's boundary is its surface, 2 x the sum over dimensions of the face across it
        faces = [math.prod(grid[:i] + grid[i + 1:]) for i in reversed(range(len(grid)))]
        noc_bw = 2 * sum(faces) * chip.noc.link_bandwidth
        noc_note = f"the grid's boundary: 2 x ({' + '.join(map(str, faces))}) links"
    elif topo in ("mesh", "torus"):
        # SUMMA-style traffic is counted per tile: a tile receives on its links, 2 per dimension
        noc_bw, noc_note = 2 * len(grid) * chip.noc.link_bandwidth, f"per tile: {2 * len(grid)} links in"
    elif topo == "ring":
        noc_bw, noc_note = 2 * chip.noc.link_bandwidth, "per tile: 2 links in"
    elif mem is not None and chip.memory is not None:
        noc_bw, noc_note = chip.noc.link_bandwidth, "aggregate crossbar bandwidth"
    else:
        noc_bw, noc_note = chip.noc.link_bandwidth / n, "aggregate exchange bandwidth / tiles, per tile"
    levels = []
    for lv in m.levels:
        f = LINK_FACTOR.get(lv.network.topology, 1.0)
        levels.append(comment(f"{lv.name}: {lv.fanout} members ({' x '.join(map(str, lv.dims or (lv.rows, lv.cols)))}), "
                              f"{lv.network.topology}, {lv.network.link_bandwidth / 1e9:g} GB/s per member"
                              f"{f' x {f:g} (both directions of a ring on the {lv.network.topology})' if f != 1 else ''}"
                              f", all-reduce: {lv.network.allreduce}"))
    mem_bw = mem.bandwidth * mem.efficiency if mem else 0.0
    # memory levels (plan.memory_levels): sustained bandwidth (declared x efficiency; a level that
    # is not shared is one per tile) and energy
    mem_levels = [_Level(comment(f"{x.name}: {x.capacity / 1e6:g} MB, {x.bandwidth / 1e9:g} GB/s x {x.efficiency:g}"
                                 + ("" if x.shared else f" per tile x {n} tiles")),
                         number(x.bandwidth * x.efficiency * (1 if x.shared else n)),
                         number(x.energy_per_byte or 0.0)) for x in memory_levels(m)]
    summary = [("tiles", n), ("clock_hz", number(tile.clock_hz)), ("sram_bytes", number(n * tile.sram_bytes)),
               ("mem_bw", number(mem_bw)), ("chips", m.chips)]
    return dict(
        title=comment(f"{m.name} ({m.chips} x {chip.name}, {n} x {tile.name})"),
        chip_comment=comment(f"{chip.name}: {' x '.join(map(str, chip.grid))} tiles of {tile.name} at "
                             f"{tile.clock_hz / 1e9:g} GHz, {topo} network"),
        tiles=c_int(n, "tiles"), rows=c_int(chip.rows, "rows"), cols=c_int(chip.cols, "columns"), tile_sram=number(tile.sram_bytes),
        sram_bw=number(tile.sram_bandwidth * n), mem_bw=number(mem_bw), noc_bw=number(noc_bw),
        noc_comment=comment(noc_note), noc_link=number(chip.noc.link_bandwidth),
        noc_hop=number(chip.noc.latency_s), launch=number(chip.launch_s), bsp=int(chip.bsp),
        wave_m=c_int(chip.wave[0] if chip.wave else 0, "wave M"), wave_n=c_int(chip.wave[1] if chip.wave else 0, "wave N"),
        wave_k=c_int(chip.wave[2] if chip.wave else 0, "wave K"),
        engines=[_engine(u, m) for u in tile.matrix],
        idle_w=number(chip.idle_power_w or 0.0),
        # a declared sustained clock overrides the one the power limit derives (Tile.boost_hz is
        # set once a tile runs at its sustained clock)
        power_w=number(chip.power_w if chip.power_w and not tile.boost_hz else 0.0),
        power_alpha=number(chip.power_alpha),
        power_comment=comment("cubic: voltage follows the clock (DVFS)" if chip.power_scaling == "cubic"
                              else "linear: fixed voltage"),
        matrix=[_Unit(comment(f"{u.a} x {u.b} -> {u.acc}: {u.flops_per_cycle:g} FLOP/cycle/tile"),
                      number(u.flops_per_cycle * tile.clock_hz * n), number(u.energy_per_flop or 0.0))
                for u in tile.matrix],
        vector=[_Unit(comment(f"{u.fmt}: {u.flops_per_cycle:g} FLOP/cycle/tile"),
                      number(u.flops_per_cycle * tile.clock_hz * n), number(u.energy_per_flop or 0.0))
                for u in tile.vector],
        classes=[_Class(c, number(eff.get(c, 1.0)), int(c in eff)) for c in OpClass.words()],
        e_sram=number(tile.sram_energy_per_byte or 0.0),
        e_mem=number(mem.energy_per_byte or 0.0) if mem else number(0.0),
        e_noc=number(chip.noc.energy_per_byte or 0.0),
        levels=levels, mem_levels=mem_levels, summary=summary)


def _engine(u, m: Machine) -> _Engine:
    g = u.engine
    a, b = u.operand_bytes
    if g is None:
        return _Engine(comment(f"{u.a} x {u.b}: no geometry declared (peak rate)"), 0, 0, 0, 0, 0, 0, 0, 0,
                       number(a), number(b))
    parts = []
    if g.rows:
        parts.append(f"{g.arrays} x {g.rows} x {g.cols} {g.dataflow.replace('_', '-')} arrays per tile"
                     + (", double-buffered" if g.double_buffered else ""))
    if g.fragment[0]:
        parts.append(f"fragment {g.fragment[0]} x {g.fragment[1]} x {g.fragment[2]}")
    return _Engine(comment(f"{u.a} x {u.b}: " + ", ".join(parts)), c_int(g.rows, "array rows"),
                   c_int(g.cols, "array columns"), c_int(g.arrays, "arrays"), int(g.dataflow == "output_stationary"),
                   int(g.double_buffered),
                   *(c_int(x, "fragment") for x in g.fragment), number(a), number(b))


def module_stem(m: Machine) -> str:
    return identifier(m.name, "analytic")


@lru_cache(maxsize=64)
def render_analytic(m: Machine, version: str) -> str:
    """The .pyx text for a machine: a header naming archc's version and the content key.
    Kept per machine (its IR is frozen and compares by value): a sweep or a search re-checks the
    design for every point and would otherwise render the same kernel to find it in the cache."""
    body = environment().get_template("analytic.pyx.j2").render(
        m=machine_view(m), columns=COLUMNS, results=RESULTS, bounds=BOUNDS)
    key = hashlib.sha256((TEMPLATE_VERSION + version + body).encode()).hexdigest()
    header = (f"# Generated by archc {version}: do not edit.\n"
              f"# content key: {key}\n")
    return header + body
