"""Calibration: every measured result in calibration.json against archc's estimate.

Runs each entry's sample and run with its parameters (the `archc` field of the entry) and
prints measured vs estimated, the signed error, then the mean and max absolute error.
Usage: python benchmarks/calibration.py [--level analytic|event|both] [--only INDEX[,INDEX...]] [--json]

--level event simulates each run's task graph (runtime/event_level.py) and also prints each
entry's wall time (checking, lowering, the analytic pass, graph building and simulation; the
kernels are compiled, or loaded from the cache, before the clock starts) and its event graph size (tasks,
events); --level both prints the analytic and event estimates side by side. An entry whose run is
known not to match the measured workload carries a `caveat` in its `archc` field, printed under
the table."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measured_value(entry: dict) -> float:
    v = entry["value"]
    if isinstance(v, dict):  # e.g. {"mixed_precision": 580}
        (v,) = v.values()
    return float(v)


def _value(d: dict, spec: dict) -> float:
    value = d[spec["metric"]]["value"] if spec["metric"] == "throughput" else d[spec["metric"]]
    return value * spec["scale"]


def _design_run(entry: dict):
    from archc.api import check
    spec = entry["archc"]
    design = check(ROOT / "samples" / spec["sample"], {k: str(v) for k, v in spec["set"].items()}, spec["run"])
    return design.run(spec["run"])


def estimate(entry: dict, level: str) -> tuple[float, dict]:
    from archc import __version__
    from archc.runtime.pipeline import run_analytic
    spec = entry["archc"]
    report = run_analytic(_design_run(entry), __version__)
    d = report.to_dict()
    return _value(d, spec), d


def estimate_event(entry: dict) -> tuple[float, dict, dict]:
    """The event-level estimate, its report, and what the simulation took: wall seconds (the
    whole call: checking, lowering, the analytic pass for per-op times, graph building and
    simulation; not kernel compilation), event graph tasks, links, events and the simulation kernel's seconds."""
    from archc import __version__
    from archc.runtime import events as ev
    from archc.runtime.pipeline import run_event
    spec = entry["archc"]
    info: dict = {}
    orig = ev.simulate

    def counting(graph, **kw):  # observe the graph and the kernel's stats; the result is unchanged
        g = graph.finalize() if isinstance(graph, ev.TaskGraph) else graph
        t = time.perf_counter()
        info["build_s"] = t - t0
        r = orig(g, **kw)
        info.update(tasks=int(g.n_tasks), links=int(g.n_links), events=int(r.stats.get("events", 0)),
                    sim_s=time.perf_counter() - t, kernel_s=float(r.stats.get("seconds", 0.0)))
        return r

    from archc.runtime.execute import build_kernel
    run = _design_run(entry)
    build_kernel(run.machine, __version__)  # compiled (once per machine, cached) outside the timing
    ev.kernel()
    t0 = time.perf_counter()
    ev.simulate = counting
    try:
        report = run_event(_design_run(entry), __version__)
    finally:
        ev.simulate = orig
    info["wall_s"] = time.perf_counter() - t0
    d = report.to_dict()
    return _value(d, spec), d, info


def label_of(e: dict) -> str:
    w = e["workload"]
    label = w.get("model") or w["kind"]
    if "params_billion" in w:
        label = f"GPT {w['params_billion']}B ({w['gpus']} GPUs)"
    elif w["kind"] == "gemm":
        label = f"GEMM {w['M']}x{w['N']}x{w['K']}"
    elif "seq_len" in w:
        label = f"BERT-Large seq {w['seq_len']}"
    return label


def _indices(only: str | None, n: int) -> list[int]:
    if not only:
        return list(range(n))
    out = []
    for part in only.split(","):
        i = int(part)
        if not -n <= i < n:
            raise SystemExit(f"--only {i}: there are {n} entries (0..{n - 1})")
        out.append(i % n)
    return out


def _summary(rows, key, level) -> str:
    errs = [abs(r[key]) for r in rows]
    return (f"{len(rows)} entries ({level} level): mean absolute error {sum(errs) / len(errs) * 100:.1f}%, "
            f"max {max(errs) * 100:.1f}%")


def _print_caveats(entries, idx) -> None:
    """The entries whose run is known not to match the measured workload, and why."""
    lines = [f"  [{i}] {entries[i]['archc']['caveat']}" for i in idx if entries[i]["archc"].get("caveat")]
    if lines:
        print("caveats (the error of these entries is not like for like):\n" + "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="analytic", choices=["analytic", "event", "both"])
    ap.add_argument("--only", metavar="INDEX[,INDEX...]",
                    help="only these entries (0-based indices into calibration.json's measurements)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    data = json.loads((HERE / "calibration.json").read_text())
    entries = data["measurements"]
    idx = _indices(args.only, len(entries))
    do_an = args.level in ("analytic", "both")
    do_ev = args.level in ("event", "both")
    rows = []
    stream = args.level != "analytic" and not args.json  # event rows print as they finish (slow)
    if stream:
        if args.level == "event":
            print(f"{'#':>2} {'machine':<16} {'workload':<28} {'measured':>10} {'event':>10} {'error':>8} "
                  f"{'wall s':>8} {'tasks':>9} {'events':>10}  unit / bottleneck", flush=True)
        else:
            print(f"{'#':>2} {'machine':<16} {'workload':<28} {'measured':>10} {'analytic':>10} {'error':>8} "
                  f"{'event':>10} {'error':>8} {'wall s':>8} {'tasks':>9}  unit / bottleneck (event)", flush=True)
    for i in idx:
        e = entries[i]
        meas = measured_value(e)
        row = dict(index=i, machine=e["machine"], workload=label_of(e), metric=e["metric"], unit=e["unit"],
                   measured=meas, caveat=e["archc"].get("caveat"))
        if do_an:
            est, rep = estimate(e, "analytic")
            row.update(estimated=est, error=(est - meas) / meas, bottleneck=rep["bottleneck"])
        if do_ev:
            t0 = time.perf_counter()
            try:
                est_ev, rep_ev, info = estimate_event(e)
            except Exception as exc:  # e.g. the event graph exceeds event_level.MAX_TASKS
                row.update(event=None, event_error=None, event_bottleneck=None, failed=str(exc).strip(),
                           wall_s=time.perf_counter() - t0, tasks=None, events=None)
            else:
                row.update(event=est_ev, event_error=(est_ev - meas) / meas,
                           event_bottleneck=rep_ev["bottleneck"], **info)
        if args.level == "analytic":
            row = {k: row[k] for k in ("machine", "workload", "metric", "unit", "measured", "estimated",
                                       "error", "bottleneck", "caveat")}
        rows.append(row)
        if stream and row.get("failed"):
            r = row
            an = (f"{r['estimated']:>10.4g} {r['error'] * 100:>+7.1f}% " if args.level == "both" else "")
            print(f"{i:>2} {r['machine']:<16} {r['workload']:<28} {r['measured']:>10.4g} {an}"
                  f"{'failed':>10} {'':>8} {r['wall_s']:>8.2f}  {r['failed']}", flush=True)
        elif stream:
            r = row
            if args.level == "event":
                print(f"{i:>2} {r['machine']:<16} {r['workload']:<28} {r['measured']:>10.4g} {r['event']:>10.4g} "
                      f"{r['event_error'] * 100:>+7.1f}% {r['wall_s']:>8.2f} {r['tasks']:>9,} {r['events']:>10,}  "
                      f"{r['unit']} / {r['event_bottleneck']}", flush=True)
            else:
                print(f"{i:>2} {r['machine']:<16} {r['workload']:<28} {r['measured']:>10.4g} {r['estimated']:>10.4g} "
                      f"{r['error'] * 100:>+7.1f}% {r['event']:>10.4g} {r['event_error'] * 100:>+7.1f}% "
                      f"{r['wall_s']:>8.2f} {r['tasks']:>9,}  {r['unit']} / {r['event_bottleneck']}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if args.level == "analytic":
        print(f"{'machine':<16} {'workload':<28} {'measured':>10} {'archc':>10} {'error':>8}  unit / bottleneck")
        for r in rows:
            print(f"{r['machine']:<16} {r['workload']:<28} {r['measured']:>10.4g} {r['estimated']:>10.4g} "
                  f"{r['error'] * 100:>+7.1f}%  {r['unit']} / {r['bottleneck']}")
        print("\n" + _summary(rows, "error", "analytic"))
        _print_caveats(entries, idx)
        return 0
    print()
    if do_an:
        print(_summary(rows, "error", "analytic"))
    done = [r for r in rows if not r.get("failed")]
    failed = [r for r in rows if r.get("failed")]
    if done:
        print(_summary(done, "event_error", "event")
              + (f" (entries that failed at the event level: {', '.join(str(r['index']) for r in failed)})"
                 if failed else ""))
    else:
        print(f"0 entries (event level): all {len(rows)} failed")
    slow = [r for r in rows if r["wall_s"] > 60]
    print(f"event level wall time: total {sum(r['wall_s'] for r in rows):.1f} s, "
          f"max {max(r['wall_s'] for r in rows):.1f} s (entry {max(rows, key=lambda r: r['wall_s'])['index']})"
          + (f"; over 60 s: {', '.join(str(r['index']) for r in slow)}" if slow else ""))
    _print_caveats(entries, idx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
