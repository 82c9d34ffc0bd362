"""Golden files for every sample: AST and IR dumps, the generated .pyx of every machine a run
uses (whole for the reference sample, as a diff against it for the others; a format kernel's
sections one file per format, shared by the samples), and a summary of every run's report. `pytest --update-golden` rewrites them (and fails, so
the diff is reviewed); a missing golden file fails."""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import replace

import pytest

from archc import __version__
from archc.api import compile_stages, kernel_sources
from archc.dsl import ast, ir
from archc.runtime.pipeline import run_analytic
from archc.runtime.report import summary
from conftest import ROOT, SAMPLES, check_goldens

SAMPLE_FILES = sorted(SAMPLES.glob("*.arch"))


def _stages(sample, monkeypatch):
    # relative paths keep this machine's directories out of the golden files
    monkeypatch.chdir(ROOT)
    return compile_stages(f"samples/{sample.name}")


def test_every_workload_sample_exists():
    names = {p.stem for p in SAMPLE_FILES}
    assert {"h100", "a100", "wse2", "wse3", "dojo", "gc200"} <= names


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.stem)
def test_ast_and_ir(sample, monkeypatch, update_golden):
    stages = _stages(sample, monkeypatch)
    # the standard library's models and blocks are the library's (tests/test_flops.py and
    # others check them), not the sample's: a new std block must not rewrite every sample's IR
    check_goldens([(f"{sample.stem}/ast.txt", ast.dump(stages.ast)),
                   (f"{sample.stem}/ir.txt", ir_text(stages.ir))], update_golden)


def ir_text(design: ir.Design) -> str:
    """The design's IR as the golden keeps it: the standard library's models, blocks and formats
    left out (they are the library's, checked by its own tests: a new std block or format must
    not rewrite every sample's IR), and each machine the runs use dumped once, after the runs,
    which name theirs (a run's machine is the same few hundred lines every time)."""
    def mine(x) -> bool:
        return x.span is None or not x.span.source.name.startswith("<std.")
    machines: dict[str, ir.Machine] = {}
    runs = []
    for name, r in design.runs:
        key = r.machine.name
        while key in machines and machines[key] != r.machine:  # the same name, other figures (a run's clock)
            key += "'"
        machines[key] = r.machine
        runs.append((name, replace(r, machine=f"<machine {key}: below>")))
    own = replace(design, runs=tuple(runs), **{k: tuple((n, c) for n, c in getattr(design, k) if mine(c))
                                              for k in ("models", "blocks", "formats")})
    return ir.dump(own) + "\nmachines:\n" + ir.dump(tuple(machines.items())) + "\n"


# The generated kernels share one template: the reference sample's are kept whole (a template
# change shows there, once); every other kernel is kept as its unified diff against the
# reference kernel of the same kind (its machine's constants, its formats' name): every byte is
# still checked, and a golden reads as what makes that machine different.
# A format-kernel module is the template's shared code, then one section per format of the
# design (numbered in the design's order), then dispatch tables over them. Each section, its
# own number written K, is kept once for every sample that has that format
# (formats/<name>.pyx); a sample keeps the list of its sections in order (.sections.txt) and
# the module without them (.frame: whole for the reference sample, else a diff): a design with
# one more format shows that one section and the tables' few lines, not the shifted numbers of
# every section after it.
REFERENCE = "h100"
REFERENCE_KERNEL = {"analytic": "analytic_h100_", "formats": "formats_h100_arch_"}
SECTION = re.compile(r"^# \[(\d+)\] ([^:\n]+): ", re.M)  # a format's section starts: "# [3] fp16: ..."
TABLES = "\n\ncdef double round_value("  # the dispatch tables after the sections


def format_parts(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """A format-kernel module as (its text without the formats' sections, a marker line in their
    place; [(number, name, the section with its own number written K)])."""
    cut = text.index(TABLES)
    starts = [m.start() for m in SECTION.finditer(text, 0, cut)]
    sections = []
    for a, b in zip(starts, starts[1:] + [cut]):
        k, name = SECTION.match(text, a).groups()
        own = re.sub(rf"(?<=[A-Za-z0-9])_{k}(?![0-9])", "_K", text[a:b]).replace(f"# [{k}] ", "# [K] ", 1)
        sections.append((k, name, own))
    frame = text[:starts[0]] + "# <the formats' sections: tests/golden/formats/<name>.pyx, as .sections.txt lists them>\n" + \
        text[cut:]
    return frame, sections


def _reference(monkeypatch) -> dict[str, tuple[str, str]]:
    """kind -> (name, text) of the reference sample's kernel of that kind (a format kernel's
    frame: format_parts)."""
    sources = kernel_sources(_stages(SAMPLES / f"{REFERENCE}.arch", monkeypatch).ir)
    ref = {kind: next((n, t) for n, t in sorted(sources.items()) if n.startswith(prefix))
           for kind, prefix in REFERENCE_KERNEL.items()}
    name, text = ref["formats"]
    ref["formats"] = (f"{name}.frame", format_parts(text)[0])
    return ref


def _against(ref: tuple[str, str], name: str, text: str) -> str:
    return "".join(difflib.unified_diff(ref[1].splitlines(keepends=True), text.splitlines(keepends=True),
                                        f"{REFERENCE}/{ref[0]}.pyx", f"{name}.pyx", n=0))


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.stem)
def test_generated_pyx(sample, monkeypatch, update_golden):
    sources = kernel_sources(_stages(sample, monkeypatch).ir)
    assert sources, f"{sample.name} declares no runs"
    ref = None if sample.stem == REFERENCE else _reference(monkeypatch)
    items = []
    for name, text in sources.items():
        kind = name.split("_")[0]
        if kind == "formats":
            text, sections = format_parts(text)
            name = f"{name}.frame"
            items += [(f"formats/{n}.pyx", own) for _, n, own in sections]
            items.append((f"{sample.stem}/{name[:-len('.frame')]}.sections.txt",
                          "".join(f"[{k}] {n}\n" for k, n, _ in sections)))
        if ref is None:
            items.append((f"{sample.stem}/{name}.pyx", text))
        else:
            items.append((f"{sample.stem}/{name}.pyx.diff", _against(ref[kind], name, text)))
    check_goldens(items, update_golden)


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.stem)
def test_generation_is_deterministic(sample, monkeypatch):
    first = kernel_sources(_stages(sample, monkeypatch).ir)
    second = kernel_sources(_stages(sample, monkeypatch).ir)
    assert first == second
    for text in first.values():
        assert text.startswith(f"# Generated by archc {__version__}: do not edit.\n# content key: ")
        assert str(ROOT) not in text  # no absolute paths of this machine


@pytest.mark.build
@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.stem)
def test_reports(sample, monkeypatch, update_golden):
    """Every run's analytic report in a few lines (runtime/report.py summary: latency,
    throughput, utilisation, energy, memory, bottleneck and the top ops, to 4 significant
    digits), one file per sample: a change shows as a readable diff."""
    design = _stages(sample, monkeypatch).ir
    parts = []
    for name, run in design.runs:
        rep = run_analytic(run, __version__)
        json.loads(rep.to_json())  # valid JSON, no NaN or Infinity
        parts.append(summary(rep))
    check_goldens([(f"{sample.stem}/reports.txt", "\n".join(parts))], update_golden)
