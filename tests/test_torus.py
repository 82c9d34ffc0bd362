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
    ("system s { grid 4 x 0 x 4 of c; network torus, link = 1 GB/s }", "the size of dimension 2"),
])
def test_grid_mistakes_are_reported(tmp_path, text, message):
    f = tmp_path / "bad.arch"
    f.write_text(EASY_MACHINE + text + "\n")
    with pytest.raises(ArchcError) as e:
        check(f)
    assert message in e.value.render()


# --- N-D grids of tiles in a chip (stacked dies) ---------------------------------------------

STACK = """
chip stack3 {{ grid 2 x 4 x 4 of t; noc mesh, link = 10 GB/s; {mem} launch 1 us }}
chip flat2 {{ grid 8 x 4 of t; noc mesh, link = 10 GB/s; {mem} launch 1 us }}
chip cube3 {{ grid 4 x 4 x 4 of t; noc mesh, link = 10 GB/s; {mem} launch 1 us }}
{runs}
"""
ADDS = """run add3 { model vadd(16777216); on stack3; precision fp16 }
run add2 { model vadd(16777216); on flat2; precision fp16 }"""


def _stack(tmp_path, mem: str, runs: str):
    f = tmp_path / "stack.arch"
    f.write_text(EASY_MACHINE + STACK.format(mem=mem, runs=runs))
    return check(f)


def test_a_stacked_chip_takes_memory_traffic_over_its_surface(tmp_path):
    """2 x 4 x 4 tiles with HBM: memory traffic crosses the grid's surface, 2 (4x4 + 2x4 + 2x4)
    = 64 links of 10 GB/s = 640 GB/s, against 2 (8 + 4) = 24 links for the same 32 tiles as an
    8 x 4 plane. A 2^24-element fp16 add moves 3 x 2 B x 2^24 = 100.66 MB: 157.3 us over the
    surface (HBM 100.7 us, SRAM 3.2 TB/s 31 us, vectors 5 us), 419.4 us over the plane; plus
    the 1 us launch."""
    d = _stack(tmp_path, "memory hbm, 100 GB, bandwidth = 1 TB/s;", ADDS)
    moved = 3 * 2 * 2**24
    for run, links in (("add3", 64), ("add2", 24)):
        rep = run_analytic(d.run(run))
        op = rep.ops[0]
        assert op.bound_by == "noc"
        assert op.time_s == pytest.approx(moved / (links * 10e9) + 1e-6, rel=1e-9)
        ev = run_event(d.run(run))
        assert ev.latency_s == pytest.approx(rep.latency_s, rel=0.02)


def test_a_cube_of_tiles_runs_summa_on_its_squarest_grid(tmp_path):
    """4 x 4 x 4 tiles, no off-chip memory: a 1024^3 fp16 product of two inputs is spread as
    SUMMA over the squarest logical grid of 64 tiles, 8 x 8 (each row of it a 2 x 4 sub-grid
    of the cube): a tile receives the 7/8 of its A panel (1024/8 x 1024) and of its B panel it
    does not hold: 2 x 128 x 1024 x 7/8 x 2 B = 458,752 B, over its 6 links of 10 GB/s (2 per
    dimension): 7.646 us. Compute: 2 x 1024^3 / (64 x 1000 x 2 x 1 GHz) = 16.8 us, so the
    product is compute-bound; the NoC time is checked on the plan."""
    from archc.codegen.lower import lower
    from archc.codegen.render import machine_view

    d = _stack(tmp_path, "", "run mm3 { model mm(1024, 1024, 1024); on cube3; precision fp16 }")
    run = d.run("mm3")
    task = lower(run).tasks[0]
    assert task.noc_bytes == pytest.approx(2 * 128 * 1024 * 7 / 8 * 2, rel=1e-12)
    view = machine_view(run.machine)
    assert "per tile: 6 links in" in view["noc_comment"]
    rep = run_analytic(run)
    assert rep.ops[0].bound_by == "compute"


def test_a_stacked_chip_refuses_a_spatial_layout(tmp_path):
    f = tmp_path / "s.arch"
    f.write_text(EASY_MACHINE + STACK.format(mem="", runs="") + "run sp { model mm(64, 64, 64); on cube3; strategy spatial; precision fp16 }\n")
    with pytest.raises(ArchcError) as e:
        check(f).run("sp")
    assert "a spatial run lays its regions out on a 2-D grid of tiles; the chip 'cube3' has a 4 x 4 x 4 grid" \
        in e.value.render()


# --- all-to-all over a torus or mesh: dimension-ordered routes --------------------------------

@pytest.mark.parametrize("system, load, hops, lat", [
    # torus: a line of 4 around a ring, every member sending a unit to every other the short
    # way (the one half-way round split): each link carries 1 (distance 1) + 2 x 1/2 (the tie)
    # = 2 units of D/4, D/2 in all: the bisection bound (a cut of the cube crosses 2 x 16 links
    # each way; 32 x 32 pairs x D/64 cross it one way: 16 D over 32 links). A unit crosses up
    # to 2 hops per dimension (6 latencies); on average (0 + 1 + 2 + 1) / 4 = 1 per dimension.
    ("cube", 0.5, 3.0, 6),
    # mesh: the middle link of a line of 4 carries 2 x 2 units of D/4 = D; up to 3 hops per
    # dimension (9 latencies), on average (0+1+2+3 + 1+0+1+2 + 2+1+0+1 + 3+2+1+0) / 16 = 1.25
    ("slab", 1.0, 3.75, 9),
])
def test_alltoall_on_the_grid_is_routed_dimension_by_dimension(tmp_path, monkeypatch, system, load, hops, lat):
    """An all-to-all of D = 2 MiB per chip over the 64 chips: the analytic level charges the
    most loaded link (load x D at 50 GB/s) and the latencies; the event level simulates every
    dimension-ordered segment as a flow over the grid's own links and lands on the same time."""
    from archc.runtime import event_level as el

    f = tmp_path / "a2a.arch"
    f.write_text(SYSTEMS + "model x(n) {\n  input a : [n, n]\n  return alltoall(a)\n}\n"
                 f"run r {{ model x(1024); on {system}; strategy data, chips = 64; precision fp16 }}\n")
    run = check(f).run("r")
    steps = C.decompose(C.Network.of(run.machine), Collective.ALLTOALL, 64, 1)
    assert [(s.pattern, s.data, s.hops, s.latencies) for s in steps] == [(C.Pattern.ROUTED, load, hops, lat)]
    D = 1024 * 1024 * 2
    a = run_analytic(run, __version__)
    assert a.ops[0].time_s == pytest.approx(load * D / B + lat * LAT + 1e-6 + 2 * D / 1e12, rel=1e-9)
    monkeypatch.setattr(el._Builder, "find_private", lambda self, keys: None)
    e = run_event(run, __version__)
    assert e.latency_s == pytest.approx(a.latency_s, rel=0.02)
