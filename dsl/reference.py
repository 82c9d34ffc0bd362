"""The op and block reference, generated: every op of the registry (dsl/ops.py) with its
signature, defaults, class and cost rule, and every block and model of the standard library
with its signature, its description (the comment above it) and the ops and blocks it calls.
`archc ops` prints it; docs/ops.md is its Markdown form, and a test fails when they differ."""
from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .check import _stdlib
from .ops import OPS

LIBRARIES = ("std.blocks", "std.models")


@dataclass(frozen=True)
class Entry:
    kind: str  # op | block | model
    name: str
    signature: str
    what: str  # the class of an op; the library of a block or model
    doc: str
    calls: tuple[str, ...] = ()  # a block's or model's ops and blocks, in first-call order

    @property
    def text(self) -> str:
        lines = [f"{self.signature}  [{self.what}]", f"    {self.doc}" if self.doc else ""]
        if self.calls:
            lines.append(f"    calls: {', '.join(self.calls)}")
        return "\n".join(x for x in lines if x)


def ops() -> list[Entry]:
    return [Entry("op", k, s.signature(k), s.cls, s.doc) for k, s in sorted(OPS.items())]


def library() -> list[Entry]:
    out = []
    for lib in LIBRARIES:
        tree = _stdlib(lib)
        lines = tree.span.source.text.splitlines() if tree.span is not None else []
        for st in tree.stmts:
            if not (isinstance(st, ast.Prop) and st.name in ("block", "model") and st.args
                    and isinstance(st.args[0], ast.Call)):
                continue
            call = st.args[0]
            params = ", ".join(a.name + " = " + ast.expr_text(a.value) if isinstance(a, ast.Kwarg)
                               else ast.expr_text(a) for a in call.args)
            name = ast.expr_text(call.func)
            out.append(Entry(st.name, name, f"{name}({params})", lib, _comment(lines, st.span.line),
                             tuple(_calls(st.body or ()))))
    return out


def _comment(lines: list[str], line: int) -> str:
    """The `//` lines just above line `line` (1-based), joined."""
    got = []
    i = line - 2
    while i >= 0 and lines[i].lstrip().startswith("//"):
        got.append(lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(reversed(got))


def _calls(body) -> list[str]:
    seen: list[str] = []

    def walk(node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in seen:
            seen.append(node.func.id)
        if isinstance(node, (tuple, list)):
            for x in node:
                walk(x)
        elif hasattr(node, "__dataclass_fields__"):
            for f in node.__dataclass_fields__:
                if f not in ("span", "name_span", "target_span"):
                    walk(getattr(node, f))
    walk(body)
    return [c for c in seen if c != "dim"]


def text() -> str:
    parts = ["ops (dsl/ops.py): tensors first, then values by position or by name", ""]
    parts += [e.text for e in ops()]
    parts += ["", "standard library blocks and models (import std.blocks, std.models)", ""]
    parts += [e.text for e in library()]
    return "\n".join(parts) + "\n"


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def markdown() -> str:
    out = ["# Op and block reference",
           "",
           "Generated from the op registry (`dsl/ops.py`) and the standard library (`std.blocks`,",
           "`std.models`) by `archc ops --markdown > docs/ops.md`; a test fails when this file and the",
           "registry disagree. docs/language.md explains the ops' costs in more detail.",
           "",
           "## Ops",
           "",
           "An op takes its tensors first, then its values by position in the order shown or by name; a",
           "value not given takes the default shown.",
           "",
           "| signature | class | what it computes and costs |",
           "| --- | --- | --- |"]
    out += [f"| `{_cell(e.signature)}` | {e.what} | {_cell(e.doc)} |" for e in ops()]
    for lib in LIBRARIES:
        out += ["", f"## {lib}", "", "| signature | what it is | calls |", "| --- | --- | --- |"]
        out += [f"| `{_cell(e.signature)}` | {e.kind}: {_cell(e.doc) or '(no description)'} | "
                f"{', '.join(e.calls)} |" for e in library() if e.what == lib]
    return "\n".join(out) + "\n"
