"""Data-driven golden cases, mypyc style: a `.test` file holds `[case NAME]` sections, each an
input followed by `[out]` and the output it must give; an optional `[prelude]` section at the
top is put before every case's input. `--update-golden` rewrites the `[out]` sections from the
current output, and the test still fails, so the diff gets read before it is committed."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

_HEADER = re.compile(r"^\[(case|out|prelude)(?: ([A-Za-z0-9_.-]+))?\]\s*$")


@dataclass
class Case:
    name: str
    input: str
    expected: str | None  # None: the case has no [out] section yet
    line: int  # of its [case] header


def parse(path: Path) -> tuple[str, list[Case]]:
    """(prelude, cases) of a .test file."""
    prelude, cases = "", []
    section, name, buf, start = None, None, [], 0

    def close():
        nonlocal prelude
        text = "".join(buf).strip("\n") + "\n" if "".join(buf).strip() else ""
        if section == "prelude":
            prelude = text
        elif section == "case":
            cases.append(Case(name, text, None, start))
        elif section == "out":
            if not cases or cases[-1].expected is not None:
                raise ValueError(f"{path}: an [out] section without its [case]")
            cases[-1].expected = text
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(keepends=True), 1):
        m = _HEADER.match(line)
        if m:
            close()
            section, buf, start = m.group(1), [], no
            if section == "case":
                name = m.group(2)
                if not name or any(c.name == name for c in cases):
                    raise ValueError(f"{path}:{no}: a [case] needs a unique name")
            continue
        if section is None and line.strip() and not line.startswith("--"):
            raise ValueError(f"{path}:{no}: text before the first section")
        buf.append(line)
    close()
    return prelude, cases


def render(prelude: str, cases: list[Case], outputs: dict[str, str], comment: str) -> str:
    """The .test file with every case's [out] replaced by outputs[name] (when given)."""
    parts = [comment.rstrip("\n") + "\n\n"] if comment else []
    if prelude:
        parts.append(f"[prelude]\n{prelude}\n")
    for c in cases:
        out = outputs.get(c.name, c.expected or "")
        parts.append(f"[case {c.name}]\n{c.input}[out]\n{out}\n")
    return "".join(parts).rstrip("\n") + "\n"


def leading_comment(path: Path) -> str:
    """The `--` comment lines at the top of a .test file."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def check_cases(path: Path, run_case, update: bool) -> None:
    """Run every case of `path` through run_case(prelude + input) -> output text; fail with a
    diff per differing case (or, with `update`, rewrite the file and fail)."""
    prelude, cases = parse(path)
    outputs, failures = {}, []
    for c in cases:
        got = run_case(c.name, prelude + c.input)
        outputs[c.name] = got
        if c.expected is None:
            failures.append(f"[case {c.name}] (line {c.line}) has no [out] section")
        elif got != c.expected:
            diff = "".join(difflib.unified_diff(c.expected.splitlines(keepends=True), got.splitlines(keepends=True),
                                                fromfile=f"{path.name} [case {c.name}]", tofile="actual"))
            failures.append(diff)
    if failures and update:
        path.write_text(render(prelude, cases, outputs, leading_comment(path)), encoding="utf-8")
        pytest.fail(f"{path.name} rewritten ({len(failures)} cases changed): review the diff", pytrace=False)
    if failures:
        pytest.fail("\n".join(failures)[:30000] + "\n(rerun with --update-golden to accept)", pytrace=False)
