"""The standard number formats (std.formats) as ready-to-use NumberFormat objects:
`archc.formats.get("bf16").quantize(x)`; `set_threads(n)` fixes the threads a kernel call uses
(by default: up to the CPUs this process may run on, fewer when other tasks keep them busy)."""
from __future__ import annotations

from archc.runtime.numerics import FormatSet, NumberFormat, default_threads, set_threads, threads
from archc.runtime.numerics import standard_set as standard

__all__ = ["get", "names", "standard", "NumberFormat", "FormatSet", "set_threads", "threads", "default_threads"]


def names() -> list[str]:
    return sorted(standard())


def get(name: str) -> NumberFormat:
    fs = standard()
    if name not in fs:
        from archc.dsl.diagnostics import did_you_mean
        raise KeyError(f"no standard format '{name}'{did_you_mean(name, fs)}")
    return fs[name]
