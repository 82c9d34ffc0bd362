"""The AST: frozen dataclasses that mirror the grammar, each with a span outside equality."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .source import Source, Span


@dataclass(frozen=True)
class Node:
    span: Span = field(compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Number(Node):
    value: float
    text: str
    unit: str | None = None


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple["Expr", ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / % ** x -> : of, == != < <= > >=, and or
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: "Expr"


@dataclass(frozen=True)
class Kwarg(Node):
    name: str
    value: "Expr"


@dataclass(frozen=True)
class Call(Node):
    func: "Expr"
    args: tuple["Arg", ...]


@dataclass(frozen=True)
class Index(Node):
    base: "Expr"
    args: tuple["Arg", ...]


@dataclass(frozen=True)
class Attr(Node):
    base: "Expr"
    name: str


Expr = Union[Number, Name, String, ListExpr, BinOp, Unary, Call, Index, Attr]
Arg = Union[Expr, Kwarg]


@dataclass(frozen=True)
class Prop(Node):
    """`name args { body }`: a declaration, a setting, or a model statement."""

    name: str
    args: tuple[Arg, ...]
    body: tuple["Stmt", ...] | None = None
    name_span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Assign(Node):
    target: str
    value: Expr
    target_span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Import(Node):
    """`import std.formats`, `import "m.arch"`, `import "m.arch" as m` (`alias`), or
    `from "m.arch" import a, b` (`names`; None for a whole-file import). `target` is a
    String (a file) or a dotted name (a standard-library module)."""

    target: Expr
    alias: Name | None = None
    names: tuple[Name, ...] | None = None

    @property
    def path(self) -> str | None:
        """The imported file's path as written, or None for a standard-library module."""
        return self.target.value if isinstance(self.target, String) else None


Stmt = Union[Prop, Assign, Import]


@dataclass(frozen=True)
class File(Node):
    stmts: tuple[Stmt, ...]


@dataclass(frozen=True)
class Linked(File):
    """A file with its imports resolved (dsl/imports.py): its own statements, then the
    declarations it imports from other files, each with the span of the file it was written
    in. `via` maps every imported file to the import statement that first loaded it, so a
    diagnostic inside an imported file can say where it was imported from."""

    via: tuple[tuple[Source, Span], ...] = field(default=(), compare=False, repr=False)


def dump(node, indent: int = 0) -> str:
    """A stable, readable text form of an AST, used for `--emit ast` and golden files."""
    pad = "  " * indent
    if isinstance(node, File):
        out, where = [], node.span.source
        for s in node.stmts:
            if s.span.source is not where:  # a Linked file's imported declarations
                where = s.span.source
                out.append(f"{pad}// from {where.name}\n")
            out.append(dump(s, indent))
        return "".join(out)
    if isinstance(node, Import):
        head = f"{pad}from {expr_text(node.target)} import " + ", ".join(n.id for n in node.names) \
            if node.names is not None else f"{pad}import {expr_text(node.target)}"
        alias = f" as {node.alias.id}" if node.alias is not None else ""
        return f"{head}{alias}  @{node.span.line}:{node.span.col}\n"
    if isinstance(node, Prop):
        args = ", ".join(expr_text(a) for a in node.args)
        head = f"{pad}{node.name}" + (f" {args}" if args else "")
        if node.body is None:
            return f"{head}  @{node.span.line}:{node.span.col}\n"
        inner = "".join(dump(s, indent + 1) for s in node.body)
        return f"{head} {{  @{node.span.line}:{node.span.col}\n{inner}{pad}}}\n"
    if isinstance(node, Assign):
        return f"{pad}{node.target} = {expr_text(node.value)}  @{node.span.line}:{node.span.col}\n"
    raise TypeError(type(node).__name__)


def expr_text(e) -> str:
    """Source-like text of an expression, fully parenthesised where operators nest."""
    if isinstance(e, Number):
        return e.text + (f" {e.unit}" if e.unit else "")
    if isinstance(e, Name):
        return e.id
    if isinstance(e, String):
        return '"' + e.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(e, ListExpr):
        return "[" + ", ".join(expr_text(i) for i in e.items) + "]"
    if isinstance(e, BinOp):
        return f"({expr_text(e.left)} {e.op} {expr_text(e.right)})"
    if isinstance(e, Unary):
        return f"{e.op} {expr_text(e.operand)}" if e.op == "not" else f"{e.op}{expr_text(e.operand)}"
    if isinstance(e, Kwarg):
        return f"{e.name} = {expr_text(e.value)}"
    if isinstance(e, Call):
        return f"{expr_text(e.func)}(" + ", ".join(expr_text(a) for a in e.args) + ")"
    if isinstance(e, Index):
        return f"{expr_text(e.base)}[" + ", ".join(expr_text(a) for a in e.args) + "]"
    if isinstance(e, Attr):
        return f"{expr_text(e.base)}.{e.name}"
    raise TypeError(type(e).__name__)


def walk(node):
    """Every node under `node` (a node, or a tuple of them), `node` first, depth first."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None:
            continue
        if isinstance(n, tuple):
            stack.extend(reversed(n))
            continue
        yield n
        if isinstance(n, File):
            stack.append(n.stmts)
        elif isinstance(n, Prop):
            stack.extend((n.body, n.args))
        elif isinstance(n, Assign):
            stack.append(n.value)
        elif isinstance(n, Import):
            stack.extend((n.names, n.alias, n.target))
        elif isinstance(n, ListExpr):
            stack.append(n.items)
        elif isinstance(n, BinOp):
            stack.extend((n.right, n.left))
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, Kwarg):
            stack.append(n.value)
        elif isinstance(n, (Call, Index)):
            stack.extend((n.args, n.func if isinstance(n, Call) else n.base))
        elif isinstance(n, Attr):
            stack.append(n.base)


def names_in(node) -> set[str]:
    """The names an expression or statement refers to (not the names of keyword arguments)."""
    return {n.id for n in walk(node) if isinstance(n, Name)}
