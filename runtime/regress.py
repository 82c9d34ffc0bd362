"""Owns users' golden regression tests (`archc test DIR`): expectation files, comparing a design's runs with them, the drift table and `--update`.

An expectation file `NAME.expected.json` holds the figures every run of one design is expected
to give at one simulation level, with the tolerances they are compared within (schema
"archc.expected/1", documented in docs/regression.md):

    {
      "schema": "archc.expected/1",
      "source": "../h100.arch",              optional: the design, relative to this file
                                             (default: NAME.arch beside it)
      "level": "analytic",                   optional: analytic (default) | event
      "rtol": 1e-06,                         optional: the relative tolerance of every figure
      "rtol_per_metric": {"energy_per_step_j": 0.001},   optional: per metric, over "rtol"
      "runs": {
        "gemm": {
          "latency_s": 0.0017089,            one step
          "throughput": 643500000000000.0,   in throughput_unit
          "throughput_unit": "FLOP/s",       compared exactly
          "energy_per_step_j": 1.008,        all chips, one step
          "energy_per_item_j": 1.5e-12,      per item the throughput counts (sequence, token,
                                             image; FLOP for a GEMM)
          "memory_per_chip_b": 402700000.0   the mapping's peak footprint on one chip
        }
      }
    }

A figure passes when |got - expected| <= rtol x |expected|. A run's entry may leave figures out
(they are not checked). Every run of the design must have an entry and every entry a run.

`--update` writes each file from the figures just computed (sorted keys, two-space indent,
each figure rounded to the digits its tolerance makes meaningful: two more than the
tolerance's), keeping its source, level and tolerances. A file is written only when its text
changes, atomically (runtime/outputs.py: a temporary file renamed with os.replace), and only
over a valid expectation file or a new path: anything else at the path is refused.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from archc.dsl.diagnostics import ArchcError, Diagnostic
from archc.dsl.source import Source

from . import outputs, pipeline
from .report import Report, si

SCHEMA = "archc.expected/1"
SUFFIX = ".expected.json"
DEFAULT_RTOL = 1e-6
LEVELS = pipeline.LEVELS
_KEYS = ("schema", "source", "level", "rtol", "rtol_per_metric", "runs")

# metric -> (its unit in the table; None: the run's throughput unit), in the table's order
METRICS: dict[str, str | None] = {
    "latency_s": "s",
    "throughput": None,
    "energy_per_step_j": "J",
    "energy_per_item_j": "J",
    "memory_per_chip_b": "B",
}
UNIT_KEY = "throughput_unit"  # a string, compared exactly

# statuses of a table row
OK, DRIFT, NEW, GONE, ERROR = "ok", "DRIFT", "NO EXPECTATION", "VANISHED", "ERROR"


class ExpectationError(ArchcError):
    """An expectation file that cannot be used: `FILE:LINE:COL: error: ...`."""

    stage = "test"


@dataclass(frozen=True)
class Expectations:
    """One expectation file, as read (or, for a design in DIR without one, as it would be)."""

    path: Path  # the NAME.expected.json file (may not exist yet)
    source: Path  # the design it covers
    written_source: str | None  # "source" as the file writes it (None: NAME.arch beside it)
    level: str = "analytic"
    rtol: float = DEFAULT_RTOL
    rtol_per_metric: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # run -> {metric: value}
    exists: bool = True

    def tolerance(self, metric: str, override: float | None = None) -> float:
        """The metric's relative tolerance: its own entry, else `override` (--rtol), else the file's."""
        if metric in self.rtol_per_metric:
            return self.rtol_per_metric[metric]
        return self.rtol if override is None else override


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of a run (or the run as a whole: metric "-")."""

    file: str
    run: str
    metric: str
    expected: float | str | None
    got: float | str | None
    unit: str
    status: str
    change: float | None = None  # relative: (got - expected) / |expected|
    note: str = ""


@dataclass(frozen=True)
class Unreadable:
    """A file in DIR that archc test cannot use: an expectation file with errors, or a design
    whose expectation file's name is taken."""

    path: Path
    error: ArchcError

    @property
    def row(self) -> Row:
        return Row(shown(self.path), "-", "-", None, None, "", ERROR, note=_first_line(self.error))

    @property
    def line(self) -> str:
        return f"ERROR  {shown(self.path)}: not usable (the errors are above)"


@dataclass(frozen=True)
class Outcome:
    """One expectation file tested: the table's rows, the figures computed, the error if any."""

    expectations: Expectations
    rows: tuple[Row, ...]
    figures: dict  # run -> {metric: value}, what --update writes
    error: ArchcError | None = None
    run_errors: tuple[ArchcError, ...] = ()

    @property
    def failed(self) -> bool:
        return self.error is not None or any(r.status != OK for r in self.rows)


# ---- reading ----------------------------------------------------------------------------------

def shown(path: Path) -> str:
    """A path as the table shows it: normalised, relative as the user gave DIR."""
    return os.path.normpath(str(path))


def discover(directory: str | Path) -> list[Expectations | Unreadable]:
    """Every expectation file in `directory` (sorted), then every design (`*.arch`) in it that
    no expectation file covers, as an Expectations without a file. A file that cannot be used
    is an Unreadable in the list."""
    d = Path(directory)
    if not d.is_dir():
        what = "no such directory" if not d.exists() else "not a directory"
        raise ExpectationError(f"{directory}: {what}")
    found: list[Expectations | Unreadable] = []
    covered: dict[str, Path] = {}
    for p in sorted(d.glob(f"*{SUFFIX}")):
        try:
            e = read(p)
        except ArchcError as err:
            found.append(Unreadable(p, err))
            # its design is not tested without it, nor reported as having no expectation file
            covered[os.path.realpath(p.with_name(p.name[:-len(SUFFIX)] + ".arch"))] = p
            continue
        found.append(e)
        covered[os.path.realpath(e.source)] = p
    for arch in sorted(d.glob("*.arch")):
        if os.path.realpath(arch) in covered:
            continue
        default = arch.with_name(arch.name[:-len(".arch")] + SUFFIX)
        if default.exists():  # that name is taken by a file covering another design
            found.append(Unreadable(arch, ExpectationError(
                f"{shown(arch)} has no expectation file: {shown(default)} covers another design; name this "
                f"one's source in a file of its own")))
            continue
        found.append(Expectations(default, arch, None, exists=False))
    if not found:
        raise ExpectationError(f"nothing to test in {directory}: no *{SUFFIX} and no *.arch files")
    return found


def read(path: Path) -> Expectations:
    """An expectation file, checked whole; every mistake located (line and column)."""
    name = shown(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ExpectationError(f"{name}: not UTF-8 text, so not an expectation file") from None
    except OSError as e:
        raise ExpectationError(f"{name}: {e.strerror or e}") from None
    src = Source(name, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExpectationError([Diagnostic(src.span_at(e.pos), f"not valid JSON: {e.msg}")]) from None
    problems: list[Diagnostic] = []

    def bad(key: str, message: str, within: str | None = None) -> None:
        problems.append(Diagnostic(_locate(src, key, within), message))
    if not isinstance(data, dict):
        raise ExpectationError([Diagnostic(src.span_at(0), f"an expectation file is a JSON object with "
                                                           f"\"schema\": \"{SCHEMA}\"")])
    schema = data.get("schema")
    if schema != SCHEMA:
        what = "has no \"schema\"" if schema is None else f"has the schema {json.dumps(schema)}"
        newer = " (written by a newer archc?)" if isinstance(schema, str) and schema.startswith("archc.expected/") else ""
        raise ExpectationError([Diagnostic(_locate(src, "schema") if schema is not None else src.span_at(0),
                                           f"{what}; this archc reads \"{SCHEMA}\"{newer}")])
    for k in data:
        if k not in _KEYS:
            bad(k, f"unknown key \"{k}\"; an expectation file has {', '.join(_KEYS)}")
    written = data.get("source")
    if written is not None and (not isinstance(written, str) or not written):
        bad("source", "\"source\" is the design's path, relative to this file")
        written = None
    source = (path.parent / written) if written else path.with_name(path.name[:-len(SUFFIX)] + ".arch")
    if not source.is_file():
        what = f"the design {json.dumps(written)} it names" if written else f"its design {source.name} beside it"
        span = _locate(src, written, "source") if written else src.span_at(0)
        problems.append(Diagnostic(span, f"{what} ({shown(source)}) is {'not a file' if source.exists() else 'missing'}"))
    level = data.get("level", "analytic")
    if level not in LEVELS:
        bad("level", f"\"level\" is one of {', '.join(LEVELS)}; found {json.dumps(level)}")
        level = "analytic"
    rtol = data.get("rtol", DEFAULT_RTOL)
    if not _is_tolerance(rtol):
        bad("rtol", f"\"rtol\" is a relative tolerance, a number >= 0; found {json.dumps(rtol)}")
        rtol = DEFAULT_RTOL
    per = data.get("rtol_per_metric", {})
    if not isinstance(per, dict):
        bad("rtol_per_metric", "\"rtol_per_metric\" maps metric names to relative tolerances")
        per = {}
    for m, v in per.items():
        if m not in METRICS:
            bad(m, f"no metric \"{m}\"; the metrics are {', '.join(METRICS)}", "rtol_per_metric")
        elif not _is_tolerance(v):
            bad(m, f"the tolerance of {m} is a number >= 0; found {json.dumps(v)}", "rtol_per_metric")
    runs = data.get("runs", {})
    if not isinstance(runs, dict):
        bad("runs", "\"runs\" maps each run's name to its figures")
        runs = {}
    for run, figs in runs.items():
        if not isinstance(figs, dict):
            bad(run, f"run \"{run}\": its figures are an object of metric: value", "runs")
            continue
        for m, v in figs.items():
            if m == UNIT_KEY:
                if not isinstance(v, str):
                    bad(m, f"run \"{run}\": {UNIT_KEY} is a string such as \"tokens/s\"", run)
            elif m not in METRICS:
                bad(m, f"run \"{run}\": no metric \"{m}\"; the metrics are {', '.join(METRICS)}", run)
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(m, f"run \"{run}\": {m} is a finite number; found {json.dumps(v)}", run)
    if problems:
        raise ExpectationError(sorted(problems, key=lambda d: (d.span.line, d.span.col)))
    return Expectations(path, source, written, level, float(rtol), {m: float(v) for m, v in per.items()},
                        {r: dict(f) for r, f in runs.items()})


def _is_tolerance(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def _locate(src: Source, key: str, within: str | None = None):
    """Where the key `"key"` is written (after the key `"within"`, when given): JSON parsers
    keep no positions, and a key is written once per object in these files."""
    start = 0
    if within is not None:
        w = src.text.find(json.dumps(within) + ":")
        w = src.text.find(json.dumps(within), 0) if w < 0 else w
        start = max(0, w)
    at = src.text.find(json.dumps(key), start)
    return src.span_at(at, len(json.dumps(key))) if at >= 0 else src.span_at(0)


# ---- running and comparing -------------------------------------------------------------------

def figures(rep: Report) -> dict:
    """The figures of a report an expectation file holds."""
    t = rep.throughput
    items = t["value"] * rep.latency_s  # what the throughput counts, per step
    return {"latency_s": rep.latency_s, "throughput": t["value"], UNIT_KEY: t["unit"],
            "energy_per_step_j": rep.energy_j, "energy_per_item_j": rep.energy_j / items if items else 0.0,
            "memory_per_chip_b": float(rep.memory["total"])}


def verify(e: Expectations, rtol: float | None = None, progress=None) -> Outcome:
    """Run every run of the design `e` covers at its level and compare the figures."""
    name = shown(e.source)
    try:
        design = pipeline.check(e.source)
    except ArchcError as err:
        return Outcome(e, (Row(name, "-", "-", None, None, "", ERROR, note=_first_line(err)),), {}, err)
    rows: list[Row] = []
    got: dict[str, dict] = {}
    errors: list[ArchcError] = []
    for run, r in design.runs:
        try:
            got[run] = figures(pipeline.execute(r, e.level, progress).report)
        except ArchcError as err:
            errors.append(err)
            rows.append(Row(name, run, "-", None, None, "", ERROR, note=_first_line(err)))
            continue
        if run not in e.runs:
            rows.append(Row(name, run, "-", None, None, "", NEW, note="no expected figures for this run"))
            continue
        rows += compare(name, run, e, e.runs[run], got[run], rtol)
    ran = {run for run, _ in design.runs}
    for run in sorted(set(e.runs) - ran):
        rows.append(Row(name, run, "-", None, None, "", GONE, note=f"the design has no run '{run}'"))
    return Outcome(e, tuple(rows), got, None, tuple(errors))


def _first_line(err: ArchcError) -> str:
    return err.render().splitlines()[0] if err.render() else type(err).__name__


def compare(name: str, run: str, e: Expectations, want: dict, have: dict, rtol: float | None = None) -> list[Row]:
    """One row per figure the run's entry holds, in METRICS order."""
    rows = []
    unit = have[UNIT_KEY]
    if UNIT_KEY in want and want[UNIT_KEY] != unit:
        rows.append(Row(name, run, UNIT_KEY, want[UNIT_KEY], unit, "", DRIFT))
    for m, u in METRICS.items():
        if m not in want:
            continue
        x, y = float(want[m]), have[m]
        tol = e.tolerance(m, rtol)
        change = (y - x) / abs(x) if x else (0.0 if y == x else math.inf)
        ok = abs(y - x) <= tol * abs(x)
        rows.append(Row(name, run, m, x, y, u if u is not None else unit, OK if ok else DRIFT, change))
    return rows


# ---- the table -------------------------------------------------------------------------------

HEADER = ("file", "run", "metric", "expected", "got", "change", "status")


def _value(x, unit: str) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return si(x, unit, 7)


def _change(c: float | None) -> str:
    if c is None:
        return "-"
    if math.isinf(c):
        return "new"
    return f"{c * 100:+.3g}%"


def table(rows: list[Row]) -> str:
    """Rows as aligned columns under a header; a row's note follows its status."""
    cells = [HEADER] + [(r.file, r.run, r.metric, _value(r.expected, r.unit), _value(r.got, r.unit),
                         _change(r.change), r.status + (f": {r.note}" if r.note else "")) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER) - 1)]
    right = {3, 4, 5}
    out = []
    for c in cells:
        parts = [c[i].rjust(widths[i]) if i in right else c[i].ljust(widths[i]) for i in range(len(widths))]
        out.append("  ".join(parts + [c[-1]]).rstrip())
    return "\n".join(out) + "\n"


def summary_line(o: Outcome) -> str:
    """One line per file: what it covers and how it went."""
    e = o.expectations
    where = shown(e.path) if e.exists else f"{shown(e.path)} (none yet)"
    if o.error is not None:
        return f"ERROR  {shown(e.source)} ({where}): the design has errors"
    runs = len(o.figures) + len(o.run_errors)
    bad = {r.run for r in o.rows if r.status != OK}
    n = sum(1 for r in o.rows if r.metric != "-")
    state = "FAIL " if bad else "ok   "
    tail = f"; {len(bad)} failing" if bad else ""
    return (f"{state}  {shown(e.source)} ({where}): {runs} run{'s' if runs != 1 else ''}, {n} figure"
            f"{'s' if n != 1 else ''}, {e.level}{tail}")


# ---- --update ---------------------------------------------------------------------------------

def digits_for(rtol: float) -> int:
    """Significant digits to keep of a figure compared within `rtol`: two more than the
    tolerance resolves (its rounding is then at most 5% of the tolerance), 6 to 17."""
    if rtol <= 0:
        return 17
    return max(6, min(17, math.ceil(-math.log10(rtol)) + 2))


def _round(x: float, digits: int) -> float | int:
    """`x` to `digits` significant digits; a whole number of bytes (or any integral figure
    below 2^53) is kept whole, so a footprint reads as the byte count it is."""
    if x == int(x) and abs(x) < 2 ** 53:
        return int(x)
    return float(f"{x:.{digits}g}")


def render(e: Expectations, figs: dict) -> str:
    """The expectation file's text for the figures `figs`: deterministic (sorted keys)."""
    runs = {}
    for run, f in figs.items():
        entry = {UNIT_KEY: f[UNIT_KEY]}
        for m in METRICS:
            entry[m] = _round(f[m], digits_for(e.tolerance(m)))
        runs[run] = entry
    data: dict = {"schema": SCHEMA, "level": e.level, "rtol": e.rtol, "runs": runs}
    if e.written_source is not None:
        data["source"] = e.written_source
    if e.rtol_per_metric:
        data["rtol_per_metric"] = dict(e.rtol_per_metric)
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def update(o: Outcome) -> bool:
    """Rewrite the outcome's expectation file from its figures (not a file whose design has
    errors); True when the text changed. Only a file read as an expectation file, or a new
    path, is written (outputs.write_text refuses anything but a regular file)."""
    e = o.expectations
    if o.error is not None or o.run_errors:
        return False
    text = render(e, o.figures)
    if e.exists:
        current = read(e.path)  # still an expectation file (it may have changed since): else refused
        if current.path.read_text(encoding="utf-8") == text:
            return False
    elif e.path.exists() or e.path.is_symlink():
        raise ExpectationError(f"cannot write {shown(e.path)}: something is there that archc test did not read "
                               f"as an expectation file")
    outputs.write_text(e.path, text, what="the expectation file")
    return True
