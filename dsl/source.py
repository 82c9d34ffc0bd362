"""Source files and spans: where every node, diagnostic and IR value came from."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

# Reading more than this is refused before parsing: a design is a few hundred lines, and a
# file this large is a mistake that would otherwise take minutes to parse.
MAX_SOURCE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, eq=False)
class Source:
    """One text the user gave us: a file, a `--set` value, or a standard-library module."""

    name: str
    text: str

    def line(self, lineno: int) -> str:
        """Line `lineno` as the lexer counts lines: split at '\n' only (str.splitlines would
        also split at a lone '\r', form feeds, U+2028 ... and show the wrong line), a CRLF's
        '\r' dropped."""
        lines = self.text.split("\n")
        if 1 <= lineno <= len(lines):
            line = lines[lineno - 1]
            return line[:-1] if line.endswith("\r") else line
        return ""

    @property
    def start(self) -> "Span":
        return Span(self, 1, 1, 1, 1)

    def span_at(self, offset: int, length: int = 1) -> "Span":
        """The span of `length` characters starting at character `offset`."""
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return Span(self, line, col, line, col + max(1, length))


@dataclass(frozen=True)
class Span:
    """A region of a source: 1-based line and column, end exclusive. Not part of equality."""

    source: Source = field(compare=False, repr=False)
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"


def private_to_user(st: os.stat_result, directory: bool) -> bool:
    """Whether only this user can change what is at `st`: a directory (or a regular file)
    owned by this user and writable by neither its group nor others. archc loads code from
    its caches (the parser's pickle, compiled kernels) only from such places. Systems without
    uids trust their own permissions."""
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    return kind_ok and (uid is None or st.st_uid == uid) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
