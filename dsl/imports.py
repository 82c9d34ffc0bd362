"""User imports: finding the files a design imports on the search path, reading and parsing
each once, and linking their declarations into one file for the checker, every name resolved
in the file that wrote it.

    import "m.arch"                 every top-level declaration of m.arch, under its own name
    import "m.arch" as m            the same, as m.NAME
    from "m.arch" import a, b       only a and b; what they use stays resolvable inside m.arch

A file is looked for next to the importing file, then in each `-I` directory, then in each
directory of ARCHC_PATH (os.pathsep-separated). Runs are not imported: a workload file declares
its own. Imports are not re-exported: a file sees what it declares and what it imports itself
(the standard library, `import std.formats` ..., is shared by every file of a design).

The checker keeps one namespace, so linking gives every declaration one key: its name as the
importing design sees it (`dgx_h100`, `hw.dgx_h100`), or, for a declaration the design does not
see (not imported, or only used by what it imports), `NAME@FILE`, a key no one can write.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

from . import ast
from .diagnostics import ArchcError, CheckError, Collector, Diagnostic
from .diagnostics import did_you_mean as _hint
from .files import read_design
from .parser import deep_enough, parse
from .source import Source, Span

ENV = "ARCHC_PATH"
# the declarations an import brings in; runs are not imported
IMPORTED_KINDS = ("format", "tile", "chip", "system", "model", "block")


def search_path(include=()) -> tuple[tuple[str, str], ...]:
    """(directory, where it came from) for every `-I` directory, then every ARCHC_PATH entry."""
    env = [d for d in os.environ.get(ENV, "").split(os.pathsep) if d]
    return tuple((str(d), f"-I {d}") for d in include) + tuple((d, ENV) for d in env)


def declared(st) -> tuple[str, str, Span] | None:
    """(kind, name, span of the name) of a top-level declaration, None for anything else (the
    checker reports malformed ones)."""
    if not isinstance(st, ast.Prop) or not st.args:
        return None
    head = st.args[0]
    if st.name == "format" and isinstance(head, ast.Kwarg):
        s = head.span
        return "format", head.name, Span(s.source, s.line, s.col, s.line, s.col + len(head.name))
    if st.name not in IMPORTED_KINDS + ("run",) or st.body is None:
        return None
    if isinstance(head, ast.Name):
        return st.name, head.id, head.span
    if isinstance(head, ast.Call) and isinstance(head.func, ast.Name):
        return st.name, head.func.id, head.func.span
    return None


@dataclass(eq=False)
class _Unit:
    """One file of the design, loaded once however often it is imported."""

    source: Source
    tree: ast.File
    decls: dict[str, Span] = field(default_factory=dict)  # name -> where it is declared
    runs: set[str] = field(default_factory=set)
    imports: list[tuple[ast.Import, "_Unit"]] = field(default_factory=list)

    def __post_init__(self):
        for st in self.tree.stmts:
            d = declared(st)
            if d is None:
                continue
            kind, name, span = d
            if kind == "run":
                self.runs.add(name)
            else:
                self.decls.setdefault(name, span)  # a repeat is the checker's to report


@dataclass(frozen=True)
class _Binding:
    unit: _Unit
    name: str
    at: Span  # the declaration (a file's own name) or the import that brings it in


def link(tree: ast.File, include=()) -> ast.Linked:
    """`tree` with its user imports resolved: its statements (names written `m.NAME` made single
    names), then every imported file's declarations (no runs, no imports of files), renamed
    to their keys. Raises CheckError (or ArchSyntaxError from an imported file), every
    diagnostic inside an imported file noted with where it was imported from."""
    if isinstance(tree, ast.Linked):
        return tree
    if not any(isinstance(st, ast.Import) and st.path is not None for st in tree.stmts):
        return ast.Linked(tree.stmts, span=tree.span)
    with deep_enough():
        return _Linker(search_path(include)).link(tree)


class _Linker:
    def __init__(self, dirs):
        self.dirs = dirs
        self.diag = Collector()
        self.units: dict[str, _Unit] = {}  # real path -> unit
        self.order: list[_Unit] = []  # first loaded first
        self.via: dict[Source, Span] = {}  # an imported file -> the import that first loaded it

    # ---- loading -----------------------------------------------------------------------
    def link(self, tree: ast.File) -> ast.Linked:
        root = _Unit(tree.span.source, tree)
        real = _real(root.source.name) if _is_file(root.source) else None
        if real is not None:
            self.units[real] = root
        self._load(root, [(real, root)])
        self._stop_if_any()
        scopes = {u: self._scope(u) for u in [root] + self.order}
        self._stop_if_any()
        keys = self._keys(root, scopes)
        stmts = list(self._rename(root, root.tree.stmts, scopes[root], keys))
        for u in self.order:
            own = tuple(st for st in u.tree.stmts if not (isinstance(st, ast.Import) and st.path is not None)
                        and not (isinstance(st, ast.Prop) and st.name == "run"))
            stmts += self._rename(u, own, scopes[u], keys)
        self._stop_if_any()
        return ast.Linked(tuple(stmts), span=tree.span, via=tuple(self.via.items()))

    def _stop_if_any(self) -> None:
        if self.diag:
            self.diag.items = [annotate(d, self.via) for d in self.diag.items]
            self.diag.raise_if_any(CheckError)

    def _load(self, unit: _Unit, stack: list[tuple[str | None, _Unit]]) -> None:
        for st in unit.tree.stmts:
            if not isinstance(st, ast.Import) or st.path is None:
                continue
            found = self._find(st, unit.source)
            if found is None:
                continue
            path, real = found
            first = next((i for i, (r, _) in enumerate(stack) if r == real), None)
            if first is not None:
                names = [u.source.name for _, u in stack[first:]] + [stack[first][1].source.name]
                self.diag.error(st.span, "import cycle: " + " -> ".join(names))
                continue
            if real in self.units:
                unit.imports.append((st, self.units[real]))
                continue
            try:
                source = read_design(path, path, at=st.target.span)
                self.via[source] = st.span
                tree = parse(source)
            except ArchcError as e:  # unreadable (at the import), binary or a syntax error (in the file)
                for d in e.diagnostics:
                    if d.span is not None and d.span.source not in self.via and d.span.source.name == path:
                        self.via[d.span.source] = st.span  # the bad bytes' file, read apart
                    self.diag.items.append(d)
                continue
            child = _Unit(source, tree)
            self.units[real] = child
            self.order.append(child)
            unit.imports.append((st, child))
            self._load(child, stack + [(real, child)])

    def _find(self, st: ast.Import, importer: Source) -> tuple[str, str] | None:
        """(path, real path) of the file `st` imports; None when it is reported missing."""
        spec = st.path
        if not spec.strip() or "\x00" in spec:
            self.diag.error(st.target.span, "an import names a file: `import \"machines/h100.arch\"`")
            return None
        if os.path.isabs(spec):
            tried = [(spec, "")]
        else:
            base = os.path.dirname(importer.name) if _is_file(importer) else ""
            tried = [(os.path.join(base, spec), "next to the importing file")]
            tried += [(os.path.join(d, spec), why) for d, why in self.dirs]
        for path, _ in tried:
            if os.path.lexists(path):  # a directory or a dangling link is reported when read
                return path, _real(path)
        looked = ", ".join(f"{p} ({why})" if why else p for p, why in tried)
        self.diag.error(st.target.span, f"cannot find the imported file \"{spec}\"; looked for {looked}")
        return None

    # ---- names -------------------------------------------------------------------------
    def _scope(self, u: _Unit) -> dict[str, _Binding]:
        """What `u` sees: visible name -> the declaration, its own first, then its imports'
        in order. Two declarations under one name are an error naming both."""
        scope: dict[str, _Binding] = {n: _Binding(u, n, span) for n, span in u.decls.items()}
        aliases: dict[str, ast.Import] = {}
        for st, t in u.imports:
            if st.alias is not None:
                a = st.alias.id
                if a in aliases and aliases[a].path != st.path:
                    self.diag.error(st.alias.span, f"'{a}' already names the import of {aliases[a].path}",
                                    (aliases[a].span, "first imported here"))
                    continue
                aliases[a] = st
                pairs = [(f"{a}.{n}", n, st.span) for n in t.decls]
            elif st.names is not None:
                pairs = []
                for n in st.names:
                    if n.id in t.decls:
                        pairs.append((n.id, n.id, n.span))
                    elif n.id in t.runs:
                        self.diag.error(n.span, f"'{n.id}' is a run of {t.source.name}; runs are not imported "
                                                "(a workload file declares its own)")
                    else:
                        self.diag.error(n.span, f"{t.source.name} declares no '{n.id}'"
                                                f"{_hint(n.id, t.decls)}")
            else:
                pairs = [(n, n, st.span) for n in t.decls]
            for visible, name, at in pairs:
                old = scope.get(visible)
                if old is None:
                    scope[visible] = _Binding(t, name, at)
                elif (old.unit, old.name) != (t, name):
                    self._clash(u, visible, old, _Binding(t, name, at))
        return scope

    def _clash(self, u: _Unit, visible: str, old: _Binding, new: _Binding) -> None:
        here = (new.unit.decls[new.name], f"{new.unit.source.name} declares '{new.name}' here")
        if old.unit is u:
            self.diag.error(new.at, f"'{visible}' is imported from {new.unit.source.name}, and "
                                    f"{u.source.name} declares '{visible}' too",
                            (old.at, f"{u.source.name} declares '{visible}' here"), here)
        else:
            self.diag.error(new.at, f"'{visible}' is imported from both {old.unit.source.name} and "
                                    f"{new.unit.source.name}",
                            (old.unit.decls[old.name], f"{old.unit.source.name} declares '{old.name}' here"), here)

    def _keys(self, root: _Unit, scopes) -> dict[tuple[_Unit, str], str]:
        """(file, name) -> the one name the checker knows the declaration by."""
        keys: dict[tuple[_Unit, str], str] = {}
        for visible, b in scopes[root].items():
            keys.setdefault((b.unit, b.name), visible)
        taken = set(keys.values())
        for u in self.order:
            for n in u.decls:
                if (u, n) not in keys:
                    key, i = f"{n}@{os.path.basename(u.source.name)}", 1
                    while key in taken:
                        i += 1
                        key = f"{n}@{os.path.basename(u.source.name)}#{i}"
                    keys[(u, n)] = key
                    taken.add(key)
        return keys

    def _rename(self, u: _Unit, stmts: tuple, scope: dict[str, _Binding], keys) -> tuple:
        """`stmts` of `u` with every name of a declaration it sees replaced by that
        declaration's key, `alias.NAME` included; names a model, block or run binds itself
        (parameters, assignments, inputs) are left alone."""
        table = {v: keys[(b.unit, b.name)] for v, b in scope.items()}
        aliases = {st.alias.id: t for st, t in u.imports if st.alias is not None}
        if all(v == k for v, k in table.items()) and not aliases:
            return stmts
        out = []
        for st in stmts:
            if isinstance(st, ast.Import):
                out.append(st)
                continue
            bound = _bound(st)

            def swap(node):
                if isinstance(node, ast.Name) and node.id not in bound and table.get(node.id, node.id) != node.id:
                    return ast.Name(table[node.id], span=node.span)
                if isinstance(node, ast.Attr) and isinstance(node.base, ast.Name) and node.base.id in aliases \
                        and node.base.id not in bound:
                    visible = f"{node.base.id}.{node.name}"
                    if visible in table:
                        return ast.Name(table[visible], span=node.span)
                    t = aliases[node.base.id]
                    self.diag.error(node.span, f"{t.source.name} (imported as {node.base.id}) declares no "
                                               f"'{node.name}'{_hint(node.name, t.decls)}")
                    return node
                return None

            new = _map(st, swap)
            d = declared(st)
            if d is not None and d[0] == "format" and table.get(d[1], d[1]) != d[1]:
                new = replace(new, args=(replace(new.args[0], name=table[d[1]]),) + new.args[1:])
            out.append(new)
        return tuple(out)


def qualify(e: ast.Expr) -> ast.Expr:
    """A `--set` value with `m.NAME` made the single name the linked file knows it by (an
    unknown one is then reported as an unknown name, at the value)."""
    def swap(node):
        if isinstance(node, ast.Attr) and isinstance(node.base, ast.Name):
            return ast.Name(f"{node.base.id}.{node.name}", span=node.span)
        return None
    return _map(e, swap)


def _bound(st) -> set[str]:
    """The names a model, block or run binds in itself: parameters, assignment targets, inputs."""
    out: set[str] = set()
    if not isinstance(st, ast.Prop) or st.name not in ("model", "block", "run") or not st.args:
        return out
    head = st.args[0]
    if isinstance(head, ast.Call):
        for a in head.args:
            if isinstance(a, ast.Kwarg):
                out.add(a.name)
            elif isinstance(a, ast.Name):
                out.add(a.id)
    for n in ast.walk(st.body or ()):
        if isinstance(n, ast.Assign):
            out.add(n.target)
        elif isinstance(n, ast.Prop) and n.name == "input" and n.args and isinstance(n.args[0], ast.BinOp) \
                and isinstance(n.args[0].left, ast.Name):
            out.add(n.args[0].left.id)
    return out


def _map(node, fn):
    """`node` rebuilt with fn(n) in place of every sub-node n for which it is not None."""
    if isinstance(node, tuple):
        new = tuple(_map(n, fn) for n in node)
        return node if all(a is b for a, b in zip(new, node)) else new
    if not isinstance(node, ast.Node):
        return node
    r = fn(node)
    if r is not None:
        return r
    changes = {}
    for f in fields(node):
        if f.compare and f.name != "span":
            v = getattr(node, f.name)
            nv = _map(v, fn)
            if nv is not v:
                changes[f.name] = nv
    return replace(node, **changes) if changes else node


def _is_file(source: Source) -> bool:
    return not source.name.startswith("<")


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # a symlink loop on some systems; reading it reports it
        return os.path.abspath(path)


def annotate(d: Diagnostic, via) -> Diagnostic:
    """`d` with a note per import that led to the file it points into, nearest first."""
    via = dict(via)  # (source, import) pairs or a dict
    notes, seen = [], set()
    s = d.span.source if d.span is not None else None
    while s in via and s not in seen:
        seen.add(s)
        at = via[s]
        notes.append((at, f"{s.name} is imported here"))
        s = at.source
    return replace(d, notes=d.notes + tuple(notes)) if notes else d


def annotate_error(e: ArchcError, via) -> ArchcError:
    """The same error with every diagnostic annotated (see annotate)."""
    if not via:
        return e
    return type(e)([annotate(d, via) for d in e.diagnostics])
