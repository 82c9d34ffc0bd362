"""N-dimensional grids of chips and the all-reduce that uses every dimension (`allreduce =
dims`), against closed forms worked out here, at the analytic and the event level; and the
checker's refusals.

Machine: the easy chip (conftest.EASY_MACHINE); 64 of them as a 4 x 4 x 4 torus (TPU v4's
cube), 50 GB/s per link and direction, 1 us per step. A data-parallel training step over the
64 chips exchanges S = 4 B x 1024^2 x 2 layers of fp32 gradients."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.codegen import collectives as C
from archc.dsl.diagnostics import ArchcError
from archc.dsl.vocab import Collective
from archc.runtime.pipeline import run_analytic, run_event
from conftest import EASY_MACHINE

pytestmark = pytest.mark.build

B, LAT = 50e9, 1e-6
S = 4 * 1024 * 1024 * 2

SYSTEMS = EASY_MACHINE + """
system cube { grid 4 x 4 x 4 of c; network torus, link = 50 GB/s, latency = 1 us, allreduce = dims }
system cube_ring { grid 4 x 4 x 4 of c; network torus, link = 50 GB/s, latency = 1 us }
system box { grid 2 x 4 x 8 of c; network torus, link = 50 GB/s, latency = 1 us, allreduce = dims }
system slab { grid 4 x 4 x 4 of c; network mesh, link = 50 GB/s, latency = 1 us, allreduce = dims }
"""


def _exchange(tmp_path, system):
    """(analytic, event) gradient exchange of a data-parallel step over the 64 chips."""
    f = tmp_path / "t.arch"
    f.write_text(SYSTEMS + f"""run r {{ model stack(1, 1024, 2); on {system}; mode train
      strategy data, chips = 64, micro_batch = 1, global_batch = 64; precision fp16 }}""")
    run = check(f).run("r")
    a, e = run_analytic(run, __version__), run_event(run, __version__)
    return a.breakdown["gradient exchange"], e.breakdown["gradient exchange"], run


def test_3d_torus_allreduce_meets_the_bandwidth_bound(tmp_path):
    # 3 parts of S/3, each reduce-scattered along the three dimensions in a rotated order (so
    # the 6 links of every chip are busy at once) on bidirectional rings (2 x 50 GB/s a chip
    # per dimension), then all-gathered back. Reduce-scatter of one part: 3 steps per
    # dimension moving (S/3)(3/4) / 100 GB/s, then (S/12)(3/4), then (S/48)(3/4):
    #   S (1/4 + 1/16 + 1/64) / (2 B) = S (21/64) / (2 B); all-gather the same.
    # Total: S (21/64) / B + 2 x 9 latencies = 2 S (N - 1) / (N 2d B) with N = 64, d = 3: the
    # bound for any all-reduce over 2d links a chip. (+ the exchange's 1 us launch)
    a, e, _ = _exchange(tmp_path, "cube")
    closed = S * 21 / 64 / B + 18 * LAT
    assert closed == pytest.approx(2 * S * 63 / 64 / (6 * B) + 18 * LAT, rel=1e-12)
    assert a == pytest.approx(closed + 1e-6, rel=1e-9)
    assert e == pytest.approx(closed + 1e-6, rel=1e-9)


def test_a_ring_in_the_same_torus_is_slower(tmp_path):
    # One ring through the 64 chips (archc's ring on a torus: x 4 the link, both directions
    # and the wrap-around): 2 (63/64) S / (4 B) + 126 latencies
    a, e, _ = _exchange(tmp_path, "cube_ring")
    assert a == pytest.approx(2 * 63 / 64 * S / (4 * B) + 126 * LAT + 1e-6, rel=1e-9)
    dims, _, _ = _exchange(tmp_path, "cube")
    assert dims < a


def test_unequal_dimensions_take_one_part_in_turn(tmp_path):
    # 2 x 4 x 8: one part, dimension by dimension (2, then 4, then 8) on bidirectional rings:
    # S (1/2) / (2B) [1 step] + (S/2)(3/4) / (2B) [3 steps] + (S/8)(7/8) / (2B) [7 steps]
    rs = (S / 2 + S / 2 * 3 / 4 + S / 8 * 7 / 8) / (2 * B) + (1 + 3 + 7) * LAT
    a, e, _ = _exchange(tmp_path, "box")
    assert a == pytest.approx(2 * rs + 1e-6, rel=1e-9)
    assert e == pytest.approx(2 * rs + 1e-6, rel=1e-9)


def test_a_mesh_ring_comes_back_over_the_reverse_links(tmp_path):
    # A mesh has no wrap-around: each dimension's ring runs one way along the line and comes back
    # the other way (one hop per member, dimension-ordered), so a chip has one link's bandwidth per
    # dimension: S (21/64) / B per half, twice the torus's time for the bytes.
    a, e, _ = _exchange(tmp_path, "slab")
    closed = 2 * S * 21 / 64 / B + 18 * LAT
    assert a == pytest.approx(closed + 1e-6, rel=1e-9)
    assert e == pytest.approx(closed + 1e-6, rel=1e-9)


def test_the_steps_use_every_dimension(tmp_path):
    _, _, run = _exchange(tmp_path, "cube")
    net = C.Network.of(run.machine)
    steps = C.decompose(net, Collective.ALLREDUCE, 64, 1)
    assert [(s.pattern, s.dim, s.parts, s.repeats) for s in steps] == \
        [(C.Pattern.DIM, j, 3, 3) for j in (0, 1, 2, 2, 1, 0)]
    frac, flows = C.dim_flows(steps[0], net, 0, 64, 1)
    # every chip sends half its piece each way along each of the three dimensions at once
    assert frac == 0.5 and len(flows) == 64 * 3 * 2
    assert len({(h[0][0], h[0][1], h[0][2]) for _, _, h in flows}) == 64 * 6  # 384 distinct links
    rs = C.decompose(net, Collective.REDUCE_SCATTER, 64, 1)
    assert rs == steps[:3]
    assert C.time(net, rs, S)[0] == pytest.approx(S * 21 / 64 / (2 * B) + 9 * LAT, rel=1e-12)


@pytest.mark.parametrize("text, message", [
    ("system s { grid 4 x 4 x 4 of c; network switch, bandwidth = 1 GB/s, allreduce = dims }",
     "`allreduce = dims` needs a mesh or torus, not a switch"),
    ("system s { grid 4 x 4 x 4 of c; network torus, link = 1 GB/s, allreduce = mesh2d }",
     "`allreduce = mesh2d` reduces over a 2-D grid; system 's' is a 4 x 4 x 4 grid"),
    ("system s { grid 2 x 2 x 2 x 2 x 2 x 2 x 2 of c; network torus, link = 1 GB/s }",
     "a grid of 7 dimensions; archc accepts up to 6"),
    ("chip d { grid 2 x 2 x 2 of t; noc mesh, link = 1 GB/s }",
     "a chip's tiles form a 2-D grid"),
    ("system s { grid 4 x 0 x 4 of c; network torus, link = 1 GB/s }", "the size of dimension 2"),
])
def test_grid_mistakes_are_reported(tmp_path, text, message):
    f = tmp_path / "bad.arch"
    f.write_text(EASY_MACHINE + text + "\n")
    with pytest.raises(ArchcError) as e:
        check(f)
    assert message in e.value.render()
