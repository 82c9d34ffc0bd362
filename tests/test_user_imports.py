"""User imports (dsl/imports.py): `import "m.arch"`, `import "m.arch" as m`, `from "m.arch"
import a, b`; the search path (next to the importing file, -I, ARCHC_PATH); every error located
(cycles, missing files and names, clashes, errors inside an imported file); the compiled-kernel
cache following an edited imported file; the samples split into machine and workload files."""
from __future__ import annotations

import json
import os

import pytest

from archc import __version__, cli
from archc.api import check, compile_stages, kernel_sources
from archc.dsl.diagnostics import ArchcError
from archc.runtime.pipeline import run_analytic
from conftest import SAMPLES, sample_text, small_machine

MACHINE = small_machine("std.formats")  # tile t, chip c (4 tiles)
RUN = """run g(n = 512) {
  model gemm(n, n, n)
  on {on}
  precision bf16
}
"""


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _workload(head: str, on: str = "c") -> str:
    return "import std.formats\nimport std.models\n" + head + "\n" + RUN.replace("{on}", on)


def _errors(argv, capsys, cwd, monkeypatch) -> tuple[int, str]:
    """Exit code and stderr of `archc ARGV` run in-process from `cwd`."""
    monkeypatch.chdir(cwd)
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


# ---- the samples: a workload file importing its machine -------------------------------------

@pytest.mark.parametrize("sample", sorted(p.stem for p in SAMPLES.glob("*.arch")))
def test_every_sample_imports_its_machine(sample):
    text = (SAMPLES / f"{sample}.arch").read_text(encoding="utf-8")
    assert f'import "machines/{sample}.arch"' in text
    machine = (SAMPLES / "machines" / f"{sample}.arch").read_text(encoding="utf-8")
    assert "\nrun " not in machine and "\ntile " in machine and "\nchip " in machine


@pytest.mark.build
def test_workload_importing_its_machine_gives_the_single_file_estimate(tmp_path):
    single = _write(tmp_path / "h100.arch", sample_text("h100"))
    joined, split = check(single, run="bert_train"), check(SAMPLES / "h100.arch", run="bert_train")
    assert joined.tiles == split.tiles and joined.chips == split.chips and joined.systems == split.systems
    a = json.loads(run_analytic(joined.run("bert_train"), __version__).to_json())
    b = json.loads(run_analytic(split.run("bert_train"), __version__).to_json())
    assert a == b
    assert a["system"] == "dgx_h100" and a["latency_s"] > 0


def test_workload_and_single_file_generate_the_same_kernels(tmp_path, monkeypatch):
    _write(tmp_path / "samples" / "dojo.arch", sample_text("dojo"))
    monkeypatch.chdir(tmp_path)
    single = kernel_sources(compile_stages("samples/dojo.arch").ir)
    monkeypatch.chdir(SAMPLES.parent)
    split = kernel_sources(compile_stages("samples/dojo.arch").ir)
    assert single == split


def test_emit_ast_shows_the_imported_declarations_after_their_file(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "m.arch", MACHINE)
    _write(tmp_path / "w.arch", _workload('import "m.arch"'))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compile", "w.arch", "--emit", "ast"]) == 0
    text = capsys.readouterr().out
    assert text.startswith('import std.formats  @1:1\nimport std.models  @2:1\nimport "m.arch"  @3:1\n'
                           "run g(n = 512) {  @4:1\n"), text
    assert "}\n// from m.arch\nimport std.formats  @1:1\ntile t {  @2:1\n" in text, text


# ---- qualified and selective imports -----------------------------------------------------------

@pytest.mark.build
def test_qualified_import_runs_on_the_same_machine(tmp_path):
    _write(tmp_path / "lib" / "m.arch", MACHINE)
    plain = check(_write(tmp_path / "plain.arch", _workload('import "lib/m.arch"')))
    qual = check(_write(tmp_path / "qual.arch", _workload('import "lib/m.arch" as hw', on="hw.c")))
    assert [n for n, _ in qual.chips] == ["hw.c"] and [n for n, _ in qual.tiles] == ["hw.t"]
    p = run_analytic(plain.run("g"), __version__)
    q = run_analytic(qual.run("g"), __version__)
    assert q.system == "hw.c" and p.system == "c"
    assert q.latency_s == p.latency_s and q.energy_j == p.energy_j


def test_qualified_names_reach_formats_and_blocks_and_set(tmp_path):
    _write(tmp_path / "m.arch", MACHINE.replace("  vector fp32", "  matrix my8 x my8 -> fp32 : 512 mac/cycle\n"
                                                "  vector fp32")
           + "format my8 = float(exp = 4, man = 3, bias = 7, inf = false, nan = single, overflow = saturate)\n"
           + "block twice(x) {\n  return x + x\n}\n")
    w = _write(tmp_path / "w.arch", 'import std.formats\nimport "m.arch" as m\n'
               "model tiny(d = 64) {\n  input x : bf16[8, d]\n  return m.twice(x)\n}\n"
               "run r(dtype = m.my8) {\n  model tiny()\n  on m.c\n  precision dtype\n}\n")
    d = check(w)
    assert "m.my8" in dict(d.formats) and "m.twice" in dict(d.blocks)
    assert dict(d.run("r").params)["dtype"] == "m.my8"
    assert dict(check(w, ["dtype=bf16"], "r").run("r").params)["dtype"] == "bf16"
    assert dict(check(w, ["dtype=m.my8"], "r").run("r").params)["dtype"] == "m.my8"


def test_a_qualified_name_the_file_does_not_declare(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "m.arch", MACHINE)
    _write(tmp_path / "w.arch", _workload('import "m.arch" as hw', on="hw.cc"))
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("w.arch:6:6: error: m.arch (imported as hw) declares no 'cc'; did you mean 'c'?\n"
                   "      on hw.cc\n"
                   "         ^^^^^\n")


def test_selective_import_brings_only_the_names_it_lists(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "m.arch", MACHINE)
    d = check(_write(tmp_path / "w.arch", _workload('from "m.arch" import c')))
    # the chip's tile stays resolvable inside m.arch, under a name no file can write
    assert [n for n, _ in d.chips] == ["c"] and [n for n, _ in d.tiles] == ["t@m.arch"]
    assert d.run("g").machine.chip.tile == "t@m.arch"
    # ... and is not visible in the importing file
    _write(tmp_path / "w2.arch", 'import std.formats\nfrom "m.arch" import c\n'
           "chip c2 {\n  tiles 2 of t\n  noc crossbar, bandwidth = 1 TB/s\n}\n")
    code, err = _errors(["check", "w2.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err.startswith("w2.arch:4:14: error: unknown tile 't'"), err


@pytest.mark.build
def test_selective_import_gives_the_same_estimate(tmp_path):
    _write(tmp_path / "m.arch", MACHINE)
    plain = check(_write(tmp_path / "a.arch", _workload('import "m.arch"')))
    sel = check(_write(tmp_path / "b.arch", _workload('from "m.arch" import c')))
    assert run_analytic(sel.run("g"), __version__).latency_s == run_analytic(plain.run("g"), __version__).latency_s


def test_a_missing_name_in_from_import(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "m.arch", MACHINE + "run r {\n  model gemm(8, 8, 8)\n  on c\n}\n")
    _write(tmp_path / "w.arch", _workload('from "m.arch" import c, cc, r'))
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("w.arch:3:25: error: m.arch declares no 'cc'; did you mean 'c'?\n"
                   '    from "m.arch" import c, cc, r\n'
                   "                            ^^\n"
                   "w.arch:3:29: error: 'r' is a run of m.arch; runs are not imported (a workload file "
                   "declares its own)\n"
                   '    from "m.arch" import c, cc, r\n'
                   "                                ^\n"
                   "archc: 2 errors; unable to continue\n")


def test_runs_of_an_imported_file_are_neither_imported_nor_checked(tmp_path):
    _write(tmp_path / "m.arch", MACHINE + "run broken {\n  model nothing()\n  on nowhere\n}\n")
    d = check(_write(tmp_path / "w.arch", _workload('import "m.arch"')))
    assert [n for n, _ in d.runs] == ["g"]


def test_imports_are_not_passed_on(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "m.arch", MACHINE)
    _write(tmp_path / "sys.arch", 'import "m.arch"\nsystem s {\n  chips 2 of c\n'
           "  network switch, bandwidth = 100 GB/s\n}\n")
    d = check(_write(tmp_path / "w.arch", _workload('import "sys.arch"', on="s")))
    assert [n for n, _ in d.systems] == ["s"] and [n for n, _ in d.chips] == ["c@m.arch"]
    _write(tmp_path / "w2.arch", _workload('import "sys.arch"', on="c"))
    code, err = _errors(["check", "w2.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == "w2.arch:6:6: error: 'on' names a chip or system; 'c' is not one\n      on c\n         ^\n"


def test_the_same_file_through_two_paths_is_read_once(tmp_path):
    _write(tmp_path / "lib" / "m.arch", MACHINE)
    d = check(_write(tmp_path / "w.arch", _workload('import "lib/m.arch"\nimport "./lib/../lib/m.arch"')))
    assert [n for n, _ in d.chips] == ["c"]


# ---- clashes -------------------------------------------------------------------------------------

def test_an_import_clashing_with_a_local_declaration(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "m.arch", MACHINE)
    _write(tmp_path / "w.arch", 'import std.formats\nimport "m.arch"\n'
           "chip c {\n  tiles 2 of t\n  noc crossbar, bandwidth = 1 TB/s\n}\n")
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("w.arch:2:1: error: 'c' is imported from m.arch, and w.arch declares 'c' too\n"
                   '    import "m.arch"\n'
                   "    ^^^^^^^^^^^^^^^\n"
                   "w.arch:3:6: note: w.arch declares 'c' here\n"
                   "    chip c {\n"
                   "         ^\n"
                   "m.arch:8:6: note: m.arch declares 'c' here\n"
                   "    chip c {\n"
                   "         ^\n")


def test_two_imports_of_one_name(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "a.arch", MACHINE)
    _write(tmp_path / "b.arch", "import std.formats\n" + MACHINE.split("chip c")[0].split("\n", 1)[1])
    _write(tmp_path / "w.arch", 'import "a.arch"\nfrom "b.arch" import t\n')
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("w.arch:2:22: error: 't' is imported from both a.arch and b.arch\n"
                   '    from "b.arch" import t\n'
                   "                         ^\n"
                   "a.arch:2:6: note: a.arch declares 't' here\n"
                   "    tile t {\n"
                   "         ^\n"
                   "b.arch:2:6: note: b.arch declares 't' here\n"
                   "    tile t {\n"
                   "         ^\n")


def test_the_same_hidden_name_in_two_files_is_no_clash(tmp_path):
    _write(tmp_path / "a" / "m.arch", MACHINE)
    _write(tmp_path / "b" / "m.arch", MACHINE.replace("clock 1 GHz", "clock 2 GHz"))
    d = check(_write(tmp_path / "w.arch", 'import std.formats\nimport std.models\n'
                     'from "a/m.arch" import c\nimport "b/m.arch" as b\n' + RUN.replace("{on}", "b.c")))
    assert [n for n, _ in d.tiles] == ["b.t", "t@m.arch"]
    assert dict(d.tiles)["b.t"].clock_hz == 2e9 and dict(d.tiles)["t@m.arch"].clock_hz == 1e9


# ---- errors: cycles, missing files, errors inside imported files -------------------------------

def test_an_import_cycle_names_the_chain(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "a.arch", 'import std.formats\nimport "b.arch"\n')
    _write(tmp_path / "b.arch", 'import "a.arch"\n' + MACHINE)
    code, err = _errors(["check", "a.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("b.arch:1:1: error: import cycle: a.arch -> b.arch -> a.arch\n"
                   '    import "a.arch"\n'
                   "    ^^^^^^^^^^^^^^^\n"
                   "a.arch:2:1: note: b.arch is imported here\n"
                   '    import "b.arch"\n'
                   "    ^^^^^^^^^^^^^^^\n")


def test_a_file_importing_itself(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "a.arch", 'import "a.arch"\n' + MACHINE)
    code, err = _errors(["check", "a.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1 and err.startswith("a.arch:1:1: error: import cycle: a.arch -> a.arch\n"), err


def test_a_missing_file_says_where_it_looked(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "w.arch", _workload('import "m.arch"'))
    monkeypatch.setenv("ARCHC_PATH", os.pathsep.join(["/nonexistent/p1", "", "/nonexistent/p2"]))
    code, err = _errors(["check", "-I", "inc", "-I", "/nonexistent/i2", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ('w.arch:3:8: error: cannot find the imported file "m.arch"; looked for m.arch (next to the '
                   "importing file), inc/m.arch (-I inc), /nonexistent/i2/m.arch (-I /nonexistent/i2), "
                   "/nonexistent/p1/m.arch (ARCHC_PATH), /nonexistent/p2/m.arch (ARCHC_PATH)\n"
                   '    import "m.arch"\n'
                   "           ^^^^^^^^\n")


def test_an_error_inside_an_imported_file_points_into_it(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "machines" / "m.arch", MACHINE.replace("clock 1 GHz", "clock 1 GB/s"))
    _write(tmp_path / "w.arch", _workload('import "machines/m.arch"'))
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("machines/m.arch:3:9: error: a clock must be a frequency (GHz), found a bandwidth (GB/s)\n"
                   "      clock 1 GB/s\n"
                   "            ^^^^^^\n"
                   "w.arch:3:1: note: machines/m.arch is imported here\n"
                   '    import "machines/m.arch"\n'
                   "    ^^^^^^^^^^^^^^^^^^^^^^^^\n")


def test_a_syntax_error_two_imports_deep(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "lib" / "m.arch", "import std.formats\ntile t {\n  clock 1 GHz\n")
    _write(tmp_path / "lib" / "sys.arch", 'import "m.arch"\n')
    _write(tmp_path / "w.arch", 'import "lib/sys.arch"\n')
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert err == ("lib/m.arch:3:14: error: unexpected end of file: a '{', '(' or '[' is not closed\n"
                   "      clock 1 GHz\n"
                   "                 ^\n"
                   "lib/sys.arch:1:1: note: lib/m.arch is imported here\n"
                   '    import "m.arch"\n'
                   "    ^^^^^^^^^^^^^^^\n"
                   "w.arch:1:1: note: lib/sys.arch is imported here\n"
                   '    import "lib/sys.arch"\n'
                   "    ^^^^^^^^^^^^^^^^^^^^^\n")


def test_an_imported_directory_fifo_binary_or_oversized_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "dir.arch").mkdir()
    os.mkfifo(tmp_path / "fifo.arch")  # opening it must not wait for a writer
    _write(tmp_path / "bin.arch", "tile t {}\n")
    (tmp_path / "bin.arch").write_bytes(b"tile t {\n  clock \xff\n}\n")
    (tmp_path / "big.arch").write_bytes(b"// " + b"x" * (4 * 1024 * 1024) + b"\n")
    (tmp_path / "loop.arch").symlink_to(tmp_path / "loop.arch")
    for name, words in [("dir.arch", 'w.arch:1:8: error: cannot import dir.arch: is a directory, not a design file\n'),
                        ("fifo.arch", "w.arch:1:8: error: cannot import fifo.arch: not a regular file (a device, "
                                      "FIFO or socket)\n"),
                        ("big.arch", "w.arch:1:8: error: cannot import big.arch: the file is 4,194,308 bytes; archc "
                                     "reads design files up to 4,194,304 bytes\n"),
                        ("loop.arch", "w.arch:1:8: error: cannot import loop.arch: Too many levels of symbolic links\n"),
                        ("bin.arch", "bin.arch:2:9: error: the file is not UTF-8 text (byte 0xff at offset 17)\n")]:
        _write(tmp_path / "w.arch", f'import "{name}"\n')
        code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
        assert code == 1 and err.startswith(words), (name, err)
    assert err.endswith('w.arch:1:1: note: bin.arch is imported here\n    import "bin.arch"\n    ^^^^^^^^^^^^^^^^^\n')
    # the design file itself: refused before anything is read
    code, err = _errors(["check", "fifo.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1 and err == "archc: error: fifo.arch: not a regular file (a device, FIFO or socket)\n"


def test_a_standard_module_is_imported_whole(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "w.arch", "import std.formats as f\nfrom std.models import gemm\nimport h100\n")
    code, err = _errors(["check", "w.arch"], capsys, tmp_path, monkeypatch)
    assert code == 1
    assert "w.arch:1:1: error: a standard-library module is imported whole: `import std.formats`\n" in err
    assert "w.arch:2:1: error: a standard-library module is imported whole: `import std.models`\n" in err
    assert ("w.arch:3:1: error: unknown module 'h100'; archc ships std.formats, std.blocks, std.models; a file is "
            'imported by its path in quotes: `import "machines/h100.arch"`\n') in err


def test_import_and_from_are_names_inside_a_block(tmp_path):
    with pytest.raises(ArchcError) as e:
        check(_write(tmp_path / "w.arch", small_machine("std.formats").replace("  vector", "  import 3\n  vector")))
    assert "unknown property 'import' in a tile" in e.value.render()


# ---- the search path ----------------------------------------------------------------------------

def _clock_of(design) -> float:
    return dict(design.tiles)["t"].clock_hz


def test_search_order_next_to_the_file_then_include_then_archc_path(tmp_path, monkeypatch):
    for d, ghz in (("here", 1), ("inc", 2), ("env", 3)):
        _write(tmp_path / d / "m.arch", MACHINE.replace("clock 1 GHz", f"clock {ghz} GHz"))
    w = _write(tmp_path / "here" / "w.arch", _workload('import "m.arch"'))
    monkeypatch.setenv("ARCHC_PATH", str(tmp_path / "env"))
    assert _clock_of(check(w, include=[tmp_path / "inc"])) == 1e9
    (tmp_path / "here" / "m.arch").unlink()
    assert _clock_of(check(w, include=[tmp_path / "inc"])) == 2e9
    assert _clock_of(check(w)) == 3e9
    monkeypatch.setenv("ARCHC_PATH", os.pathsep.join([str(tmp_path / "none"), str(tmp_path / "inc")]))
    assert _clock_of(check(w)) == 2e9


def test_include_on_every_command_that_reads_a_design(tmp_path, capsys, monkeypatch):
    _write(tmp_path / "lib" / "m.arch", MACHINE)
    w = _write(tmp_path / "w.arch", _workload('import "m.arch"'))
    for argv in (["check", w], ["compile", w, "--emit", "ir"], ["formats", w], ["run", w, "--json"],
                 ["accuracy", w, "--set", "n=8", "--run", "g"]):
        assert cli.main([str(a) for a in argv]) == 1, argv
        assert 'cannot find the imported file "m.arch"' in capsys.readouterr().err
        if argv[0] in ("run", "accuracy"):
            continue  # built below, once
        assert cli.main([str(a) for a in argv[:1] + ["-I", tmp_path / "lib"] + argv[1:]]) == 0, argv
        capsys.readouterr()


@pytest.mark.build
def test_run_and_accuracy_with_archc_path(tmp_path):
    from conftest import run_cli
    _write(tmp_path / "lib" / "m.arch", MACHINE)
    w = _write(tmp_path / "w.arch", _workload('import "m.arch"'))
    r = run_cli("run", w, "--json", env={"ARCHC_PATH": tmp_path / "lib"})
    assert r.code == 0, r
    assert json.loads(r.stdout)["system"] == "c"
    r = run_cli("accuracy", w, "--run", "g", "--set", "n=8", "-I", tmp_path / "lib", "--json")
    assert r.code == 0, r
    assert json.loads(r.stdout)["run"] == "g"


# ---- caching: an edited imported machine gives new kernels and new figures ---------------------

@pytest.mark.build
def test_editing_an_imported_file_invalidates_the_kernel(tmp_path):
    from archc.runtime import cache
    m = _write(tmp_path / "m.arch", MACHINE)
    w = _write(tmp_path / "w.arch", _workload('import "m.arch"'))

    def estimate():
        d = check(w)
        src = kernel_sources(d)
        stem = next(s for s in src if s.startswith("analytic_"))
        return run_analytic(d.run("g"), __version__).latency_s, cache.cache_key(src[stem], archc_version=__version__)

    before, key_before = estimate()
    m.write_text(MACHINE.replace("256 mac/cycle", "64 mac/cycle"), encoding="utf-8")
    after, key_after = estimate()
    assert key_after != key_before
    assert after > before
    single = _write(tmp_path / "single.arch", MACHINE.replace("256 mac/cycle", "64 mac/cycle")
                    + "import std.models\n" + RUN.replace("{on}", "c"))
    assert run_analytic(check(single).run("g"), __version__).latency_s == after


# ---- imported files are only read ---------------------------------------------------------------

def test_write_run_rewrites_the_workload_never_the_imported_file(tmp_path):
    from archc.runtime import search
    m = _write(tmp_path / "machines" / "m.arch", MACHINE)
    before = (m.read_bytes(), m.stat().st_mtime_ns)
    w = _write(tmp_path / "w.arch", _workload('import "machines/m.arch"'))
    search.write_run(w, "g", "g256", {"n": 256})
    assert (m.read_bytes(), m.stat().st_mtime_ns) == before
    assert "run g256(n = 256) {" in w.read_text(encoding="utf-8")
    assert [n for n, _ in check(w).runs] == ["g", "g256"]


def test_a_warning_inside_an_imported_file_notes_the_import(tmp_path):
    _write(tmp_path / "m.arch", MACHINE.replace("sram 1 MiB", "sram 8 Mb"))
    d = check(_write(tmp_path / "w.arch", _workload('import "m.arch"')))
    (w,) = d.warnings
    assert w.render() == (f"{tmp_path / 'm.arch'}:4:8: warning: an SRAM size in bits: 8 Mb is 1 MB; for bytes "
                          "write 8 MB\n"
                          "      sram 8 Mb, bandwidth = 64 GB/s\n"
                          "           ^^^^\n"
                          f"{tmp_path / 'w.arch'}:3:1: note: {tmp_path / 'm.arch'} is imported here\n"
                          '    import "m.arch"\n'
                          "    ^^^^^^^^^^^^^^^")
