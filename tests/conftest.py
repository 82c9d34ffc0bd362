"""Shared test fixtures and helpers.

- Every test runs with ARCHC_CACHE_DIR pointing at one temporary directory for the whole
  session, so a kernel (1-8 s to build) is built once and reused by every later test, in
  this process and in the `archc` subprocesses the tests start.
- `run_cli(*args)` runs `python -m archc ARGS...` in a subprocess and returns its exit code,
  stdout and stderr.
- `--update-golden` and `check_golden(path, text, update_golden)` for golden-file tests.
"""
from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
GOLDEN = TESTS / "golden"
SAMPLES = ROOT / "samples"
H100 = SAMPLES / "h100.arch"


def sample_text(name: str) -> str:
    """Sample `name` as one self-contained file: every file it imports by path (its machine in
    samples/machines/, its models in samples/models/) written in place of the import, for
    tests that edit a sample or write it elsewhere (where its imports would not resolve)."""
    work = (SAMPLES / f"{name}.arch").read_text(encoding="utf-8")
    assert f'import "machines/{name}.arch"\n' in work, f"samples/{name}.arch no longer imports its machine"
    out = []
    for line in work.splitlines(keepends=True):
        m = re.fullmatch(r'import "([^"]+)"\n?', line)
        out.append((SAMPLES / m.group(1)).read_text(encoding="utf-8") + "\n" if m else line)
    return "".join(out)


# ---- a small machine many tests build on ------------------------------------------------

_SMALL_MACHINE = """\
tile t {{
  clock 1 GHz
  sram 1 MiB, bandwidth = 64 GB/s
  matrix bf16 x bf16 -> fp32 : 256 mac/cycle
  vector fp32 : 16 lanes
}}
chip c {{
  tiles 4 of t
  noc crossbar, bandwidth = 1 TB/s
  memory hbm, {memory}, bandwidth = 1 TB/s
}}
"""


def small_machine(*imports: str, memory: str = "16 GB") -> str:
    """`import` lines, then a 4-tile chip `c` of tile `t` (11 lines) with `memory` of HBM."""
    return "".join(f"import {m}\n" for m in imports) + _SMALL_MACHINE.format(memory=memory)


# ---- a machine whose figures make hand calculations easy ----------------------------------
# 10 tiles of 1000 MAC/cycle at 1 GHz = 20 TFLOP/s per chip; 100 FMA lanes per tile = 2 TFLOP/s
# vector; HBM 1 TB/s; 1 us per op; 100 x 100 output blocks; 4 chips on a 100 GB/s switch.
EASY_MACHINE = """
import std.formats
import std.blocks
tile t {
  clock 1 GHz
  sram 1 MiB, bandwidth = 100 B/cycle
  matrix fp16 x fp16 -> fp32 : 1000 mac/cycle
  vector fp32 : 100 lanes
}
chip c {
  tiles 10 of t
  noc crossbar, bandwidth = 100 TB/s
  memory hbm, 100 GB, bandwidth = 1 TB/s
  launch 1 us
  wave 100 x 100 x 100
}
system node { chips 4 of c; network switch, bandwidth = 100 GB/s, latency = 1 us }
model mm(M, N, K) {
  input a : [M, K]
  input b : [K, N]
  return matmul(a, b)
}
model vadd(n) {
  input a : [n]
  input b : [n]
  return a + b
}
model stack(batch, d, layers) {
  input x : [batch, d]
  repeat layers {
    x = linear(x, d, bias = false)
  }
  return x
}
"""


# ---- the compile cache -------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def archc_cache_dir(tmp_path_factory) -> Path:
    """One compile cache for the whole session (set in os.environ, so subprocesses share it)."""
    root = tmp_path_factory.mktemp("archc-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ARCHC_CACHE_DIR", str(root))
    mp.delenv("ARCHC_DEBUG", raising=False)  # a user's debug setting would turn errors into tracebacks
    mp.delenv("ARCHC_PATH", raising=False)  # where imports are looked for: only what a test sets
    yield root
    mp.undo()


# ---- the command line --------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class CliResult:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:
        return self.code

    def __str__(self) -> str:  # shown by pytest when an assertion about the result fails
        return (f"archc {' '.join(self.args)} -> exit {self.code}\n--- stdout ---\n{self.stdout[-4000:]}"
                f"\n--- stderr ---\n{self.stderr[-4000:]}")

    __repr__ = __str__


def run_cli(*args, env: dict | None = None, timeout: float = 300, cwd=None,
            input: str | None = None) -> CliResult:
    """Run `python -m archc ARGS...` in a fresh interpreter; `env` adds or overrides variables
    (a value of None removes one). The session's ARCHC_CACHE_DIR is inherited."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONIOENCODING", "utf-8")
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = str(v)
    argv = tuple(str(a) for a in args)
    p = subprocess.run([sys.executable, "-m", "archc", *argv], capture_output=True, text=True,
                       encoding="utf-8", errors="replace", env=full_env, timeout=timeout,
                       cwd=str(cwd) if cwd is not None else None, input=input)
    return CliResult(argv, p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli():
    """The `run_cli` helper as a fixture."""
    return run_cli


# ---- golden files ------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files under tests/golden/ from the current output "
                          "(the tests that rewrite one still fail, so the diff gets reviewed)")


@pytest.fixture
def update_golden(request) -> bool:
    """True when pytest was started with --update-golden."""
    return bool(request.config.getoption("--update-golden"))


def golden_path(path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else GOLDEN / p


def check_goldens(items, update_golden: bool) -> None:
    """check_golden over (path, text) pairs, all of them even when one fails, then fail once."""
    failures = []
    for path, text in items:
        try:
            check_golden(path, text, update_golden)
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def check_golden(path, text: str, update_golden: bool) -> None:
    """Compare `text` with the golden file `path` (relative to tests/golden/).

    With --update-golden a differing or missing file is (re)written and the test fails so the
    change is reviewed; an identical file passes. Without it, a missing file fails with how to
    create it and a differing one fails with a unified diff."""
    p = golden_path(path)
    try:
        shown = p.relative_to(ROOT)
    except ValueError:
        shown = p
    old = None
    if p.exists():
        with open(p, encoding="utf-8", newline="") as f:  # Path.read_text(newline=) is 3.13+
            old = f.read()
    if old == text:
        return
    if update_golden:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        pytest.fail(f"golden file rewritten: review the diff ({shown}, "
                    f"{'created' if old is None else 'changed'})", pytrace=False)
    if old is None:
        pytest.fail(f"golden file {shown} is missing; create it with "
                    f"`python -m pytest --update-golden` and review it before committing",
                    pytrace=False)
    diff = "".join(difflib.unified_diff(old.splitlines(keepends=True), text.splitlines(keepends=True),
                                        fromfile=f"{shown} (golden)", tofile="actual output"))
    pytest.fail(f"output differs from golden file {shown} (rerun with --update-golden to accept):\n"
                f"{diff[:20000]}", pytrace=False)


def assert_same_graph(a, b) -> None:
    """Two event-level FinalGraphs equal field by field: arrays of one dtype and equal entries,
    scalars equal (the bulk and reference builders' graphs, tests/test_event_bulk.py and
    tests/test_wafer_scale.py)."""
    import dataclasses

    import numpy as np
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name
