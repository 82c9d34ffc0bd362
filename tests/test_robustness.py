"""Robustness: whatever bytes `archc check` is given, it answers with exit 0 (valid) or exit 1
and `FILE:LINE:COL: error:` diagnostics on stderr, promptly, and never a Python traceback.
And generated code is safe: no name or string a user writes can become code."""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from archc.api import check
from archc.dsl.diagnostics import ArchcError

from conftest import run_cli, sample_text, small_machine

TIME_LIMIT = 60  # seconds per `archc check`

VALID = small_machine("std.formats") + """\
model g(M, N, K) {
  input a : [M, K]
  input b : [K, N]
  return matmul(a, b)
}
"""
RUN_LINE = VALID.count("\n") + 1  # the line of `run r(...)` in with_run()


def with_run(params: str = "", body: str = "") -> str:
    """VALID plus a run whose parameter list is `a = 64` followed by `params`, on one line."""
    return VALID + f"run r(a = 64{params}) {{\n  model g(a, a, a)\n  on c\n  precision bf16\n{body}}}\n"


def archc_check(path: Path, expect: set[int] = frozenset({1})):
    t0 = time.monotonic()
    r = run_cli("check", path, timeout=TIME_LIMIT)
    elapsed = time.monotonic() - t0
    assert r.code in expect, r
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r
    assert "internal error" not in r.stderr, r
    if r.code == 1:
        first = r.stderr.splitlines()[0]
        assert re.match(re.escape(str(path)) + r":\d+:\d+: error: \S", first), r
    assert elapsed < TIME_LIMIT
    return r


def location(r) -> tuple[int, int]:
    m = re.match(r".*?:(\d+):(\d+): error: ", r.stderr)
    assert m, r
    return int(m.group(1)), int(m.group(2))


# ---- bytes that are not a design ---------------------------------------------------------------

def test_random_bytes(tmp_path):
    p = tmp_path / "junk.arch"
    p.write_bytes(random.Random(1234).randbytes(8192))
    archc_check(p)


def test_random_bytes_without_nul(tmp_path):
    rng = random.Random(99)
    p = tmp_path / "junk.arch"
    p.write_bytes(bytes(rng.randrange(1, 256) for _ in range(8192)))
    archc_check(p)


def test_nul_byte_is_located(tmp_path):
    p = tmp_path / "nul.arch"
    p.write_bytes(b"tile t {\n  clock 1 GHz\x00\n}\n")
    r = archc_check(p)
    assert location(r) == (2, 14)
    assert "NUL" in r.stderr


def test_random_ascii_token_soup(tmp_path):
    rng = random.Random(7)
    alphabet = list("{}()[]=,;:\"/*\n +-x.0123456789_abcGHzKiB") + ["of", " x ", "->", "**", "//", "tile ",
                                                                    "model ", "repeat ", "run "]
    for i in range(5):
        p = tmp_path / f"soup{i}.arch"
        p.write_text("".join(rng.choice(alphabet) for _ in range(5000)))
        archc_check(p, {0, 1})


def test_mutated_sample_never_crashes(tmp_path):
    """Random edits of a real design: every outcome is a design or an ArchcError (in-process,
    so a crash shows its traceback here)."""
    base = sample_text("h100")
    alphabet = list("{}()[]=,;:\"/*\n +-x.0123456789_") + [
        "of", " x ", "->", "**", "//", "repeat ", "model ", "tile ", " 1e400 ", " 0 ", " -1 ", " 1e15 ",
        " 2**60 ", " nan ", " true ", " GHz ", " GB/s ", " mac/cycle "]
    path = tmp_path / "mutant.arch"
    outcomes = {"ok": 0, "error": 0}
    for seed in range(150):
        rng = random.Random(seed)
        s = list(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(s))
            op = rng.random()
            if op < 0.4:
                del s[i:i + rng.randint(1, 20)]
            elif op < 0.8:
                s.insert(i, rng.choice(alphabet))
            else:
                s[i] = rng.choice(alphabet)
        path.write_text("".join(s))
        try:
            check(path)
            outcomes["ok"] += 1
        except ArchcError as e:
            text = e.render()
            assert text.startswith((f"{path}:", "<std.", "archc: error: ")), (seed, text)
            outcomes["error"] += 1
    assert outcomes["error"] > 0


# ---- empty, comments, BOM, line endings ---------------------------------------------------------

def test_empty_file(tmp_path):
    p = tmp_path / "empty.arch"
    p.write_text("")
    r = archc_check(p)
    assert location(r) == (1, 1)
    assert "empty" in r.stderr


def test_only_comments(tmp_path):
    p = tmp_path / "comments.arch"
    p.write_text("// one\n/* two\n   three */\n" + "// more\n" * 1000)
    r = archc_check(p)
    assert "the file is empty" in r.stderr


def test_utf8_bom_is_accepted(tmp_path):
    # Editors on Windows write a byte-order mark; it is not part of the design.
    p = tmp_path / "bom.arch"
    p.write_bytes(b"\xef\xbb\xbf" + sample_text("h100").encode())
    archc_check(p, {0})


def test_utf8_bom_does_not_shift_columns(tmp_path):
    p = tmp_path / "bom_err.arch"
    p.write_bytes(b"\xef\xbb\xbf" + b"tile t { clock 1 GHz @ }\n")
    r = archc_check(p)
    assert location(r) == (1, 22)
    assert "unexpected character '@'" in r.stderr


def test_crlf_line_endings(tmp_path):
    p = tmp_path / "crlf.arch"
    p.write_bytes(sample_text("h100").replace("\n", "\r\n").encode())
    archc_check(p, {0})


def test_crlf_error_location_and_source_line(tmp_path):
    p = tmp_path / "crlf_err.arch"
    p.write_bytes(with_run().replace("\n", "\r\n").replace("clock 1 GHz", "clock 1 GB/s").encode())
    r = archc_check(p)
    assert location(r) == (3, 9)
    assert "\r" not in r.stderr


def test_unicode_in_comments_and_strings(tmp_path):
    p = tmp_path / "unicode.arch"
    p.write_text("// µ 日本語 ✓ — “quotes”\n" + with_run(body='  throughput 1, "画像/s ✓"\n'), encoding="utf-8")
    archc_check(p, {0})


def test_unicode_in_a_name_is_a_located_error(tmp_path):
    p = tmp_path / "uname.arch"
    p.write_text(with_run().replace("chip c {", "chip café {"), encoding="utf-8")
    r = archc_check(p)
    assert location(r) == (8, 9)
    assert "é" in r.stderr


def test_tabs_keep_the_caret_under_the_culprit(tmp_path):
    p = tmp_path / "tabs.arch"
    p.write_text("tile t {\n\tclock\t1 GB/s\n}\n")
    with pytest.raises(ArchcError) as info:
        check(p)
    lines = info.value.render().splitlines()
    head = next(i for i, ln in enumerate(lines) if "a clock must be a frequency" in ln)
    shown, caret = lines[head + 1], lines[head + 2]
    assert "\t" not in shown
    assert shown[caret.index("^"):].startswith("1 GB/s")


# ---- sizes and depth ----------------------------------------------------------------------------

def test_ten_megabyte_file(tmp_path):
    decl = "tile t{i} {{\n  clock 1 GHz\n  sram 1 MiB, bandwidth = 64 GB/s\n  vector fp32 : 16 lanes\n}}\n"
    parts, size, i = ["import std.formats\n"], 0, 0
    while size < 10 * 2**20:
        s = decl.format(i=i)
        parts.append(s)
        size += len(s)
        i += 1
    p = tmp_path / "big.arch"
    p.write_text("".join(parts))
    assert p.stat().st_size >= 10 * 2**20
    archc_check(p, {0, 1})


@pytest.mark.parametrize("open_, close", [("(", ")"), ("[", "]"), ("{", "}")])
def test_ten_thousand_nested_brackets(tmp_path, open_, close):
    p = tmp_path / "deep.arch"
    if open_ == "{":
        text = "tile t " + "{ x " * 10_000 + "}" * 10_000 + "\n"
    else:
        text = with_run(", z = " + open_ * 10_000 + "1" + close * 10_000)
    p.write_text(text)
    r = archc_check(p)
    assert "nest" in r.stderr
    line, _ = location(r)
    assert line == (1 if open_ == "{" else RUN_LINE)


def test_ten_thousand_unclosed_brackets(tmp_path):
    p = tmp_path / "open.arch"
    p.write_text("(" * 10_000)
    archc_check(p)


@pytest.mark.parametrize("chain", ["not " * 10_000 + "true", "- " * 10_000 + "1", "2 ** " * 10_000 + "1",
                                   "a" + ".b" * 10_000],
                         ids=["not", "minus", "power", "attr"])
def test_ten_thousand_deep_expressions_without_brackets(tmp_path, chain):
    # Refusing these is fine; crashing is not, and the error belongs on the run's line.
    p = tmp_path / "chain.arch"
    p.write_text(with_run(", z = " + chain))
    r = archc_check(p)
    assert location(r)[0] == RUN_LINE, r


def test_long_flat_sum_is_valid(tmp_path):
    # A thousand terms is long, not deep: `1 + 1 + ...` is a flat expression.
    p = tmp_path / "sum.arch"
    p.write_text(with_run(", z = " + "1 + " * 1000 + "1"))
    archc_check(p, {0})


def test_long_comment_line(tmp_path):
    p = tmp_path / "longc.arch"
    p.write_text("// " + "x" * 1_000_000 + "\n" + with_run())
    archc_check(p, {0})


def test_long_string(tmp_path):
    p = tmp_path / "longs.arch"
    p.write_text(with_run(body='  throughput 1, "' + "y" * 1_000_000 + '"\n'))
    archc_check(p, {0})


def test_long_list(tmp_path):
    p = tmp_path / "longl.arch"
    p.write_text(with_run(", l = [" + "1, " * 50_000 + "1]"))
    archc_check(p, {0})


def test_error_in_a_very_long_line_is_located_and_shown_in_a_window(tmp_path):
    p = tmp_path / "longerr.arch"
    prefix = ", l = [" + "1, " * 20_000
    p.write_text(with_run(prefix + "1 @ 2]"))
    r = archc_check(p)
    line_text = with_run(prefix + "1 @ 2]").splitlines()[RUN_LINE - 1]
    assert location(r) == (RUN_LINE, line_text.index("@") + 1)
    shown, caret = r.stderr.splitlines()[1:3]
    assert len(shown) < 300, "a megabyte line is not printed whole under a diagnostic"
    assert shown[caret.index("^")] == "@"


# ---- generated code safety --------------------------------------------------------------------------

HOSTILE = r"""// Names that look like Python, strings with quotes and backslashes: "x", \n, ✓ µ 日本
import std.formats
tile os {
  clock 1 GHz
  sram 1 MiB, bandwidth = 64 GB/s, energy = 0.1 pJ/B
  matrix bf16 x bf16 -> fp32 : 256 mac/cycle, energy = 1 pJ
  vector fp32 : 16 lanes
}
chip x__import__os {
  tiles 4 of os
  noc crossbar, bandwidth = 1 TB/s
  memory __import__, 16 GB, bandwidth = 1 TB/s
}
system sys {
  chips 2 of x__import__os
  network switch, bandwidth = 10 GB/s
}
model __import__(n) {
  input a : [n, n]
  exec = relu(a)
  eval = matmul(exec, a)
  return eval
}
run __builtins__(n = 256) {
  model __import__(n)
  on sys
  strategy data, chips = 2
  precision bf16
  throughput 1, "a\"; import os #"
}
run pwn(n = 64) {
  model __import__(n)
  on x__import__os
  precision bf16
  throughput 1, "\"); open(r'PWNED', 'w') #\\ ✓"
}
"""


@pytest.fixture
def hostile(tmp_path) -> Path:
    pwned = tmp_path / "pwned_marker"
    p = tmp_path / "hostile.arch"
    p.write_text(HOSTILE.replace("PWNED", str(pwned)), encoding="utf-8")
    return p


_MANGLED = re.compile(r"\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]*_[0-9a-f]{8}(?:_[0-9a-f]{16})?\b")


def code_lines(pyx: str) -> list[tuple[str, ...]]:
    """Each generated module (`--emit pyx` separates them by `# ==== NAME.pyx`) as its lines of
    code without comments, mangled identifiers normalised; modules in a name-independent order."""
    modules = []
    for chunk in re.split(r"^# ==== .*\.pyx$", pyx, flags=re.M):
        lines = tuple(_MANGLED.sub("ID", c) for c in (ln.split("#", 1)[0].rstrip() for ln in chunk.splitlines()) if c)
        if lines:
            modules.append(lines)
    return sorted(modules)


def emit_pyx(path) -> str:
    r = run_cli("compile", path, "--emit", "pyx")
    assert r.code == 0, r
    assert r.stdout.strip()
    return r.stdout


def test_hostile_names_check(hostile):
    r = archc_check(hostile, {0})
    assert "2 runs" in r.stdout
    d = check(hostile)
    assert d.run("__builtins__").throughput_unit == 'a"; import os #'
    assert d.run("pwn").throughput_unit.endswith("#\\ ✓")


def test_hostile_names_generate_no_user_code(hostile, tmp_path):
    """The generated code of the hostile design is the code of the same design with plain
    names: user names reach comments (one line each) and mangled identifiers only."""
    text = hostile.read_text(encoding="utf-8")
    plain = text
    for a, b in (("x__import__os", "zzchip"), ("tile os", "tile zztile"), ("of os", "of zztile"),
                 ("system sys", "system zzsys"), ("on sys", "on zzsys"), ("__import__", "zzmem"),
                 ("__builtins__", "zzrun")):
        plain = plain.replace(a, b)
    q = tmp_path / "plain.arch"
    q.write_text(plain, encoding="utf-8")
    evil_pyx, plain_pyx = emit_pyx(hostile), emit_pyx(q)
    assert code_lines(evil_pyx) == code_lines(plain_pyx)
    assert "x__import__os" in evil_pyx  # the machine is named, in comments
    for line in evil_pyx.splitlines():
        code = line.split("#", 1)[0]
        # the one file the kernels open: the format kernels read /proc/loadavg (a fixed path,
        # read-only) to count idle CPUs before a threaded call (codegen/templates/formats.pyx.j2)
        code = code.replace('open("/proc/loadavg", O_RDONLY)', "")
        assert "import os" not in code and "open(" not in code, line
        assert not re.search(r"\b(__import__|__builtins__|x__import__os)\b", code), line


@pytest.mark.build
def test_hostile_names_build_and_run(hostile, tmp_path):
    marker = tmp_path / "pwned_marker"
    for run in ("__builtins__", "pwn"):
        r = run_cli("run", hostile, "--run", run, "--json", cwd=tmp_path)
        assert r.code == 0, r
        rep = json.loads(r.stdout)
        assert rep["run"] == run
        assert rep["flops"] > 0
    assert rep["throughput"]["unit"] == str(check(hostile).run("pwn").throughput_unit)
    assert not marker.exists()
    assert not (tmp_path / "PWNED").exists()


def test_newline_in_a_string_is_a_syntax_error(tmp_path):
    p = tmp_path / "nl.arch"
    p.write_text(with_run(body='  throughput 1, "a\n  b"\n'))
    r = archc_check(p)
    assert location(r) == (RUN_LINE + 4, 17)
    assert "unterminated string" in r.stderr


@pytest.mark.parametrize("name", ["__import__", "os", "sys", "exec", "eval", "print", "None", "True",
                                  "class", "def", "lambda", "cimport", "cdef", "_archc_cyshared"])
def test_python_and_cython_words_as_names(tmp_path, name):
    def design(tile_name):
        text = with_run().replace("tile t", f"tile {tile_name}").replace("of t\n", f"of {tile_name}\n")
        return text.replace("chip c", f"chip {tile_name}_chip").replace("on c\n", f"on {tile_name}_chip\n")
    p, q = tmp_path / "words.arch", tmp_path / "plain.arch"
    p.write_text(design(name))
    q.write_text(design("zzplain"))
    assert check(p).run("r").machine.tile.name == name
    assert code_lines(emit_pyx(p)) == code_lines(emit_pyx(q))
