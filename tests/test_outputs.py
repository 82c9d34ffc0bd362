"""Output safety (runtime/outputs.py) and the command's up-front checks of output paths
(issue 13, points 2, 9e and 9f).

Every output (`--trace FILE`, `--out DIR`, `compile -o DIR`, `--write-run`, plots) is written
atomically (a temporary file in the same directory, fsync, os.replace) onto a new path or an
existing regular file only; device nodes, FIFOs, sockets and directories are refused; a symlink
to a regular file has its target replaced (the link stays a link); new files get 0666 & ~umask
and new directories 0777 & ~umask; a full disk is `archc: error: cannot write PATH: No space
left on device`. The command checks every output path before it checks, builds or simulates.

These tests run as root here, where permission bits do not stop writes: a read-only directory
is emulated by patching os.access (what archc consults), or by a path one of whose components
is a regular file (ENOTDIR, which no privilege overrides). Real device nodes are only looked at
(os.stat), never written: the FIFOs and sockets are made in tmp_path."""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from archc import cli
from archc.runtime import outputs
from archc.runtime.outputs import OutputError

from conftest import H100, sample_text


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(d: Path) -> list[str]:
    """Temporary files or directories an interrupted or failed write might leave in d."""
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def make_node(kind: str, path: Path) -> Path:
    """A non-regular file of `kind` at path (or a link through which one is reached)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "directory":
        path.mkdir()
    elif kind == "link to a fifo":
        os.mkfifo(path.with_name(path.name + ".fifo"))
        path.symlink_to(path.name + ".fifo")
    elif kind == "/dev/full":
        if not os.path.exists("/dev/full") or not stat.S_ISCHR(os.stat("/dev/full").st_mode):
            pytest.skip("no /dev/full character device here")
        path.symlink_to("/dev/full")
    return path


def kind_of(path: Path) -> int:
    return stat.S_IFMT(os.stat(path).st_mode)


NODES = ["fifo", "socket", "directory", "link to a fifo", "/dev/full"]


# ---- files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mask, executable, mode", [(0o022, False, 0o644), (0o077, False, 0o600),
                                                    (0o002, False, 0o664), (0o022, True, 0o755)])
def test_a_new_file_gets_the_umask_mode_not_mkstemps(tmp_path, mask, executable, mode):
    p = tmp_path / "out.txt"
    with umask(mask):
        outputs.write_text(p, "hello\n", executable=executable)
    assert p.read_text() == "hello\n"
    assert stat.S_IMODE(p.stat().st_mode) == mode
    assert leftovers(tmp_path) == []


def test_a_replaced_file_keeps_its_mode(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    p.chmod(0o640)
    outputs.write_text(p, "new")
    assert p.read_text() == "new" and stat.S_IMODE(p.stat().st_mode) == 0o640


@pytest.mark.parametrize("kind", NODES)
def test_non_regular_files_are_refused_and_left_as_they_are(tmp_path, kind):
    p = make_node(kind, tmp_path / "out")
    before = kind_of(p)
    with pytest.raises(OutputError) as info:
        outputs.write_text(p, "x")
    msg = str(info.value)
    assert msg.startswith(f"archc: error: cannot write {p}: it is ") and "\n" not in msg, msg
    assert "not a regular file" in msg
    assert kind_of(p) == before  # not turned into a regular file
    with pytest.raises(OutputError):
        outputs.check_file(p)
    assert [n for n in leftovers(tmp_path)] == []


def test_a_symlink_to_a_regular_file_is_written_through(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    outputs.write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    # a dangling link: its target is created, the link kept
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to("made.json")
    with umask(0o022):
        outputs.write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "made.json").read_text() == "made"
    assert stat.S_IMODE((tmp_path / "made.json").stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_full_disk_is_an_error_and_the_old_file_stays(tmp_path, monkeypatch, failing):
    p = tmp_path / "out.txt"
    p.write_text("old contents")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, failing, full)
    with pytest.raises(OutputError) as info:
        outputs.write_text(p, "new contents")
    assert str(info.value) == f"archc: error: cannot write {p}: No space left on device"
    monkeypatch.undo()
    assert p.read_text() == "old contents"
    assert leftovers(tmp_path) == []


def test_a_file_under_a_regular_file_or_in_a_read_only_directory_is_refused(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*/f/x\.json: .*f is not a directory"):
        outputs.check_file(tmp_path / "f" / "x.json")
    with pytest.raises(OutputError, match="no directory"):
        outputs.check_file(tmp_path / "nowhere" / "x.json")
    # read-only directory, emulated (root may write anywhere): archc asks os.access
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == ro else real_access(p, m, **kw))
    with pytest.raises(OutputError, match=r"cannot write .*/ro/x\.json: Permission denied"):
        outputs.write_text(ro / "x.json", "x")
    assert list(ro.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with outputs.replacing(p) as tmp:
            Path(tmp).write_text("half")
            raise KeyboardInterrupt
    assert p.read_text() == "old" and leftovers(tmp_path) == []


# ---- directories ------------------------------------------------------------------------------

def fill_two(tmp: Path) -> None:
    (tmp / "a.txt").write_text("A")
    outputs.write_text(tmp / "b.txt", "B")


def test_a_new_directory_appears_whole_with_the_umask_mode(tmp_path):
    out = tmp_path / "deep" / "out"
    with umask(0o022):
        outputs.atomic_dir(out, fill_two)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "b.txt").stat().st_mode) == 0o644
    assert leftovers(tmp_path / "deep") == []


def test_an_existing_directory_gets_its_files_replaced_others_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "keep.txt").write_text("keep")
    outputs.atomic_dir(out, fill_two)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.txt": "A", "b.txt": "B", "keep.txt": "keep"}
    # a link to a directory is written through
    link = tmp_path / "link"
    link.symlink_to("out")
    outputs.atomic_dir(link, lambda t: (t / "c.txt").write_text("C"))
    assert link.is_symlink() and (out / "c.txt").read_text() == "C"


@pytest.mark.parametrize("kind", ["regular file", "fifo", "link to a fifo"])
def test_a_directory_path_that_is_not_a_directory_is_refused(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "regular file":
        out.write_text("precious")
    else:
        make_node(kind, out)
    called = []
    with pytest.raises(OutputError, match=r"^archc: error: cannot write to .*out: it is .*, not a directory$"):
        outputs.atomic_dir(out, called.append)
    assert called == []
    if kind == "regular file":
        assert out.read_text() == "precious"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket"])
def test_an_existing_non_regular_entry_inside_is_refused_and_nothing_is_replaced(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    make_node(kind, out / "b.txt")
    with pytest.raises(OutputError, match=r"cannot write .*b\.txt: it is "):
        outputs.atomic_dir(out, fill_two)
    assert (out / "a.txt").read_text() == "old"  # checked before any file was moved in
    assert leftovers(out) == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_a_failed_fill_leaves_no_directory_and_no_temporary(tmp_path, error):
    def fill(tmp: Path):
        (tmp / "a.txt").write_text("A")
        raise error()
    out = tmp_path / "out"
    with pytest.raises(error):
        outputs.atomic_dir(out, fill)
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "a.txt").write_text("old")
    with pytest.raises(error):
        outputs.atomic_dir(out, fill)
    assert [p.name for p in out.iterdir()] == ["a.txt"] and (out / "a.txt").read_text() == "old"


def test_a_full_disk_while_filling_is_an_error_about_the_directory(tmp_path):
    def fill(tmp: Path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    out = tmp_path / "out"
    with pytest.raises(OutputError) as info:
        outputs.atomic_dir(out, fill)
    assert str(info.value) == f"archc: error: cannot write {out}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_plots_are_written_through_outputs(tmp_path):
    from archc.runtime import plots
    fig = plots._figure()
    fig.add_subplot(1, 1, 1).plot([0, 1], [0, 1])
    with umask(0o022):
        png, svg = plots.save(fig, tmp_path / "p")
    assert stat.S_IMODE(png.stat().st_mode) == 0o644 and png.read_bytes()[:4] == b"\x89PNG"
    os.mkfifo(tmp_path / "q.png")
    with pytest.raises(OutputError, match="FIFO"):
        plots.save(fig, tmp_path / "q")
    assert stat.S_ISFIFO(os.stat(tmp_path / "q.png").st_mode)


# ---- the command: output paths are checked before any work --------------------------------------

@pytest.fixture
def no_work(monkeypatch):
    """Make checking, building and simulating fail loudly: an up-front refusal must come first."""
    from archc import api
    from archc.runtime import cache, pipeline, search

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the output paths were checked")
    for mod, name in [(api, "check"), (api, "compile_stages"), (pipeline, "front"), (pipeline, "execute"),
                      (cache, "build"), (cache, "build_into"), (search, "search")]:
        monkeypatch.setattr(mod, name, forbidden)


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("archc: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return err.strip()


@pytest.mark.parametrize("kind", NODES)
def test_trace_onto_a_non_regular_file_is_refused_up_front(tmp_path, capsys, no_work, kind):
    p = make_node(kind, tmp_path / "trace.json")
    before = kind_of(p)
    rc = cli.main(["run", str(H100), "--run", "gemm", "--level", "event", "--trace", str(p)])
    err = one_error(capsys)
    assert rc == 1 and f"cannot write the trace {p}: it is " in err
    assert kind_of(p) == before


def test_run_out_onto_a_regular_file_is_refused_up_front(tmp_path, capsys, no_work):
    f = tmp_path / "report"
    f.write_text("precious")
    rc = cli.main(["run", str(H100), "--run", "gemm", "--out", str(f)])
    err = one_error(capsys)
    assert rc == 1 and err == f"archc: error: cannot write to {f}: it is a regular file, not a directory"
    assert f.read_text() == "precious"


def test_run_out_onto_a_directory_holding_a_fifo_is_refused_up_front(tmp_path, capsys, no_work):
    out = tmp_path / "report"
    out.mkdir()
    os.mkfifo(out / "report.json")
    rc = cli.main(["run", str(H100), "--run", "gemm", "--out", str(out)])
    err = one_error(capsys)
    assert rc == 1 and f"cannot write {out / 'report.json'}: it is a FIFO" in err


def test_compile_o_onto_a_regular_file_is_refused_up_front(tmp_path, capsys, no_work):
    f = tmp_path / "mods"
    f.write_text("precious")
    rc = cli.main(["compile", str(H100), "-o", str(f)])
    err = one_error(capsys)
    assert rc == 1 and err == f"archc: error: cannot write to {f}: it is a regular file, not a directory"
    assert f.read_text() == "precious"


def test_compile_o_into_a_read_only_directory_is_refused_up_front(tmp_path, capsys, no_work, monkeypatch):
    # under a regular file: ENOTDIR, whatever the privileges
    (tmp_path / "file").write_text("")
    rc = cli.main(["compile", str(H100), "-o", str(tmp_path / "file" / "mods")])
    err = one_error(capsys)
    assert rc == 1 and "is not a directory" in err
    # a read-only parent (emulated: root ignores permission bits; archc asks os.access)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == ro else real_access(p, m, **kw))
    rc = cli.main(["compile", str(H100), "-o", str(ro / "mods")])
    err = one_error(capsys)
    assert rc == 1 and err == f"archc: error: cannot write to {ro / 'mods'}: Permission denied"
    rc = cli.main(["compile", str(H100), "-o", str(ro)])  # the directory itself, existing
    assert rc == 1 and "Permission denied" in one_error(capsys)
    assert list(ro.iterdir()) == []


def test_write_run_needs_a_writable_regular_design_file(tmp_path, capsys, no_work, monkeypatch):
    design = tmp_path / "a100.arch"
    design.write_text(sample_text("a100"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == design and m & os.W_OK
                        else real_access(p, m, **kw))
    rc = cli.main(["run", str(design), "--run", "gpt_train", "--search", "--write-run", "best"])
    err = one_error(capsys)
    assert rc == 1 and f"cannot write {design}: Permission denied" in err


# ---- end to end (kernels from the session cache) ------------------------------------------------

@pytest.mark.build
def test_trace_full_disk_is_one_error_line(tmp_path, capsys, monkeypatch):
    trace = tmp_path / "trace.json"
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(os, "fsync", fsync)
    rc = cli.main(["run", str(H100), "--run", "gemm", "--level", "event", "--trace", str(trace)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc != 0
    assert err.strip().endswith(f"archc: error: cannot write the trace {trace}: No space left on device"), err
    assert not trace.exists() and leftovers(tmp_path) == []


@pytest.mark.build
def test_trace_through_a_symlink_and_with_the_umask_mode(tmp_path, capsys):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "trace.json"
    link.symlink_to("real.json")
    with umask(0o022):
        rc = cli.main(["run", str(H100), "--run", "gemm", "--level", "event", "--trace", str(link)])
        assert rc == 0, capsys.readouterr().err
        assert link.is_symlink() and real.read_text().startswith('{"traceEvents"')
        new = tmp_path / "new.json"
        assert cli.main(["run", str(H100), "--run", "gemm", "--level", "event", "--trace", str(new)]) == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


@pytest.mark.build
def test_run_out_modes(tmp_path, capsys):
    out = tmp_path / "report"
    with umask(0o022):
        assert cli.main(["run", str(H100), "--run", "gemm", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        n: 0o644 for n in ("ops.csv", "report.json", "report.txt", "roofline.png", "roofline.svg")}
    assert leftovers(tmp_path) == [] and leftovers(out) == []


@pytest.mark.build
def test_write_run_writes_through_a_symlink(tmp_path):
    from archc.runtime import search
    real = tmp_path / "a100.arch"
    real.write_text(sample_text("a100"))
    real.chmod(0o640)
    link = tmp_path / "design.arch"
    link.symlink_to("a100.arch")
    search.write_run(link, "gpt_train", "gpt_tp2", {"tp": 2, "dp": 16})
    assert link.is_symlink() and "run gpt_tp2(" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


@pytest.mark.build
def test_compile_o_modes_and_replacing_an_existing_directory(tmp_path, capsys):
    out = tmp_path / "mods"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with umask(0o022):
        assert cli.main(["compile", str(H100), "-o", str(out)]) == 0, capsys.readouterr().err
        modes = {p.suffix: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.name != "notes.txt"}
        assert modes == {".pyx": 0o644, ".so": 0o755}, modes
        assert cli.main(["compile", str(H100), "-o", str(out)]) == 0  # again: the files are replaced
    assert (out / "notes.txt").read_text() == "mine" and leftovers(out) == [] and leftovers(tmp_path) == []
