"""Analytic estimates of every sample run, warm, in one process: milliseconds per estimate
(check the file with the run's parameters, lower, the kernel's analysis, compose, report) with
the kernels already built, against a baseline measured in the same process (a 256 x 256
float64 matrix product in NumPy, repeated 100 times), printed as times and ratios.
Usage: python benchmarks/estimates.py [SAMPLE ...]"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def median_s(fn, n: int = 5) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> int:
    from archc import __version__
    from archc.api import check
    from archc.runtime.pipeline import run_analytic

    files = [Path(a) for a in sys.argv[1:]] or sorted((ROOT / "samples").glob("*.arch"))
    a = np.random.default_rng(0).standard_normal((256, 256))

    def baseline():
        for _ in range(100):
            a @ a
    rows = []
    for f in files:
        for name in [n for n, _ in check(f).runs]:
            def estimate(f=f, name=name):
                run_analytic(check(f, {}, name).run(name), __version__)
            estimate()  # builds (or loads) the kernel: the timings below are warm
            base = median_s(baseline)
            t = median_s(estimate)
            rows.append((f.name, name, t, base))
            print(f"{f.name:12s} {name:16s} {t * 1e3:8.1f} ms   {t / base:6.1f}x baseline ({base * 1e3:.1f} ms)",
                  flush=True)
    worst = max(rows, key=lambda r: r[2])
    print(f"{len(rows)} runs: median {statistics.median(r[2] for r in rows) * 1e3:.1f} ms, "
          f"max {worst[2] * 1e3:.1f} ms ({worst[0]} {worst[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
