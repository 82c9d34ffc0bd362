"""Speed of the command: a cold run (empty kernel cache), warm runs, and a baseline measured
in the same process (a Python interpreter importing numpy), printed as times and ratios.
Usage: python benchmarks/speed.py [SAMPLE] [RUN]"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    sample = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "samples" / "h100.arch")
    run = sys.argv[2] if len(sys.argv) > 2 else "gemm"
    cmd = [sys.executable, "-m", "archc", "run", sample, "--run", run]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, ARCHC_CACHE_DIR=cache)
        baseline = statistics.median(timed([sys.executable, "-c", "import numpy"], env) for _ in range(5))
        cold = timed(cmd, env)
        warm = statistics.median(timed(cmd, env) for _ in range(5))
        # a second machine in the same cache: the shared utility module is already built
        other = timed([sys.executable, "-m", "archc", "run", str(ROOT / "samples" / "a100.arch"), "--run", "gemm"], env)
    print(f"archc run {Path(sample).name} --run {run}")
    print(f"  baseline (python -c 'import numpy'): {baseline:.3f} s")
    print(f"  cold (empty cache, builds the shared utility module and the kernel): {cold:.2f} s "
          f"= {cold / baseline:.1f}x baseline")
    print(f"  cold, another machine (shared module cached): {other:.2f} s = {other / baseline:.1f}x baseline")
    print(f"  warm (median of 5): {warm:.3f} s = {warm / baseline:.1f}x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
