"""Analog in-memory matrix products: the inference model of IBM aihwkit for a resistive crossbar
(DAC, programmed conductances with noise, analog sums with output noise, ADC), seeded.

`analog_matmul(x, w, analog, rng)` computes x @ w for x [m, k] (one input vector per row) and
w [k, n] (the matrix programmed into the array, k inputs by n outputs) the way such an array
does, step by step:

1. Weights. The array stores w / w_max with w_max = max|w| (the largest weight maps to the
   largest conductance). Programming is imprecise: every normalised weight gets Gaussian noise
   of standard deviation `program_noise` (a fraction of the largest weight, aihwkit's g_max),
   drawn once per weight when the matrix is programmed, then clipped to the conductance range
   [-1, 1].
2. Inputs ("noise management"). Each input vector is divided by its own absolute maximum
   alpha = max|x_row|, so it fills the DAC range [-1, 1]; a zero vector gives a zero output.
3. DAC. The normalised inputs are quantised to `dac_bits`: symmetric, 2^(dac-1) - 1 levels on
   each side of zero, rounded to nearest (ties to even), clipped to [-1, 1].
4. Row tiles. An array sums at most `rows` inputs per column: a longer input is split into
   row tiles of `rows` inputs, each computed by its own array (the same programmed weights).
   Columns need no splitting here: each output is one column's sum either way.
5. Analog sum per tile: the exact dot product of the DAC outputs and the programmed weights
   (float64) plus Gaussian output noise of standard deviation `out_noise` (in units of the
   normalised weight range) per output and tile, drawn fresh for every input vector.
6. ADC per tile: the noisy sum is clipped to [-bound, bound] and quantised to `adc_bits`:
   symmetric, 2^(adc-1) - 1 levels on each side of zero, step bound / (2^(adc-1) - 1).
7. The tiles' ADC outputs are summed digitally (float64: exact for any realistic ADC), then
   scaled back by alpha (per input row) and w_max.

Random numbers come from the NumPy Generator the caller passes, in a fixed order (programming
noise for w, then output noise tile by tile), so one seed reproduces a result exactly.
"""
from __future__ import annotations

import numpy as np

from archc.dsl.ir import Analog

__all__ = ["analog_matmul", "dac", "adc", "program", "levels"]


def levels(bits: int) -> int:
    """Quantisation levels on each side of zero of a symmetric `bits`-bit converter."""
    return max(1, 2 ** (int(bits) - 1) - 1)


def dac(x: np.ndarray, bits: int) -> np.ndarray:
    """Inputs already in [-1, 1] as a `bits`-bit DAC drives them onto the rows."""
    n = levels(bits)
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * n), -n, n) / n


def adc(y: np.ndarray, bits: int, bound: float) -> np.ndarray:
    """Column sums as a `bits`-bit ADC over [-bound, bound] reads them."""
    n = levels(bits)
    step = bound / n
    return np.clip(np.rint(np.clip(y, -bound, bound) / step), -n, n) * step


def program(w: np.ndarray, program_noise: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The normalised conductances actually programmed for w, and the scale w_max."""
    w = np.asarray(w, dtype=np.float64)
    w_max = float(np.max(np.abs(w), initial=0.0))
    if w_max == 0.0 or not np.isfinite(w_max):
        return np.zeros_like(w), w_max
    g = w / w_max
    if program_noise > 0:
        g = g + program_noise * rng.standard_normal(g.shape)
    return np.clip(g, -1.0, 1.0), w_max


def analog_matmul(x, w, analog: Analog, rng: np.random.Generator) -> np.ndarray:
    """x @ w on an analog crossbar described by `analog` (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"analog matmul needs [m, k] x [k, n], found {x.shape} x {w.shape}")
    m, k = x.shape
    n = w.shape[1]
    g, w_max = program(w, analog.program_noise, rng)
    alpha = np.max(np.abs(x), axis=1, initial=0.0)
    live = (alpha > 0) & np.isfinite(alpha)
    safe = np.where(live, alpha, 1.0)
    xq = dac(np.where(live[:, None], x / safe[:, None], 0.0), analog.dac_bits)
    rows = max(1, int(analog.rows))
    total = np.zeros((m, n))
    for start in range(0, k, rows):
        part = xq[:, start:start + rows] @ g[start:start + rows]
        if analog.out_noise > 0:
            part = part + analog.out_noise * rng.standard_normal(part.shape)
        total += adc(part, analog.adc_bits, analog.bound)
    y = total * (safe * live)[:, None] * w_max
    y[~np.isfinite(alpha)] = np.nan  # an input row holding Inf or NaN has no defined output
    if not np.isfinite(w_max):
        y[:] = np.nan
    return y
