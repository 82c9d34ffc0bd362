"""Reading design files: every way a read can fail (missing, a directory, a device or FIFO,
unreadable, a symlink loop, binary, too large) becomes one diagnostic. Files are only read."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .diagnostics import ArchSyntaxError, Diagnostic
from .source import MAX_SOURCE_BYTES, Source, Span


def read_bytes(path: str | Path) -> bytes:
    """At most MAX_SOURCE_BYTES + 1 bytes of the regular file at `path`. A FIFO, device or
    socket is refused before anything is read from it (opening a FIFO does not wait for a
    writer, and /dev/zero is not read forever); OSError for everything the system refuses."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegular()
        if st.st_size > MAX_SOURCE_BYTES:
            raise ValueError(_too_large(st.st_size))
        chunks, size = [], 0
        while size <= MAX_SOURCE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_SOURCE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _NotRegular(OSError):
    pass


def _too_large(size: int | None) -> str:
    """`size` None: the file grew past the limit while it was read."""
    size_text = f"{size:,}" if size is not None else f"more than {MAX_SOURCE_BYTES:,}"
    return f"the file is {size_text} bytes; archc reads design files up to {MAX_SOURCE_BYTES:,} bytes"


def decode(name: str, data: bytes) -> Source:
    """The text of a design file; ValueError (too large) or UnicodeError (binary, not UTF-8)."""
    if len(data) > MAX_SOURCE_BYTES:
        raise ValueError(_too_large(None))
    if b"\x00" in data:
        raise UnicodeError("the file contains NUL bytes; it is not a text file")
    # utf-8-sig: a byte-order mark some editors write is not part of the text
    return Source(name, data.decode("utf-8-sig"))


def read_design(path: str | Path, name: str | None = None, at: Span | None = None) -> Source:
    """Read a design file as the Source `name` (default: the path as given). A file that cannot
    be opened is reported at `at` (the import that names it; None: the command line), a file
    that is binary or too large inside itself, at the first bad byte."""
    p = str(path)
    name = p if name is None else name
    lead = f"cannot import {name}: " if at is not None else f"{name}: "
    data = b""
    try:
        data = read_bytes(path)
    except ValueError as e:  # too large: said at the top of the file
        raise ArchSyntaxError([Diagnostic(Source(name, "").start if at is None else at,
                                          f"{'' if at is None else lead}{e}")]) from None
    except FileNotFoundError:
        raise ArchSyntaxError([Diagnostic(at, f"{lead}no such file")]) from None
    except IsADirectoryError:
        raise ArchSyntaxError([Diagnostic(at, f"{lead}is a directory, not a design file")]) from None
    except PermissionError:
        raise ArchSyntaxError([Diagnostic(at, f"{lead}permission denied")]) from None
    except _NotRegular:
        raise ArchSyntaxError([Diagnostic(at, f"{lead}not a regular file (a device, FIFO or socket)")]) from None
    except OSError as e:  # a symlink loop (ELOOP), a name too long, an I/O error
        raise ArchSyntaxError([Diagnostic(at, f"{lead}{e.strerror or e}")]) from None
    try:
        return decode(name, data)
    except (UnicodeError, ValueError) as e:
        bad = _first_bad_byte(data) if len(data) <= MAX_SOURCE_BYTES else None
        if bad is not None:  # decode no further than the end of the bad byte's line
            end = data.find(b"\n", bad)
            data = data[:end if end >= 0 else len(data)]
        else:
            data = data[:4096]
        src = Source(name, data.decode("utf-8", errors="replace"))
        span = src.span_at(len(data[:bad].decode("utf-8", errors="replace")), 1) if bad is not None else src.start
        if isinstance(e, UnicodeDecodeError):  # (a ValueError too: test it first)
            reason = "the file is not UTF-8 text" + (f" (byte 0x{data[bad]:02x} at offset {bad})"
                                                     if bad is not None else "")
        else:
            reason = str(e)
        raise ArchSyntaxError([Diagnostic(span, reason)]) from None


def _first_bad_byte(data: bytes) -> int | None:
    if b"\x00" in data:
        return data.index(b"\x00")
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as e:
        return e.start
