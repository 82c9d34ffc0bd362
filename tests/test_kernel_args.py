"""Generated kernels called by hand with wrong arguments (issue 13, point 8).

The kernels' loops are compiled with boundscheck=False and check nothing, so every public entry
point of codegen/templates/*.pyx.j2 (analytic: analyze; events:
simulate, critical_path; formats: quantize_*, quantize32_*, encode32_*, encode_*, decode_*,
mx_quantize_*, dot, matmul; set_threads) checks its arrays (its thread count) once, at the boundary: type, dtype, dimensions,
contiguity, writability of outputs, shapes against each other and against the task table's and
results' columns, and the indices the loops follow. A wrong argument is a TypeError or a
ValueError naming the entry point, never a crash.

Each kernel's calls run in a subprocess: a segfault fails the test and names the call that
crashed, instead of ending the test run."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import H100

pytestmark = pytest.mark.build

RUNNER = textwrap.dedent("""\
    import json, sys
    import numpy as np
    def ro(a):
        a.setflags(write=False)
        return a
    SETUP
    cases = json.loads(sys.argv[1])
    import signal
    for label, expr, expect in cases:
        print(json.dumps({"start": label}), flush=True)
        signal.alarm(CALL_SECONDS)  # no handler: a call that hangs (in C, without the GIL) ends the process
        try:
            eval(expr)
        except (TypeError, ValueError) as e:
            print(json.dumps({"label": label, "raised": type(e).__name__, "message": str(e)}), flush=True)
        else:
            print(json.dumps({"label": label, "raised": None}), flush=True)
        signal.alarm(0)
    """)
CALL_SECONDS = 30  # every call here takes milliseconds


def run_cases(setup: str, cases: list[tuple[str, str, str | None]]) -> dict[str, dict]:
    """Run `expr` of each (label, expr, expected exception name or None) in one subprocess after
    `setup`; fail naming the call if the process dies (a segfault) or a call does not do as expected."""
    script = RUNNER.replace("SETUP", textwrap.dedent(setup).strip()).replace("CALL_SECONDS", str(CALL_SECONDS))
    try:
        p = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                           timeout=300)
        stdout, stderr, code = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:  # a hang the alarm did not end
        stdout, stderr, code = e.stdout or "", e.stderr or "", "timeout"
        stdout, stderr = (x.decode(errors="replace") if isinstance(x, bytes) else x for x in (stdout, stderr))
    lines = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    started = [ln["start"] for ln in lines if "start" in ln]
    how = {-11: "crashed (SIGSEGV)", -14: f"hung (more than {CALL_SECONDS} s)", "timeout": "hung"}.get(code, "died")
    assert code == 0, (f"the kernel process {how}, exit {code}, in the call "
                       f"'{started[-1] if started else '(setup)'}'\n{stderr[-3000:]}")
    done = {ln["label"]: ln for ln in lines if "label" in ln}
    wrong = []
    for label, expr, expect in cases:
        got = done[label]
        if got["raised"] != expect and not (expect == "error" and got["raised"] in ("TypeError", "ValueError")):
            wrong.append(f"{label}: {expr}\n    expected {expect}, got {got['raised']}: {got.get('message')}")
    assert not wrong, "\n".join(wrong)
    return done


def check_messages(done: dict) -> None:
    """A refusal names the entry point refusing (`analyze: ...`, `quantize_3: ...`), on one line."""
    for label, got in done.items():
        if got["raised"]:
            fn = label.split(":")[0]
            assert re.match(rf"{fn}(_\d+)?: ", got["message"]) and "\n" not in got["message"], (label, got["message"])


# ---- the analytic kernel ----------------------------------------------------------------------

ANALYTIC = f"""
from archc import __version__, api
from archc.codegen.lower import lower
from archc.codegen.render import RESULTS
from archc.runtime.execute import build_kernel
run = dict(api.check({str(H100)!r}, None, "gpt_train").runs)["gpt_train"]
plan = lower(run)
mod = build_kernel(run.machine, __version__)
T = plan.table
n, ncol, nres = T.shape[0], T.shape[1], len(RESULTS) + len(plan.memories)
R = np.zeros((n, nres))
def with_col(name, value):
    from archc.codegen.plan import COL
    t = T.copy(); t[n // 2, COL[name]] = value; return t
"""


def test_analytic_kernel_entry_points():
    cases = [
        ("analyze: valid", "mod.analyze(T, R, 0)", None),
        ("analyze: spatial valid", "mod.analyze(T, np.zeros((n, nres)), 4, 8.0)", None),
        ("analyze: R of too few rows", "mod.analyze(np.zeros((100000, ncol)), np.zeros((1, nres)), 0)", "ValueError"),
        ("analyze: R of no rows", "mod.analyze(T, np.zeros((0, nres)), 0)", "ValueError"),
        ("analyze: T of too few columns", "mod.analyze(np.ascontiguousarray(T[:, :3]), R, 0)", "ValueError"),
        ("analyze: R of too few columns", "mod.analyze(T, np.zeros((n, 2)), 0)", "ValueError"),
        ("analyze: T of float32", "mod.analyze(T.astype(np.float32), R, 0)", "TypeError"),
        ("analyze: R of int64", "mod.analyze(T, np.zeros((n, nres), dtype=np.int64), 0)", "TypeError"),
        ("analyze: T one-dimensional", "mod.analyze(T.reshape(-1), R, 0)", "ValueError"),
        ("analyze: T Fortran-ordered", "mod.analyze(np.asfortranarray(T), R, 0)", "ValueError"),
        ("analyze: T a strided view", "mod.analyze(np.repeat(T, 2, axis=0)[::2], R, 0)", "ValueError"),
        ("analyze: R read-only", "mod.analyze(T, ro(R.copy()), 0)", "ValueError"),
        ("analyze: T a list", "mod.analyze(T.tolist(), R, 0)", "TypeError"),
        ("analyze: T None", "mod.analyze(None, R, 0)", "TypeError"),
        ("analyze: a matrix unit out of range", "mod.analyze(with_col('unit', 1e9), R, 0)", "ValueError"),
        ("analyze: a negative matrix unit", "mod.analyze(with_col('unit', -3), R, 0)", "ValueError"),
        ("analyze: a vector unit out of range", "mod.analyze(with_col('vunit', 77), R, 0)", "ValueError"),
        ("analyze: a NaN class", "mod.analyze(with_col('cls', float('nan')), R, 0)", "ValueError"),
        ("analyze: a class out of range, spatial", "mod.analyze(with_col('cls', 1e6), R, 2)", "ValueError"),
    ]
    check_messages(run_cases(ANALYTIC, cases))


# ---- the event-level engine -------------------------------------------------------------------

EVENTS = """
from archc.runtime import events
mod = events.kernel()
I8, I32, I64, F64 = np.int8, np.int32, np.int64, np.float64
def args(**over):
    # 3 tasks: compute 0 -> compute 1 -> flow 2 over links 0 and 1 (class 0); one resource
    a = dict(kind=np.array([0, 0, 1], I8), duration=np.array([1.0, 2.0, 0.0]), resource=np.array([0, 0, -1], I32),
             nbytes=np.array([0.0, 0.0, 8.0]), latency=np.array([0.0, 0.0, 1e-6]), flow_class=np.array([-1, -1, 0], I32),
             class_ptr=np.array([0, 2], I64), class_links=np.array([0, 1], I32), succ_ptr=np.array([0, 1, 2, 2], I64),
             succ=np.array([1, 2], I32), n_preds=np.array([0, 1, 1], I32), link_bw=np.array([1e9, 2e9]),
             n_resources=1, n_classes=1, local_depth=1,
             start=np.zeros(3), end=np.full(3, np.nan), ready=np.zeros(3), dep_pred=np.full(3, -1, I32),
             res_pred=np.full(3, -1, I32), busy=np.zeros(1), link_bytes=np.zeros(2), link_busy=np.zeros(2))
    a.update(over)
    return list(a.values())
def sim(**over):
    return mod.simulate(*args(**over))
def cp(**over):
    a = dict(start=np.array([0.0, 1.0, 3.0]), ready=np.array([0.0, 1.0, 3.0]), dep_pred=np.array([-1, 0, 1], I32),
             res_pred=np.array([-1, 0, -1], I32), last=2, path=np.zeros(3, I32), reason=np.zeros(3, I8))
    a.update(over)
    return mod.critical_path(*a.values())
"""


def test_event_kernel_entry_points():
    cases = [
        ("simulate: valid", "sim()", None),
        ("simulate: start of too few tasks", "sim(start=np.zeros(1))", "ValueError"),
        ("simulate: duration of too few tasks", "sim(duration=np.zeros(2))", "ValueError"),
        ("simulate: n_preds of too few tasks", "sim(n_preds=np.zeros(1, I32))", "ValueError"),
        ("simulate: duration of float32", "sim(duration=np.zeros(3, np.float32))", "TypeError"),
        ("simulate: resource of int64", "sim(resource=np.zeros(3, I64))", "TypeError"),
        ("simulate: kind two-dimensional", "sim(kind=np.zeros((3, 1), I8))", "ValueError"),
        ("simulate: link_bw None", "sim(link_bw=None)", "TypeError"),
        ("simulate: link_bw empty", "sim(link_bw=np.zeros(0), link_bytes=np.zeros(0), link_busy=np.zeros(0))",
         "ValueError"),
        ("simulate: end read-only", "sim(end=ro(np.zeros(3)))", "ValueError"),
        ("simulate: busy of fewer resources", "sim(n_resources=4)", "ValueError"),
        ("simulate: link_bytes of fewer links", "sim(link_bytes=np.zeros(1))", "ValueError"),
        ("simulate: a resource out of range", "sim(resource=np.array([0, 9, -1], I32))", "ValueError"),
        ("simulate: a negative resource", "sim(resource=np.array([0, -1, -1], I32))", "ValueError"),
        ("simulate: a task kind out of range", "sim(kind=np.array([0, 7, 1], I8))", "ValueError"),
        ("simulate: a successor out of range", "sim(succ=np.array([1, 99], I32))", "ValueError"),
        ("simulate: succ_ptr of the wrong length", "sim(succ_ptr=np.array([0, 1, 2], I64))", "ValueError"),
        ("simulate: succ_ptr past succ", "sim(succ_ptr=np.array([0, 1, 2, 40], I64))", "ValueError"),
        ("simulate: succ_ptr falling", "sim(succ_ptr=np.array([0, 2, 1, 2], I64))", "ValueError"),
        ("simulate: class_ptr of fewer classes", "sim(n_classes=5)", "ValueError"),
        ("simulate: class_ptr past class_links", "sim(class_ptr=np.array([0, 50], I64))", "ValueError"),
        ("simulate: a route link out of range", "sim(class_links=np.array([0, 5], I32))", "ValueError"),
        ("simulate: a flow of no class", "sim(flow_class=np.array([-1, -1, 3], I32))", "ValueError"),
        ("simulate: a negative class count", "sim(n_classes=-1)", "ValueError"),
        ("simulate: a NaN duration", "sim(duration=np.array([1.0, float('nan'), 0.0]))", "ValueError"),
        ("simulate: a zero bandwidth", "sim(link_bw=np.array([1e9, 0.0]))", "ValueError"),
        ("critical_path: valid", "cp()", None),
        ("critical_path: reason shorter than path", "cp(path=np.zeros(100000, I32), reason=np.zeros(1, I8))",
         "ValueError"),
        ("critical_path: last out of range", "cp(last=1000000)", "ValueError"),
        ("critical_path: a predecessor out of range", "cp(dep_pred=np.array([-1, 0, 500000], I32))", "ValueError"),
        ("critical_path: ready of fewer tasks", "cp(ready=np.zeros(1))", "ValueError"),
        ("critical_path: path of int64", "cp(path=np.zeros(3, I64))", "TypeError"),
    ]
    check_messages(run_cases(EVENTS, cases))


# ---- the number-format kernels ----------------------------------------------------------------

FORMATS = """
from archc.formats import standard
fs = standard()
mod = fs.module
scalar = sorted(f._info.index for f in fs.values() if f._mx is None)
i = scalar[0]
q, enc, dec = getattr(mod, f"quantize_{i}"), getattr(mod, f"encode_{i}"), getattr(mod, f"decode_{i}")
q32 = next(getattr(mod, f"quantize32_{j}") for j in scalar if hasattr(mod, f"quantize32_{j}"))
bits = {f._info.index: f.bits for f in fs.values() if f._mx is None}
e32j = next(j for j in scalar if hasattr(mod, f"encode32_{j}"))
e32 = getattr(mod, f"encode32_{e32j}")
e32out = np.zeros(8, np.uint16 if bits[e32j] <= 16 else np.uint32)
mxf = next(f for f in fs.values() if f._mx is not None)
mxq = getattr(mod, f"mx_quantize_{mxf._mx}")
acc = fs["fp32"]._info.index
x = np.linspace(-3, 3, 8)
big = np.linspace(-3, 3, 1 << 20)
rb = np.zeros(1, np.uint64)
A, B, C = np.ones((4, 3)), np.ones((3, 2)), np.zeros((4, 2))
"""


def test_format_kernel_entry_points():
    cases = [
        ("quantize: valid", "q(x, np.empty(8), 0, rb, 0)", None),
        ("quantize: stochastic valid", "q(x, np.empty(8), 5, np.zeros(8, np.uint64), 8)", None),
        ("quantize: in place", "q(x.copy(), x.copy(), 0, rb, 0)", None),
        ("quantize: out of too few values", "q(big, np.empty(1), 0, rb, 0)", "ValueError"),
        ("quantize: stochastic, too few random bits", "q(big, np.empty(big.size), 5, rb, 8)", "ValueError"),
        ("quantize: stochastic, random bits of 70 bits", "q(x, np.empty(8), 5, np.zeros(8, np.uint64), 70)",
         "ValueError"),
        ("quantize: an unknown rounding mode", "q(x, np.empty(8), 17, rb, 0)", "ValueError"),
        ("quantize: x of float32", "q(x.astype(np.float32), np.empty(8), 0, rb, 0)", "TypeError"),
        ("quantize: x two-dimensional", "q(x.reshape(2, 4), np.empty(8), 0, rb, 0)", "ValueError"),
        ("quantize: x strided", "q(np.repeat(x, 2)[::2], np.empty(8), 0, rb, 0)", "ValueError"),
        ("quantize: out read-only", "q(x, ro(np.empty(8)), 0, rb, 0)", "ValueError"),
        ("quantize: x None", "q(None, np.empty(8), 0, rb, 0)", "TypeError"),
        ("quantize32: valid", "q32(x.astype(np.float32), np.empty(8, np.float32), 0, rb, 0)", None),
        ("quantize32: out of too few values", "q32(big.astype(np.float32), np.empty(1, np.float32), 0, rb, 0)",
         "ValueError"),
        ("quantize32: out of float64", "q32(x.astype(np.float32), np.empty(8), 0, rb, 0)", "TypeError"),
        ("encode32: valid", "e32(x.astype(np.float32), e32out)", None),
        ("encode32: out of too few values", "e32(big.astype(np.float32), e32out[:1].copy())", "ValueError"),
        ("encode32: out of uint64", "e32(x.astype(np.float32), np.zeros(8, np.uint64))", "TypeError"),
        ("encode: valid", "enc(x, np.zeros(8, np.uint64))", None),
        ("encode: out of too few values", "enc(big, np.zeros(1, np.uint64))", "ValueError"),
        ("encode: out of int64", "enc(x, np.zeros(8, np.int64))", "TypeError"),
        ("decode: valid", "dec(np.arange(8, dtype=np.uint64), np.empty(8))", None),
        ("decode: out of too few values", "dec(np.zeros(1 << 20, np.uint64), np.empty(1))", "ValueError"),
        ("mx_quantize: valid", "mxq(x, np.zeros(1), np.empty(8), 0, rb, 0)", None),
        ("mx_quantize: too few scales", "mxq(big, np.zeros(1), np.empty(big.size), 0, rb, 0)", "ValueError"),
        ("mx_quantize: out of too few values", "mxq(big, np.zeros(big.size), np.empty(1), 0, rb, 0)", "ValueError"),
        ("dot: valid", "mod.dot(acc, x, x, 0, 0, rb, 0)", None),
        ("dot: exact valid", "mod.dot(acc, x, x, 0, 1, rb, 0)", None),
        ("dot: b shorter than a", "mod.dot(acc, big, x, 0, 0, rb, 0)", "ValueError"),
        ("dot: an unknown accumulator format", "mod.dot(10**6, x, x, 0, 0, rb, 0)", "ValueError"),
        ("dot: stochastic, too few random bits", "mod.dot(acc, big, big, 5, 0, rb, 8)", "ValueError"),
        ("dot: exact, values beyond the quire", "mod.dot(acc, np.full(4, 1e300), np.full(4, 1e300), 0, 1, rb, 0)",
         "ValueError"),
        ("dot: exact, tiny values below the quire", "mod.dot(acc, np.full(4, 1e-300), np.full(4, 1e-300), 0, 1, rb, 0)",
         "ValueError"),
        ("dot: exact, infinity", "mod.dot(acc, np.full(4, np.inf), x[:4].copy(), 0, 1, rb, 0)", "ValueError"),
        ("matmul: valid", "mod.matmul(acc, A, B, C, 0, 0)", None),
        ("matmul: exact valid", "mod.matmul(acc, A, B, C, 0, 1)", None),
        ("matmul: inner dimensions differ", "mod.matmul(acc, A, np.ones((300, 2)), C, 0, 0)", "ValueError"),
        ("matmul: C of too few rows", "mod.matmul(acc, np.ones((5000, 3)), B, C, 0, 0)", "ValueError"),
        ("matmul: C of too few columns", "mod.matmul(acc, A, np.ones((3, 5000)), C, 0, 0)", "ValueError"),
        ("matmul: A one-dimensional", "mod.matmul(acc, np.ones(12), B, C, 0, 0)", "ValueError"),
        ("matmul: stochastic rounding", "mod.matmul(acc, A, B, C, 5, 0)", "ValueError"),
        ("matmul: an unknown accumulator format", "mod.matmul(-1, A, B, C, 0, 0)", "ValueError"),
        ("matmul: exact, values beyond the quire", "mod.matmul(acc, np.full((4, 3), 1e300), B, C, 0, 1)",
         "ValueError"),
        ("set_threads: valid", "mod.set_threads(2, True)", None),
        ("set_threads: no thread", "mod.set_threads(0, False)", "ValueError"),
        ("decode: codes wider than the format, counted", "dec(np.full(8, 1 << 40, np.uint64), np.empty(8))", None),
    ]
    check_messages(run_cases(FORMATS, cases))
