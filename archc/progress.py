"""Owns the sweep's progress on stderr: a bar with the points done, failed and reused, the time taken and the time left.

On a terminal, a rich progress bar redrawn in place (removed when the sweep ends, whose table
follows on stdout). Elsewhere (a CI log, a file) whole lines, one each time another tenth of
the points is done and at the end, so that a log holds no partial lines and no escapes.
"""
from __future__ import annotations

import contextlib
import sys
import time


class SweepProgress:
    """`with SweepProgress(total) as p: p.point(done, total, point, row, computed)`."""

    def __init__(self, total: int, stream=None, label: str = "sweep"):
        self.out = stream if stream is not None else sys.__stderr__
        self.total, self.label = total, label
        self.failed = self.reused = self.done = 0
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._bar = self._task = None
        self._start = time.monotonic()
        self._next_line = 0

    def __enter__(self) -> "SweepProgress":
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self._bar = Progress(TextColumn("archc: {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("left"),
                                 TimeRemainingColumn(), console=Console(file=self.out), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, note="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            with contextlib.suppress(OSError, ValueError):
                self._bar.stop()
        if exc[0] is None and not self.tty:
            self._line(final=True)

    def point(self, done: int, total: int, point, row: dict, computed: bool) -> None:
        self.done = done
        self.failed += row["status"] != "ok"
        self.reused += not computed
        if not computed:
            self._start = time.monotonic()  # the time left follows the points computed, not those reused
        if self._bar is not None:
            self._bar.update(self._task, completed=done, note=self._note())
        elif computed and done >= self._next_line and done < total:
            self._line()

    def _note(self) -> str:
        parts = [f"{self.failed} failed"] if self.failed else []
        if self.reused:
            parts.append(f"{self.reused} reused")
        return f"({', '.join(parts)})" if parts else ""

    def _line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self._start
        computed = self.done - self.reused
        left = ""
        if not final and computed > 0:
            left = f", about {elapsed / computed * (self.total - self.done):.1f} s left"
        note = self._note()
        text = (f"archc: {self.label} {self.done} of {self.total} points{' ' + note if note else ''}, "
                f"{elapsed:.1f} s{left}\n")
        with contextlib.suppress(OSError, ValueError):
            self.out.write(text)
            self.out.flush()
        self._next_line = self.done + max(1, self.total // 10)
