"""Memory levels of any depth (issue 15): a chip or a system lists its levels innermost first."""
from __future__ import annotations

import pytest

from archc.api import check
from archc.dsl.diagnostics import ArchcError

TILE = """import std.formats
tile t {
  clock 1 GHz
  sram 256 KiB, bandwidth = 128 B/cycle
  matrix bf16 x bf16 -> fp32 : 1024 mac/cycle
  vector fp32 : 32 lanes
}
"""


def _chip(tmp_path, memories: str):
    f = tmp_path / "m.arch"
    f.write_text(TILE + "chip c {\n  tiles 4 of t\n  noc crossbar, bandwidth = 1 TB/s\n" + memories + "}\n")
    return f


def test_levels_are_kept_innermost_first(tmp_path):
    f = _chip(tmp_path, "  memory l2, 50 MB, bandwidth = 5.5 TB/s\n  memory hbm, 80 GB, bandwidth = 3 TB/s\n")
    chip = check(f).chips[0][1]
    assert [m.name for m in chip.memories] == ["l2", "hbm"]
    assert chip.memory.name == "hbm"  # where the tensors live: the outermost
    assert all(m.shared for m in chip.memories)


def test_a_level_per_tile(tmp_path):
    f = _chip(tmp_path, "  memory vmem, 16 MiB, bandwidth = 1 TB/s, shared = false\n"
                        "  memory hbm, 32 GiB, bandwidth = 1.2 TB/s\n")
    chip = check(f).chips[0][1]
    assert [m.shared for m in chip.memories] == [False, True]


@pytest.mark.parametrize("memories, words", [
    ("  memory hbm, 80 GB, bandwidth = 3 TB/s\n  memory l2, 50 MB, bandwidth = 5.5 TB/s\n",
     "memory levels are listed innermost first: 'l2' (50 MB) cannot hold 'hbm' (80 GB)"),
    ("  memory hbm, 80 GB, bandwidth = 3 TB/s\n  memory hbm, 90 GB, bandwidth = 3 TB/s\n",
     "chip 'c' already has a memory level 'hbm'"),
    ("  memory hbm, 80 GB, bandwidth = 3 TB/s, shared = maybe\n", "shared (one memory for all inside it) must be one of true, false"),
])
def test_levels_that_cannot_be(tmp_path, memories, words):
    with pytest.raises(ArchcError) as e:
        check(_chip(tmp_path, memories))
    assert words in e.value.render()


def test_each_level_rereads_what_the_level_inside_cannot_hold(tmp_path):
    """1024^3 fp16 GEMM (fp32 accumulators) on a chip with a 1 MiB L2 in front of its HBM.
    The HBM sees the unique bytes (A and B read, C written: 3 x 2 MiB) plus the re-reads of the
    output-stationary tiling the L2 holds (codegen/traffic.py): a 512 x 511 tile of C (512 x 511
    x 4 B + 512 x 2 B + 511 x 2 B <= 1 MiB; 512 x 512 would not fit with its panels), so A is
    read ceil(1024 / 511) = 3 times and B ceil(1024 / 512) = 2 times: 3 re-reads of 2 MiB.
    Inside the L2 are the tiles' SRAMs, 4 x 64 KiB = 256 KiB together: a 256 x 255 tile of C
    (256 x 255 x 4 + 256 x 2 + 255 x 2 = 262,142 B <= 262,144; 256 x 256 would not fit), so
    the L2 sees A re-read ceil(1024 / 255) - 1 = 4 more times and B ceil(1024 / 256) - 1 = 3:
    7 re-reads of 2 MiB. The report gives bytes and time per level."""
    import math

    from archc.codegen.traffic import gemm_rereads
    from archc.runtime.pipeline import run_analytic

    f = _chip(tmp_path, "  memory l2, 1 MiB, bandwidth = 2 TB/s\n  memory hbm, 16 GB, bandwidth = 1 TB/s\n")
    f.write_text(f.read_text().replace("sram 256 KiB", "sram 64 KiB") + "model g(n) {\n  input a : [n, n]\n  input b : [n, n]\n  return matmul(a, b)\n}\n"
                 "run r { model g(1024); on c; precision bf16 }\n")
    rep = run_analytic(check(f).run("r"))
    t = gemm_rereads(1, 1024, 1024, 1024, 2**20, 2, 2, 4)
    assert (t.tm, t.tn) == (512, 511)
    unique = 3 * 1024 * 1024 * 2
    rereads = 2 * 1024 * 1024 * ((math.ceil(1024 / 511) - 1) + (math.ceil(1024 / 512) - 1))
    assert t.rereads == rereads
    levels = rep.ops[0].levels
    assert gemm_rereads(1, 1024, 1024, 1024, 4 * 2**16, 2, 2, 4) == type(t)(256, 255, 7 * 2 * 1024 * 1024)
    assert levels["l2"]["bytes"] == unique + 7 * 2 * 1024 * 1024
    assert levels["hbm"]["bytes"] == unique + rereads
    assert levels["hbm"]["time_s"] == pytest.approx((unique + rereads) / 1e12)
    assert rep.memory_levels["hbm"]["bytes"] == unique + rereads


@pytest.mark.parametrize("sram_kib, tm, tn, rereads", [
    # 4 tiles x 64 KiB = 256 KiB: the 256 x 255 tile above, A re-read 4 more times, B 3
    (64, 256, 255, 7),
    # 4 x 256 KiB = 1 MiB: the 512 x 511 tile above, A 2 more times, B 1
    (256, 512, 511, 3),
])
def test_the_tiles_sram_sets_what_the_memory_rereads(tmp_path, sram_kib, tm, tn, rereads):
    """With only HBM on the chip, the level inside it is the tiles' SRAM taken together (they
    share operand panels over the NoC): a 1024^3 fp16 GEMM re-reads from HBM what the SRAMs
    cannot hold, so a chip with 4x the SRAM reads less. Unique bytes 3 x 2 MiB as above."""
    from archc.codegen.traffic import gemm_rereads
    from archc.runtime.pipeline import run_analytic

    f = _chip(tmp_path, "  memory hbm, 16 GB, bandwidth = 1 TB/s\n")
    f.write_text(f.read_text().replace("sram 256 KiB", f"sram {sram_kib} KiB")
                 + "model g(n) {\n  input a : [n, n]\n  input b : [n, n]\n  return matmul(a, b)\n}\n"
                 "run r { model g(1024); on c; precision bf16 }\n")
    t = gemm_rereads(1, 1024, 1024, 1024, 4 * sram_kib * 1024, 2, 2, 4)
    assert (t.tm, t.tn, t.rereads) == (tm, tn, rereads * 2 * 1024 * 1024)
    rep = run_analytic(check(f).run("r"))
    assert rep.ops[0].levels["hbm"]["bytes"] == 3 * 2 * 1024 * 1024 + rereads * 2 * 1024 * 1024
