"""The public Python API: load, check, compile and run archc designs.

`compile_stages` is the driver: every representation change happens here, in pipeline order,
and every intermediate product is returned, so `--emit` and the tests can show any of them."""
from __future__ import annotations

import types
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from archc.dsl import ir
from archc.dsl.ast import File
from archc.dsl.check import check as _check
from archc.dsl.diagnostics import ArchSyntaxError, Diagnostic
from archc.dsl.parser import deep_enough, parse, parse_value
from archc.dsl.source import Source, read_source


def read(path: str | Path) -> Source:
    """Read a design file; unreadable, binary or oversized files become located diagnostics."""
    p = str(path)
    try:
        return read_source(path)
    except FileNotFoundError:
        raise ArchSyntaxError([Diagnostic(None, f"{p}: no such file")]) from None
    except IsADirectoryError:
        raise ArchSyntaxError([Diagnostic(None, f"{p}: is a directory, not a design file")]) from None
    except PermissionError:
        raise ArchSyntaxError([Diagnostic(None, f"{p}: permission denied")]) from None
    except (UnicodeError, ValueError) as e:
        data = Path(path).read_bytes()[:4096]
        bad = _first_bad_byte(data)
        text = data.decode("utf-8", errors="replace")
        src = Source(p, text)
        span = src.span_at(len(data[:bad].decode("utf-8", errors="replace")), 1) if bad is not None else src.start
        if isinstance(e, UnicodeDecodeError):  # (a ValueError too: test it first)
            reason = "the file is not UTF-8 text" + (f" (byte 0x{data[bad]:02x} at offset {bad})"
                                                     if bad is not None else "")
        else:
            reason = str(e)
        raise ArchSyntaxError([Diagnostic(span, reason)]) from None


def _first_bad_byte(data: bytes) -> int | None:
    if b"\x00" in data:
        return data.index(b"\x00")
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as e:
        return e.start


def parse_overrides(items: list[str] | dict | None) -> dict:
    """`KEY=VALUE` strings (or a dict) -> {key: AST value}; each value is parsed like source."""
    out = {}
    if not items:
        return out
    pairs = items.items() if isinstance(items, dict) else [_split_set(s) for s in items]
    for key, value in pairs:
        out[key] = parse_value(key, str(value).lower() if isinstance(value, bool) else str(value))
    return out


def _split_set(s: str) -> tuple[str, str]:
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
    """Every product of the pipeline for one design, in order."""

    source: Source
    ast: File
    ir: ir.Design


def compile_stages(path: str | Path, overrides=None, run: str | None = None) -> Stages:
    with deep_enough():
        # [text] -> AST
        source = read(path)
        tree = parse(source)
        # AST -> IR (names, units, shapes, mappings checked; every run resolved)
        design = _check(tree, source.name, parse_overrides(overrides), run)
    return Stages(source, tree, design)


def check(path: str | Path, overrides=None, run: str | None = None) -> ir.Design:
    return compile_stages(path, overrides, run).ir


def formats_title(design: ir.Design) -> str:
    return Path(design.source).name


def kernel_sources(design: ir.Design) -> dict[str, str]:
    """Generated .pyx text per module name: the analytic kernel of every machine a run uses and
    the design's number-format kernels (sorted, stable)."""
    from archc import __version__
    from archc.codegen.mangle import identifier
    from archc.codegen.numerics import render_formats
    from archc.codegen.render import module_stem, render_analytic
    out = {}
    for _, r in design.runs:
        out.setdefault(module_stem(r.machine), render_analytic(r.machine, __version__))
    title = formats_title(design)
    out[identifier(title, "formats")] = render_formats(dict(design.formats), title, __version__)[0]
    return dict(sorted(out.items()))


class Design:
    """A checked design with its kernels built: runs, formats and generated modules."""

    def __init__(self, path: str | Path, overrides=None, progress=None):
        self.path = str(path)
        self.stages = compile_stages(path, overrides)
        self.ir = self.stages.ir
        self.runs = dict(self.ir.runs)
        self._progress = progress
        self.modules: dict[str, types.ModuleType] = {}
        from archc import __version__
        from archc.runtime.execute import build_kernel
        for _, r in self.ir.runs:
            from archc.codegen.render import module_stem
            stem = module_stem(r.machine)
            if stem not in self.modules:
                self.modules[stem] = build_kernel(r.machine, __version__, progress)

    @cached_property
    def formats(self):
        """The design's formats by name, each with generated kernels (quantize, encode, decode,
        dot products); built on first use and cached on disk."""
        from archc import __version__ as version
        from archc.runtime.numerics import FormatSet
        return FormatSet(dict(self.ir.formats), version, formats_title(self.ir), self._progress)

    def run(self, name: str | None = None, level: str = "analytic", trace=None, **params):
        """Run one of the design's runs (re-checked with `params` as overrides) at the `level`
        "analytic" (roofline per op) or "event" (the simulated task graph; `trace`: a path to
        write its Chrome trace to)."""
        from archc import __version__
        from archc.runtime.execute import run_analytic, run_event
        if level not in ("analytic", "event"):
            raise ValueError(f"unknown level '{level}'; archc has: analytic, event")
        if trace is not None and level != "event":
            raise ValueError("a trace needs level='event': the analytic level computes no timeline")
        if name is None:
            if len(self.runs) != 1:
                raise ValueError(f"this design has {len(self.runs)} runs; name one: {', '.join(self.runs)}")
            name = next(iter(self.runs))
        if name not in self.runs:
            raise ValueError(f"no run '{name}'; this design has: {', '.join(self.runs)}")
        r = self.runs[name] if not params else check(self.path, params, name).run(name)
        if level == "event":
            return run_event(r, __version__, self._progress, trace=trace)
        return run_analytic(r, __version__, self._progress)


def load(path: str | Path, overrides=None, progress=None) -> Design:
    return Design(path, overrides, progress)


def accuracy(path: str | Path, run: str, seed: int = 0, overrides=None, precision=None, progress=None):
    """Run a reduced-size instance of `run` in float64 and in its declared precisions and report
    the error op by op and end to end (an `archc.runtime.accuracy.AccuracyReport`; its `trace`
    holds the generated inputs and weights). `overrides`: `--set` values (`KEY=VALUE` strings or
    a dict); `precision`: per-op formats (`GLOB=FORMAT` strings or a {glob: format} dict)."""
    from archc.dsl.diagnostics import ArchcError
    from archc.runtime.accuracy import choose_instance, evaluate
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArchcError(f"the seed is a whole number ≥ 0, found {seed!r}")
    with deep_enough():
        source = read(path)
        tree = parse(source)
    instance = choose_instance(tree, source, run, parse_overrides(overrides))
    return evaluate(instance, seed, precision, progress=progress)
