"""Units and dimensions: every quantity is normalised to SI-like base units and checked."""
from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import did_you_mean

# Base dimensions: bytes, seconds, joules, cycles, flops (1 MAC = 2 flop), metres, and US dollars
# (a machine's declared `cost`: one currency, so that costs add and compare without exchange rates).
BASES = ("B", "s", "J", "cycle", "flop", "m", "USD")


@dataclass(frozen=True)
class Dim:
    exps: tuple[int, ...] = (0,) * len(BASES)

    def __mul__(self, o: "Dim") -> "Dim":
        return Dim(tuple(a + b for a, b in zip(self.exps, o.exps)))

    def __truediv__(self, o: "Dim") -> "Dim":
        return Dim(tuple(a - b for a, b in zip(self.exps, o.exps)))

    def __pow__(self, k: int) -> "Dim":
        return Dim(tuple(a * k for a in self.exps))

    @property
    def dimensionless(self) -> bool:
        return not any(self.exps)

    def __str__(self) -> str:
        return describe(self)


def _d(**kw) -> Dim:
    return Dim(tuple(kw.get(b, 0) for b in BASES))


NONE = Dim()
BYTES = _d(B=1)
TIME = _d(s=1)
ENERGY = _d(J=1)
CYCLES = _d(cycle=1)
FLOPS = _d(flop=1)
LENGTH = _d(m=1)
AREA = _d(m=2)
COST = _d(USD=1)
FREQUENCY = NONE / TIME
BANDWIDTH = BYTES / TIME
BYTES_PER_CYCLE = BYTES / CYCLES
FLOPS_PER_CYCLE = FLOPS / CYCLES
FLOP_RATE = FLOPS / TIME
POWER = ENERGY / TIME
ENERGY_PER_BYTE = ENERGY / BYTES
ENERGY_PER_FLOP = ENERGY / FLOPS
BYTES_PER_FLOP = BYTES / FLOPS

_NAMED = {
    NONE: "a plain number", BYTES: "a size", TIME: "a time", ENERGY: "an energy",
    CYCLES: "a number of cycles", FLOPS: "an amount of work", LENGTH: "a length",
    AREA: "an area", FREQUENCY: "a frequency", BANDWIDTH: "a bandwidth",
    BYTES_PER_CYCLE: "a bandwidth per cycle", FLOPS_PER_CYCLE: "a throughput per cycle",
    FLOP_RATE: "a compute rate", POWER: "a power", ENERGY_PER_BYTE: "an energy per byte",
    ENERGY_PER_FLOP: "an energy per operation", BYTES_PER_FLOP: "bytes per operation", COST: "an amount of money",
}
_EXAMPLE = {
    BYTES: "MiB", TIME: "ns", ENERGY: "pJ", CYCLES: "cycles", FLOPS: "flop", LENGTH: "nm",
    AREA: "mm2", FREQUENCY: "GHz", BANDWIDTH: "GB/s", BYTES_PER_CYCLE: "B/cycle",
    FLOPS_PER_CYCLE: "mac/cycle", FLOP_RATE: "TFLOPS", POWER: "W", ENERGY_PER_BYTE: "pJ/B",
    ENERGY_PER_FLOP: "pJ/flop", BYTES_PER_FLOP: "B/mac", COST: "USD",
}


def describe(d: Dim) -> str:
    if d in _NAMED:
        name = _NAMED[d]
        return f"{name} ({_EXAMPLE[d]})" if d in _EXAMPLE else name
    parts = [f"{b}^{e}" if e != 1 else b for b, e in zip(BASES, d.exps) if e]
    return "a quantity in " + " ".join(parts)


# Units to show a value in, largest first, per dimension.
_READABLE = {
    BYTES: ("TB", "GB", "MB", "kB", "B"), TIME: ("s", "ms", "us", "ns", "ps"),
    FREQUENCY: ("GHz", "MHz", "kHz", "Hz"), BANDWIDTH: ("TB/s", "GB/s", "MB/s", "B/s"),
    ENERGY: ("J", "mJ", "uJ", "nJ", "pJ", "fJ"), POWER: ("kW", "W", "mW"), LENGTH: ("mm", "um", "nm"),
    FLOPS: ("flop",), FLOP_RATE: ("PFLOPS", "TFLOPS", "GFLOPS"), CYCLES: ("cycles",),
    AREA: ("mm2", "um2"), ENERGY_PER_BYTE: ("pJ/B",), ENERGY_PER_FLOP: ("pJ/flop",),
    BYTES_PER_CYCLE: ("B/cycle",), FLOPS_PER_CYCLE: ("flop/cycle",), COST: ("USD",),
}


def readable_units(d: Dim) -> tuple[str, ...]:
    return _READABLE.get(d, ())


BIT_UNITS: set[str] = set()  # the units of a size counted in bits (filled by _table)


def _table() -> dict[str, tuple[float, Dim]]:
    t: dict[str, tuple[float, Dim]] = {}
    # Sizes: bytes with SI (kB = KB = 1000 B) and binary prefixes; bits with an upper-case
    # prefix only (Kb, Mb, ...: link rates are quoted in Gb/s). Only these spellings: `kb`, `mb`,
    # `bytes` are refused with the intended unit suggested (docs/language.md lists them).
    for p, f in (("", 1), ("K", 1e3), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15), ("E", 1e18)):
        t[p + "B"] = (f, BYTES)
        if p != "k":
            t[p + "b"] = (f / 8, BYTES)
            BIT_UNITS.add(p + "b")
    for p, f in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("Ti", 2**40), ("Pi", 2**50)):
        t[p + "B"] = (f, BYTES)
    t["bit"] = (1 / 8, BYTES)
    BIT_UNITS.add("bit")
    t.update({"s": (1, TIME), "ms": (1e-3, TIME), "us": (1e-6, TIME), "ns": (1e-9, TIME),
              "ps": (1e-12, TIME), "min": (60, TIME), "h": (3600, TIME),
              "day": (86400, TIME), "days": (86400, TIME)})
    t.update({"Hz": (1, FREQUENCY), "kHz": (1e3, FREQUENCY), "MHz": (1e6, FREQUENCY),
              "GHz": (1e9, FREQUENCY)})
    t.update({"cycle": (1, CYCLES), "cycles": (1, CYCLES), "clk": (1, CYCLES)})
    t.update({"J": (1, ENERGY), "mJ": (1e-3, ENERGY), "uJ": (1e-6, ENERGY), "nJ": (1e-9, ENERGY),
              "pJ": (1e-12, ENERGY), "fJ": (1e-15, ENERGY)})
    t.update({"W": (1, POWER), "mW": (1e-3, POWER), "kW": (1e3, POWER), "MW": (1e6, POWER)})
    t.update({"flop": (1, FLOPS), "flops": (1, FLOPS), "FLOP": (1, FLOPS), "mac": (2, FLOPS),
              "macs": (2, FLOPS), "MAC": (2, FLOPS), "fma": (2, FLOPS), "op": (1, FLOPS), "ops": (1, FLOPS)})
    for p, f in (("G", 1e9), ("T", 1e12), ("P", 1e15), ("E", 1e18)):
        t[p + "FLOPS"] = (f, FLOP_RATE)
        t[p + "OPS"] = (f, FLOP_RATE)
    t.update({"nm": (1e-9, LENGTH), "um": (1e-6, LENGTH), "mm": (1e-3, LENGTH), "cm": (1e-2, LENGTH),
              "mm2": (1e-6, AREA), "um2": (1e-12, AREA), "cm2": (1e-4, AREA)})
    t["USD"] = (1, COST)  # list prices, as published (no other currency: costs must add up)
    # Counts that read well but carry no dimension: `32 lanes`, `pJ/bit/hop`, `8 links`.
    for w in ("lane", "lanes", "hop", "hops", "link", "links", "x", "element", "elements", "tile", "tiles"):
        t[w] = (1, NONE)
    t["%"] = (0.01, NONE)
    return t


UNITS = _table()


class UnitError(ValueError):
    pass


def parse_unit(text: str) -> tuple[float, Dim]:
    """`GB/s` -> (1e9, bytes/time). Raises UnitError naming the unknown part."""
    parts = text.split("/")
    factor, dim = 1.0, NONE
    for i, part in enumerate(parts):
        if part not in UNITS:
            raise UnitError(f"unknown unit '{part}'{suggest(part)}")
        f, d = UNITS[part]
        if i == 0:
            factor, dim = f, d
        else:
            factor, dim = factor / f, dim / d
    return factor, dim


_SPELLED = {"byte": "B", "bytes": "B", "bits": "bit", "kb": "kB", "kbit": "Kb", "Kbit": "Kb", "Mbit": "Mb",
            "Gbit": "Gb", "Tbit": "Tb", "sec": "s", "secs": "s", "mhz": "MHz", "ghz": "GHz",
            "Gbps": "Gb/s", "Mbps": "Mb/s", "Tbps": "Tb/s", "GBps": "GB/s", "TBps": "TB/s", "MBps": "MB/s"}


def suggest(part: str) -> str:
    """"; did you mean ...?" for an unknown unit: the same letters in another case first (`Kib`
    -> `KiB`, `mb` -> `MB` or `Mb`), then common spellings, then the closest by edit distance."""
    same = sorted(u for u in UNITS if u.lower() == part.lower())
    if part in _SPELLED:
        same = [_SPELLED[part]] + [u for u in same if u != _SPELLED[part]]
    if same:
        def shown(u):
            kind = " (bits)" if u in BIT_UNITS else " (bytes)" if UNITS[u][1] == BYTES else ""
            return f"'{u}'{kind if len(same) > 1 else ''}"
        return "; did you mean " + " or ".join(shown(u) for u in same) + "?"
    return did_you_mean(part, UNITS)
