"""Compile-time values and expression evaluation: quantities with dimensions, symbols, lists."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

from . import ast
from . import units as U
from .diagnostics import Collector
from .source import Span

# Integers beyond this are refused as absurd: no count or size in a machine or model is this big,
# and floats lose whole-number precision above it.
MAX_INT = 2**53


@dataclass(frozen=True)
class Q:
    """A number with a dimension, in base units (bytes, seconds, joules, cycles, flops, metres)."""

    value: float
    dim: U.Dim = U.NONE

    def __str__(self) -> str:
        return fmt_q(self)


@dataclass(frozen=True)
class Sym:
    """A bare name that is not a variable: a keyword (`mesh`, `train`) or a declaration."""

    name: str


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Lst:
    items: tuple


class EvalError(Exception):
    def __init__(self, span: Span, message: str):
        self.span, self.message = span, message
        super().__init__(message)


def fmt_q(q: Q) -> str:
    """A quantity in the dimension's usual unit: `1 GHz`, `-1 MiB`, `3.2 TB/s`."""
    v = q.value
    if q.dim.dimensionless:
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"
    for unit in U.readable_units(q.dim):
        factor = U.UNITS[unit][0] if "/" not in unit else U.parse_unit(unit)[0]
        if abs(v) >= factor or unit == U.readable_units(q.dim)[-1]:
            return f"{v / factor:.6g} {unit}"
    return f"{v:.6g} ({U.describe(q.dim)} in base units)"


def show(v) -> str:
    if isinstance(v, Q):
        return fmt_q(v)
    if isinstance(v, Sym):
        return f"the name '{v.name}'"
    if isinstance(v, Str):
        return f'the string "{v.value}"'
    if isinstance(v, Lst):
        return "a list"
    if isinstance(v, bool):
        return "true" if v else "false"
    return type(v).__name__.lower()


def brief(text: str, limit: int = 24) -> str:
    """`text` cut in the middle when longer than `limit` (a 5,000-digit number in a message)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}…{text[-(limit // 2):]}"


def _num(span, v, what="a number"):
    if not isinstance(v, Q):
        raise EvalError(span, f"expected {what}, found {show(v)}")
    return v


def _builtin_table() -> dict[str, Callable]:
    def one(f, name, domain=None):
        def g(span, args):
            if len(args) != 1:
                raise EvalError(span, f"'{name}' expects one argument")
            a = _num(span, args[0])
            if not a.dim.dimensionless:
                raise EvalError(span, f"'{name}' expects a plain number, found {show(a)}")
            if domain is not None and not domain[0](a.value):
                raise EvalError(span, f"'{name}' needs {domain[1]}, found {fmt_q(a)}")
            return Q(float(f(a.value)))
        return g

    def minmax(f):
        def g(span, args):
            if not args:
                raise EvalError(span, "expects at least one argument")
            qs = [_num(span, a) for a in args]
            if any(q.dim != qs[0].dim for q in qs):
                raise EvalError(span, "arguments have different units")
            return Q(f(q.value for q in qs), qs[0].dim)
        return g

    return {"ceil": one(math.ceil, "ceil"), "floor": one(math.floor, "floor"),
            "sqrt": one(math.sqrt, "sqrt", (lambda x: x >= 0, "a number ≥ 0")),
            "log2": one(math.log2, "log2", (lambda x: x > 0, "a positive number")),
            "round": one(round, "round"), "min": minmax(min), "max": minmax(max), "abs": one(abs, "abs")}


BUILTINS = _builtin_table()


class Evaluator:
    """Evaluates expressions in an environment; `call` hooks let the model interpreter add ops."""

    def __init__(self, env: Mapping[str, object], call_hook=None):
        self.env = env
        self.call_hook = call_hook

    def eval(self, e: ast.Expr):
        m = getattr(self, "_" + type(e).__name__)
        return m(e)

    def _Number(self, e: ast.Number):
        if not math.isfinite(e.value):
            raise EvalError(e.span, f"the number '{brief(e.text)}' is too large: archc computes in "
                                    "double precision, up to about 1.8e308")
        value = e.value  # the parser keeps whole numbers within float64's range
        if e.unit is None:
            return Q(value)
        try:
            factor, dim = U.parse_unit(e.unit)
        except U.UnitError as err:
            raise EvalError(e.span, str(err)) from None
        q = Q(value * factor, dim)  # exact for whole numbers in binary units (2**30 B)
        if abs(q.value) > _FLOAT_MAX:
            raise EvalError(e.span, f"'{brief(e.text)} {e.unit}' is too large: archc computes in double precision, "
                                    "up to about 1.8e308 in base units")
        return q

    def _Name(self, e: ast.Name):
        if e.id in self.env:
            return self.env[e.id]
        if e.id == "true":
            return True
        if e.id == "false":
            return False
        return Sym(e.id)

    def _String(self, e: ast.String):
        return Str(e.value)

    def _ListExpr(self, e: ast.ListExpr):
        if any(isinstance(i, ast.Kwarg) for i in e.items):
            raise EvalError(e.span, "a list holds values, not `name = value` pairs")
        return Lst(tuple(self.eval(i) for i in e.items))

    def _Unary(self, e: ast.Unary):
        if e.op == "not":
            v = self.eval(e.operand)
            if not isinstance(v, bool):
                raise EvalError(e.operand.span, f"'not' needs true or false, found {show(v)}")
            return not v
        v = _num(e.span, self.eval(e.operand))
        return Q(-v.value, v.dim)

    def _BinOp(self, e: ast.BinOp):
        if e.op in ("x", "->", ":", "of"):
            raise EvalError(e.span, f"'{e.op}' cannot be used inside a value here")
        if e.op in ("and", "or"):
            a = self.eval(e.left)
            if not isinstance(a, bool):
                raise EvalError(e.left.span, f"'{e.op}' needs true or false, found {show(a)}")
            if (e.op == "and" and not a) or (e.op == "or" and a):
                return a
            b = self.eval(e.right)
            if not isinstance(b, bool):
                raise EvalError(e.right.span, f"'{e.op}' needs true or false, found {show(b)}")
            return b
        a, b = self.eval(e.left), self.eval(e.right)
        plain = (Q, Sym, Str, Lst, bool)
        if self.call_hook is not None and e.op in _TENSOR_OPS and not (isinstance(a, plain) and isinstance(b, plain)):
            return self.call_hook(e, ast.Name(_TENSOR_OPS[e.op], span=e.span), (a, b), {})
        if e.op in ("==", "!="):
            same = a == b if not (isinstance(a, Q) and isinstance(b, Q)) else (a.value == b.value and a.dim == b.dim)
            return same if e.op == "==" else not same
        a, b = _num(e.left.span, a), _num(e.right.span, b)
        op = e.op
        if op in ("<", "<=", ">", ">="):
            if a.dim != b.dim:
                raise EvalError(e.span, f"cannot compare {U.describe(a.dim)} with {U.describe(b.dim)}")
            return {"<": a.value < b.value, "<=": a.value <= b.value,
                    ">": a.value > b.value, ">=": a.value >= b.value}[op]
        try:
            if op in "+-":
                if a.dim != b.dim:
                    raise EvalError(e.span, f"cannot {'add' if op == '+' else 'subtract'} "
                                            f"{U.describe(b.dim)} {'to' if op == '+' else 'from'} {U.describe(a.dim)}")
                r = a.value + b.value if op == "+" else a.value - b.value
                return _check(e.span, Q(r, a.dim))
            if op == "*":
                return _check(e.span, Q(a.value * b.value, a.dim * b.dim))
            if op in ("/", "%"):
                if b.value == 0:
                    raise EvalError(e.right.span, "division by zero")
                if op == "/":
                    return _check(e.span, Q(a.value / b.value, a.dim / b.dim))
                if a.dim != b.dim and not b.dim.dimensionless:
                    raise EvalError(e.span, f"'{op}' needs operands of one unit")
                return _check(e.span, Q(float(a.value % b.value), a.dim))
            if op == "**":
                if not b.dim.dimensionless or not float(b.value).is_integer():
                    if not a.dim.dimensionless:
                        raise EvalError(e.span, "a quantity with a unit can only be raised to a whole power")
                if abs(b.value) > 4096:
                    raise EvalError(e.span, "exponent is too large")
                if a.value == 0 and b.value < 0:
                    raise EvalError(e.span, "zero raised to a negative power is undefined (a division by zero)")
                r = a.value ** b.value
                if isinstance(r, complex):
                    raise EvalError(e.span, "the result is not a real number")
                return _check(e.span, Q(float(r), a.dim ** int(b.value) if not a.dim.dimensionless else U.NONE))
        except OverflowError:
            raise EvalError(e.span, "the result is too large") from None
        except (ZeroDivisionError, ValueError):
            raise EvalError(e.span, "the result is not a real number") from None
        raise EvalError(e.span, f"unknown operator '{op}'")

    def _Call(self, e: ast.Call):
        if not isinstance(e.func, ast.Name):
            raise EvalError(e.func.span, "only a name can be called")
        fname = e.func.id
        args = [self.eval(a) for a in e.args if not isinstance(a, ast.Kwarg)]
        kwargs = {}
        for a in e.args:
            if isinstance(a, ast.Kwarg):
                if a.name in kwargs:
                    raise EvalError(a.span, f"argument '{a.name}' is given twice")
                kwargs[a.name] = (self.eval(a.value), a.span)
        # sqrt is also an op: a call with a tensor (any value that is not a number) is the op's
        if fname in BUILTINS and fname not in self.env and not (
                self.call_hook is not None and fname == "sqrt" and args and not isinstance(args[0], Q)):
            if kwargs:
                raise EvalError(e.span, f"'{fname}' takes no named arguments")
            return BUILTINS[fname](e.span, args)
        if self.call_hook is not None:
            return self.call_hook(e, e.func, tuple(args), kwargs)
        raise EvalError(e.func.span, f"unknown function '{fname}'")

    def _Kwarg(self, e: ast.Kwarg):
        raise EvalError(e.span, f"'{e.name} = ...' is not a value; a value is expected here")

    def _Index(self, e: ast.Index):
        raise EvalError(e.span, "indexing is not allowed here")

    def _Attr(self, e: ast.Attr):
        raise EvalError(e.span, f"'.{e.name}' is not allowed here")


_TENSOR_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


_FLOAT_MAX = sys.float_info.max


def _check(span: Span, q: Q) -> Q:
    if not abs(q.value) <= _FLOAT_MAX:  # also NaN, and whole numbers beyond float64
        raise EvalError(span, "the result is too large")
    return q


def evaluate(e: ast.Expr, env: Mapping[str, object], diag: Collector | None = None):
    """Evaluate with no model hooks; on error report to `diag` (if given) and return None."""
    try:
        return Evaluator(env).eval(e)
    except EvalError as err:
        if diag is None:
            raise
        diag.error(err.span, err.message)
        return None
