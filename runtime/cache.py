"""Owns compiling generated Cython source into importable extension modules, cached on disk by content hash.

Layout of a cache directory (``cache_dir()`` or an explicit ``directory``)::

    <root>/<name>/                 one complete entry per module (appears atomically via os.replace)
        <name>.pyx                 the source exactly as given
        <name><EXT_SUFFIX>         the extension
        build.log                  Cython + compiler output of the build
        meta.json                  key, sha256 of the extension, timings
    <root>/_archc_cyshared_<h>/    Cython's shared utility module for one toolchain (same layout, no .pyx)
    <root>/.locks/<name>.lock      per-entry file locks (several processes build an entry once)
    <root>/.tmp/                   private build directories, renamed into place when complete
    <root>/.failed/<name>/         the .pyx and build.log of the last failed build, kept for inspection

Faults are recovered from, or reported as one clear error (CacheError, an ArchcError):

- An entry that is incomplete, corrupt or whose meta.json is not a JSON object is rebuilt.
- A cache directory that cannot be written (read-only, on a read-only file system, under a
  regular file, or with `.locks`/`.tmp` that are not directories) does not stop a build: what
  it holds is still loaded, and a missing entry is built in a private temporary directory
  (mode 0700, removed at exit), with one warning on stderr. `clear()` and `cache_dir()` on
  such a directory raise CacheError.
- `clear()` also removes what killed builds left in `.tmp/` (entries whose lock no build holds).
- Compilers run in a process group of their own, under a shell that kills that whole group
  when archc dies: archc kills the group when it is interrupted (KeyboardInterrupt, SIGTERM),
  and on Linux the kernel signals the shell when archc is killed outright (see _spawn).

Kernels are compiled against Cython's shared utility module (Cython >= 3.1), so the big
memoryview/utility C code is compiled once per toolchain and a new kernel only compiles its own code.
Set ARCHC_CYTHON_SHARED=0 to build self-contained modules instead (this changes the cache key).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archc.dsl.diagnostics import ArchcError
from archc.dsl.source import private_to_user

if TYPE_CHECKING:
    import filelock

__all__ = [
    "DEFAULT_FLAGS",
    "BuildError",
    "CacheError",
    "build",
    "build_into",
    "cache_dir",
    "cache_key",
    "clear",
    "load_from",
    "module_name",
    "toolchain_fingerprint",
]

log = logging.getLogger("archc.cache")

Progress = Callable[[str], None]

# -fopenmp: generated kernels split large element-wise loops over the cores (cython.parallel)
DEFAULT_FLAGS: tuple[str, ...] = ("-O3", "-g0", "-fopenmp")

# Part of every key, so changing them invalidates old entries.
_DIRECTIVES = {"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False}
_LANGUAGE_LEVEL = 3
# Generated kernels may `cimport numpy`; without this every build log is cluttered by NumPy's #warning.
_MACROS = ("-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION",)
# Bump when the on-disk layout or the build recipe changes in a way the fingerprint does not see.
_LAYOUT_VERSION = "1"

_SHARED_PREFIX = "_archc_cyshared_"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOCK_TIMEOUT_S = 600.0
_LOG_TAIL_LINES = 60

# Python cannot load an extension twice under one name, and names carry the content hash,
# so a name seen once in this process always maps to the same module.
_loaded: dict[str, types.ModuleType] = {}
_load_lock = threading.RLock()
# Cython's compiler keeps module-level state; only one in-process compilation at a time.
_cython_lock = threading.Lock()


class CacheError(ArchcError):
    """The cache directory cannot be used for what was asked (`cache clear`, `cache dir`), or a
    build cannot be done anywhere: `archc: error: ...`."""


class BuildError(Exception):
    """Cython or the C compiler failed. ``.log`` is their output, ``.pyx`` the kept source file."""

    # Defaults keep it picklable (BaseException pickles as cls(*args) + __dict__).
    def __init__(self, message: str, *, log: str = "", pyx: Path | None = None, log_path: Path | None = None):
        self.message = message
        self.log = log
        self.pyx = pyx
        self.log_path = log_path
        super().__init__(message)

    def __str__(self) -> str:
        tail = "\n".join(self.log.rstrip().splitlines()[-_LOG_TAIL_LINES:])
        return (
            f"{self.message}\n"
            f"  generated source: {self.pyx}\n"
            f"  build log: {self.log_path}\n"
            f"--- build log (tail) ---\n{tail}"
        )


# ---------------------------------------------------------------------------
# Keys and names
# ---------------------------------------------------------------------------

def cache_dir(create: bool = True) -> Path:
    """$ARCHC_CACHE_DIR, else $XDG_CACHE_HOME/archc, else ~/.cache/archc; created on demand
    (CacheError when it cannot be)."""
    root = _default_root()
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: code is loaded from it
        except OSError as e:
            raise CacheError(f"cannot use the cache directory {root}: {_reason(e)}") from None
    return root


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _default_root() -> Path:
    explicit = os.environ.get("ARCHC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "archc"


def _shared_enabled() -> bool:
    if os.environ.get("ARCHC_CYTHON_SHARED", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _cython_has_shared_module()


@functools.cache
def _cython_has_shared_module() -> bool:
    # Cython >= 3.1. Looked up as a file: importing Cython.Build pulls in the whole compiler
    # (~80 ms), which a warm load must not pay.
    import Cython

    return (Path(Cython.__file__).parent / "Build" / "SharedModule.py").is_file()


@functools.cache
def _compiler_commands() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(compile prefix, link prefix) as setuptools would use them, without importing setuptools
    (that import alone costs ~0.3 s per cold build). Honours CC/CFLAGS/CPPFLAGS/LDSHARED/LDFLAGS
    like distutils' customize_compiler. POSIX compilers only."""
    cfg = sysconfig.get_config_vars()
    env = os.environ
    cc = env.get("CC") or cfg.get("CC") or "cc"
    ldshared = env.get("LDSHARED") or cfg.get("LDSHARED") or f"{cc} -shared"
    if "CC" in env and "LDSHARED" not in env and cfg.get("CC") and ldshared.startswith(cfg["CC"]):
        ldshared = env["CC"] + ldshared[len(cfg["CC"]):]
    cflags = " ".join(filter(None, [cfg.get("CFLAGS", ""), env.get("CFLAGS", ""), env.get("CPPFLAGS", "")]))
    ldshared = " ".join(filter(None, [ldshared, env.get("LDFLAGS", ""), env.get("CPPFLAGS", "")]))

    import numpy  # kernels are NumPy kernels; its headers are always on the include path

    paths = sysconfig.get_paths()
    includes = dict.fromkeys([paths["include"], paths["platinclude"], numpy.get_include()])
    compile_cmd = (
        shlex.split(cc) + shlex.split(cflags) + shlex.split(cfg.get("CCSHARED") or "")
        + [f"-I{d}" for d in includes] + list(_MACROS)
    )
    return tuple(compile_cmd), tuple(shlex.split(ldshared))


@functools.cache
def _base_fingerprint() -> tuple[tuple[str, str], ...]:
    import Cython
    import numpy

    compile_cmd, link_cmd = _compiler_commands()
    items = {
        "layout": _LAYOUT_VERSION,
        "cython": Cython.__version__,
        "numpy": numpy.__version__,
        "python": sys.version,
        "implementation": f"{sys.implementation.name}-{sys.implementation.cache_tag}",
        "soabi": str(sysconfig.get_config_var("SOABI") or ""),
        "ext_suffix": _ext_suffix(),
        "machine": platform.machine(),
        "compile": shlex.join(compile_cmd),
        "link": shlex.join(link_cmd),
        "directives": json.dumps(_DIRECTIVES, sort_keys=True) + f" language_level={_LANGUAGE_LEVEL}",
    }
    return tuple(items.items())


def toolchain_fingerprint() -> dict[str, str]:
    """Everything besides the source that decides what the compiled module looks like."""
    fp = dict(_base_fingerprint())
    fp["shared_utility"] = "on" if _shared_enabled() else "off"
    return fp


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def cache_key(source: str, *, archc_version: str, flags: tuple[str, ...] = DEFAULT_FLAGS) -> str:
    """sha256 hex of source + archc version + toolchain fingerprint + compiler flags."""
    return _cache_key(source, archc_version, tuple(flags), _shared_enabled())


@functools.lru_cache(maxsize=64)
def _cache_key(source: str, archc_version: str, flags: tuple[str, ...], shared: bool) -> str:
    # kept per source text: an estimate asks for its machine's kernel every time, and hashing
    # ~100 kB of source cost a tenth of a millisecond of each (the kernel's text is the same
    # string object each time, codegen/render.py, so the lookup hashes nothing)
    fp = dict(_base_fingerprint())
    fp["shared_utility"] = "on" if shared else "off"
    return _digest({"source": source, "archc_version": archc_version, "toolchain": fp, "flags": list(flags)})


def module_name(stem: str, key: str) -> str:
    if not isinstance(stem, str) or not _IDENT.fullmatch(stem):
        raise ValueError(f"module stem must match [A-Za-z_][A-Za-z0-9_]*, got {stem!r}")
    if not re.fullmatch(r"[0-9a-f]{16,}", key):
        raise ValueError(f"cache key must be a lowercase hex digest, got {key!r}")
    return f"{stem}_{key[:16]}"


def _shared_name() -> str:
    # One shared utility module per toolchain: its name is part of every kernel's C code.
    return _SHARED_PREFIX + _digest({"toolchain": dict(_base_fingerprint()), "flags": list(DEFAULT_FLAGS)})[:16]


def _ext_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or importlib.machinery.EXTENSION_SUFFIXES[0]


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------

def build(
    source: str,
    stem: str,
    *,
    archc_version: str,
    directory: Path | None = None,
    progress: Progress | None = None,
    label: str | None = None,
) -> types.ModuleType:
    """Return the compiled module for `source`, compiling only on a cache miss. `progress`
    hears "compiling kernel NAME[ for LABEL]", then "built NAME in S s" or "failed NAME after
    S s"; `label` says what the module is for a person ("the analytic kernel of h100")."""
    name = module_name(stem, cache_key(source, archc_version=archc_version))
    progress = _labelled(progress, name, label)
    with _load_lock:
        if name in _loaded:
            return _loaded[name]
    root = Path(directory) if directory is not None else _default_root()
    if _shared_enabled():
        # Kernels import the shared module by name at init; sys.modules is where they find it.
        _load_entry(root, _shared_name(), None, progress)
    return _load_entry(root, name, source, progress)


def build_into(
    source: str,
    stem: str,
    out_dir: Path,
    *,
    archc_version: str,
    progress: Progress | None = None,
    directory: Path | None = None,
    label: str | None = None,
) -> Path:
    """Build via the cache, then copy .pyx, extension and shared utility module into `out_dir`
    so that `sys.path.insert(0, out_dir); import <name>` works in a fresh process. The copies
    are written as runtime/outputs.py writes outputs (atomically, onto new paths or regular
    files only, with the umask's modes); OutputError if they cannot be."""
    from . import outputs

    name = module_name(stem, cache_key(source, archc_version=archc_version))
    progress = _labelled(progress, name, label)
    root = Path(directory) if directory is not None else _default_root()
    out_dir = outputs.make_dir(out_dir)
    shared = _ensure_shared(root, progress)
    entry = _ensure_entry(root, name, source, progress)
    if shared is not None:
        _copy_into(shared / (shared.name + _ext_suffix()), out_dir)
    _copy_into(entry / f"{name}.pyx", out_dir)
    return _copy_into(entry / (name + _ext_suffix()), out_dir)


def clear(directory: Path | None = None) -> int:
    """Remove all entries (kernels and shared modules), kept failed builds and what killed
    builds left in .tmp/; return the number of entries. A directory that cannot be cleared (not
    a directory, not writable) raises CacheError; a missing one holds nothing."""
    root = Path(directory) if directory is not None else _default_root()
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return 0
    except OSError as e:  # ENOTDIR: a component of the path is a regular file
        raise CacheError(f"cannot clear the cache directory {root}: {_reason(e)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"cannot clear the cache directory {root}: it is not a directory")
    why = _unwritable(root)
    if why:
        raise CacheError(f"cannot clear the cache directory {root}: {why}")
    import filelock

    removed = 0
    try:
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            # Taking the lock means we never pull an entry out from under a build in progress.
            with _entry_lock(root, entry.name):
                if entry.is_dir():
                    _discard(root, entry)
                    removed += 1
        shutil.rmtree(root / ".failed", ignore_errors=True)
        # A build killed outright leaves its private build directory (<name>-XXXX) or a discarded
        # entry (trash-...) in .tmp/. A live build holds its entry's lock while its directory
        # exists, so a directory whose lock is free now is stale.
        tmp = root / ".tmp"
        for p in sorted(tmp.iterdir()) if tmp.is_dir() else ():
            owner = p.name.rsplit("-", 1)[0]
            if p.name.startswith("trash-") or not _IDENT.fullmatch(owner):
                _remove(p)  # trash is removed by whoever discarded it, or by us: either is fine
                continue
            lock = _entry_lock(root, owner, timeout=0)
            try:
                lock.acquire()
            except filelock.Timeout:
                continue  # a build in progress: it removes its directory itself
            try:
                _remove(p)
            finally:
                lock.release()
    except OSError as e:
        raise CacheError(f"cannot clear the cache directory {root}: {_reason(e)}") from None
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def load_from(path: Path, name: str) -> types.ModuleType:
    """Import the extension file `path` as module `name` (registered in sys.modules).

    A name already loaded in this process returns that module: CPython cannot load an
    extension twice under one name, and for cache entries the name implies the content."""
    path = Path(path)
    with _load_lock:
        if name in _loaded:
            return _loaded[name]
        _load_sibling_shared(path, name)
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
        if spec is None:
            raise ImportError(f"cannot create an import spec for {path}", name=name, path=str(path))
        module = importlib.util.module_from_spec(spec)  # runs dlopen + PyInit
        sys.modules[name] = module
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _loaded[name] = module
        return module


def _load_sibling_shared(path: Path, name: str) -> None:
    """Kernels import the shared utility module by name when they initialise. If it sits next
    to `path` (a build_into directory), load it first so the caller needs no sys.path change."""
    if name.startswith(_SHARED_PREFIX) or not _shared_enabled():
        return
    shared = _shared_name()
    sibling = path.parent / (shared + _ext_suffix())
    if shared not in _loaded and shared not in sys.modules and sibling.is_file():
        load_from(sibling, shared)


# ---------------------------------------------------------------------------
# Entries: validate, lock, build, load
# ---------------------------------------------------------------------------

def _load_entry(root: Path, name: str, source: str | None, progress: Progress | None) -> types.ModuleType:
    """Load entry `name` (`source` None: the shared module), building it if missing or corrupt."""
    entry = _ensure_entry(root, name, source, progress)
    try:
        return load_from(entry / (name + _ext_suffix()), name)
    except ImportError as exc:
        # The checksum matched but the loader still refused it: treat it as corrupt, once.
        log.warning("cache entry %s failed to load (%s); rebuilding", entry, exc)
        entry = _ensure_entry(entry.parent, name, source, progress, rebuild=True)
        return load_from(entry / (name + _ext_suffix()), name)


def _ensure_shared(root: Path, progress: Progress | None) -> Path | None:
    """Make sure the toolchain's shared utility module is built; return its entry (None if disabled)."""
    if not _shared_enabled():
        return None
    return _ensure_entry(root, _shared_name(), None, progress)


def _ensure_entry(root: Path, name: str, source: str | None, progress: Progress | None,
                  rebuild: bool = False) -> Path:
    """Return the path of a complete, checksum-valid entry, building it under the entry's lock if
    needed (`rebuild`: whatever is there). Where `root` cannot be written, a valid entry in it is
    still used, and a missing one is built in this process's private temporary cache instead."""
    entry = root / name
    if root != _private.get("root") and (shared := _shared_with_others(root)) is not None:
        # code is loaded from here: never from a directory another user can write
        root, entry, rebuild = _private_root(root, shared, "is writable by other users"), None, False
        entry = root / name
    if not rebuild and _entry_valid(entry, name):
        return entry
    if root != _private.get("root"):
        why = _unwritable(root)
        if why is None:
            try:
                return _build_locked(root, name, source, progress, rebuild)
            except _CacheWriteError as e:
                why = _reason(e.error)
        root = _private_root(root, why)
        rebuild = False  # what the private cache holds was built and loaded (or not) on its own
    try:
        return _build_locked(root, name, source, progress, rebuild)
    except _CacheWriteError as e:
        raise CacheError(f"cannot build {name}: the private temporary directory {root} cannot be "
                         f"written: {_reason(e.error)}") from None


class _CacheWriteError(Exception):
    """An OSError while writing the cache directory (not a failed compilation)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _build_locked(root: Path, name: str, source: str | None, progress: Progress | None, rebuild: bool) -> Path:
    import filelock

    entry = root / name
    try:
        lock = _entry_lock(root, name)
        with lock:
            # Another process may have finished it while we waited for the lock.
            if not rebuild and _entry_valid(entry, name):
                return entry
            if os.path.lexists(entry):
                if not rebuild:
                    log.warning("cache entry %s is corrupt or incomplete; rebuilding", entry)
                _discard(root, entry)
            _build_entry(root, name, source, progress)
    except filelock.Timeout:
        raise CacheError(f"gave up after {_LOCK_TIMEOUT_S:.0f} s waiting for another process to build {name} "
                         f"(lock {root / '.locks' / (name + '.lock')})") from None
    except OSError as e:
        raise _CacheWriteError(e) from None
    return entry


def _unwritable(root: Path) -> str | None:
    """Why entries cannot be built in `root` (None: they can): it, `.locks` and `.tmp` must be
    (or be made) directories this process may write."""
    for d in (root, root / ".locks", root / ".tmp"):
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700 if d == root else 0o777)
        except FileExistsError:  # exists, but not as a directory
            return f"{d} is not a directory"
        except OSError as e:
            return _reason(e)
        if not os.access(d, os.W_OK | os.X_OK):
            with contextlib.suppress(OSError, AttributeError):
                if os.statvfs(d).f_flag & os.ST_RDONLY:
                    return os.strerror(errno.EROFS)
            return os.strerror(errno.EACCES)
    return None


# This process's private cache, used where the cache directory cannot be written.
_private: dict[str, Path] = {}
_warned: set[str] = set()


def _shared_with_others(root: Path) -> str | None:
    """Why `root` may hold code another user planted (None: it is this user's alone). A root
    that does not exist yet is created private by the build."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    if private_to_user(st, directory=True) or not stat.S_ISDIR(st.st_mode):
        return None  # (not a directory: _unwritable says so)
    return "owned by another user" if hasattr(os, "geteuid") and st.st_uid != os.geteuid() else \
        "writable by its group or others"


def _private_root(root: Path, why: str, problem: str = "is not writable") -> Path:
    """The private temporary cache (mode 0700, removed at exit), made on first use; say once
    per cache directory on stderr that builds go there."""
    with _load_lock:
        if "root" not in _private:
            try:
                private = Path(tempfile.mkdtemp(prefix="archc-cache-"))
            except OSError as e:
                raise CacheError(f"the cache directory {root} is not writable ({why}), and no private "
                                 f"temporary directory could be made: {_reason(e)}") from None
            atexit.register(shutil.rmtree, private, True)
            _private["root"] = private
        if str(root) not in _warned:
            _warned.add(str(root))
            log.info("cache directory %s unusable (%s); building in %s", root, why, _private["root"])
            print(f"archc: warning: the cache directory {root} {problem}; building in a private "
                  f"temporary directory", file=sys.stderr, flush=True)
        return _private["root"]


def _entry_valid(entry: Path, name: str) -> bool:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data = (entry / (name + _ext_suffix())).read_bytes()
    except (OSError, ValueError) as exc:
        log.info("cache entry %s unreadable: %s", entry, exc)
        return False
    if not isinstance(meta, dict):  # valid JSON, but not what we write
        log.info("cache entry %s has a meta.json that is not an object", entry)
        return False
    if meta.get("name") != name or hashlib.sha256(data).hexdigest() != meta.get("so_sha256"):
        log.info("cache entry %s fails its checksum", entry)
        return False
    return True


def _entry_lock(root: Path, name: str, timeout: float = _LOCK_TIMEOUT_S) -> filelock.FileLock:
    import filelock  # ~20 ms to import; only misses and clear() need it

    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(locks / f"{name}.lock"), timeout=timeout)


def _discard(root: Path, path: Path) -> None:
    """Remove a directory so that it disappears in one step (rename first, delete later)."""
    trash = _tmp_root(root) / f"trash-{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _tmp_root(root: Path) -> Path:
    tmp = root / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def _build_entry(root: Path, name: str, source: str | None, progress: Progress | None) -> None:
    """Build into a private temp dir and rename it into place; keep failures under .failed/."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_tmp_root(root)))
    buildlog: list[str] = []
    started = time.perf_counter()
    what = "shared Cython utility module" if source is None else "kernel"
    _report(progress, f"compiling {what} {name}" + (" for Cython's shared utility module (once per toolchain)"
                                                     if source is None else ""))
    built = False
    try:
        try:
            if source is None:
                _build_shared(work, name, buildlog)
            else:
                _build_kernel(work, name, source, buildlog)
        except _StepFailed as exc:
            raise _keep_failure(root, work, name, str(exc), "".join(buildlog)) from None
        so_path = work / (name + _ext_suffix())
        seconds = time.perf_counter() - started
        (work / "build.log").write_text("".join(buildlog), encoding="utf-8")
        _write_meta(work, name, so_path, seconds)
        _tidy(work, keep={f"{name}.pyx", so_path.name, "build.log", "meta.json"})
        os.chmod(work, 0o755)  # mkdtemp makes it private; the entry is an ordinary cache dir
        os.replace(work, root / name)
        built = True
    finally:
        if not built:  # a failed or interrupted build: whoever shows progress ends its line
            _report(progress, f"failed {name} after {time.perf_counter() - started:.2f} s")
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    log.info("built %s in %.2f s", name, seconds)
    _report(progress, f"built {name} in {seconds:.2f} s")


def _write_meta(work: Path, name: str, so_path: Path, seconds: float) -> None:
    meta = {
        "name": name,
        "so_sha256": hashlib.sha256(so_path.read_bytes()).hexdigest(),
        "build_seconds": round(seconds, 3),
        "built_at": time.time(),
        "built_by_pid": os.getpid(),
        "toolchain": toolchain_fingerprint(),
    }
    (work / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")


def _tidy(work: Path, keep: set[str]) -> None:
    # The .c/.o files are large (0.3-1 MB) and reproducible from the .pyx; don't keep them.
    for p in work.iterdir():
        if p.name not in keep:
            p.unlink()


def _keep_failure(root: Path, work: Path, name: str, message: str, text: str) -> BuildError:
    failed = root / ".failed" / name
    failed.parent.mkdir(parents=True, exist_ok=True)
    if failed.exists():
        shutil.rmtree(failed, ignore_errors=True)
    os.replace(work, failed)
    text = _repoint_paths(text, work, failed)
    pyx = failed / f"{name}.pyx"
    if not pyx.exists():  # the shared module has no .pyx; point at its generated C instead
        pyx = failed / f"{name}.c"
    (failed / "build.log").write_text(text, encoding="utf-8")
    log.info("build of %s failed; kept in %s", name, failed)
    return BuildError(f"building {name} failed: {message}", log=text, pyx=pyx, log_path=failed / "build.log")


def _repoint_paths(text: str, old: Path, new: Path) -> str:
    """Make the log's file names (absolute, or cwd-relative as Cython prints them) point at
    the kept copy instead of the temp dir that no longer exists."""
    text = text.replace(str(old), str(new))
    with contextlib.suppress(OSError):
        cwd = os.getcwd() + os.sep
        if str(old).startswith(cwd):
            text = text.replace(str(old)[len(cwd):], str(new))
    return text


def _labelled(progress: Progress | None, name: str, label: str | None) -> Progress | None:
    """`progress` with "compiling ... NAME" messages about the entry `name` told its label."""
    if progress is None or not label:
        return progress

    def cb(message: str) -> None:
        progress(f"{message} for {label}" if message.startswith("compiling ") and message.endswith(f" {name}")
                 else message)
    return cb


def _report(progress: Progress | None, message: str) -> None:
    log.debug(message)
    if progress is not None:
        progress(message)


class _StepFailed(Exception):
    pass


# ---------------------------------------------------------------------------
# Build steps
# ---------------------------------------------------------------------------

def _build_kernel(work: Path, name: str, source: str, buildlog: list[str]) -> None:
    pyx = work / f"{name}.pyx"
    pyx.write_text(source, encoding="utf-8")
    c_file = work / f"{name}.c"
    shared = _shared_name() if _shared_enabled() else None

    def cythonize() -> int:
        from Cython.Compiler.Main import CompilationOptions, compile_single, default_options

        options = CompilationOptions(
            default_options,
            language_level=_LANGUAGE_LEVEL,
            compiler_directives=dict(_DIRECTIVES),
            output_file=str(c_file),
            shared_utility_qualified_name=shared,
        )
        return compile_single(str(pyx), options, name).num_errors

    _run_cython(cythonize, c_file, buildlog)
    _compile_and_link(work, name, c_file, buildlog)


def _build_shared(work: Path, name: str, buildlog: list[str]) -> None:
    c_file = work / f"{name}.c"

    def generate() -> int:
        from Cython.Build.SharedModule import generate_shared_module
        from Cython.Compiler.Main import CompilationOptions, default_options

        options = CompilationOptions(
            default_options,
            language_level=_LANGUAGE_LEVEL,
            compiler_directives=dict(_DIRECTIVES),
            shared_c_file_path=str(c_file),
            shared_utility_qualified_name=None,
        )
        err, _ = generate_shared_module(options)
        return 1 if err else 0

    _run_cython(generate, c_file, buildlog)
    _compile_and_link(work, name, c_file, buildlog)


def _run_cython(step: Callable[[], int], c_file: Path, buildlog: list[str]) -> None:
    """Run Cython in-process: after the first build its warm compiler takes ~0.2 s per kernel,
    where a subprocess pays ~1 s of start-up each time. Its messages go to stdout/stderr, which
    are captured here (briefly process-wide, hence the lock)."""
    out = io.StringIO()
    with _cython_lock, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        buildlog.append(f"$ cython (in-process, Cython.Compiler) -> {c_file.name}\n")
        try:
            errors = step()
        except Exception:  # Cython's own crashes (InternalError, CompileError, ...) are build failures too
            traceback.print_exc(file=out)
            errors = -1
    buildlog.append(out.getvalue())
    if errors or not c_file.is_file():
        raise _StepFailed("Cython reported errors")


def _compile_and_link(work: Path, name: str, c_file: Path, buildlog: list[str]) -> None:
    compile_cmd, link_cmd = _compiler_commands()
    obj = work / f"{name}.o"
    so_path = work / (name + _ext_suffix())
    _spawn([*compile_cmd, *DEFAULT_FLAGS, "-c", str(c_file), "-o", str(obj)], work, buildlog, "C compiler")
    _spawn([*link_cmd, str(obj), "-fopenmp", "-o", str(so_path)], work, buildlog, "linker")


def _spawn(cmd: list[str], cwd: Path, buildlog: list[str], what: str) -> None:
    """Run one compiler command; it dies with archc.

    The compiler (and what it starts: cc1, as, collect2, ld) runs in a process group of its own
    (a new session, so a terminal's Ctrl-C reaches archc only), and archc kills that group when
    it is interrupted (KeyboardInterrupt, SIGTERM via archc/cli.py) before it re-raises. When
    archc is killed outright (SIGKILL, the OOM killer) none of its code runs, so on Linux the
    command runs under a small shell that the kernel signals when archc dies
    (prctl(PR_SET_PDEATHSIG), set in the child before exec); its trap kills the whole group.
    PDEATHSIG alone would not do: it is not inherited, so gcc's own children would outlive it."""
    buildlog.append("$ " + shlex.join(cmd) + "\n")
    if shutil.which(cmd[0]) is None:  # the shell would say "not found" in the log; say it here
        buildlog.append(f"{cmd[0]}: command not found\n")
        raise _StepFailed(f"could not run the {what}: {cmd[0]} not found")
    setup = _die_with_parent()
    argv = list(cmd) if setup is None else ["/bin/sh", "-c", _GROUP_GUARD, "archc-build", *cmd]
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True, preexec_fn=setup)
    except OSError as exc:  # compiler missing
        buildlog.append(f"{exc}\n")
        raise _StepFailed(f"could not run the {what}: {exc}") from None
    try:
        output, _ = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    buildlog.append(output)
    if proc.returncode != 0:
        raise _StepFailed(f"{what} exited with status {proc.returncode}")


# Runs "$@" in the shell's process group and kills that group when the shell gets SIGTERM (sent
# by the kernel when archc dies: _die_with_parent) or SIGHUP; otherwise exits with its status.
_GROUP_GUARD = 'trap "kill -KILL 0" TERM HUP; "$@" & wait $!'
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl():
    if not sys.platform.startswith("linux") or not os.path.exists("/bin/sh"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to send the child SIGTERM when this thread's process dies
    (None where there is no prctl). It only calls a C function looked up beforehand, as a
    preexec_fn in a process that may have threads should."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # archc died before the request took effect
            os._exit(1)
    return setup


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the compiler's process group (its pgid is its pid: a new session) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(BaseException):
        proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


# ---------------------------------------------------------------------------
# build_into helpers
# ---------------------------------------------------------------------------

def _copy_into(src: Path, out_dir: Path) -> Path:
    """Copy `src` into `out_dir` (runtime/outputs.py: temp file, fsync, os.replace; a new file
    gets the umask's mode, executable if `src` is), so readers never see a partial file."""
    from . import outputs

    return outputs.copy_file(src, Path(out_dir) / src.name)
