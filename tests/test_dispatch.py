"""Host dispatch per op (`dispatch` in a run), against hand calculations on the easy machine
(conftest.EASY_MACHINE: 1 us device launch per op, HBM 1 TB/s).

The host issues ops ahead of the device: an op takes the longer of its device time (launch
included) and the host's dispatch of it. `dispatch eager` is a framework's eager dispatch,
3.57 us per op (PyTorch: 280,000 tiny ops a second, Horace He, "Making Deep Learning Go Brrrr
From First Principles", 2022); `dispatch graph` (the default) a captured graph or compiled
program, whose per-op host cost is ~1 ns (NVIDIA, "Constant Time Launch for Straight-Line CUDA
Graphs": 2.5 us + ~1 ns per node), taken as none."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.dsl.diagnostics import ArchcError
from archc.runtime.pipeline import run_analytic, run_event
from conftest import EASY_MACHINE

pytestmark = pytest.mark.build


def _run(tmp_path, n, dispatch=""):
    f = tmp_path / "d.arch"
    f.write_text(EASY_MACHINE + f"run r {{ model vadd({n}); on c; precision fp16; {dispatch} }}")
    run = check(f).run("r")
    return run_analytic(run, __version__), run_event(run, __version__)


def test_a_small_op_waits_for_eager_dispatch(tmp_path):
    # 1,000 fp16 adds: 6 kB at 1 TB/s = 6 ns + the 1 us launch on the device; eager dispatch
    # takes 1 / 280,000 s = 3.57 us on the host: the op takes 3.57 us, bound by overhead
    for a in _run(tmp_path, 1000, "dispatch eager"):
        assert a.latency_s == pytest.approx(1 / 280_000, rel=1e-12)
        assert a.ops[0].bound_by == "overhead"
    for a in _run(tmp_path, 1000):  # the default: a captured graph
        assert a.latency_s == pytest.approx(1e-6 + 6e-9, rel=1e-12)


def test_a_large_op_hides_dispatch(tmp_path):
    # 10M adds: 60 MB at 1 TB/s = 60 us + 1 us: the host is far ahead
    for a in _run(tmp_path, 10_000_000, "dispatch eager"):
        assert a.latency_s == pytest.approx(61e-6, rel=1e-12)


def test_a_declared_dispatch_time(tmp_path):
    for a in _run(tmp_path, 1000, "dispatch 10 us"):
        assert a.latency_s == pytest.approx(10e-6, rel=1e-12)
    assert _run(tmp_path, 1000, "dispatch 10 us")[0].mapping["dispatch_s"] == pytest.approx(10e-6)


def test_dispatch_mistakes_are_reported(tmp_path):
    f = tmp_path / "d.arch"
    f.write_text(EASY_MACHINE + "run r { model vadd(10); on c; precision fp16; dispatch eagre }")
    with pytest.raises(ArchcError) as e:
        check(f)
    assert "the dispatch must be eager, graph or a time per op; found 'eagre'; did you mean 'eager'?" \
        in e.value.render()
