"""Identifier and text mangling: no name or string a user writes can inject generated code."""
from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[^A-Za-z0-9_]")


def identifier(name: str, prefix: str = "m") -> str:
    """A Python identifier derived from `name`: readable, unique per name, and always safe.

    Anything outside [A-Za-z0-9_] is dropped and a short hash of the original keeps two
    different names from colliding."""
    clean = _SAFE.sub("_", name)[:40].strip("_") or "x"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{prefix}_{clean}_{digest}"


def comment(text: str) -> str:
    """Text safe inside a `#` comment: one line, printable, no line breaks of any kind."""
    out = "".join(ch if ch.isprintable() and ch not in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029" else "?"
                  for ch in str(text))
    return out[:200]


def number(x: float) -> str:
    """A float literal that round-trips exactly and is valid Cython."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {x}")
    return repr(x)
