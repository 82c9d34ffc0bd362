"""The public Python API: load, check, compile and run archc designs. The stages themselves are
driven by runtime/pipeline.py; this module is the front door to them."""
from __future__ import annotations

import types
from functools import cached_property
from pathlib import Path

from archc.dsl.diagnostics import ArchcError
from archc.dsl.imports import link
from archc.dsl.parser import deep_enough, parse
from archc.dsl.version import __version__
from archc.runtime import pipeline
from archc.runtime.pipeline import (Stages, check, formats_title, kernel_sources, parse_overrides,  # noqa: F401
                                    read)
from archc.runtime.pipeline import front as compile_stages  # noqa: F401  (the front half, by its old name)
from archc.runtime.pipeline import split_set  # noqa: F401


class Design:
    """A checked design with its kernels built: runs, formats and generated modules."""

    def __init__(self, path: str | Path, overrides=None, progress=None, include=()):
        self.path = str(path)
        self.include = tuple(include)  # `-I` directories imports are looked for in
        self.stages = pipeline.front(path, overrides, include=self.include)
        self.ir = self.stages.ir
        self.runs = dict(self.ir.runs)
        self._progress = progress
        self.modules: dict[str, types.ModuleType] = {}
        from archc.codegen.render import module_stem
        for _, r in self.ir.runs:
            stem = module_stem(r.machine)
            if stem not in self.modules:
                self.modules[stem] = pipeline.build(r.machine, progress)

    @cached_property
    def formats(self):
        """The design's formats by name, each with generated kernels (quantize, encode, decode,
        dot products); built on first use and cached on disk."""
        from archc.runtime.numerics import FormatSet
        return FormatSet(dict(self.ir.formats), __version__, formats_title(self.ir), self._progress)

    def run(self, name: str | None = None, level: str = "analytic", trace=None, **params):
        """Run one of the design's runs (re-checked with `params` as overrides) at the `level`
        "analytic" (roofline per op) or "event" (the simulated task graph; `trace`: a path to
        write its Chrome trace to)."""
        if level not in pipeline.LEVELS:
            raise ValueError(f"unknown level '{level}'; archc has: {', '.join(pipeline.LEVELS)}")
        if trace is not None and level != "event":
            raise ValueError("a trace needs level='event': the analytic level computes no timeline")
        if name is None:
            if len(self.runs) != 1:
                raise ValueError(f"this design has {len(self.runs)} runs; name one: {', '.join(self.runs)}")
            name = next(iter(self.runs))
        if name not in self.runs:
            raise ValueError(f"no run '{name}'; this design has: {', '.join(self.runs)}")
        r = self.runs[name] if not params else check(self.path, params, name, self.include).run(name)
        return pipeline.execute(r, level, self._progress, trace=trace).report


def load(path: str | Path, overrides=None, progress=None, include=()) -> Design:
    """The design at `path` checked and its kernels built; `include`: directories its imports
    are looked for in after the importing file's own (then ARCHC_PATH)."""
    return Design(path, overrides, progress, include)


def accuracy(path: str | Path, run: str, seed: int = 0, overrides=None, precision=None, progress=None,
             include=()):
    """Run a reduced-size instance of `run` in float64 and in its declared precisions and report
    the error op by op and end to end (an `archc.runtime.accuracy.AccuracyReport`; its `trace`
    holds the generated inputs and weights). `overrides`: `--set` values (`KEY=VALUE` strings or
    a dict); `precision`: per-op formats (`GLOB=FORMAT` strings or a {glob: format} dict)."""
    from archc.runtime.accuracy import choose_instance, evaluate
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArchcError(f"the seed is a whole number ≥ 0, found {seed!r}")
    with deep_enough():
        source = read(path)
        tree = link(parse(source), include)
    instance = choose_instance(tree, source, run, parse_overrides(overrides))
    return evaluate(instance, seed, precision, progress=progress)


def estimate(builder, output, machine: str | Path, on: str, *, mode: str = "infer", precision: str = "bf16",
             level: str = "analytic", settings: dict | None = None, include=(), progress=None):
    """Run a model built in Python (an archc.model.Builder and its output tensor) on a machine
    declared in a `.arch` file: `on` names its chip or system, `mode`, `precision` and
    `settings` (more run properties, as `{"strategy": "data(dp = 8)"}`) make the run. The model
    goes through its `.arch` text (Builder.to_arch), so it is checked as a file would be.
    Returns the Report."""
    import tempfile
    machine = Path(machine).resolve()
    if '"' in str(machine) or "\n" in str(machine):
        raise ArchcError(f"the machine's path cannot be written in an import: {machine}")
    lines = [f"  model {builder.name}()", f"  on {on}", f"  mode {mode}", f"  precision {precision}"]
    lines += [f"  {k} {v}" for k, v in (settings or {}).items()]
    with tempfile.TemporaryDirectory(prefix="archc-model-") as tmp:
        (Path(tmp) / f"{builder.name}.arch").write_text(builder.to_arch(output), encoding="utf-8")
        work = Path(tmp) / "run.arch"
        work.write_text(f'import std.formats\nimport "{machine}"\nimport "{builder.name}.arch"\n\n'
                        f"run {builder.name}_on_{on} {{\n" + "\n".join(lines) + "\n}\n", encoding="utf-8")
        design = check(work, include=include)
        run = design.runs[0][1]
        return pipeline.execute(run, level, progress).report
