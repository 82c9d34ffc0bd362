"""Tests for archc.runtime.cache: content-hash keys, build/hit, cross-process locking,
corrupt-entry recovery, build_into, clear and BuildError reporting; faults of the cache
directory (read-only, under a file, .locks a file, stale .tmp) and compilers that must die
with a killed or interrupted build."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archc.runtime import cache

VERSION = "0.0.test"


def kernel(tag: str, term: str = "i * i") -> str:
    """A small typed kernel; `tag` makes the source (hence the cache entry) unique per test."""
    return textwrap.dedent(f"""\
        # test kernel {tag}
        def f(int n):
            cdef long s = 0
            cdef int i
            for i in range(n):
                s += {term}
            return s
        """)


def name_of(source: str, stem: str = "k") -> str:
    return cache.module_name(stem, cache.cache_key(source, archc_version=VERSION))


def entry_so(root: Path, name: str) -> Path:
    return root / name / (name + cache._ext_suffix())


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    # One cache for the session so the shared utility module (~8 s) is compiled once.
    return tmp_path_factory.mktemp("archc-cache")


@pytest.fixture
def cache_root(session_cache: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(session_cache))
    return session_cache


def child_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ARCHC_CACHE_DIR"] = str(root)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # so children import archc the same way
    return env


CHILD_BUILD = textwrap.dedent("""\
    import json, os, sys, time
    from archc.runtime import cache
    source, stem, version, ready, go = json.loads(sys.argv[1])
    if ready:  # start barrier: all children begin building at (nearly) the same instant
        open(ready, "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
    messages = []
    module = cache.build(source, stem, archc_version=version, progress=messages.append)
    print(json.dumps({"value": module.f(3), "messages": messages}))
    """)


def child_args(source: str, stem: str = "k", ready: str = "", go: str = "") -> list[str]:
    return [sys.executable, "-c", CHILD_BUILD, json.dumps([source, stem, VERSION, ready, go])]


def build_in_child(root: Path, source: str, stem: str = "k") -> dict:
    proc = subprocess.run(child_args(source, stem), env=child_env(root), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def compiled_kernel(messages: list[str], name: str) -> bool:
    return any(m.startswith("compiling kernel") and name in m for m in messages)


# ---------------------------------------------------------------------------
# Keys, names, directories (no compiler needed)
# ---------------------------------------------------------------------------

def test_cache_key_is_deterministic_and_sensitive():
    src = kernel("key")
    key = cache.cache_key(src, archc_version=VERSION)
    assert key == cache.cache_key(src, archc_version=VERSION)
    assert len(key) == 64 and int(key, 16) >= 0
    others = {
        cache.cache_key(kernel("key", "i + 1"), archc_version=VERSION),
        cache.cache_key(src, archc_version="0.0.other"),
        cache.cache_key(src, archc_version=VERSION, flags=("-O2", "-g0")),
        cache.cache_key(src, archc_version=VERSION, flags=("-O3",)),
    }
    assert key not in others and len(others) == 4


needs_shared = pytest.mark.skipif(not cache._cython_has_shared_module(),
                                  reason="Cython < 3.1 has no shared utility module")


@needs_shared
def test_key_changes_with_shared_utility_mode(monkeypatch):
    src = kernel("mode")
    monkeypatch.setenv("ARCHC_CYTHON_SHARED", "1")
    on = cache.cache_key(src, archc_version=VERSION)
    monkeypatch.setenv("ARCHC_CYTHON_SHARED", "0")
    assert cache.cache_key(src, archc_version=VERSION) != on


def test_toolchain_fingerprint_contents():
    import Cython
    import numpy

    fp = cache.toolchain_fingerprint()
    assert fp["cython"] == Cython.__version__
    assert fp["numpy"] == numpy.__version__
    assert fp["ext_suffix"] and fp["machine"]
    assert all(isinstance(v, str) for v in fp.values())


def test_module_name():
    key = "0123456789abcdef" * 4
    assert cache.module_name("kern_1", key) == "kern_1_0123456789abcdef"
    for bad in ("1abc", "a-b", "", "a b", "é"):
        with pytest.raises(ValueError):
            cache.module_name(bad, key)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "explicit" and (tmp_path / "explicit").is_dir()
    monkeypatch.delenv("ARCHC_CACHE_DIR")
    assert cache.cache_dir() == tmp_path / "xdg" / "archc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "archc"


def test_clear_missing_directory_is_safe(tmp_path):
    assert cache.clear(tmp_path / "does-not-exist") == 0


# ---------------------------------------------------------------------------
# Builds
# ---------------------------------------------------------------------------

@pytest.mark.build
def test_build_then_hit(cache_root):
    src = kernel("hit")
    name = name_of(src)
    messages: list[str] = []
    module = cache.build(src, "k", archc_version=VERSION, progress=messages.append)
    assert module.__name__ == name and module.f(3) == 5
    assert compiled_kernel(messages, name)
    so = entry_so(cache_root, name)
    mtime = so.stat().st_mtime_ns

    # Same process: the loaded module comes back without touching the compiler.
    messages.clear()
    assert cache.build(src, "k", archc_version=VERSION, progress=messages.append) is module
    assert messages == []
    # Fresh process: a disk hit, still no compile, and the file is untouched.
    result = build_in_child(cache_root, src)
    assert result == {"value": 5, "messages": []}
    assert so.stat().st_mtime_ns == mtime


@pytest.mark.build
@needs_shared
def test_shared_utility_module_is_used(cache_root, monkeypatch):
    monkeypatch.setenv("ARCHC_CYTHON_SHARED", "1")
    module = cache.build(kernel("shared"), "k", archc_version=VERSION)
    assert module.f(4) == 14
    shared = cache._shared_name()
    assert shared in sys.modules and (cache_root / shared / "meta.json").is_file()
    # The kernel's C code imports the shared module by name.
    assert shared.encode() in Path(module.__file__).read_bytes()


@pytest.mark.build
def test_concurrent_builds_build_once(cache_root, tmp_path):
    src = kernel("concurrent")
    name = name_of(src)
    go = tmp_path / "go"
    readies = [tmp_path / f"ready{i}" for i in range(4)]
    procs = [subprocess.Popen(child_args(src, "k", str(r), str(go)), env=child_env(cache_root),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in readies]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "children did not start"
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert [r["value"] for r in results] == [5] * 4
    assert sum(compiled_kernel(r["messages"], name) for r in results) == 1
    assert entry_so(cache_root, name).is_file()
    assert not [p for p in (cache_root / ".tmp").iterdir() if p.name.startswith(name)]


@pytest.mark.build
@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_corrupt_entry_is_rebuilt(cache_root, damage, caplog):
    src = kernel(f"corrupt-{damage}")
    name = name_of(src)
    build_in_child(cache_root, src)  # built elsewhere, so this process has not loaded it yet
    so = entry_so(cache_root, name)
    if damage == "junk":
        so.write_bytes(b"this is not an ELF file\n" * 100)
    else:
        so.write_bytes(so.read_bytes()[: so.stat().st_size // 3])

    messages: list[str] = []
    with caplog.at_level(logging.INFO, logger="archc.cache"):
        module = cache.build(src, "k", archc_version=VERSION, progress=messages.append)
    assert module.f(3) == 5
    assert compiled_kernel(messages, name)
    assert any(r.name == "archc.cache" and "corrupt" in r.getMessage() for r in caplog.records)
    assert so.stat().st_size > 1000 and so.read_bytes()[:4] == b"\x7fELF"


@pytest.mark.build
def test_build_into_fresh_process(cache_root, tmp_path):
    src = kernel("into")
    out = tmp_path / "out dir"  # a space in the path on purpose
    path = cache.build_into(src, "k", out, archc_version=VERSION)
    name = name_of(src)
    assert path == out / (name + cache._ext_suffix()) and path.is_file()
    assert (out / f"{name}.pyx").read_text() == src
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    code = f"import sys; sys.path.insert(0, {str(out)!r}); import {name}; print({name}.f(3))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ARCHC_CACHE_DIR")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"

    # load_from on the copied file also works without touching sys.path: the shared utility
    # module next to it is loaded first.
    code = (f"from archc.runtime import cache; "
            f"print(cache.load_from({str(path)!r}, {name!r}).f(4))")
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(tmp_path / "unused-cache"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "14"


@pytest.mark.build
def test_clear_removes_entries(tmp_path, monkeypatch):
    # Own directory, and plain (self-contained) builds: also covers the no-shared-module path.
    monkeypatch.setenv("ARCHC_CYTHON_SHARED", "0")
    root = tmp_path / "cache"
    a = cache.build(kernel("clear-a"), "k", archc_version=VERSION, directory=root)
    b = cache.build(kernel("clear-b", "i"), "k", archc_version=VERSION, directory=root)
    assert (a.f(3), b.f(3)) == (5, 3)
    assert not any(p.name.startswith("_archc_cyshared_") for p in root.iterdir())

    assert cache.clear(root) == 2
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
    assert cache.clear(root) == 0

    # The entries really are gone: building again compiles.
    messages: list[str] = []
    cache.build_into(kernel("clear-a"), "k", tmp_path / "out", archc_version=VERSION,
                     directory=root, progress=messages.append)
    assert compiled_kernel(messages, a.__name__)


@pytest.mark.build
def test_cython_syntax_error_raises_build_error(cache_root):
    src = "def f(int n):\n    cdef long s = \n    return s\n"
    name = name_of(src, "bad")
    with pytest.raises(cache.BuildError) as info:
        cache.build(src, "bad", archc_version=VERSION)
    err = info.value
    assert err.pyx.is_file() and err.pyx.read_text() == src
    assert str(err.pyx) in str(err) and str(err.log_path) in str(err)
    assert "Error compiling Cython file" in err.log and "Expected an identifier" in str(err)
    assert err.log_path.read_text() == err.log
    assert not (cache_root / name).exists()
    # Crosses process boundaries intact (e.g. from a multiprocessing worker).
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.log, clone.pyx, str(clone)) == (err.log, err.pyx, str(err))


@pytest.mark.build
def test_c_compiler_error_raises_build_error(cache_root):
    src = 'cdef extern from "archc_no_such_header.h":\n    int g(int)\n\ndef f(int n):\n    return g(n)\n'
    with pytest.raises(cache.BuildError) as info:
        cache.build(src, "bad_c", archc_version=VERSION)
    err = info.value
    assert "archc_no_such_header.h" in err.log and "C compiler" in str(err)
    assert str(err.pyx) in str(err) and err.pyx.is_file()


# ---------------------------------------------------------------------------
# Faults of the cache directory (issue 13, point 9): recovered from, or one clear error.
# We run as root here, so a read-only directory cannot be made with chmod: it is emulated by
# patching os.access (what archc consults before building) or by failing the writes
# themselves, and the real, privilege-proof cases are a path under a regular file (ENOTDIR)
# and `.locks` being a regular file.
# ---------------------------------------------------------------------------

@pytest.fixture
def private_cache(monkeypatch):
    """A fresh record of this process's private fallback cache; removed after the test."""
    monkeypatch.setattr(cache, "_private", {})
    monkeypatch.setattr(cache, "_warned", set())
    yield cache._private
    if "root" in cache._private:
        shutil.rmtree(cache._private["root"], ignore_errors=True)


def read_only(monkeypatch, *dirs: Path) -> None:
    """os.access says W_OK is denied in `dirs` (and their .locks/.tmp), as for a user without
    write permission; reading still works."""
    denied = {str(d) for d in dirs} | {str(d / sub) for d in dirs for sub in (".locks", ".tmp")}
    real = os.access

    def access(path, mode, **kwargs):
        if mode & os.W_OK and os.fspath(path) in denied:
            return False
        return real(path, mode, **kwargs)
    monkeypatch.setattr(os, "access", access)


WARNING = "archc: warning: the cache directory {} is not writable; building in a private temporary directory\n"


@pytest.mark.build
@pytest.mark.parametrize("meta", ["[]", "3", "null"])
def test_meta_json_that_is_not_an_object_is_rebuilt(cache_root, meta):
    # point 9a: valid JSON of the wrong type used to raise AttributeError (`archc: internal error`)
    src = kernel(f"meta-{meta}")
    name = name_of(src)
    build_in_child(cache_root, src)
    (cache_root / name / "meta.json").write_text(meta)
    messages: list[str] = []
    module = cache.build(src, "k", archc_version=VERSION, progress=messages.append)
    assert module.f(3) == 5 and compiled_kernel(messages, name)
    assert json.loads((cache_root / name / "meta.json").read_text())["name"] == name


@pytest.mark.build
def test_read_only_cache_builds_in_a_private_directory(cache_root, private_cache, monkeypatch, capsys):
    # point 9b: what the read-only cache holds (the shared utility module) is still used; the
    # missing kernel is built in a private temporary directory, with one warning
    read_only(monkeypatch, cache_root)
    src = kernel("read-only")
    name = name_of(src)
    before = sorted(p.name for p in cache_root.iterdir())
    module = cache.build(src, "k", archc_version=VERSION)
    assert module.f(3) == 5
    private = private_cache["root"]
    assert Path(module.__file__).parent == private / name
    assert stat_mode(private) == 0o700
    assert sorted(p.name for p in cache_root.iterdir()) == before and not (cache_root / name).exists()
    src2 = kernel("read-only-2")
    assert cache.build(src2, "k", archc_version=VERSION).f(3) == 5
    assert capsys.readouterr().err == WARNING.format(cache_root)  # once


def stat_mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.build
def test_a_write_failing_during_the_build_falls_back_too(cache_root, private_cache, monkeypatch, capsys):
    # os.access may say yes where writing fails (a read-only file system seen late, ENOSPC):
    # any OSError while writing the cache directory sends the build to the private directory
    real = cache.tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(cache_root):
            raise OSError(30, os.strerror(30), str(dir))  # EROFS
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(cache.tempfile, "mkdtemp", mkdtemp)
    src = kernel("erofs")
    module = cache.build(src, "k", archc_version=VERSION)
    assert module.f(3) == 5 and Path(module.__file__).parent.parent == private_cache["root"]
    assert capsys.readouterr().err == WARNING.format(cache_root)
    assert not (cache_root / name_of(src)).exists()


def test_cache_clear_on_a_read_only_cache_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from archc.cli import main
    root = tmp_path / "cache"
    (root / "k_0123456789abcdef").mkdir(parents=True)
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(root))
    read_only(monkeypatch, root)
    assert main(["cache", "clear"]) == 1
    assert capsys.readouterr().err == f"archc: error: cannot clear the cache directory {root}: Permission denied\n"
    assert (root / "k_0123456789abcdef").is_dir()


@pytest.mark.build
def test_cache_dir_under_a_regular_file(tmp_path, private_cache, monkeypatch, capsys):
    # point 9c: ARCHC_CACHE_DIR=/tmp/somefile/cache used to be `archc: internal error`
    from archc.cli import main
    (tmp_path / "somefile").write_text("")
    root = tmp_path / "somefile" / "cache"
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(root))
    monkeypatch.setenv("ARCHC_CYTHON_SHARED", "0")  # no shared module to build first (faster)
    module = cache.build(kernel("under-a-file"), "k", archc_version=VERSION)
    assert module.f(3) == 5 and Path(module.__file__).is_relative_to(private_cache["root"])
    assert capsys.readouterr().err == WARNING.format(root)
    for action in ("clear", "dir"):
        assert main(["cache", action]) == 1, action
        err = capsys.readouterr().err
        assert err.startswith(f"archc: error: cannot ") and f"the cache directory {root}: Not a directory" in err, err
        assert err.count("\n") == 1


def test_private_directory_is_removed_at_exit(tmp_path):
    (tmp_path / "somefile").write_text("")
    root = tmp_path / "somefile" / "cache"
    code = textwrap.dedent("""\
        import sys
        from archc.runtime import cache
        m = cache.build("def f(int n):\\n    return n + 1\\n", "k", archc_version="0.0.test-exit")
        assert m.f(1) == 2
        print(cache._private["root"])
        """)
    env = child_env(root)
    env["ARCHC_CYTHON_SHARED"] = "0"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    private = Path(proc.stdout.strip())
    assert private.name.startswith("archc-cache-") and not private.exists()
    assert proc.stderr == WARNING.format(root)


@pytest.mark.build
def test_locks_being_a_regular_file(tmp_path, private_cache, monkeypatch, capsys):
    # point 9d: builds fall back to the private directory, `cache clear` says what is wrong
    from archc.cli import main
    root = tmp_path / "cache"
    root.mkdir()
    (root / ".locks").write_text("not a directory")
    (root / "k_0123456789abcdef").mkdir()
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(root))
    monkeypatch.setenv("ARCHC_CYTHON_SHARED", "0")
    module = cache.build(kernel("locks-file"), "k", archc_version=VERSION)
    assert module.f(3) == 5 and Path(module.__file__).is_relative_to(private_cache["root"])
    assert capsys.readouterr().err == WARNING.format(root)
    assert main(["cache", "clear"]) == 1
    assert capsys.readouterr().err == (f"archc: error: cannot clear the cache directory {root}: "
                                       f"{root / '.locks'} is not a directory\n")


def test_clear_removes_what_killed_builds_left_but_not_live_builds(tmp_path):
    # point 9g: `<cache>/.tmp/<name>-XXXX` of a killed build (and a discarded entry's trash)
    import filelock
    root = tmp_path / "cache"
    stale = root / ".tmp" / "k_0123456789abcdef-a1b2c3d4"
    live = root / ".tmp" / "k_fedcba9876543210-e5f6g7h8"
    trash = root / ".tmp" / "trash-k_0123456789abcdef-123-456"
    for d in (stale, live, trash):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "k.c").write_text("int x;\n")
    (root / ".locks").mkdir()
    held = filelock.FileLock(str(root / ".locks" / "k_fedcba9876543210.lock"))
    with held:  # a build in progress holds its entry's lock while its directory exists
        assert cache.clear(root) == 0
    assert sorted(p.name for p in (root / ".tmp").iterdir()) == [live.name]
    assert cache.clear(root) == 0  # the lock is free now: stale as well
    assert list((root / ".tmp").iterdir()) == []


# ---------------------------------------------------------------------------
# Compiler processes die with archc (point 9h)
# ---------------------------------------------------------------------------

def processes_under(directory: Path) -> list[tuple[int, str]]:
    """Live processes whose working directory or command line is inside `directory` (Linux /proc;
    zombies have no working directory and are not listed)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{d}/cwd")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in cmd:
            found.append((int(d), cmd))
    return found


def wait_until(predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def kill_all(procs) -> None:
    for pid, _ in procs:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


linux_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd") or not sys.platform.startswith("linux"),
                                reason="looks processes up in Linux's /proc")


@linux_proc
def test_an_interrupted_build_kills_the_compilers_process_group(tmp_path, monkeypatch):
    # KeyboardInterrupt (or SIGTERM, which archc/cli.py turns into one) while a compiler runs:
    # the compiler and everything it started are killed, not only the process archc started
    real = subprocess.Popen.communicate

    def communicate(self, *args, **kwargs):
        with contextlib.suppress(subprocess.TimeoutExpired):
            real(self, timeout=1.0)
        raise KeyboardInterrupt
    monkeypatch.setattr(subprocess.Popen, "communicate", communicate)
    try:
        with pytest.raises(KeyboardInterrupt):
            cache._spawn(["sh", "-c", "sleep 60 & sleep 61 & wait"], tmp_path, [], "C compiler")
        left = wait_until(lambda: not processes_under(tmp_path), 3.0)
        assert left, processes_under(tmp_path)
    finally:
        kill_all(processes_under(tmp_path))


@pytest.mark.build
@linux_proc
def test_compilers_die_with_a_build_killed_by_sigkill(tmp_path):
    # The root case: SIGKILL runs no code of archc's; PR_SET_PDEATHSIG has the kernel signal the
    # compiler's guard shell, which kills its whole group (gcc, cc1, as, ld).
    root = tmp_path / "cache"
    child = subprocess.Popen(child_args(kernel("sigkill")), env=child_env(root),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = root / ".tmp"
    try:
        compiling = wait_until(lambda: [p for p in processes_under(work) if not p[1].startswith("/bin/sh")], 240)
        assert compiling, "no compiler process seen"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # gone at once, not when the compile ends on its own (the shared module's takes 4-8 s)
        gone = wait_until(lambda: not processes_under(work), 1.5)
        assert gone, f"compiler processes outlived the killed build: {processes_under(work)}"
    finally:
        if child.poll() is None:
            child.kill()
        kill_all(processes_under(work))


@pytest.mark.build
@linux_proc
def test_sigterm_during_compile_o_cleans_up(tmp_path):
    # SIGTERM: `archc: terminated`, exit 143; no compiler left, no temporary output directory
    # (.archc-XXXX), no private build directory in the cache's .tmp/
    root = tmp_path / "cache"
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "archc", "compile", str(Path(__file__).parent.parent
                                                                          / "samples" / "h100.arch"),
                             "-o", str(out)], env=child_env(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    work = root / ".tmp"
    try:
        assert wait_until(lambda: [p for p in processes_under(work) if not p[1].startswith("/bin/sh")], 240)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and err.strip().endswith("archc: terminated"), err
        assert wait_until(lambda: not processes_under(work), 5.0), processes_under(work)
        assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
        assert list(work.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(processes_under(work))


def test_a_cache_others_can_write_is_never_loaded_from(tmp_path, monkeypatch, capsys):
    """Loading a kernel runs its code: a cache directory writable by group or others (or owned by
    another user) could hold a planted module, so archc builds in its private directory instead
    and says why, once."""
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(cache, "_private", {})
    monkeypatch.setattr(cache, "_warned", set())
    assert cache._shared_with_others(shared) == "writable by its group or others"
    entry = cache._ensure_entry(shared, "m_0123456789abcdef", "def f():\n    return 1\n", None)
    assert shared not in entry.parents and entry.parent == cache._private["root"]
    assert not any(shared.iterdir()), "nothing is written to (or read from) the shared directory"
    assert "the cache directory {} is writable by other users".format(shared) in capsys.readouterr().err
    shared.chmod(0o700)
    assert cache._shared_with_others(shared) is None
