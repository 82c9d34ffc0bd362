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
