"""Owns `archc compare`: runs of the same model on different machines side by side, their figures normalised per chip, per watt and per declared cost, and each run's top ops; as a table, JSON and CSV.

A run's cost is what its chips cost: the machine's (a system's declared `cost`, or its members'
costs added up; a chip's own `cost`) times the share of the machine's chips the run uses, so
that 32 GPUs of a 4,608-GPU cluster are charged as 32 GPUs with their share of the network.
A machine with no cost declared anywhere in it shows "not declared", never a guess.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from archc.dsl.diagnostics import ArchcError, ArchSyntaxError, Diagnostic, printable
from archc.dsl.source import Source

from . import pipeline
from .report import csv_cell, si

SCHEMA = "archc.compare/1"
TOP_OPS = 3
NOT_DECLARED = "not declared"
OUT_FILES = ("compare.txt", "compare.json", "compare.csv", "compare.png", "compare.svg")


@dataclass(frozen=True)
class TopOp:
    name: str
    kind: str
    time_s: float  # per chip per step
    share: float  # of the step's busy time
    bound_by: str


@dataclass(frozen=True)
class Entry:
    """One run's figures, as its report gives them, and their normalisations."""

    label: str  # FILE:RUN, as written on the command line
    file: str
    run: str
    system: str
    model: str
    chips: int
    latency_s: float
    throughput: float
    throughput_unit: str
    utilization: float
    energy_per_step_j: float
    energy_per_item_j: float
    power_w: float  # all the run's chips, averaged over the step
    memory_per_chip_b: float
    memory_capacity_b: float
    bottleneck: str
    cost_usd: float | None  # of the chips the run uses; None: not declared
    machine_chips: int  # the chips of the machine the run is on (it may use fewer)
    machine_cost_usd: float | None  # the whole machine's
    cost_basis: str  # how the machine's cost was found ("" when not declared)
    top_ops: tuple[TopOp, ...]

    @property
    def per_chip(self) -> float:
        return self.throughput / self.chips

    @property
    def per_watt(self) -> float:
        return self.throughput / self.power_w if self.power_w else 0.0

    @property
    def per_usd(self) -> float | None:
        return self.throughput / self.cost_usd if self.cost_usd else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top_ops"] = [asdict(o) for o in self.top_ops]
        d.update(throughput_per_chip=self.per_chip, throughput_per_w=self.per_watt, throughput_per_usd=self.per_usd)
        return d


def parse_target(text: str) -> tuple[str, str]:
    """`FILE:RUN` -> (FILE, RUN); the run is what follows the last colon."""
    path, sep, run = text.rpartition(":")
    if not sep or not path or not run.strip().isidentifier():
        src = Source("<compare>", text)
        raise ArchSyntaxError([Diagnostic(src.span_at(0, max(1, len(text))),
                                          f"'{text}' names no run; write FILE:RUN, such as samples/h100.arch:gpt_train")])
    return path, run.strip()


def entry(label: str, path: str, run_name: str, overrides, level: str, include=(), progress=None) -> Entry:
    """Run `run_name` of the design at `path` with `overrides` at `level`, and keep what a
    comparison shows."""
    design = pipeline.check(path, overrides, run_name, include)
    run = design.run(run_name)
    rep = pipeline.execute(run, level, progress).report
    m = run.machine
    cost = m.cost_usd * rep.chips / m.chips if m.cost_usd is not None else None
    items = rep.throughput["value"] * rep.latency_s
    ops = sorted(rep.ops, key=lambda r: (-r.time_s, r.name))[:TOP_OPS]
    return Entry(label, str(path), run_name, rep.system, rep.model, rep.chips, rep.latency_s,
                 rep.throughput["value"], rep.throughput["unit"], rep.utilization, rep.energy_j,
                 rep.energy_j / items if items else 0.0, rep.power_w, float(rep.memory["total"]),
                 float(rep.memory["capacity"]), rep.bottleneck, cost, m.chips, m.cost_usd, m.cost_basis,
                 tuple(TopOp(o.name, o.kind, o.time_s, o.share, o.bound_by) for o in ops))


@dataclass(frozen=True)
class Comparison:
    level: str
    overrides: dict  # the --set values, applied to every run
    entries: tuple[Entry, ...]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "level": self.level, "set": dict(self.overrides),
                "runs": [e.to_dict() for e in self.entries]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per run: its figures, normalisations and top ops (name, share) in columns."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        head = ["label", "file", "run", "system", "model", "chips", "latency_s", "throughput", "throughput_unit",
                "throughput_per_chip", "throughput_per_w", "throughput_per_usd", "utilization", "energy_per_step_j",
                "energy_per_item_j", "power_w", "memory_per_chip_b", "memory_capacity_b", "bottleneck", "cost_usd"]
        head += [f"top_op_{i}{s}" for i in range(1, TOP_OPS + 1) for s in ("", "_share", "_bound_by")]
        w.writerow(head)
        for e in self.entries:
            d = e.to_dict()
            row = [csv_cell(d[k]) for k in head[:len(head) - 3 * TOP_OPS]]
            for i in range(TOP_OPS):
                o = e.top_ops[i] if i < len(e.top_ops) else None
                row += [o.name, f"{o.share:.4f}", o.bound_by] if o else ["", "", ""]
            w.writerow(row)
        return out.getvalue()

    def rows(self) -> list[tuple[str, list[str]]]:
        """The table: (what, one cell per run)."""
        E = self.entries

        def cells(f):
            return [f(e) for e in E]
        out = [
            ("system", cells(lambda e: f"{e.system} ({e.chips} chip{'s' if e.chips != 1 else ''})")),
            ("model", cells(lambda e: e.model)),
            ("latency", cells(lambda e: f"{si(e.latency_s, 's')} per step")),
            ("throughput", cells(lambda e: si(e.throughput, e.throughput_unit))),
            ("  per chip", cells(lambda e: si(e.per_chip, e.throughput_unit))),
            ("  per kW", cells(lambda e: si(e.per_watt * 1e3, e.throughput_unit))),
            ("  per million USD", cells(lambda e: NOT_DECLARED if e.per_usd is None
                                        else si(e.per_usd * 1e6, e.throughput_unit))),
            ("utilisation", cells(lambda e: f"{e.utilization * 100:.1f}% of peak")),
            ("energy per step", cells(lambda e: si(e.energy_per_step_j, "J"))),
            ("energy per item", cells(lambda e: si(e.energy_per_item_j, "J"))),
            ("power", cells(lambda e: si(e.power_w, "W"))),
            ("memory per chip", cells(lambda e: f"{si(e.memory_per_chip_b, 'B')} of {si(e.memory_capacity_b, 'B')}")),
            ("cost", cells(lambda e: NOT_DECLARED if e.cost_usd is None else f"{e.cost_usd:,.0f} USD")),
            ("bottleneck", cells(lambda e: e.bottleneck)),
        ]
        for i in range(TOP_OPS):
            out.append((f"top op {i + 1}", cells(lambda e: (f"{e.top_ops[i].name} {e.top_ops[i].share * 100:.0f}% "
                                                            f"{e.top_ops[i].bound_by}") if i < len(e.top_ops) else "-")))
        return out

    def to_text(self) -> str:
        rows = self.rows()
        head = ("", [e.label for e in self.entries])
        w0 = max(len(r[0]) for r in rows)
        widths = [max(len(c[i]) for _, c in [head] + rows) for i in range(len(self.entries))]

        def line(what, cs):
            return (f"  {what:<{w0}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(cs, widths))).rstrip()
        lines = [f"compare: {len(self.entries)} runs, {self.level} level"
                 + (f", with {', '.join(f'{k}={v}' for k, v in self.overrides.items())}" if self.overrides else ""),
                 "", line(*head)] + [line(*r) for r in rows]
        costed = [e for e in self.entries if e.cost_usd is not None]
        if costed:
            lines.append("")
            lines += [f"  cost of {e.label}: {e.chips} of the {e.machine_chips} chips of {e.system}, which costs "
                      f"{e.machine_cost_usd:,.0f} USD ({e.cost_basis})" for e in costed]
        units = sorted({e.throughput_unit for e in self.entries})
        if len(units) > 1:
            lines += ["", f"  note: the runs count throughput in different units ({', '.join(units)}): their "
                          f"normalised figures do not compare directly"]
        return printable("\n".join(lines) + "\n")


def compare(targets: list[str], overrides=None, level: str = "analytic", include=(), progress=None) -> Comparison:
    """Every `FILE:RUN` of `targets` run with the same `overrides` (`--set` values) at `level`."""
    if len(targets) < 2:
        raise ArchcError("archc compare needs at least two runs, each as FILE:RUN")
    parsed = [parse_target(t) for t in targets]
    entries = tuple(entry(t, p, r, overrides, level, include, progress) for t, (p, r) in zip(targets, parsed))
    return Comparison(level, dict(overrides or {}), entries)


def write(out: str | Path, c: Comparison) -> list[str]:
    """compare.txt, .json, .csv and the plot (PNG and SVG) into `out`, all at the end
    (runtime/outputs.py's rules for a directory)."""
    from . import outputs

    def fill(tmp: Path) -> None:
        from .chart import compare_figure
        from .plots import save
        (tmp / "compare.txt").write_text(c.to_text())
        (tmp / "compare.json").write_text(c.to_json())
        (tmp / "compare.csv").write_text(c.to_csv())
        save(compare_figure(c), tmp / "compare")
    outputs.atomic_dir(Path(out), fill, OUT_FILES)
    return list(OUT_FILES)
