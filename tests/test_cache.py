"""Tests for archc.runtime.cache: content-hash keys, build/hit, cross-process locking,
corrupt-entry recovery, build_into, clear and BuildError reporting."""

from __future__ import annotations

import json
import logging
import os
import pickle
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
