"""Traffic at each memory level: how many bytes an op moves between a memory level and the one
inside it, given what the inner level holds. Every op reads each operand and writes its result
at least once (its unique bytes, which the lowering counts); a product whose operands do not
fit the inner level is computed in tiles, and every tile re-reads the operand panels it shares
with the others. This module counts those re-reads for the tiling that minimises them.

The model (Hong and Kung 1981, "I/O complexity: the red-blue pebble game"; the loop-nest
analysis of Timeloop, Parashar et al. ISPASS 2019, for one level at a time): a GEMM C[m x n] =
A[m x k] B[k x n] run output-stationary keeps a tm x tn tile of C in the inner level while
streaming the k dimension through it, one column of A's panel and one row of B's at a time, so

    tm tn e_c + (tm e_a + tn e_b) <= capacity
    traffic = e_a m k ceil(n / tn) + e_b k n ceil(m / tm) + e_c m n

(A's panel is read once per column of tiles, B's once per row). The re-reads are what exceeds
reading A and B once: e_a m k (ceil(n/tn) - 1) + e_b k n (ceil(m/tm) - 1). The minimum over tm x
tn = P (the C tile's area) is at tn / tm = e_a / e_b (A and B the same width: a square tile,
tm = tn = sqrt(P)), then clamped to the matrix; ceil() makes the tile count whole. For two
square operands of width e this gives the textbook 2 e m n k / sqrt(capacity / e).

Other ops: a convolution is the GEMM of its im2col (implicit GEMM: the input window is rebuilt
in the inner level from the input rows, so A's re-reads are of the input tensor); attention
with a fused (flash) kernel keeps a tile of tq query rows and streams K and V past it, re-read
once per query tile (Dao et al. 2022); unfused attention is its two GEMMs. Element-wise ops,
norms, softmax and reductions stream: no re-reads."""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    tm: int
    tn: int
    rereads: float  # bytes read beyond reading A and B once


@lru_cache(maxsize=8192)  # a pure function of numbers: a sweep asks for the same GEMMs at every point
def gemm_rereads(b: float, m: float, n: float, k: float, capacity: float, e_a: float, e_b: float,
                 e_c: float) -> Tile:
    """The output-stationary tiling of `b` GEMMs (m x n, summing k) with the fewest re-reads
    when `capacity` bytes hold the C tile and one column (row) of the A (B) panel."""
    m, n, k = max(1, round(m)), max(1, round(n)), max(1, round(k))
    if m * n * e_c + m * e_a + n * e_b <= capacity:  # the whole product fits: nothing is re-read
        return Tile(m, n, 0.0)
    best = None
    for tm0 in _candidates(m, n, capacity, e_a, e_b, e_c):
        tm = max(1, min(m, int(tm0)))
        tn = int((capacity - tm * e_a) // (tm * e_c + e_b)) if capacity > tm * e_a else 0
        tn = min(n, tn)
        if tn < 1:
            continue
        r = b * (e_a * m * k * (math.ceil(n / tn) - 1) + e_b * k * n * (math.ceil(m / tm) - 1))
        if best is None or r < best.rereads:
            best = Tile(tm, tn, r)
    if best is None:  # not even a 1 x 1 tile with its panels fits: every MAC re-reads both operands
        return Tile(1, 1, b * (e_a * m * k * (n - 1) + e_b * k * n * (m - 1)))
    return best


def _candidates(m, n, capacity, e_a, e_b, e_c):
    """tm values worth trying: the optimum of the continuous problem, clamped (a matrix
    narrower than the tile makes the other side take the rest), and the whole of m."""
    area = capacity / e_c
    t = math.sqrt(area * e_b / e_a)  # tn / tm = e_a / e_b at the optimum
    out = {t, math.floor(t), math.ceil(t), m, area / max(1, n)}
    return sorted(x for x in out if x >= 1)


def attention_rereads(bh: float, s: float, t: float, d: float, capacity: float, e: float,
                      causal: bool = False) -> float:
    """A fused (flash) attention kernel over bh heads: a tile of tq query rows (Q and the output
    accumulator, d each) stays in the inner level while K and V (t x d each) stream past it,
    one row at a time: tq (2 d e) + 2 d e <= capacity; K and V are re-read once per further
    query tile. Causal: query tile i (of nq) streams only the keys it sees, the c = t - s
    cached ones and its own and earlier rows, c + (i + 1) tq, the last tile all t (the read
    counted once); the re-reads are the other tiles' sum, (nq - 1) c + tq nq (nq - 1) / 2 rows."""
    tq = max(1.0, min(s, math.floor((capacity - 2 * d * e) / (2 * d * e)))) if capacity > 2 * d * e else 1.0
    nq = math.ceil(s / tq)
    if causal:
        return bh * 2 * d * e * ((nq - 1) * (t - s) + tq * nq * (nq - 1) / 2)
    return bh * 2 * t * d * e * (nq - 1)
