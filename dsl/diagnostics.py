"""Diagnostics and the one error family: every user mistake becomes `file:line:col: error: ...`."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from .source import Span


def did_you_mean(name: str, options, n: int = 1, cutoff: float = 0.6) -> str:
    """"; did you mean 'x'?" for the closest option(s), or "" when none is close."""
    close = difflib.get_close_matches(name, list(options), n=n, cutoff=cutoff)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (ESC sequences, carriage returns, bidi
    overrides) and undecodable bytes become U+FFFD; line breaks and tabs stay. Every user
    string archc prints passes through here or through the source-line rendering below."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)


@dataclass(frozen=True)
class Diagnostic:
    span: Span | None
    message: str
    severity: str = "error"
    notes: tuple[tuple[Span | None, str], ...] = ()

    def render(self) -> str:
        out = [_render_one(self.span, self.severity, self.message)]
        for span, text in self.notes:
            out.append(_render_one(span, "note", text))
        return "\n".join(out)


def _render_one(span: Span | None, severity: str, message: str) -> str:
    if span is None:
        return printable(f"archc: {severity}: {message}")
    head = printable(f"{span}: {severity}: {message}")
    # control characters and undecodable bytes would garble a terminal: shown as U+FFFD
    line = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in span.source.line(span.line))
    if not line and span.line > len(span.source.text.splitlines()):
        return head
    expanded = line.expandtabs(4)
    # Columns count characters; tabs expand to keep the caret under the right one.
    prefix = line[: span.col - 1].expandtabs(4)
    if span.end_line == span.line:
        width = max(1, len(line[span.col - 1: span.end_col - 1].expandtabs(4)))
    else:
        width = max(1, len(expanded) - len(prefix))
    width = min(width, max(1, len(expanded) - len(prefix)) if expanded else 1)
    start = len(prefix)
    if len(expanded) > _MAX_SHOWN:
        # a window of the line around the caret, marked with ellipses where it is cut
        lo = max(0, start - _MAX_SHOWN // 2)
        hi = min(len(expanded), lo + _MAX_SHOWN)
        lo = max(0, hi - _MAX_SHOWN)
        expanded = ("…" if lo else "") + expanded[lo:hi] + ("…" if hi < len(line.expandtabs(4)) else "")
        start = start - lo + (1 if lo else 0)
        width = max(1, min(width, hi - len(prefix)))
    return f"{head}\n    {expanded}\n    {' ' * start}{'^' * width}"


_MAX_SHOWN = 120  # characters of a source line shown under a diagnostic


class ArchcError(Exception):
    """Base of every error a user can cause; `exit_code` is what the command returns."""

    exit_code = 1
    stage = "archc"

    def __init__(self, diagnostics: Iterable[Diagnostic] | str, span: Span | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(span, diagnostics)]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        text = "\n".join(d.render() for d in self.diagnostics)
        if len(self.diagnostics) > 1:
            text += f"\narchc: {len(self.diagnostics)} errors; unable to continue"
        return text


class ArchSyntaxError(ArchcError):
    stage = "parse"


class CheckError(ArchcError):
    stage = "check"


class CodegenError(ArchcError):
    stage = "codegen"
    exit_code = 3


class BuildError(ArchcError):
    stage = "build"
    exit_code = 4


class RunError(ArchcError):
    stage = "run"
    exit_code = 5


class Collector:
    """Collects diagnostics so that one pass reports every problem, then stops."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []  # reported, but the design is still valid

    def warning(self, span: Span | None, message: str) -> None:
        diag = Diagnostic(span, message, "warning")
        if diag not in self.warnings:
            self.warnings.append(diag)

    def error(self, span: Span | None, message: str, *notes: tuple[Span | None, str]) -> None:
        diag = Diagnostic(span, message, notes=tuple(notes))
        if diag not in self.items:
            self.items.append(diag)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, cls: type[ArchcError] = CheckError) -> None:
        if self.items:
            raise cls(sorted(self.items, key=_order))


def _order(d: Diagnostic):
    s = d.span
    return (s is None, s.source.name if s else "", s.line if s else 0, s.col if s else 0)
