"""End to end through the `archc` command: check, run (text, JSON, --out), --set, compile
(-o, --emit), the cache, help. Tests that build kernels are marked `build`."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archc.api import check

from conftest import EASY_MACHINE, H100, run_cli

H100_BF16_PEAK = 989.4e12  # FLOP/s: 132 SMs x 2048 MAC/cycle x 2 x 1.83 GHz (dense)
GEMM = ("run", H100, "--run", "gemm")
SQUARE = ("--set", "M=8192", "--set", "N=8192", "--set", "K=8192", "--set", "dtype=bf16")

TOP_KEYS = {"schema", "run", "system", "model", "level", "latency_s", "throughput", "flops",
            "achieved_flops_per_s", "utilization", "energy_j", "bottleneck", "ops"}
OP_KEYS = {"name", "kind", "time_s", "flops", "bytes", "bound_by"}


def run_json(*args) -> dict:
    r = run_cli(*args, "--json")
    assert r.code == 0, r
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)  # one JSON object and nothing else on stdout


def assert_report(rep: dict) -> None:
    assert TOP_KEYS <= rep.keys(), TOP_KEYS - rep.keys()
    assert isinstance(rep["schema"], str) and rep["schema"]
    assert rep["level"] == "analytic"
    assert isinstance(rep["throughput"], dict) and {"value", "unit"} <= rep["throughput"].keys()
    assert isinstance(rep["throughput"]["unit"], str) and rep["throughput"]["unit"]
    for k in ("latency_s", "flops", "achieved_flops_per_s", "energy_j"):
        assert isinstance(rep[k], (int, float)) and math.isfinite(rep[k]) and rep[k] > 0, k
    assert 0 < rep["utilization"] <= 1
    assert isinstance(rep["bottleneck"], str) and rep["bottleneck"]
    assert rep["ops"], "a report lists its ops"
    for op in rep["ops"]:
        assert OP_KEYS <= op.keys(), OP_KEYS - op.keys()
        assert isinstance(op["name"], str) and op["name"]
        assert op["time_s"] >= 0 and op["flops"] >= 0 and op["bytes"] >= 0
        assert isinstance(op["bound_by"], str) and op["bound_by"]


# ---- check and help ---------------------------------------------------------------------------

def test_check_sample():
    r = run_cli("check", H100)
    assert r.code == 0, r
    assert r.stderr == ""
    assert re.fullmatch(rf"{re.escape(str(H100))}: ok \(.*\)\n", r.stdout), r


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("check", "--help"), ("compile", "--help"),
                                  ("cache", "--help")])
def test_help(args):
    r = run_cli(*args)
    assert r.code == 0, r
    assert r.stdout.startswith("usage: archc"), r
    if args[0] == "run":
        for opt in ("--run", "--set", "--json", "--out", "--level"):
            assert opt in r.stdout


def test_version():
    import archc
    r = run_cli("--version")
    assert r.code == 0, r
    assert archc.__version__ in r.stdout


def test_no_command_is_a_usage_error():
    r = run_cli()
    assert r.code == 2, r
    assert "usage: archc" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_missing_file(tmp_path):
    r = run_cli("check", tmp_path / "nope.arch")
    assert r.code == 1, r
    assert r.stderr == f"archc: error: {tmp_path / 'nope.arch'}: no such file\n"


# ---- run ------------------------------------------------------------------------------------------

@pytest.mark.build
def test_run_gemm_json_contract():
    rep = run_json(*GEMM, *SQUARE)
    assert_report(rep)
    assert rep["run"] == "gemm" and rep["model"] == "gemm" and rep["system"] == "h100"
    M = N = K = 8192
    assert rep["flops"] == 2 * M * N * K
    # a burst at the boost clock reaches 70-95% of the datasheet peak; the default, sustained
    # clock (1.55 of 1.83 GHz) scales the compute time by the clock ratio (plus the 3 us launch),
    # all but each thread-block tile's 200 ns crossbar latency (16 waves: 3.2 us of ~1.4 ms)
    burst = run_json(*GEMM, *SQUARE, "--set", "clock=boost")
    assert 0.70 * H100_BF16_PEAK <= burst["achieved_flops_per_s"] <= 0.95 * H100_BF16_PEAK
    assert rep["latency_s"] - 3e-6 == pytest.approx((burst["latency_s"] - 3e-6) * 1.83 / 1.55, rel=5e-3)
    assert rep["achieved_flops_per_s"] == pytest.approx(rep["flops"] / rep["latency_s"], rel=1e-6)
    assert rep["utilization"] == pytest.approx(rep["achieved_flops_per_s"] / H100_BF16_PEAK, rel=0.01)
    assert rep["bottleneck"] == "compute"
    (op,) = [o for o in rep["ops"] if o["flops"] > 0]
    assert op["kind"] == "matmul" and op["flops"] == 2 * M * N * K and op["bound_by"] == "compute"
    # the bytes a GEMM must move at least once: A, B (bf16) and C
    assert op["bytes"] >= 2 * (M * K + K * N + M * N)


@pytest.mark.build
def test_run_text_report():
    r = run_cli(*GEMM)
    assert r.code == 0, r
    assert r.stdout.startswith("run gemm: model gemm on h100"), r
    for word in ("latency", "throughput", "energy", "bottleneck"):
        assert word in r.stdout


@pytest.mark.build
def test_set_doubling_k_doubles_flops():
    base = run_json(*GEMM, "--set", "K=4096")
    double = run_json(*GEMM, "--set", "K=8192")
    assert double["flops"] == 2 * base["flops"]
    assert 1.5 * base["latency_s"] < double["latency_s"] < 2.5 * base["latency_s"]
    assert double["energy_j"] > base["energy_j"]


@pytest.mark.build
def test_set_fp8_is_faster_than_bf16():
    # The H100 tile has twice the fp8 matrix rate: the same GEMM takes less time.
    bf16 = run_json(*GEMM, *SQUARE)
    fp8 = run_json(*GEMM, *SQUARE[:-1], "dtype=fp8_e4m3")
    assert fp8["flops"] == bf16["flops"]
    assert fp8["latency_s"] < 0.75 * bf16["latency_s"]


@pytest.mark.build
def test_run_out_writes_the_report_and_the_roofline(tmp_path):
    out = tmp_path / "report"
    r = run_cli(*GEMM, *SQUARE, "--out", out)
    assert r.code == 0, r
    assert sorted(p.name for p in out.iterdir()) == ["ops.csv", "report.json", "report.txt", "roofline.png",
                                                     "roofline.svg"]
    rep = json.loads((out / "report.json").read_text())
    assert_report(rep)
    assert rep == run_json(*GEMM, *SQUARE)
    rows = list(csv.DictReader(io.StringIO((out / "ops.csv").read_text())))
    assert [row["name"] for row in rows] == [op["name"] for op in rep["ops"]]
    assert {"name", "kind", "time_s", "flops", "bytes", "bound_by"} <= rows[0].keys()
    assert float(sum(float(row["flops"]) for row in rows)) == pytest.approx(rep["flops"], rel=1e-5)
    text = (out / "report.txt").read_text()
    assert text.startswith("run gemm: model gemm on h100")
    assert all(op["name"] in text for op in rep["ops"])


@pytest.mark.build
def test_failed_run_leaves_no_output_directory(tmp_path):
    out = tmp_path / "report"
    r = run_cli(*GEMM, "--set", "M=-1", "--out", out)
    assert r.code == 1, r
    assert not out.exists()
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


def test_bad_set_is_a_located_error():
    r = run_cli(*GEMM, "--set", "Q=7")
    assert r.code == 1, r
    assert r.stdout == ""
    assert re.match(r"<--set Q>:1:1: error: run 'gemm' has no parameter 'Q'", r.stderr), r
    assert r.stderr.splitlines()[1].strip() == "Q=7"
    assert "^" in r.stderr.splitlines()[2]
    assert "Traceback" not in r.stderr


def test_set_value_of_the_wrong_kind_is_located_at_the_set():
    # dtype's default is a format name; a number is refused where the user typed it
    r = run_cli(*GEMM, "--set", "dtype=7")
    assert r.code == 1, r
    assert r.stderr.startswith("<--set dtype>:1:7: error: run 'gemm' takes a name for 'dtype' (its default "
                               "is bf16); found 7\n    dtype=7\n"), r


def test_set_value_that_fails_in_the_design_names_the_set():
    r = run_cli(*GEMM, "--set", "dtype=bf61")
    assert r.code == 1, r
    assert re.match(rf"{re.escape(str(H100))}:\d+:\d+: error: unknown format 'bf61'; did you mean 'bf16'\?\n",
                    r.stderr), r
    assert "note: the run's parameter 'dtype' is set by `--set dtype=bf61`" in r.stderr, r


def test_unknown_run_name():
    r = run_cli("run", H100, "--run", "gemmm", "--json")
    assert r.code == 1, r
    assert "no run named 'gemmm'; this design has gemm, " in r.stderr
    assert r.stderr.rstrip().endswith("; did you mean 'gemm'?")
    assert r.stdout == ""


def _sample_runs() -> list[str]:
    try:
        return [n for n, _ in check(H100).runs]
    except Exception as e:  # reported by test_check_sample; keep the module collectable
        return [f"<{H100.name} does not check: {type(e).__name__}>"]


@pytest.mark.build
@pytest.mark.parametrize("run", _sample_runs())
def test_every_sample_run(run):
    rep = run_json("run", H100, "--run", run)
    assert_report(rep)
    assert rep["run"] == run
    assert rep["flops"] >= sum(op["flops"] for op in rep["ops"]) * 0.999


# ---- compile -------------------------------------------------------------------------------------

def _module_names(directory: Path) -> list[str]:
    return sorted(p.name.split(".", 1)[0] for p in directory.glob("*.so"))


@pytest.mark.build
def test_compile_output_is_importable_by_name(tmp_path):
    out = tmp_path / "mods"
    r = run_cli("compile", H100, "-o", out)
    assert r.code == 0, r
    machines = sorted({run.machine.name for _, run in check(H100).runs})
    names = _module_names(out)
    kernels = [n for n in names if n.startswith("analytic_")]
    formats = [n for n in names if n.startswith("formats_")]
    assert len(kernels) == len(machines) and len(formats) == 1, (names, machines)
    for n in kernels + formats:
        assert (out / f"{n}.pyx").is_file(), "the generated source sits next to its module"
        assert re.search(rf"{re.escape(str(out / n))} \(", r.stdout), r
    # each module, imported by name in a fresh interpreter with only the directory on the path
    script = ("import importlib, sys\nsys.path.insert(0, sys.argv[1])\n"
              "for name in sys.argv[2:]:\n"
              "    m = importlib.import_module(name)\n"
              "    assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
              "    if name.startswith('analytic_'):\n"
              "        assert callable(m.analyze), name\n"
              "    if name.startswith('formats_'):\n"
              "        assert callable(m.quantize_0) and callable(m.matmul), name\n"
              "    print('ok', name)\n")
    p = subprocess.run([sys.executable, "-I", "-c", script, str(out), *names], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [w for n in names for w in ("ok", n)]


@pytest.mark.build
def test_compile_without_output_dir_builds_into_the_cache(archc_cache_dir):
    r = run_cli("compile", H100)
    assert r.code == 0, r
    lines = r.stdout.strip().splitlines()
    assert lines and all(ln.endswith(": built") for ln in lines), r
    assert any(archc_cache_dir.iterdir())


def test_compile_bad_file_writes_nothing(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("tile t { clock 1 GB/s }\n")
    out = tmp_path / "mods"
    r = run_cli("compile", bad, "-o", out)
    assert r.code == 1, r
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.arch"]


def test_emit_ast():
    r = run_cli("compile", H100, "--emit", "ast")
    assert r.code == 0, r
    assert "tile h100_sm {" in r.stdout
    assert "chip h100 {" in r.stdout
    assert "run gemm(" in r.stdout


def test_emit_ir():
    r = run_cli("compile", H100, "--emit", "ir")
    assert r.code == 0, r
    assert r.stdout.startswith("Design\n")
    assert "h100_sm" in r.stdout and "'gemm'" in r.stdout
    assert re.search(r"clock_hz: 1830000000\b", r.stdout), "the IR is normalised to SI units"


def test_emit_pyx():
    r = run_cli("compile", H100, "--emit", "pyx")
    assert r.code == 0, r
    headers = re.findall(r"^# ==== (\w+)\.pyx$", r.stdout, flags=re.M)
    analytic = [h for h in headers if h.startswith("analytic_")]
    assert len(analytic) == len({run.machine.name for _, run in check(H100).runs})
    assert len([h for h in headers if h.startswith("formats_")]) == 1 and len(headers) == len(analytic) + 1
    # every analytic module defines its entry point (def, cpdef or cdef, with a return type or not)
    for fn in ("analyze",):
        found = re.findall(rf"^c?p?def (?:\w+ )*{fn}\(", r.stdout, flags=re.M)
        assert len(found) == len(analytic), (fn, found)
    assert str(H100.parent) not in r.stdout, "no absolute paths in generated code"


def test_emit_pyx_is_byte_identical_across_processes():
    a = subprocess.run([sys.executable, "-m", "archc", "compile", str(H100), "--emit", "pyx"],
                       capture_output=True, timeout=120)
    b = subprocess.run([sys.executable, "-m", "archc", "compile", str(H100), "--emit", "pyx"],
                       capture_output=True, timeout=120, env={**__import__("os").environ, "PYTHONHASHSEED": "12345"})
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert a.stdout and a.stdout == b.stdout


# ---- the cache ---------------------------------------------------------------------------------------

def test_cache_dir_follows_the_environment(tmp_path):
    r = run_cli("cache", "dir", env={"ARCHC_CACHE_DIR": tmp_path / "c"})
    assert r.code == 0, r
    assert r.stdout.strip() == str(tmp_path / "c")


@pytest.mark.build
def test_cache_clear(tmp_path, archc_cache_dir):
    r = run_cli(*GEMM)  # make sure the session cache holds a kernel (cheap when already built)
    assert r.code == 0, r
    private = tmp_path / "cache"
    shutil.copytree(archc_cache_dir, private)
    env = {"ARCHC_CACHE_DIR": private}
    entries = [p for p in private.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) >= 2  # the shared utility module and at least the h100 kernel
    r = run_cli("cache", "clear", env=env)
    assert r.code == 0, r
    assert r.stdout.strip() == f"removed {len(entries)} cache entries from {private}"
    assert not [p for p in private.iterdir() if p.is_dir() and not p.name.startswith(".")]
    r = run_cli("cache", "clear", env=env)
    assert r.code == 0 and r.stdout.strip() == f"removed 0 cache entries from {private}", r
    # and the next run rebuilds what it needs
    r = run_cli(*GEMM, "--json", env=env)
    assert r.code == 0, r
    assert json.loads(r.stdout)["flops"] == 2 * 8192**3
    assert [p for p in private.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_formats_command_lists_range_and_cost():
    r = run_cli("formats", "--node", "45")
    assert r.code == 0, r
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert {"bf16", "fp8_e4m3", "posit16", "mxfp4", "int8"} <= set(rows)
    # at 45 nm the fp32 -> fp32 MAC is the table's fp32 multiplier plus fp32 adder: 3.7 + 0.9 pJ
    assert float(rows["fp32"].split()[-3]) == pytest.approx(4.6, rel=0.02)
    assert rows["fp64"].split()[-1] == "1.0x"
    bad = run_cli("formats", "--node", "-3")
    assert bad.code == 1 and "--node takes a process node" in bad.stderr


# ---- build progress on stderr -----------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, expected", [
    (io.StringIO, "archc: building the analytic kernel of m (first use; cached afterwards)…\n"
                  "archc: built the analytic kernel of m in 0.25 s\n"),
    (_Terminal, "archc: building the analytic kernel of m (first use; cached afterwards)… 0.25 s\n"),
])
def test_build_progress_shows_only_builds_longer_than_the_threshold(stream, expected):
    import time

    from archc.cli import _progress_printer
    out = stream()
    cb = _progress_printer(out, after_s=0.05)
    cb("compiling kernel quick_1 for the analytic kernel of q")
    cb("built quick_1 in 0.01 s")  # done before the threshold: nothing shown
    cb("compiling kernel m_1 for the analytic kernel of m")
    time.sleep(0.3)
    cb("built m_1 in 0.25 s")
    assert out.getvalue() == expected
    out = stream()
    cb = _progress_printer(out, after_s=0.05)
    cb("compiling kernel m_1 for the analytic kernel of m")
    time.sleep(0.3)
    cb("failed m_1 after 0.26 s")  # the error that follows starts on a line of its own
    assert out.getvalue().endswith("\n") and "failed" in out.getvalue()


@pytest.mark.build
def test_a_build_shows_progress_on_stderr_only(tmp_path):
    # a fresh cache: Cython's shared module and the kernel are built, each taking over a second
    f = tmp_path / "m.arch"
    f.write_text(EASY_MACHINE + "run r { model vadd(1000); on c; precision fp16 }\n")
    r = run_cli("run", f, "--json", env={"ARCHC_CACHE_DIR": tmp_path / "cache"})
    assert r.code == 0, r
    json.loads(r.stdout)  # stdout holds the JSON and nothing else
    assert re.search(r"^archc: building the analytic kernel of c \(first use; cached afterwards\)…\n"
                     r"archc: built the analytic kernel of c in \d+\.\d\d s$", r.stderr, re.M), r


def test_accuracy_tells_the_progress_of_the_standard_formats_build(monkeypatch):
    # `archc accuracy` of a design with only standard formats builds std.formats' kernels
    # (about 20 s the first time): the build hears the command's progress callback
    from archc.runtime import accuracy, cache, numerics
    seen = []

    def fake_build(source, stem, *, archc_version, progress=None, label=None, directory=None):
        seen.append((label, progress))
        raise cache.BuildError("stop here")
    monkeypatch.setattr(numerics, "_standard", [])
    monkeypatch.setattr(cache, "build", fake_build)
    design = check(H100)
    progress = print
    with pytest.raises(Exception, match="building the format kernels failed: stop here"):
        accuracy.formats_for(design, progress)
    assert seen == [("the number-format kernels of std.formats", progress)]
