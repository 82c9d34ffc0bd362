"""Quantize throughput of archc's generated format kernels, as ratios against baselines run
in the same process: ml_dtypes' astype from float32 (bf16, fp8 E4M3) and softposit element by
element (posit16). Usage: python benchmarks/formats.py [N]"""
from __future__ import annotations

import sys
import time

import numpy as np


def best(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    import ml_dtypes
    import softposit
    import archc.formats as F
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal(n) * 8
    x32 = x64.astype(np.float32)
    print(f"quantize {n:,} values (best of 5)")
    for name, dt in (("bf16", ml_dtypes.bfloat16), ("fp8_e4m3", ml_dtypes.float8_e4m3fn)):
        f = F.get(name)
        f.quantize(x64[:10])  # build outside the timing
        ours = best(lambda: f.quantize(x64))
        base = best(lambda: x32.astype(dt))
        ours32 = best(lambda: f.quantize32(x32))
        if name == "bf16":  # the same output as astype: 16-bit codes
            enc = best(lambda: f.encode32(x32))
            print(f"  {name:9s} ml_dtypes astype from float32 {n / base / 1e6:8.1f} M/s; archc encode32 (float32 in, "
                  f"bf16 codes out, as astype) {n / enc / 1e6:8.1f} M/s, ratio {base / enc:.2f}x")
        print(f"  {name:9s} ml_dtypes astype from float32 {n / base / 1e6:8.1f} M/s; archc quantize (float64 "
              f"in and out) {n / ours / 1e6:8.1f} M/s, ratio {base / ours:.2f}x; archc quantize32 (float32 in "
              f"and out) {n / ours32 / 1e6:8.1f} M/s, ratio {base / ours32:.2f}x")
    m = 20_000
    f = F.get("posit16")
    ours = best(lambda: f.quantize(x64))
    base = best(lambda: [softposit.posit_2(float(v), 16) for v in x64[:m]], repeat=3) * n / m
    print(f"  posit16   archc {n / ours / 1e6:8.1f} M/s; softposit element by element "
          f"{n / base / 1e6:8.3f} M/s; ratio {base / ours:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
