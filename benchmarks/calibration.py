"""Calibration: every measured result in calibration.json against archc's estimate.

Runs each entry's sample and run with its parameters (the `archc` field of the entry) and
prints measured vs estimated, the signed error, then the mean and max absolute error.
Usage: python benchmarks/calibration.py [--level analytic] [--json]"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measured_value(entry: dict) -> float:
    v = entry["value"]
    if isinstance(v, dict):  # e.g. {"mixed_precision": 580}
        (v,) = v.values()
    return float(v)


def estimate(entry: dict, level: str) -> tuple[float, dict]:
    from archc import __version__
    from archc.api import check
    from archc.runtime.execute import run_analytic
    spec = entry["archc"]
    design = check(ROOT / "samples" / spec["sample"], {k: str(v) for k, v in spec["set"].items()}, spec["run"])
    report = run_analytic(design.run(spec["run"]), __version__)
    d = report.to_dict()
    value = d[spec["metric"]]["value"] if spec["metric"] == "throughput" else d[spec["metric"]]
    return value * spec["scale"], d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="analytic", choices=["analytic"])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    data = json.loads((HERE / "calibration.json").read_text())
    rows = []
    for e in data["measurements"]:
        est, rep = estimate(e, args.level)
        meas = measured_value(e)
        w = e["workload"]
        label = w.get("model") or w["kind"]
        if "params_billion" in w:
            label = f"GPT {w['params_billion']}B ({w['gpus']} GPUs)"
        elif w["kind"] == "gemm":
            label = f"GEMM {w['M']}x{w['N']}x{w['K']}"
        elif "seq_len" in w:
            label = f"BERT-Large seq {w['seq_len']}"
        rows.append(dict(machine=e["machine"], workload=label, metric=e["metric"], unit=e["unit"],
                         measured=meas, estimated=est, error=(est - meas) / meas,
                         bottleneck=rep["bottleneck"]))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'machine':<16} {'workload':<28} {'measured':>10} {'archc':>10} {'error':>8}  unit / bottleneck")
    for r in rows:
        print(f"{r['machine']:<16} {r['workload']:<28} {r['measured']:>10.4g} {r['estimated']:>10.4g} "
              f"{r['error'] * 100:>+7.1f}%  {r['unit']} / {r['bottleneck']}")
    errs = [abs(r["error"]) for r in rows]
    print(f"\n{len(rows)} entries ({args.level} level): mean absolute error {sum(errs) / len(errs) * 100:.1f}%, "
          f"max {max(errs) * 100:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
