"""Number formats at run time: NumberFormat objects over a design's generated format kernels
(quantize, encode, decode, dot products), with the format's range and precision, and the
number of threads those kernels may use."""
from __future__ import annotations

import math
import os

import numpy as np

from archc.codegen.numerics import ROUNDINGS, FormatInfo, exact_window_ok, render_formats
from archc.codegen.mangle import identifier
from archc.dsl.diagnostics import ArchcError, BuildError
from archc.dsl.ir import Format

from . import cache


class ThreadsError(ArchcError):
    """A thread count that is not a whole number >= 1 (ARCHC_THREADS, OMP_NUM_THREADS or
    set_threads): `archc: error: ...`."""


def _count(text: str, where: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ThreadsError(f"{where}: a thread count is a whole number >= 1")
    return n


def default_threads() -> tuple[int, bool]:
    """(threads, adapt): the most threads a format kernel call uses unless set_threads says
    otherwise, and whether a call takes fewer when other tasks keep CPUs busy. ARCHC_THREADS,
    if set, is exact (no adapting); else the cap is OMP_NUM_THREADS (its first, outermost level)
    or the CPUs this process may run on (os.sched_getaffinity where there is one), adapting."""
    text = os.environ.get("ARCHC_THREADS")
    if text is not None and text.strip():
        return _count(text, f"ARCHC_THREADS={text!r}"), False
    text = os.environ.get("OMP_NUM_THREADS")
    if text is not None and text.strip():
        # a count per nesting level may be listed: the first is the kernels'
        return _count(text.split(",")[0], f"OMP_NUM_THREADS={text!r}"), True
    try:
        return max(1, len(os.sched_getaffinity(0))), True
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1), True


_threads: list[tuple[int, bool]] = []  # set_threads' setting, if it was called
_modules: list = []  # every format-kernel module this process loaded, to tell a new setting


def threads() -> tuple[int, bool]:
    """(the most threads a format kernel call uses, whether it adapts to the free CPUs):
    set_threads' setting, else default_threads()."""
    return _threads[0] if _threads else default_threads()


def set_threads(n: int | None, adapt: bool = False) -> None:
    """Format kernel calls of this process use n threads (from 2 * 131072 elements, one per
    131072), or with `adapt` at most n, no more than the CPUs not busy with other tasks when the
    call starts; None goes back to default_threads(). Results do not depend on it: every element
    is rounded on its own (stochastic rounding with its own random value)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ThreadsError(f"set_threads takes a whole number of threads >= 1 (or None); found {n!r}")
    _threads[:] = [] if n is None else [(n, bool(adapt))]
    count, adapting = threads()
    for module in _modules:
        module.set_threads(count, adapting)


def _as_f64(x) -> tuple[np.ndarray, tuple]:
    a = np.asarray(x, dtype=np.float64)
    return np.ascontiguousarray(a.reshape(-1)), a.shape


def _mode(rounding: str) -> int:
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding '{rounding}'; archc has {', '.join(ROUNDINGS)}")
    return ROUNDINGS.index(rounding)


def _random(random_bits, n: int, mode: int, width: int | None) -> tuple[np.ndarray, int]:
    if mode != ROUNDINGS.index("stochastic"):
        return np.zeros(1, dtype=np.uint64), 0
    if random_bits is None:
        raise ValueError("stochastic rounding takes its random bits as input: pass random_bits "
                         "(unsigned integers, one per value) so results are reproducible")
    r = np.asarray(random_bits)
    if r.dtype.kind not in "ui":
        raise ValueError("random_bits must be an integer array")
    if width is None:
        width = min(8 * r.dtype.itemsize, 32) if r.dtype.kind == "u" else 32
    if not 1 <= width <= 62:
        raise ValueError("random_width must be between 1 and 62 bits")
    r = np.ascontiguousarray(r.reshape(-1).astype(np.uint64))
    if r.size != n:
        raise ValueError(f"random_bits has {r.size} values for {n} inputs")
    if r.size and int(r.max()) >= (1 << width):
        raise ValueError(f"random_bits must be below 2^{width}")
    return r, width


class NumberFormat:
    """One declared format: exact quantization, encoding and decoding, and its range.

    `quantize(x, rounding="rne", random_bits=None)` returns the nearest representable values (per
    the rounding mode) as float64, rounding once, directly from float64; MX formats quantize
    whole blocks along the last axis. `encode` returns code points, `decode` values."""

    def __init__(self, fmt: Format, module, info: FormatInfo | None, mx_elem: FormatInfo | None = None,
                 mx_index: int | None = None):
        self.ir = fmt
        self.name = fmt.name
        self.kind = fmt.kind
        self.params = dict(fmt.params)
        self._m = module
        self._info = info or mx_elem
        self._mx = mx_index
        i = self._info
        self.bits = fmt.bits
        self.max = i.max
        self.min_normal = i.min_normal
        self.min_subnormal = i.min_subnormal
        self.eps = i.eps
        self.has_nan = i.has_nan
        self.has_inf = i.has_inf
        self.signed = i.signed
        if self._mx is not None:
            self.block = fmt.param("block")
            self.elem_emax = math.floor(math.log2(i.max))
            # the MX scale range, 2^-127 .. 2^127, extends the element range
            self.max = math.ldexp(i.max, 127)
            self.min_subnormal = math.ldexp(i.min_subnormal, -127)
            self.min_normal = math.ldexp(i.min_normal, -127)

    def __repr__(self) -> str:
        return f"<NumberFormat {self.name} ({self.kind}, {self.bits} bits)>"

    def _check_specials(self, flat: np.ndarray) -> None:
        if not self.has_nan and np.isnan(flat).any():
            raise ValueError(f"{self.name} has no NaN: cannot quantize NaN")
        if not self.signed and (np.signbit(flat) & (flat != 0)).any():
            raise ValueError(f"{self.name} is unsigned: cannot quantize negative values")

    def quantize(self, x, rounding: str = "rne", random_bits=None, random_width: int | None = None) -> np.ndarray:
        flat, shape = _as_f64(x)
        mode = _mode(rounding)
        rbits, width = _random(random_bits, flat.size, mode, random_width)
        out = np.empty_like(flat)
        if self._mx is not None:
            return self._mx_quantize(flat, shape, mode, rbits, width)
        self._check_specials(flat)
        getattr(self._m, f"quantize_{self._info.index}")(flat, out, mode, rbits, width)
        return out.reshape(shape)

    def quantize32(self, x, rounding: str = "rne", random_bits=None, random_width: int | None = None) -> np.ndarray:
        """quantize for float32 arrays, in and out, for formats whose values are all float32
        (bf16, fp16, the 8-, 6- and 4-bit floats): half the memory traffic of float64."""
        fn = getattr(self._m, f"quantize32_{self._info.index}", None) if self._info else None
        if fn is None or self._mx is not None:
            raise ValueError(f"{self.name} has no float32 kernel; use quantize")
        a = np.asarray(x, dtype=np.float32)
        flat = np.ascontiguousarray(a.reshape(-1))
        mode = _mode(rounding)
        rbits, width = _random(random_bits, flat.size, mode, random_width)
        self._check_specials(flat)
        out = np.empty_like(flat)
        fn(flat, out, mode, rbits, width)
        return out.reshape(a.shape)

    def scale_exponents(self, blocks: np.ndarray) -> np.ndarray:
        """Shared scale exponent per block: floor(log2(amax)) - emax of the element, within
        E8M0's -127..127 (OCP MX v1.0, computed as the reference implementations do)."""
        amax = np.max(np.abs(blocks), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.floor(np.log2(amax)) - self.elem_emax
        e = np.clip(e, -127.0, 127.0)
        e[amax == 0] = -127.0
        return np.ascontiguousarray(e)

    def _blocks(self, flat: np.ndarray, shape: tuple) -> tuple[np.ndarray, int, int]:
        last = shape[-1] if shape else 1
        rows = flat.size // last if last else 0
        per_row = -(-last // self.block)
        padded = np.zeros((rows, per_row * self.block))
        padded[:, :last] = flat.reshape(rows, last)
        return padded, last, per_row

    def _mx_quantize(self, flat, shape, mode, rbits, width) -> np.ndarray:
        padded, last, per_row = self._blocks(flat, shape)
        blocks = padded.reshape(-1, self.block)
        exps = self.scale_exponents(blocks)
        out = np.empty(blocks.size)
        if rbits.size > 1:
            r = np.zeros(padded.shape, dtype=np.uint64)
            r[:, :last] = rbits.reshape(padded.shape[0], last)
            rbits = np.ascontiguousarray(r.reshape(-1))
        getattr(self._m, f"mx_quantize_{self._mx}")(np.ascontiguousarray(blocks.reshape(-1)), exps, out, mode,
                                                    rbits, width)
        return out.reshape(padded.shape)[:, :last].reshape(shape)

    def encode32(self, x) -> np.ndarray:
        """Codes of float32 values rounded to nearest-even, as uint16 (uint32 for wider codes):
        the storage an ml_dtypes array holds. For formats with float32's exponent range (bf16)."""
        fn = getattr(self._m, f"encode32_{self._info.index}", None) if self._info else None
        if fn is None or self._mx is not None:
            raise ValueError(f"{self.name} has no float32 encoder; use encode")
        a = np.asarray(x, dtype=np.float32)
        flat = np.ascontiguousarray(a.reshape(-1))
        out = np.empty(flat.size, dtype=np.uint16 if self._info.bits <= 16 else np.uint32)
        fn(flat, out)
        return out.reshape(a.shape)

    def encode(self, x) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Code points of x rounded to nearest-even (MX: the E8M0 scale codes per block and the
        element codes)."""
        flat, shape = _as_f64(x)
        if self._mx is not None:
            padded, last, per_row = self._blocks(flat, shape)
            blocks = padded.reshape(-1, self.block)
            exps = self.scale_exponents(blocks)
            elems = np.ascontiguousarray((blocks / np.exp2(exps)[:, None]).reshape(-1))
            codes = np.empty(elems.size, dtype=np.uint64)
            getattr(self._m, f"encode_{self._info.index}")(self._sat(elems), codes)
            scales = np.where(np.isnan(exps), 255, exps + 127).astype(np.uint64)
            return scales, codes.reshape(padded.shape)[:, :last].reshape(shape)
        self._check_specials(flat)
        codes = np.empty(flat.size, dtype=np.uint64)
        getattr(self._m, f"encode_{self._info.index}")(flat, codes)
        return codes.reshape(shape)

    def _sat(self, elems: np.ndarray) -> np.ndarray:
        out = np.empty_like(elems)
        getattr(self._m, f"mx_quantize_{self._mx}")(elems, np.zeros(-(-elems.size // self.block)), out, 0,
                                                    np.zeros(1, dtype=np.uint64), 0)
        return out

    def decode(self, bits) -> np.ndarray:
        """Values of code points (MX: a (scale codes, element codes) pair as encode returns)."""
        if self._mx is not None:
            scales, codes = bits
            c = np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).reshape(-1))
            vals = np.empty(c.size)
            getattr(self._m, f"decode_{self._info.index}")(c, vals)
            shape = np.shape(codes)
            last = shape[-1] if shape else 1
            per_row = -(-last // self.block)
            s = np.asarray(scales, dtype=np.float64).reshape(-1, per_row)
            factor = np.where(s == 255, np.nan, np.exp2(s - 127))
            idx = np.arange(last) // self.block
            return (vals.reshape(-1, last) * factor[:, idx]).reshape(shape)
        c = np.asarray(bits)
        if c.dtype.kind not in "ui":
            raise ValueError("decode takes integer code points")
        flat = np.ascontiguousarray(c.reshape(-1).astype(np.uint64, copy=False))
        out = np.empty(flat.size)
        if getattr(self._m, f"decode_{self._info.index}")(flat, out):  # codes wider than the format
            raise ValueError(f"code points of {self.name} have {self._info.bits} bits")
        return out.reshape(c.shape)


class FormatSet(dict):
    """The formats of a design by name, with dot products across them."""

    def __init__(self, formats: dict[str, Format], version: str, title: str, progress=None):
        src, scalar, mx = render_formats(formats, title, version)
        try:
            module = cache.build(src, identifier(title, "formats"), archc_version=version, progress=progress,
                                 label=f"the number-format kernels of {title}")
        except cache.BuildError as e:
            raise BuildError(f"building the format kernels failed: {e}") from None
        super().__init__()
        module.set_threads(*threads())
        if module not in _modules:
            _modules.append(module)
        self.module = module
        self.source = src
        mx_names = [n for n in sorted(formats) if n in mx]
        for name in sorted(formats):
            f = formats[name]
            if name in scalar:
                self[name] = NumberFormat(f, module, scalar[name])
            elif name in mx:
                self[name] = NumberFormat(f, module, None, mx[name], mx_names.index(name))

    def matmul(self, a, b, acc: str, rounding: str = "rne", exact: bool = False) -> np.ndarray:
        """a @ b (2-D, values already in their formats) with every dot product accumulated in
        `acc` as `dot` does."""
        A = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        B = np.ascontiguousarray(np.asarray(b, dtype=np.float64))
        if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
            raise ValueError(f"matmul needs [m, k] x [k, n], found {A.shape} x {B.shape}")
        mode = _mode(rounding)
        if mode == ROUNDINGS.index("stochastic"):
            raise ValueError("matmul rounds deterministically; use dot with random bits for stochastic rounding")
        f = self[acc]
        if exact:
            both = np.abs(np.concatenate([A.ravel(), B.ravel()]))
            nz = both[both > 0]
            if not exact_window_ok(float(both.max(initial=0)), float(nz.min(initial=0))):
                raise ValueError("exact accumulation takes values within 2^-200 .. 2^200")
        C = np.empty((A.shape[0], B.shape[1]))
        self.module.matmul(f._info.index, A, B, C, mode, int(exact))
        return C

    def dot(self, a, b, acc: str, rounding: str = "rne", exact: bool = False, random_bits=None,
            random_width: int | None = None) -> float:
        """sum(a * b) for vectors already in their formats, accumulated in `acc` (rounded after
        every add), or exactly (a quire) and rounded once when `exact`. The quire is exact for any
        operands within 2^-200 .. 2^200; rounding after every add is exact (one rounding of
        acc + a*b per step) when each product fits float64, i.e. operand significands total at
        most 53 bits (fp32 x fp32 and narrower); wider products (fp64, posit32 x posit32) are
        first rounded to float64."""
        fa, shape = _as_f64(a)
        fb, _ = _as_f64(b)
        if fa.size != fb.size:
            raise ValueError("dot needs vectors of one length")
        f = self[acc]
        if f._mx is not None:
            raise ValueError("an MX format is not an accumulator")
        mode = _mode(rounding)
        rbits, width = _random(random_bits, fa.size if not exact else 1, mode, random_width)
        if exact:
            both = np.abs(np.concatenate([fa, fb]))
            nz = both[both > 0]
            if not exact_window_ok(float(both.max(initial=0)), float(nz.min(initial=0))):
                raise ValueError("exact accumulation takes values within 2^-200 .. 2^200")
        return float(self.module.dot(f._info.index, fa, fb, mode, int(exact), rbits, width))


_standard: list[FormatSet] = []  # the one per process


def standard_set(progress=None) -> FormatSet:
    """The formats of std.formats, built once per process (the kernels are cached on disk);
    `progress` hears about the build, if this call makes it."""
    if not _standard:
        from archc.dsl.check import standard_formats
        from archc.dsl.version import __version__
        _standard.append(FormatSet(standard_formats(), __version__, "std.formats", progress))
    return _standard[0]
