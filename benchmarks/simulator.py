"""Speed of archc's event level on real runs, and a comparison with ZigZag on ResNet-18.

Cases (each in its own process, so its peak memory is its own: resource.getrusage ru_maxrss):
  gpt   samples/h100.arch gpt_train, --set layers=1,2,4, on one DGX H100 (8 GPUs): dp=8 (tp=1)
        and tp=8 (dp=1), pp=1, the sample's other defaults (global batch 512, micro-batch 4).
  wafer samples/wse2.arch llm_decode --set layers=1 hidden=12288 heads=96 (spatial) and
        gpt_train --set layers=1 (weight streaming), the full 757 x 996 fabric at tile granularity.
For each: event graph tasks and events, wall time of the whole run_event call (lowering, the
analytic pass for per-op times, graph building, simulation), the simulation kernel's time,
events per second (events / kernel seconds), wall time per simulated model layer, peak memory.

ZigZag: if `zigzag` does not import, `pip install zigzag-dse` is tried (into this Python); if that
fails the comparison is skipped with a line saying why. Otherwise ZigZag (its API,
get_hardware_performance_zigzag, latency-optimised LOMA search) runs on the ResNet-18 ONNX and the
TPU-like accelerator and mapping that ship in its package (zigzag/inputs), and archc's analytic
and event levels run on ResNet-18 (basic blocks of two 3x3 convs, defined in a temporary .arch
file) on a single TPU-like chip approximating that example: a 32 x 32 int8 MAC array at 1 GHz, a
2 MB SRAM at 256 B/cycle and DRAM at 8 B/cycle. Each tool's call is timed in its own process
(archc: after one warm-up call, so the kernel build is excluded; the cold figure is printed too),
and as whole processes (ZigZag's child process; `archc run` at the shell with its kernel cached),
each side saying what it computed: ZigZag searches mappings per layer, archc costs one mapping.

Usage: python benchmarks/simulator.py [--quick] [--no-zigzag | --zigzag-only] [--zigzag-timeout S]
  --quick: gpt layers=1 dp=8 only (the wafer case builds a tile-granular graph of millions of
           tasks whatever the model size: ~15 s); ZigZag is not installed or run (a line says so).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RESNET18_ARCH = """\
// A TPU-like single core approximating ZigZag's tpu_like example (zigzag/inputs/hardware/
// tpu_like.yaml): a 32 x 32 MAC array at 1 GHz, a 2 MB SRAM (2048 bit/cycle), DRAM at 64 bit/cycle.
import std.formats
import std.blocks

tile tpu_core {
  clock 1 GHz
  sram 2 MiB, bandwidth = 256 B/cycle, latency = 1 cycles, energy = 0.05 pJ/B
  matrix int8 x int8 -> int32 : 1024 mac/cycle, energy = 0.04 pJ
  matrix fp16 x fp16 -> fp32 : 1024 mac/cycle, energy = 0.04 pJ
  vector fp32 : 32 lanes, energy = 1 pJ
}

chip tpu_like {
  tiles 1 of tpu_core
  noc crossbar, bandwidth = 256 GB/s, latency = 1 ns
  memory dram, 1 GB, bandwidth = 8 GB/s, energy = 90 pJ/B
}

// ResNet-18 basic block: two 3x3 convs, a projection shortcut when the shape changes.
block basic(x, out, stride = 1) {
  h = relu(batchnorm(conv2d(x, out, kernel = 3, stride = stride, padding = 1)))
  h = batchnorm(conv2d(h, out, kernel = 3, padding = 1))
  s = x
  if stride != 1 or dim(x, 1) != out {
    s = batchnorm(conv2d(x, out, kernel = 1, stride = stride))
  }
  return relu(h + s)
}

model resnet18(batch, classes = 1000, image = 224) {
  input images : [batch, 3, image, image]
  x = relu(batchnorm(conv2d(images, 64, kernel = 7, stride = 2, padding = 3)))
  x = maxpool(x, kernel = 3, stride = 2, padding = 1)
  x = basic(x, 64)
  x = basic(x, 64)
  x = basic(x, 128, stride = 2)
  x = basic(x, 128)
  x = basic(x, 256, stride = 2)
  x = basic(x, 256)
  x = basic(x, 512, stride = 2)
  x = basic(x, 512)
  x = global_avgpool(x)
  return linear(x, classes)
}

run resnet18_infer(batch = 1, dtype = int8) {
  model resnet18(batch)
  on tpu_like
  precision dtype
  throughput batch, "images/s"
}
"""


# ---- child side ---------------------------------------------------------------------------

def _load(arch: str, run: str, sets: dict):
    from archc.api import check
    design = check(Path(arch), {k: str(v) for k, v in sets.items()}, run)
    return design.run(run)


def child_event(arch: str, run: str, sets: dict) -> dict:
    """One run at the event level: sizes, times, peak memory."""
    from archc import __version__
    from archc.runtime import events as ev
    from archc.runtime.pipeline import run_event
    info: dict = {}
    orig = ev.simulate

    def counting(graph, **kw):
        g = graph.finalize() if isinstance(graph, ev.TaskGraph) else graph
        t = time.perf_counter()
        r = orig(g, **kw)
        info.update(tasks=int(g.n_tasks), links=int(g.n_links), resources=int(g.n_resources),
                    flows=int((g.kind == 1).sum()) if hasattr(g, "kind") else None,
                    events=int(r.stats.get("events", 0)), kernel_s=float(r.stats.get("seconds", 0.0)),
                    sim_s=time.perf_counter() - t)
        return r

    r0 = _load(arch, run, sets)
    from archc.runtime.execute import build_kernel
    build_kernel(r0.machine, __version__)  # kernel build (cached) outside the timed call
    ev.kernel()                           # the event kernel too
    ev.simulate = counting
    t0 = time.perf_counter()
    rep = run_event(_load(arch, run, sets), __version__)
    info["wall_s"] = time.perf_counter() - t0
    ev.simulate = orig
    d = rep.to_dict()
    info["latency_s"] = d.get("latency_s", d.get("latency"))
    info["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info


def child_archc_level(arch: str, run: str, level: str) -> dict:
    from archc import __version__
    from archc.runtime.pipeline import run_analytic, run_event
    f = run_analytic if level == "analytic" else run_event
    t0 = time.perf_counter()
    f(_load(arch, run, {}), __version__)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = f(_load(arch, run, {}), __version__)
    warm = time.perf_counter() - t0
    d = rep.to_dict()
    return dict(cold_s=cold, wall_s=warm, latency_s=d.get("latency_s"), ops=len(rep.ops),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child_zigzag(out_dir: str) -> dict:
    import logging

    import zigzag
    from zigzag.api import get_hardware_performance_zigzag
    logging.disable(logging.INFO)
    d = Path(zigzag.__file__).parent / "inputs"
    t0 = time.perf_counter()
    energy, latency, _ = get_hardware_performance_zigzag(
        workload=str(d / "workload" / "resnet18.onnx"), accelerator=str(d / "hardware" / "tpu_like.yaml"),
        mapping=str(d / "mapping" / "tpu_like.yaml"), opt="latency", dump_folder=out_dir,
        loma_show_progress_bar=False)
    wall = time.perf_counter() - t0
    try:  # one (cost model evaluation, extra) pair per layer ZigZag costed, each after its own LOMA search
        layers = len(_[0][1])
    except (TypeError, IndexError):
        layers = None
    return dict(wall_s=wall, latency_cycles=float(latency), energy_pj=float(energy), layers=layers,
                version=getattr(zigzag, "__version__", None),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


# ---- parent side --------------------------------------------------------------------------

def in_child(kind: str, *args, timeout: float | None = None) -> dict:
    """The child's result, with `process_s`: the child process's whole wall time (interpreter
    start, imports, the call), measured here."""
    cmd = [sys.executable, __file__, "--child", json.dumps([kind, *args])]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    took = time.perf_counter() - t0
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        return dict(error=lines[-1] if lines else f"exit {p.returncode}")
    return {**json.loads(p.stdout.strip().splitlines()[-1]), "process_s": took}


def archc_process_s(arch: str, run: str, level: str, repeat: int = 3) -> float:
    """Median wall time of the whole command `archc run ARCH --run RUN --level LEVEL` (kernels
    already in the cache): what a user waits for at the shell."""
    import statistics
    cmd = [sys.executable, "-m", "archc", "run", arch, "--run", run, "--level", level]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=tempfile.gettempdir())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def event_cases(quick: bool):
    h100 = str(ROOT / "samples" / "h100.arch")
    wse2 = str(ROOT / "samples" / "wse2.arch")
    cases = []
    for layers in ((1,) if quick else (1, 2, 4)):
        for name, m in (("dp=8", dict(dp=8, tp=1, pp=1)), ("tp=8", dict(tp=8, dp=1, pp=1))):
            if quick and name == "tp=8":
                continue
            cases.append((f"h100 gpt_train layers={layers} {name}", h100, "gpt_train", dict(layers=layers, **m), layers))
    if quick:  # the wafer's graph is tile-granular: millions of tasks whatever the model size
        return cases
    wafer = dict(layers=1, hidden=12288, heads=96)
    cases.append(("wse2 llm_decode " + " ".join(f"{k}={v}" for k, v in wafer.items()), wse2, "llm_decode", wafer, 1))
    cases.append(("wse2 gpt_train layers=1 (weight streaming)", wse2, "gpt_train", dict(layers=1), 1))
    return cases


def zigzag_available(allow_install: bool) -> tuple[bool, str]:
    probe = subprocess.run([sys.executable, "-c", "import zigzag.api"], capture_output=True, text=True)
    if probe.returncode == 0:
        return True, ""
    why = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    if not allow_install:
        return False, f"zigzag does not import ({why}); not installing in --quick mode"
    try:
        # six: zigzag-dse 3.9.1 imports it without declaring it
        p = subprocess.run([sys.executable, "-m", "pip", "install", "zigzag-dse", "six"], capture_output=True,
                           text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return False, "pip install zigzag-dse timed out"
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        return False, lines[-1] if lines else f"pip exit {p.returncode}"
    probe = subprocess.run([sys.executable, "-c", "import zigzag.api"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, "installed but does not import: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return True, ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cases only, no ZigZag")
    ap.add_argument("--no-zigzag", action="store_true", help="skip the ZigZag comparison")
    ap.add_argument("--zigzag-only", action="store_true", help="only the ZigZag comparison")
    ap.add_argument("--zigzag-timeout", type=float, default=900.0)
    ap.add_argument("--timeout", type=float, default=600.0, help="per event-level case (s)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = json.loads(args.child)
        fn = {"event": child_event, "level": child_archc_level, "zigzag": child_zigzag}[kind]
        print(json.dumps(fn(*rest)))
        return 0

    if not args.zigzag_only:
        event_table(args)
    print()
    if args.quick or args.no_zigzag:
        print("ZigZag comparison skipped: " + ("--quick mode" if args.quick else "--no-zigzag"))
        return 0
    return zigzag_comparison(args)


def event_table(args) -> None:
    print("archc event level on real runs (each case in its own process; wall = the run_event call, "
          "kernel = the event simulation alone)")
    print(f"{'case':<44} {'tasks':>10} {'events':>10} {'wall s':>8} {'kernel s':>9} {'M events/s':>10} "
          f"{'wall/layer':>10} {'peak MB':>8}")
    sizes: dict = {}
    for label, arch, run, sets, layers in event_cases(args.quick):
        r = in_child("event", arch, run, sets, timeout=args.timeout)
        if "error" in r:
            print(f"{label:<44} failed: {r['error']}", flush=True)
            continue
        key = (arch, run, tuple(sorted((k, v) for k, v in sets.items() if k != "layers")))
        sizes.setdefault(key, set()).add(r["tasks"])
        eps = r["events"] / r["kernel_s"] if r["kernel_s"] > 0 else float("inf")
        print(f"{label:<44} {r['tasks']:>10,} {r['events']:>10,} {r['wall_s']:>8.3f} {r['kernel_s']:>9.3f} "
              f"{eps / 1e6:>10.2f} {r['wall_s'] / layers * 1e3:>8.1f}ms {r['peak_mb']:>8.0f}", flush=True)
    if any(len(v) == 1 for v in sizes.values()) and len(event_cases(args.quick)) > 2:
        print("note: the same graph size for every layer count: a run's repeated layers lower to one task "
              "table row with a repeat count (one event task of count x the time), so wall/layer only "
              "divides a constant cost")


def zigzag_comparison(args) -> int:
    ok, why = zigzag_available(allow_install=True)
    if not ok:
        print(f"ZigZag comparison skipped: zigzag-dse is not installable here ({why})")
        return 0
    with tempfile.TemporaryDirectory(prefix="archc-r18-") as tmp:
        arch = os.path.join(tmp, "resnet18.arch")
        Path(arch).write_text(RESNET18_ARCH)
        z = in_child("zigzag", os.path.join(tmp, "zigzag-out"), timeout=args.zigzag_timeout)
        a = {lv: in_child("level", arch, "resnet18_infer", lv, timeout=600) for lv in ("analytic", "event")}
        for lv, r in a.items():
            if "error" not in r:
                r["command_s"] = archc_process_s(arch, "resnet18_infer", lv)
    print("ResNet-18 inference, batch 1, on a TPU-like core (32 x 32 MACs, 2 MB SRAM, DRAM)")
    if "error" in z:
        print(f"  ZigZag {'':<14} failed: {z['error']}")
    else:
        print(f"  ZigZag {z.get('version') or '':<14} call {z['wall_s']:8.2f} s, whole process {z['process_s']:.2f} s   "
              f"latency {z['latency_cycles']:.4g} cycles (= {z['latency_cycles'] / 1e9 * 1e3:.3f} ms at 1 GHz)   "
              f"peak {z['peak_mb']:.0f} MB")
        print(f"    computed: {z.get('layers') or '?'} layers costed (convolutions and the classifier; ZigZag folds "
              "pooling, batchnorm, additions), each with a LOMA search over temporal mappings (loop orders and "
              "memory allocations) for the lowest latency")
    for lv, r in a.items():
        if "error" in r:
            print(f"  archc {lv:<15} failed: {r['error']}")
            continue
        print(f"  archc {lv:<15} call {r['wall_s']:8.4f} s, whole command {r['command_s']:.2f} s "
              f"(first call {r['cold_s']:.2f} s, incl. kernel build)   latency {r['latency_s'] * 1e3:.3f} ms   "
              f"peak {r['peak_mb']:.0f} MB")
    what = {"analytic": "every op once: the file checked, lowered, a roofline per op (compute, SRAM, DRAM, "
                        "with the tiling's re-reads), the report",
            "event": "the same per-op times, then the task graph simulated on the chip's resources"}
    for lv, r in a.items():
        if "error" not in r:
            print(f"    archc {lv} computed: {r['ops']} ops; {what[lv]}; no mapping search")
    if "error" not in z:
        for lv, r in a.items():
            if "error" not in r:
                print(f"  ZigZag / archc {lv}: in-process {z['wall_s'] / r['wall_s']:,.0f}x, "
                      f"whole processes {z['process_s'] / r['command_s']:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
