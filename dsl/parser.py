"""Parsing: archc text -> AST, with human-readable syntax errors. No Lark object escapes."""
from __future__ import annotations

from collections import OrderedDict

import hashlib
import math
import os
import re
import sys
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF,
                             UnexpectedInput, UnexpectedToken, VisitError)

from . import ast
from .diagnostics import ArchSyntaxError, Diagnostic
from .source import Source, Span, private_to_user

# Brackets nested deeper than this are refused: no real design needs it, and the tree
# transformer would otherwise recurse without bound.
MAX_NESTING = 100

_TOKEN_WORDS = {
    "_NL": "end of line", "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "UNIT": "a unit", "$END": "end of file", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "DOT": "'.'", "PERCENT": "'%'", "X": "'x'", "OF": "'of'",
    "__ANON_0": "'->'", "__ANON_1": "'**'", "COMPARE": "a comparison", "OR": "'or'", "AND": "'and'", "NOT": "'not'",
}


def _word(token_type: str) -> str:
    return _TOKEN_WORDS.get(token_type, repr(token_type.lower()))


# Operators in one statement beyond this are refused: a real design writes a handful, and each
# one deepens the tree the transformer walks recursively.
MAX_OPERATORS = 2000
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "DOT", "COMPARE", "OR", "AND", "NOT",
              "X", "OF", "COLON", "__ANON_0", "__ANON_1", "EQUAL"}

# Whole numbers with more digits than this are beyond float64 (1.8e308) and taken as infinite.
_MAX_INT_DIGITS = 309
_FLOAT_MAX = int(sys.float_info.max)

# A statement continues on the next line after one of these.
_CONTINUES = {"COMMA", "EQUAL", "COLON", "OF", "X"}


class _PostLexer:
    """Folds newlines: none inside () or [] or after a trailing ',', one after every `}`,
    never two in a row."""

    always_accept = ("_NL",)

    def process(self, stream):
        stack: list[str] = []  # open brackets, innermost last
        last_nl = True  # nothing before the first statement needs separating
        prev = None
        operators = 0  # in the current statement
        for tok in stream:
            t = tok.type
            if t in _OPERATORS:
                operators += 1
                if operators > MAX_OPERATORS:
                    raise _TooDeep(tok, f"a statement with more than {MAX_OPERATORS} operators is too "
                                        "complex; split it into several")
            elif t in ("_NL", "LBRACE", "RBRACE") and not (stack and stack[-1] != "LBRACE"):
                operators = 0
            if t == "_NL":
                if last_nl or (stack and stack[-1] != "LBRACE") or prev in _CONTINUES:
                    continue
                last_nl = True
                yield tok
                continue
            if t in ("LPAR", "LSQB", "LBRACE"):
                stack.append(t)
                if len(stack) > MAX_NESTING:
                    raise _TooDeep(tok)
            elif t in ("RPAR", "RSQB", "RBRACE") and stack:
                stack.pop()
            yield tok
            prev = t
            last_nl = t == "LBRACE"
            if t == "RBRACE":
                yield Token.new_borrow_pos("_NL", "\n", tok)
                last_nl = True


class _TooDeep(Exception):
    def __init__(self, tok: Token, message: str = f"brackets nest deeper than {MAX_NESTING} levels"):
        self.tok, self.message = tok, message


def _span(source: Source, meta_or_tok) -> Span:
    m = meta_or_tok
    line = getattr(m, "line", None) or 1
    col = getattr(m, "column", None) or 1
    end_line = getattr(m, "end_line", None) or line
    end_col = getattr(m, "end_column", None) or col + 1
    return Span(source, line, col, end_line, end_col)


@v_args(meta=True)
class _ToAst(Transformer):
    """Turns the Lark tree into AST dataclasses at once."""

    def __init__(self, source: Source):
        super().__init__()
        self.src = source

    def _s(self, meta):
        return _span(self.src, meta)

    def start(self, meta, children):
        (stmts,) = children
        return ast.File(stmts, span=self.src.start)

    def stmt_list(self, meta, children):
        return tuple(children)

    top_list = stmt_list

    def import_(self, meta, children):
        target, alias = children
        return ast.Import(target, ast.Name(str(alias), span=_span(self.src, alias)) if alias is not None else None,
                          span=self._s(meta))

    def from_import(self, meta, children):
        target, *names = children
        return ast.Import(target, None, tuple(ast.Name(str(n), span=_span(self.src, n)) for n in names if n is not None),
                          span=self._s(meta))

    def assign(self, meta, children):
        *names, value = children
        return ast.Assign(str(names[0]), value, span=self._s(meta), target_span=_span(self.src, names[0]),
                          more=tuple(str(n) for n in names[1:]))

    def prop(self, meta, children):
        name, args, body = children
        return ast.Prop(str(name), tuple(args or ()), body, span=self._s(meta),
                        name_span=_span(self.src, name))

    def block(self, meta, children):
        return children[0]

    def args(self, meta, children):
        return tuple(children)

    def kwarg(self, meta, children):
        name, value = children
        return ast.Kwarg(str(name), value, span=self._s(meta))

    def _bin(op):
        def f(self, meta, children):
            left, right = children
            return ast.BinOp(op, left, right, span=self._s(meta))
        return f

    of_ = _bin("of")
    or_ = _bin("or")
    and_ = _bin("and")

    def not_(self, meta, children):
        return ast.Unary("not", children[0], span=self._s(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.BinOp(str(op), left, right, span=self._s(meta))

    typed_ = _bin(":")
    arrow_ = _bin("->")
    cross_ = _bin("x")
    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    mod = _bin("%")
    pow = _bin("**")

    def neg(self, meta, children):
        return ast.Unary("-", children[0], span=self._s(meta))

    def pos(self, meta, children):
        return children[0]

    def call(self, meta, children):
        func, args = children
        return ast.Call(func, tuple(args or ()), span=self._s(meta))

    def index(self, meta, children):
        base, args = children
        return ast.Index(base, tuple(args), span=self._s(meta))

    def attr(self, meta, children):
        base, name = children
        return ast.Attr(base, str(name), span=self._s(meta))

    def number(self, meta, children):
        tok, unit = children
        text = str(tok)
        clean = text.replace("_", "")
        if any(c in clean for c in ".eE"):
            value = float(clean)  # beyond float64: inf, refused where it is evaluated
        else:
            # a whole number beyond float64 is refused where it is evaluated; converting it
            # here would hit Python's int-to-float overflow or its 4,300-digit parsing limit
            digits = clean.lstrip("0") or "0"  # int() counts leading zeros toward its 4,300-digit limit
            value = int(digits) if len(digits) <= _MAX_INT_DIGITS else math.inf
            if value != math.inf and value > _FLOAT_MAX:
                value = math.inf
        return ast.Number(value, text, str(unit) if unit is not None else None, span=self._s(meta))

    def name(self, meta, children):
        return ast.Name(str(children[0]), span=self._s(meta))

    def string(self, meta, children):
        raw = str(children[0])[1:-1]
        value = re.sub(r"\\(.)", r"\1", raw)
        return ast.String(value, span=self._s(meta))

    def list(self, meta, children):
        (args,) = children
        return ast.ListExpr(tuple(args or ()), span=self._s(meta))


def _grammar_text() -> str:
    return resources.files("archc.grammar").joinpath("arch.lark").read_text(encoding="utf-8")


def _cache_path(grammar: str) -> str | None:
    """The parser's on-disk cache (a pickle Lark loads before any check of its own) in archc's
    cache directory, or None: parse without a disk cache. Unpickling runs code, so the file
    is used only where no other user can write: a directory owned by this user and not
    writable by group or others, and a file, if present, that is a regular file owned by this
    user and not writable by others. There is no fallback to a shared temporary directory."""
    from lark import __version__ as lark_version
    digest = hashlib.sha256((grammar + lark_version).encode()).hexdigest()[:20]
    base = os.environ.get("ARCHC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "archc")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        if not private_to_user(os.stat(base), directory=True):
            return None
        path = os.path.join(base, f"parser-{digest}.lark.pickle")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        return path if private_to_user(st, directory=False) else None
    except (OSError, ValueError):  # no home, a path through a regular file, a NUL in the name
        return None


@lru_cache(maxsize=None)
def _parser() -> Lark:
    grammar = _grammar_text()
    kwargs = dict(parser="lalr", lexer="contextual", propagate_positions=True,
                  maybe_placeholders=True, postlex=_PostLexer())
    path = _cache_path(grammar)
    if path is not None:
        try:
            return Lark(grammar, cache=path, **kwargs)
        except Exception:  # an unreadable, truncated or foreign cache file: parse the grammar afresh
            pass
    return Lark(grammar, **kwargs)


@contextmanager
def deep_enough():
    """Recursion room for the deepest tree the parser accepts (MAX_NESTING brackets plus
    MAX_OPERATORS operators per statement): the transformer and the checker recurse once per
    level, in pure-Python frames."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 6 * (MAX_NESTING + MAX_OPERATORS) + 2000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


# Parsed files by their name and text, most recent last: a design is re-checked for every
# parameter point of a sweep or a search (`--set`), and its files (the workload, its machine,
# the standard library) parse to the same frozen AST each time. Only successful parses are kept.
_PARSED: OrderedDict[tuple[str, str], ast.File] = OrderedDict()
PARSED_FILES = 64


def parse(source: Source) -> ast.File:
    """Parse a whole file. Raises ArchSyntaxError with a located, human message."""
    key = (source.name, source.text)  # a Source compares by identity; its spans see the same text
    hit = _PARSED.get(key)
    if hit is not None:
        _PARSED.move_to_end(key)
        return hit
    if not source.text.strip():
        tree = ast.File((), span=source.start)
    else:
        with deep_enough():
            tree = _parse(source)
    _PARSED[key] = tree
    if len(_PARSED) > PARSED_FILES:
        _PARSED.popitem(last=False)
    return tree


def _parse(source: Source) -> ast.File:
    parser = _parser()
    try:
        tree = parser.parse(source.text)
        return _ToAst(source).transform(tree)
    except _TooDeep as e:
        raise ArchSyntaxError([Diagnostic(_span(source, e.tok), e.message)]) from None
    except VisitError as e:
        if isinstance(e.orig_exc, _TooDeep):
            raise ArchSyntaxError([Diagnostic(_span(source, e.orig_exc.tok), e.orig_exc.message)]) from None
        where = _span(source, e.obj.meta) if hasattr(e.obj, "meta") else source.start
        if isinstance(e.orig_exc, RecursionError):
            raise ArchSyntaxError([Diagnostic(where, "this expression nests too deeply to parse")]) from None
        if isinstance(e.orig_exc, (ValueError, OverflowError)):  # a literal Python cannot convert
            raise ArchSyntaxError([Diagnostic(where, f"cannot read this value: {e.orig_exc}")]) from None
        raise
    except UnexpectedInput as e:
        raise ArchSyntaxError([_describe(source, e)]) from None
    except RecursionError:
        raise ArchSyntaxError([Diagnostic(source.start, "the file nests too deeply to parse")]) from None


def _describe(source: Source, e: UnexpectedInput) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        ch = source.text[e.pos_in_stream] if e.pos_in_stream < len(source.text) else ""
        span = Span(source, e.line, e.column, e.line, e.column + 1)
        if ch == '"':
            return Diagnostic(span, "unterminated string: a string ends with '\"' on the same line")
        if ch == "/" and source.text.startswith("/*", e.pos_in_stream):
            return Diagnostic(span, "unterminated comment: '/*' has no matching '*/'")
        shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}" if ch else "end of file"
        return Diagnostic(span, f"unexpected character {shown}")
    if isinstance(e, UnexpectedEOF) or e.token.type == "$END":
        return _end_of_file(source)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = _span(source, tok)
    if str(tok) == "/" and source.text.startswith("/*", tok.start_pos or 0):
        return Diagnostic(span, "unterminated comment: '/*' has no matching '*/'")
    expected = sorted({_word(t) for t in (e.accepts or e.expected) if not t.startswith("__")})
    prev = getattr(getattr(e, "state", None), "value_stack", None)
    label = _label(tok, expected, prev)
    if label:
        return Diagnostic(span, label)
    got = _shown(tok)
    if len(expected) > 6:
        return Diagnostic(span, f"unexpected {got}")
    return Diagnostic(span, f"unexpected {got}; expected {' or '.join(expected)}")


def _end_of_file(source: Source) -> Diagnostic:
    end = source.span_at(len(source.text.rstrip()), 1)
    text = re.sub(r'"([^"\\\n]|\\.)*"|//[^\n]*|/\*(.|\n)*?\*/', "", source.text)
    if sum(text.count(c) for c in "([{") > sum(text.count(c) for c in ")]}"):
        return Diagnostic(end, "unexpected end of file: a '{', '(' or '[' is not closed")
    return Diagnostic(end, "unexpected end: a value is missing")


def _shown(tok: Token) -> str:
    kind = {"NAME": "name", "UNIT": "name", "NUMBER": "number", "STRING": "string"}.get(tok.type)
    if kind:
        return f"{kind} {str(tok)!r}"
    if tok.type in ("_NL", "$END"):
        return _word(tok.type)
    return f"'{tok}'"


def _label(tok: Token, expected: list[str], prev) -> str | None:
    """Human labels for the common mistakes (tested row by row in tests/test_diagnostics.py)."""
    last = prev[-1] if prev else None
    after_number = isinstance(last, Token) and last.type == "NUMBER" or \
        getattr(last, "__class__", None).__name__ == "Number"
    if tok.type in ("NAME", "UNIT") and after_number:
        return f"a number is followed by {_shown(tok)}; separate values with ','"
    if tok.type in ("NAME", "UNIT", "NUMBER", "STRING") and "end of line" in expected:
        return f"unexpected {_shown(tok)}; separate values with ',' and statements with a new line or ';'"
    if tok.type in ("NAME", "UNIT", "NUMBER", "STRING") and "','" in expected:
        return f"unexpected {_shown(tok)}; separate values with ','"
    if tok.type in ("RBRACE", "RPAR", "RSQB", "_NL", "COMMA") and "a number" in expected:
        return f"a value is missing before {_word(tok.type)}"
    if tok.type == "RBRACE" and "')'" in expected:
        return "'}' closes a block while a '(' is still open; add ')'"
    if tok.type == "RBRACE" and "']'" in expected:
        return "'}' closes a block while a '[' is still open; add ']'"
    if tok.type == "EQUAL":
        return "'=' must follow a single name (`name = value`)"
    if tok.type in ("RPAR", "RSQB"):
        return f"unmatched '{tok}'"
    if tok.type == "RBRACE":
        return "unmatched '}'"
    if tok.type == "LBRACE":
        return "a '{' block must follow a declaration's name or arguments on the same line"
    if "a name" in expected and "a number" not in expected:
        return f"unexpected {_shown(tok)}; a statement starts with a name"
    return None


@lru_cache(maxsize=4096)
def parse_value(key: str, text: str, origin: str | None = None) -> ast.Expr:
    """Parse the value of `--set KEY=VALUE`; diagnostics show `KEY=VALUE` as typed. Kept by
    (key, text, origin): a sweep or search sets the same few values again and again, and the
    AST is immutable."""
    source = Source(origin or f"<--set {key}>", f"{key}={text}")
    if not text.strip():
        raise ArchSyntaxError([Diagnostic(source.span_at(len(key), 1),
                                          f"'--set {key}=' needs a value after '='")])
    file = parse(source)
    stmts = file.stmts
    if len(stmts) != 1 or not isinstance(stmts[0], ast.Assign):
        raise ArchSyntaxError([Diagnostic(source.span_at(len(key) + 1, max(1, len(text))),
                                          f"'{text}' is not a single value")])
    return stmts[0].value
