"""The standard number formats (std.formats) as ready-to-use NumberFormat objects:
`archc.formats.get("bf16").quantize(x)`."""
from __future__ import annotations

from functools import lru_cache

from archc.runtime.numerics import FormatSet, NumberFormat

__all__ = ["get", "names", "standard", "NumberFormat"]


@lru_cache(maxsize=None)
def standard() -> FormatSet:
    """The formats of std.formats, built once per process (the kernels are cached on disk)."""
    from archc import __version__
    from archc.dsl.check import standard_formats
    return FormatSet(standard_formats(), __version__, "std.formats")


def names() -> list[str]:
    return sorted(standard())


def get(name: str) -> NumberFormat:
    fs = standard()
    if name not in fs:
        from archc.dsl.diagnostics import did_you_mean
        raise KeyError(f"no standard format '{name}'{did_you_mean(name, fs)}")
    return fs[name]
