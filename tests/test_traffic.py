"""Memory-level traffic (codegen/traffic.py) against hand calculations and the textbook bound."""
from __future__ import annotations

import math

import pytest

from archc.codegen.traffic import attention_rereads, gemm_rereads


def test_square_gemm_tiles_square_and_rereads_each_panel_once_per_tile():
    # 1024^3 fp16 GEMM; the inner level holds a 128 x 128 tile of C and one column/row of the
    # panels: 2 B x (128 x 128 + 128 + 128) = 33,280 B. A is read 1024/128 = 8 times, B 8 times:
    # 7 re-reads each of 2 MiB.
    t = gemm_rereads(1, 1024, 1024, 1024, 33280, 2, 2, 2)
    assert (t.tm, t.tn) == (128, 128)
    assert t.rereads == 2 * 7 * 1024 * 1024 * 2
    total = t.rereads + 3 * 1024 * 1024 * 2  # + A, B read once and C written once
    assert total == 35_651_584


def test_the_traffic_approaches_hong_and_kung():
    # large square GEMMs: traffic ~ 2 e m n k / sqrt(C / e) (Hong and Kung 1981), within a few %
    for cap in (64e3, 1e6, 16e6):
        n, e = 16384, 2
        t = gemm_rereads(1, n, n, n, cap, e, e, e)
        bound = 2 * e * n ** 3 / math.sqrt(cap / e)
        assert t.rereads + 2 * e * n * n == pytest.approx(bound, rel=0.05)


def test_a_gemm_that_fits_rereads_nothing():
    assert gemm_rereads(1, 64, 64, 64, 3 * 64 * 64 * 2 + 1, 2, 2, 2).rereads == 0


def test_a_skinny_gemm_keeps_its_whole_narrow_side():
    # decode: m = 8 tokens, n = 65,536 outputs, 64 KiB inner level, fp32 accumulators. The C
    # tile takes all 8 rows and (65,536 - 8 x 2) / (8 x 4 + 2) = 1,927 columns: B (the weights)
    # is read exactly once, A (8 x k, tiny) once per column tile.
    t = gemm_rereads(1, 8, 65536, 4096, 65536, 2, 2, 4)
    assert (t.tm, t.tn) == (8, 1927)
    assert t.rereads == 2 * 8 * 4096 * (math.ceil(65536 / 1927) - 1)
    # the same product fits a 1 MiB level: nothing is re-read
    assert gemm_rereads(1, 8, 4096, 4096, 1 << 20, 2, 2, 4).rereads == 0


def test_batched_gemms_reread_per_batch():
    one = gemm_rereads(1, 512, 512, 512, 20000, 2, 2, 2).rereads
    assert gemm_rereads(12, 512, 512, 512, 20000, 2, 2, 2).rereads == 12 * one


def test_flash_attention_rereads_k_and_v_per_query_tile():
    # 8 heads, 4096 queries and keys of width 128, fp16, 256 KiB inner level: a query tile of
    # (262144 - 2 x 128 x 2) / (2 x 128 x 2) = 511 rows; K and V (4096 x 128 x 2 B each) read
    # ceil(4096 / 511) = 9 times, 8 of them re-reads
    r = attention_rereads(8, 4096, 4096, 128, 262144, 2)
    assert r == 8 * 2 * 4096 * 128 * 2 * (math.ceil(4096 / 511) - 1)
