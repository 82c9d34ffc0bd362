"""The report shows communication: the bytes each chip sends over the links for every
collective and transfer, their time and energy, per op row and per collective kind and level,
the same in the text, the JSON and the CSV; figures computed by hand.

conftest's EASY_MACHINE, its 4-chip switch (100 GB/s per chip and direction, 1 us per step)
given a link energy of 10 pJ/B."""
from __future__ import annotations

import csv
import io
import json

import pytest

from archc import __version__
from archc.api import check
from archc.runtime.pipeline import run_analytic, run_event
from conftest import EASY_MACHINE, SAMPLES

pytestmark = pytest.mark.build

NETWORK = "network switch, bandwidth = 100 GB/s, latency = 1 us"
MACHINE = EASY_MACHINE.replace(NETWORK, NETWORK + ", energy = 10 pJ/B")
B, LAT, E_LINK = 100e9, 1e-6, 10e-12


def _design(tmp_path, body: str, machine: str = MACHINE):
    f = tmp_path / "m.arch"
    f.write_text(machine + body)
    return check(f).run("r")


def test_data_parallel_gradient_all_reduce_by_hand(tmp_path):
    # 2 layers of 1024 x 1024 weights, data parallel over p = 4 chips: the fp32 gradients
    # (mixed precision keeps 4 B per parameter) are all-reduced in a ring, each chip sending
    # 2(p-1)/p of them: 1.5 x 8,388,608 = 12,582,912 B, in 12,582,912 / 100 GB/s + 2(p-1)
    # latencies = 125.83 us + 6 us, for 12,582,912 B x 10 pJ/B = 125.83 uJ per chip
    run = _design(tmp_path, """run r { model stack(8, 1024, 2); on node; mode train
      strategy data, chips = 4, micro_batch = 8; precision fp16 }""")
    rep = run_analytic(run, __version__)
    grads = 1024 * 1024 * 2 * 4
    sent = 2 * 3 / 4 * grads
    assert sent == 12_582_912
    (c,) = rep.communication
    assert c == {"collective": "all-reduce", "level": "node", "network": "switch", "bytes": sent,
                 "time_s": pytest.approx(sent / B + 6 * LAT, rel=1e-12),
                 "energy_j": pytest.approx(sent * E_LINK, rel=1e-12), "energy_declared": True,
                 "ops": ["gradient all-reduce"]}
    row = {r.name: r for r in rep.ops}["gradient all-reduce"]
    assert row.comm_bytes == grads and row.link_bytes == sent and row.bytes == 0
    assert row.energy_j == pytest.approx(sent * E_LINK, rel=1e-12)  # the links' energy, nothing else
    assert sum(r.link_bytes for r in rep.ops) == sent  # no other op communicates
    # the text shows what the JSON holds
    text = rep.to_text()
    # (the row's time adds the exchange's 1 us launch: 132.83 us)
    assert ("  gradient all-reduce    gradient exchange     133 us  52.2%          0        0 B    12.6 MB link"
            "         126 uJ\n") in text, text
    assert ("  communication per chip per step (bytes each chip sends; link time uncontended):\n"
            "    all-reduce  node (switch)    12.6 MB    132 us  126 uJ  (gradient all-reduce)\n") in text, text
    d = json.loads(rep.to_json())
    op = next(o for o in d["ops"] if o["name"] == "gradient all-reduce")
    assert op["link_bytes"] == sent and op["energy_j"] == pytest.approx(sent * E_LINK, rel=1e-12)
    assert d["communication"][0]["bytes"] == sent and d["communication"][0]["ops"] == ["gradient all-reduce"]
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(rep.to_csv()))}
    assert float(rows["gradient all-reduce"]["link_bytes"]) == pytest.approx(sent, rel=5e-6)  # 6 digits
    # the event level reports the same bytes (it simulates the steps; the summary charges them uncontended)
    ev = run_event(run, __version__)
    assert ev.communication == rep.communication


def test_pipeline_transfers_by_hand(tmp_path):
    # 2 stages, 4 micro-batches of 8 rows of 1024 fp16 activations (16,384 B) per step, inference:
    # each stage boundary passes one micro-batch's activations once: 4 x 16,384 = 65,536 B per
    # chip, each transfer 16,384 / 100 GB/s + 1 latency
    run = _design(tmp_path, """run r { model stack(8, 1024, 4); on node
      strategy parallel, pp = 2, micro_batch = 8, global_batch = 32; precision fp16 }""")
    rep = run_analytic(run, __version__)
    (c,) = rep.communication
    assert (c["collective"], c["level"], c["ops"]) == ("send/recv", "node", ["pipeline send/recv"])
    assert c["bytes"] == 4 * 8 * 1024 * 2
    assert c["time_s"] == pytest.approx(4 * (8 * 1024 * 2 / B + LAT), rel=1e-12)
    assert c["energy_j"] == pytest.approx(4 * 8 * 1024 * 2 * E_LINK, rel=1e-12)
    row = {r.name: r for r in rep.ops}["pipeline send/recv"]
    assert row.link_bytes == c["bytes"] and row.energy_j == pytest.approx(c["energy_j"], rel=1e-12)
    assert "    send/recv  node (switch)    65.5 kB   4.66 us  655 nJ  (pipeline send/recv)\n" in rep.to_text()


def test_a_network_without_link_energy_says_so(tmp_path):
    run = _design(tmp_path, """run r { model stack(8, 1024, 2); on node; mode train
      strategy data, chips = 4, micro_batch = 8; precision fp16 }""", EASY_MACHINE)
    rep = run_analytic(run, __version__)
    (c,) = rep.communication
    assert c["energy_j"] == 0.0 and c["energy_declared"] is False and c["bytes"] == 12_582_912
    assert "    all-reduce  node (switch)    12.6 MB    132 us  0 J (no link energy declared)  (gradient all-reduce)\n" \
        in rep.to_text()


def test_a_single_chip_run_shows_no_communication(tmp_path):
    rep = run_analytic(_design(tmp_path, "run r { model vadd(1000); on c; precision fp16 }"), __version__)
    assert rep.communication == () and "communication" not in rep.to_text()
    assert all(r.link_bytes == 0 for r in rep.ops)


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.arch")), ids=lambda p: p.stem)
def test_the_summary_splits_what_the_analytic_level_charges(sample):
    # per level, the collectives' time and energy add up to what the kernel charges each task
    # (Comm.seconds, Comm.joules), for every collective of every sample run
    from archc.codegen.collectives import Network, by_level
    from archc.codegen.lower import lower
    for _, run in check(sample).runs:
        plan = lower(run)
        net = Network.of(run.machine)
        for t in plan.tasks:
            if t.comm is None or not t.comm.steps:
                continue
            levels = by_level(net, t.comm.steps, t.comm.nbytes)
            assert sum(x[1] for x in levels.values()) == pytest.approx(t.comm.seconds, rel=1e-12, abs=0)
            assert sum(x[2] for x in levels.values()) == pytest.approx(t.comm.joules, rel=1e-12, abs=1e-300)
            assert all(x[0] > 0 for x in levels.values())


def test_a_routed_all_to_all_by_hand(tmp_path):
    # an all-to-all of D = 2 MiB per chip over a 4 x 4 x 4 torus of 64 chips (50 GB/s per link
    # and direction, 1 us, 10 pJ/B per hop): each chip sends all but its own 1/64, 63/64 D, in
    # the most loaded link's time, D/2 at 50 GB/s, plus 6 latencies (tests/test_torus.py); a
    # byte crosses 3 hops on average (1 per dimension), each costing the link's 10 pJ/B
    machine = EASY_MACHINE + ("system cube { grid 4 x 4 x 4 of c; network torus, link = 50 GB/s, latency = 1 us, "
                              "energy = 10 pJ/B }\nmodel x(n) {\n  input a : [n, n]\n  return alltoall(a)\n}\n")
    run = _design(tmp_path, "run r { model x(1024); on cube; strategy data, chips = 64; precision fp16 }", machine)
    rep = run_analytic(run, __version__)
    D = 1024 * 1024 * 2
    (c,) = rep.communication
    assert (c["collective"], c["level"], c["network"]) == ("all-to-all", "cube", "torus")
    assert c["bytes"] == pytest.approx(63 / 64 * D, rel=1e-12)
    assert c["time_s"] == pytest.approx(0.5 * D / 50e9 + 6e-6, rel=1e-12)
    assert c["energy_j"] == pytest.approx(3 * D * E_LINK, rel=1e-12)
    assert rep.ops[0].link_bytes == c["bytes"]
