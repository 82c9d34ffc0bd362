"""The driver: every representation change of archc, named in order, and every product of it
returned, for the command, the Python API and both simulation levels alike:

    [text] -> AST -> IR            front()     (dsl: parse, link the imported files, check)
    [IR run] -> plan               lower()     (codegen/lower.py)
    [machine] -> .pyx -> module    build()     (codegen/render.py, runtime/cache.py)
    [plan, module] -> R            analyze()   (the analytic kernel: per-task figures)
    [plan, R] -> report            the analytic step (composed in closed form) or the event level's
                                   simulated timeline (runtime/event_level.py)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archc.codegen.lower import lower
from archc.codegen.plan import Plan
from archc.dsl import ir
from archc.dsl.ast import Linked
from archc.dsl.check import check as _check
from archc.dsl.diagnostics import ArchSyntaxError, Diagnostic
from archc.dsl.parser import deep_enough, parse, parse_value
from archc.dsl.files import read_design
from archc.dsl.imports import link
from archc.dsl.source import Source
from archc.dsl.version import __version__

from .execute import analytic_report, analyze, build_kernel, event_report
from .report import Report

LEVELS = ("analytic", "event")


def read(path: str | Path) -> Source:
    """Read a design file; unreadable, binary or oversized files become diagnostics."""
    return read_design(path)


def parse_overrides(items: list[str] | dict | None) -> dict:
    """`KEY=VALUE` strings (or a dict) -> {key: AST value}; each value is parsed like source."""
    return {key: parse_value(key, value) for key, value in override_pairs(items)}


def override_pairs(items: list[str] | dict | None) -> list[tuple[str, str]]:
    """`KEY=VALUE` strings (or a dict of Python values) -> [(key, value text)], the text as
    `--set` takes it (booleans lower-case)."""
    if not items:
        return []
    pairs = items.items() if isinstance(items, dict) else [split_set(s) for s in items]
    return [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in pairs]


def split_set(s: str) -> tuple[str, str]:
    if "=" not in s:
        src = Source("<--set>", s)
        raise ArchSyntaxError([Diagnostic(src.span_at(0, max(1, len(s))),
                                          f"'--set {s}' needs the form KEY=VALUE")])
    key, value = s.split("=", 1)
    key = key.strip()
    if not key.isidentifier():
        src = Source("<--set>", s)
        raise ArchSyntaxError([Diagnostic(src.span_at(0, max(1, len(key))), f"'{key}' is not a parameter name")])
    return key, value.strip()


@dataclass(frozen=True)
class Stages:
    """Every product of the pipeline for one design, in order. `ast` is the file linked: its
    own statements, then the declarations of the files it imports (dsl/imports.py)."""

    source: Source
    ast: Linked
    ir: ir.Design


def front(path: str | Path, overrides=None, run: str | None = None, include=()) -> Stages:
    """`include`: the `-I` directories imports are looked for in (before ARCHC_PATH)."""
    source, linked = link_file(path, include)
    return Stages(source, linked, check_linked(source, linked, overrides, run))


def link_file(path: str | Path, include=()) -> tuple[Source, Linked]:
    """The first half of front(), for callers that check one file many times (a sweep)."""
    with deep_enough():
        # [text] -> AST
        source = read(path)
        tree = parse(source)
        # AST -> linked AST (every imported file found, read, parsed; names resolved per file)
        return source, link(tree, include)


def check_linked(source: Source, linked: Linked, overrides=None, run: str | None = None) -> ir.Design:
    """The second half of front(): AST -> IR (names, units, shapes, mappings checked; every
    run, or only `run`, resolved with the `--set` `overrides`)."""
    with deep_enough():
        return _check(linked, source.name, parse_overrides(overrides), run)


def sources_digest(source: Source, linked: Linked) -> str:
    """A hash of what a design's estimates depend on: its text, the text of every file it
    imports, and archc's version."""
    import hashlib
    h = hashlib.sha256(f"archc {__version__}\n".encode())
    for text in [source.text] + [s.text for s, _ in linked.via]:
        h.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def check(path: str | Path, overrides=None, run: str | None = None, include=()) -> ir.Design:
    return front(path, overrides, run, include).ir


def formats_title(design: ir.Design) -> str:
    return Path(design.source).name


def kernel_sources(design: ir.Design) -> dict[str, str]:
    """Generated .pyx text per module name: the analytic kernel of every machine a run uses and
    the design's number-format kernels (sorted, stable)."""
    from archc.codegen.mangle import identifier
    from archc.codegen.numerics import render_formats
    from archc.codegen.render import module_stem, render_analytic
    out = {}
    for _, r in design.runs:
        out.setdefault(module_stem(r.machine), render_analytic(r.machine, __version__))
    title = formats_title(design)
    out[identifier(title, "formats")] = render_formats(dict(design.formats), title, __version__)[0]
    return dict(sorted(out.items()))




@dataclass(frozen=True)
class Products:
    """What one run becomes, stage by stage."""

    plan: Plan
    module: object  # the machine's analytic kernel
    R: np.ndarray  # the kernel's per-task figures (RESULTS columns)
    report: Report


def build(machine: ir.Machine, progress=None):
    """[machine] -> .pyx -> module: the machine's analytic kernel, built or loaded from the cache."""
    return build_kernel(machine, __version__, progress)


def execute(run: ir.Run, level: str = "analytic", progress=None, trace=None, capture: dict | None = None) -> Products:
    """One run through every later stage: [IR run] -> plan -> module -> R -> report, at the
    `level` "analytic" (the roofline per task, the step composed in closed form) or "event"
    (the plan's task graph simulated; `trace`: a Chrome trace path, `capture`: a dict that
    receives the graph builder and the simulation result)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level '{level}'; archc has: {', '.join(LEVELS)}")
    plan = lower(run)                           # [IR run] -> plan
    module = build(run.machine, progress)       # [machine] -> .pyx -> module
    R = analyze(module, plan)                   # [plan, module] -> per-task figures
    if level == "event":                        # [plan, R] -> timeline -> report
        report = event_report(plan, R, progress, trace=trace, capture=capture)
    else:                                       # [plan, R] -> step -> report
        report = analytic_report(module, plan, R)
    report = with_goodput(run, report)          # [run, step] -> failures and goodput
    return Products(plan, module, R, report)


def with_goodput(run: ir.Run, report: Report) -> Report:
    """The report with its goodput section (runtime/goodput.py): the analytic figures from the
    step time of the report's level, and at the event level the Monte Carlo of the whole run."""
    import dataclasses

    from . import goodput
    section = goodput.analyse(run, report.latency_s, report.level)
    return dataclasses.replace(report, goodput=section) if section is not None else report


def run_analytic(run: ir.Run, version: str = __version__, progress=None) -> Report:
    return execute(run, "analytic", progress).report


def run_event(run: ir.Run, version: str = __version__, progress=None, trace=None,
              capture: dict | None = None) -> Report:
    return execute(run, "event", progress, trace=trace, capture=capture).report


def simulate_run(run: ir.Run, version: str = __version__, progress=None):
    """(plan, R, builder, EventResult) of a run at the event level, for tests and plots."""
    from . import event_level as el
    plan = lower(run)
    R = analyze(build(run.machine, progress), plan)
    b, result = el.simulate(plan, R, progress)
    return plan, R, b, result
