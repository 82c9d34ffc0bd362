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


class Run:
    """One run of a loaded design: `estimate(**params)` checks it again with `params` in place of
    its defaults (only the run: the design's declarations, and its model for arguments seen
    before, stay checked) and estimates it; `estimate_many` does so for many parameter points.
    This is what sweeps and searches call: no file is read and no kernel rendered per point."""

    def __init__(self, design: "Design", name: str, run):
        self.design = design
        self.name = name
        self.ir = run  # the run as checked with the design's own parameters (and `load`'s overrides)

    def __repr__(self) -> str:
        return f"<archc run {self.name} of {self.design.path}>"

    def resolve(self, **params):
        """The run's IR with `params` (name=value; values as `--set` takes them) in place of its
        defaults; a value the run cannot take raises a located ArchcError."""
        if not params:
            return self.ir
        s = self.design.stages
        merged = {**self.design.overrides, **params}
        return pipeline.check_linked(s.source, s.ast, merged, self.name).run(self.name)

    def estimate(self, level: str = "analytic", trace=None, **params):
        """The run's Report at `params` ("analytic": the roofline per op composed in closed form;
        "event": the simulated task graph, `trace` a path for its Chrome trace)."""
        if level not in pipeline.LEVELS:
            raise ValueError(f"unknown level '{level}'; archc has: {', '.join(pipeline.LEVELS)}")
        if trace is not None and level != "event":
            raise ValueError("a trace needs level='event': the analytic level computes no timeline")
        return pipeline.execute(self.resolve(**params), level, self.design._progress, trace=trace).report

    def estimate_many(self, points, level: str = "analytic") -> list:
        """Reports for each parameter point (an iterable of dicts), in order."""
        return [self.estimate(level, **p) for p in points]


class Design:
    """A checked design with its kernels built: `runs` (name -> Run, each with `estimate`),
    formats and generated modules."""

    def __init__(self, path: str | Path, overrides=None, progress=None, include=()):
        self.path = str(path)
        self.include = tuple(include)  # `-I` directories imports are looked for in
        self.overrides = dict(pipeline.override_pairs(overrides))
        self.stages = pipeline.front(path, overrides, include=self.include)
        self.ir = self.stages.ir
        self.runs: dict[str, Run] = {n: Run(self, n, r) for n, r in self.ir.runs}
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
        write its Chrome trace to): `runs[name].estimate(level, trace, **params)`."""
        if name is None:
            if len(self.runs) != 1:
                raise ValueError(f"this design has {len(self.runs)} runs; name one: {', '.join(self.runs)}")
            name = next(iter(self.runs))
        if name not in self.runs:
            raise ValueError(f"no run '{name}'; this design has: {', '.join(self.runs)}")
        return self.runs[name].estimate(level, trace, **params)


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
