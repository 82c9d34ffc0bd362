"""Owns how archc writes its outputs: atomically, only onto new paths or regular files, with the usual modes.

Every output writer goes through this module: `archc run --trace FILE` (runtime/event_level.py
write_trace), `--out DIR` (archc/cli.py, runtime/plots.py), `compile -o DIR` (archc/cli.py,
runtime/cache.py build_into) and `--write-run` (runtime/search.py, which rewrites the design).

Files
    A file is written to a temporary file in the directory it goes to, fsync'ed, and renamed onto
    its path with os.replace: a reader sees the old contents or the new, never a part, and a
    failure (a full disk, an interrupt) leaves the old file as it was and no temporary behind.

    Only a new path or an existing regular file is written. A device node (/dev/null, /dev/full),
    a FIFO, a socket, a directory or anything else that is not a regular file is refused: renaming
    a file onto /dev/null would silently turn it into a regular file, and writing into a device or
    a pipe is not what an output option promises (no atomicity, no error on a full device).

    Symbolic links are followed, deliberately: a link to a regular file has its TARGET replaced
    atomically and the link stays a link (what `open(PATH, "w")` and an editor do; replacing the
    link by a file would break whatever arranged it). A dangling link has its target created. A
    link to anything that is not a regular file is refused like that thing.

    A new file gets the mode open() would give it, 0666 & ~umask (0777 & ~umask for an executable,
    such as a built extension module), never mkstemp's private 0600; a replaced file keeps its
    permission bits, as writing into it would. A file that is not writable, or whose directory is
    not, is refused.

Directories (`--out DIR`, `compile -o DIR`)
    DIR may be new or an existing directory (or a link to one); anything else is refused. A new
    DIR is filled as a temporary directory next to it and renamed into place at the end (mode
    0777 & ~umask); into an existing DIR the files are made in a temporary directory inside it,
    and once every name they go to is checked to be free or a regular file (anything else,
    including a symlink, is refused and nothing is replaced), each is renamed onto its name. A
    failure of any kind, KeyboardInterrupt included, removes the temporary directory: there is
    never a half-written DIR.

Checks before work
    `check_file` and `check_dir` refuse now what writing would refuse later, so that the command
    (archc/cli.py) stops before checking, building or simulating rather than after.

Errors
    Every problem is an OutputError, an ArchcError rendered `archc: error: cannot write PATH:
    REASON` (REASON: the operating system's words for an OSError, such as "No space left on
    device", "Permission denied" or "Read-only file system").
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from archc.dsl.diagnostics import ArchcError

__all__ = ["OutputError", "atomic_dir", "check_dir", "check_file", "copy_file", "file_mode", "make_dir",
           "replacing", "write_bytes", "write_text"]

_TMP_PREFIX = ".archc-"


class OutputError(ArchcError):
    """An output cannot be written: `archc: error: cannot write PATH: REASON`."""

    stage = "output"


# ---- modes ------------------------------------------------------------------------------------

def _umask() -> int:
    try:  # Linux reports it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(executable: bool = False) -> int:
    """The mode open() (or a linker, for an executable) gives a new file: 0666 (0777) & ~umask."""
    return (0o777 if executable else 0o666) & ~_umask()


# ---- what a path is ---------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISREG, "a regular file"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _what(what: str) -> str:
    return f"{what} " if what else ""


def _error(shown: str, exc: OSError, what: str = "", to: bool = False) -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"cannot write {'to ' if to else ''}{_what(what)}{shown}: {reason}")


def _stat(path: str) -> os.stat_result | None:
    """os.stat, None when nothing is there; other OSErrors (ENOTDIR, ELOOP, EACCES) propagate."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _writable_dir(directory: str) -> str | None:
    """Why files cannot be created in `directory`, or None when they can."""
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    return os.strerror(errno.EACCES)


def _check_new(shown: str, real: str, what: str, to: bool) -> None:
    """A path that does not exist yet: its nearest existing ancestor must be a writable directory."""
    head = os.path.dirname(real)
    while True:
        try:
            st = os.stat(head)
        except FileNotFoundError:
            parent = os.path.dirname(head)
            if parent == head:
                break
            head = parent
            continue
        except NotADirectoryError:  # a component above is a file: find it
            head = os.path.dirname(head)
            continue
        except OSError as e:
            raise _error(shown, e, what, to) from None
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {'to ' if to else ''}{_what(what)}{shown}: {head} is not a directory")
        reason = _writable_dir(head)
        if reason:
            raise OutputError(f"cannot write {'to ' if to else ''}{_what(what)}{shown}: {reason}")
        return


def _stat_or_refuse(shown: str, real: str, path: str, what: str):
    """_stat(path), an OSError becoming the output's refusal (a path through a regular file
    says which component is not a directory)."""
    try:
        return _stat(path)
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            _check_new(shown, real, what, False)
        raise _error(shown, e, what) from None


def check_file(path, what: str = "") -> str:
    """Refuse now what writing the file `path` would refuse: anything but a new path or a
    writable regular file (links followed) in an existing writable directory. Returns the path
    to write (links resolved). `what` ("the trace") is named in the message."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    st = _stat_or_refuse(shown, real, real, what)
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"cannot write {_what(what)}{shown}: it is {_kind(st.st_mode)}, not a regular file")
        if not os.access(real, os.W_OK):
            raise OutputError(f"cannot write {_what(what)}{shown}: {os.strerror(errno.EACCES)}")
    parent = os.path.dirname(real)
    pst = _stat_or_refuse(shown, real, parent, what)
    if pst is None:
        raise OutputError(f"cannot write {_what(what)}{shown}: no directory {parent}")
    if not stat.S_ISDIR(pst.st_mode):
        raise OutputError(f"cannot write {_what(what)}{shown}: {parent} is not a directory")
    reason = _writable_dir(parent)
    if reason:
        raise OutputError(f"cannot write {_what(what)}{shown}: {reason}")
    return real


def check_dir(path, names: Iterable[str] = ()) -> str:
    """Refuse now what writing into the directory `path` would refuse: an existing path that is
    not a directory (links followed), a directory that is not writable, a new path that cannot
    be created, or an entry among `names` inside it that is not a regular file. Returns the
    directory to write (links resolved)."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    try:
        st = _stat(real)
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            _check_new(shown, real, "", True)
        raise _error(shown, e, to=True) from None
    if st is None:
        _check_new(shown, real, "", True)
        return real
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write to {shown}: it is {_kind(st.st_mode)}, not a directory")
    reason = _writable_dir(real)
    if reason:
        raise OutputError(f"cannot write to {shown}: {reason}")
    for name in names:
        _check_entry(os.path.join(real, name), os.path.join(shown, name))
    return real


def _check_entry(real: str, shown: str) -> None:
    """An entry of an output directory is replaced only if it is missing or a regular file."""
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _error(shown, e) from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"cannot write {shown}: it is {_kind(st.st_mode)}, not a regular file")


# ---- files ------------------------------------------------------------------------------------

def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    """Make a rename durable; best effort (not every file system lets a directory be fsync'ed)."""
    with contextlib.suppress(OSError):
        _fsync(directory)


@contextlib.contextmanager
def replacing(path, *, executable: bool = False, suffix: str = ".tmp", what: str = "") -> Iterator[str]:
    """Yield the name of a temporary file next to `path` (links followed) for the caller to
    write; when the block ends normally, give it its mode, fsync it and rename it onto the path.
    Any OSError becomes an OutputError; on any exception the temporary file is removed and the
    old file is untouched."""
    shown = os.fspath(path)
    real = check_file(path, what)
    directory, base = os.path.split(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=directory)
        os.close(fd)
    except OSError as e:
        raise _error(shown, e, what) from None
    try:
        yield tmp
        try:
            st = _stat(real)
            if st is not None and not stat.S_ISREG(st.st_mode):  # changed since check_file
                raise OutputError(f"cannot write {_what(what)}{shown}: it is {_kind(st.st_mode)}, "
                                  f"not a regular file")
            _fsync(tmp)  # while it is still mkstemp's 0600: readable by us whatever the umask
            os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else file_mode(executable))
            os.replace(tmp, real)
        except OSError as e:
            raise _error(shown, e, what) from None
        _fsync_dir(directory)
    except OSError as e:  # from the caller's block: writing the temporary file
        raise _error(shown, e, what) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_bytes(path, data: bytes, *, executable: bool = False, what: str = "") -> Path:
    """Write `data` to `path` atomically (see the module's rules); returns the path as given."""
    with replacing(path, executable=executable, what=what) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    return Path(path)


def write_text(path, text: str, *, executable: bool = False, what: str = "") -> Path:
    return write_bytes(path, text.encode("utf-8"), executable=executable, what=what)


def copy_file(src, dst, *, executable: bool | None = None) -> Path:
    """Copy the file `src` to `dst` atomically; executable (default: as `src` is) sets the mode
    a new `dst` gets."""
    if executable is None:
        executable = bool(os.stat(src).st_mode & 0o111)
    with replacing(dst, executable=executable) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


# ---- directories ------------------------------------------------------------------------------

def make_dir(path) -> Path:
    """`path` as a directory: created (with its parents, 0777 & ~umask) if missing; anything
    but a writable directory is refused."""
    real = check_dir(path)
    try:
        os.makedirs(real, exist_ok=True)
    except OSError as e:
        raise _error(os.fspath(path), e, to=True) from None
    return Path(path)


def _inside(path, directory: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), directory]) == directory
    except ValueError:
        return False


def atomic_dir(path, fill: Callable[[Path], object], names: Iterable[str] = ()) -> Path:
    """Fill the output directory `path` all or nothing (see the module's rules): `fill(tmp)`
    writes the files into the temporary directory `tmp`; they are moved into place only when it
    returns. OSErrors about the output become OutputError; the temporary directory is removed
    whatever happens."""
    shown = os.fspath(path)
    real = check_dir(path, names)
    exists = os.path.isdir(real)
    try:
        if not exists:
            os.makedirs(os.path.dirname(real), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=real if exists else os.path.dirname(real))
    except OSError as e:
        raise _error(shown, e, to=not exists) from None
    try:
        try:
            fill(Path(tmp))
        except OSError as e:
            # a write into the temporary directory (a full disk): the output's failure; an
            # OSError about another file is fill's own and keeps its meaning
            if e.filename is None or _inside(e.filename, tmp):
                raise _error(shown, e) from None
            raise
        try:
            entries = sorted(os.listdir(tmp))
            for name in entries:
                _fsync(os.path.join(tmp, name))
            if exists:
                for name in entries:  # every name first: refuse before replacing anything
                    _check_entry(os.path.join(real, name), os.path.join(shown, name))
                for name in entries:
                    os.replace(os.path.join(tmp, name), os.path.join(real, name))
                _fsync_dir(real)
            else:
                os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
                os.rename(tmp, real)
                _fsync_dir(os.path.dirname(real))
        except OSError as e:
            raise _error(shown, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Path(path)
