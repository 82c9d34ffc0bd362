"""Throughput of archc's generated format kernels against baselines that compute the same thing
from the same input to the same output (ml_dtypes' and NumPy's astype for bf16, fp8 E4M3 and
fp16; softposit element by element for posit16), run in the same process: medians of
interleaved repeats, and the ratio baseline time / archc time. Each row is timed with archc's
default threads (at most the CPUs not busy with other tasks), with one thread and with two
(set_threads), and every output is compared with the baseline's.

Two sections: "quiet" (nothing started by this script; other processes may run) and "loaded"
(a spinning process this script starts keeps one core busy, and is stopped at the end, also on
Ctrl-C or an error).

Usage: python benchmarks/formats.py [N] [--repeat R] [--quiet | --loaded]"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np


def _spin(parent: int, started) -> None:
    """Keep one core busy until stopped, or until the parent is gone."""
    started.set()
    while True:
        for _ in range(1_000_000):
            pass
        if os.getppid() != parent:
            return


@contextlib.contextmanager
def spinner():
    """A process spinning on one core for the duration of the block; stopped on the way out
    whatever the way out is (return, exception, Ctrl-C)."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    started = ctx.Event()
    proc = ctx.Process(target=_spin, args=(os.getpid(), started), daemon=True, name="archc-spinner")
    proc.start()
    try:
        started.wait(10)
        time.sleep(0.2)  # let the scheduler see it running
        yield proc
    finally:
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        print(f"  (spinner pid {proc.pid} stopped: exit code {proc.exitcode})", flush=True)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical as arrays of the same dtype and shape (NaN payloads included)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class Case:
    def __init__(self, fmt: str, kernel: str, work: str, baseline: str, ours: Callable, base: Callable,
                 per: float = 1.0):
        self.fmt, self.kernel, self.work, self.baseline = fmt, kernel, work, baseline
        self.ours, self.base = ours, base
        self.per = per  # baseline time per call is multiplied by this (a subset, scaled up)


def cases(n: int) -> tuple[list[Case], dict]:
    import ml_dtypes
    import softposit
    import archc.formats as F
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal(n) * 8
    x32 = x64.astype(np.float32)
    out: list[Case] = []
    for name, dt, lib in (("bf16", ml_dtypes.bfloat16, "ml_dtypes"), ("fp8_e4m3", ml_dtypes.float8_e4m3fn, "ml_dtypes"),
                          ("fp16", np.float16, "numpy")):
        f = F.get(name)
        t = np.dtype(dt).name
        codes = f.encode(x64[: min(n, 1000)])  # builds the kernels outside the timing
        codes = np.ascontiguousarray(x64.astype(dt).view(np.uint8 if np.dtype(dt).itemsize == 1 else np.uint16)
                                     .astype(np.uint64))
        out += [
            Case(name, "quantize", "float64 -> float64", f"{lib} x64.astype({t}).astype(float64)",
                 lambda f=f: f.quantize(x64), lambda dt=dt: x64.astype(dt).astype(np.float64)),
            Case(name, "quantize32", "float32 -> float32", f"{lib} x32.astype({t}).astype(float32)",
                 lambda f=f: f.quantize32(x32), lambda dt=dt: x32.astype(dt).astype(np.float32)),
            Case(name, "encode", "float64 -> uint64 codes", f"{lib} x64.astype({t}).view(uint).astype(uint64)",
                 lambda f=f: f.encode(x64),
                 lambda dt=dt: x64.astype(dt).view(np.uint8 if np.dtype(dt).itemsize == 1 else np.uint16)
                 .astype(np.uint64)),
            Case(name, "decode", "uint64 codes -> float64", f"{lib} codes.astype(uint).view({t}).astype(float64)",
                 lambda f=f, c=codes: f.decode(c),
                 lambda dt=dt, c=codes: c.astype(np.uint8 if np.dtype(dt).itemsize == 1 else np.uint16)
                 .view(dt).astype(np.float64)),
        ]
        if name == "bf16":
            out.append(Case(name, "encode32", "float32 -> uint16 codes", f"{lib} x32.astype({t}).view(uint16)",
                            lambda f=f: f.encode32(x32), lambda dt=dt: x32.astype(dt).view(np.uint16)))
    p16 = F.get("posit16")
    p16.quantize(x64[:10])
    m = min(n, 20_000)  # softposit takes ~1.5 us a value: a subset, its time scaled to n
    out.append(Case("posit16", "quantize", "float64 -> float64", f"softposit posit_2(v, 16) for each v "
                    f"(on {m:,} values, time x {n / m:g})",
                    lambda: p16.quantize(x64),
                    lambda: np.array([float(softposit.posit_2(float(v), 16)) for v in x64[:m]]), per=n / m))
    return out, {"x64": x64}


def timed(f: Callable) -> tuple[float, object]:
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def run(section: str, n: int, repeat: int, all_cases: list[Case]) -> list[tuple]:
    import archc.formats as F
    load = os.getloadavg()
    cap, adapt = F.threads()
    print(f"\n{section}: {n:,} values; medians of {repeat} interleaved repeats; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start; archc threads: up to {cap}"
          f"{', fewer when CPUs are busy' if adapt else ''} ('1 thread', '2 threads': set_threads(1), (2))")
    print(f"  {'format':9s} {'kernel':11s} {'what both compute':24s} {'baseline':>9s} {'archc':>9s} {'ratio':>6s} "
          f"{'1 thread':>9s} {'ratio':>6s} {'2 threads':>9s} {'ratio':>6s}  same output  baseline")
    rows = []
    took = {}  # threads the default would take, read just before each of its calls
    probe = F.get("bf16")._m.threads_for
    for c in all_cases:
        times = {"b": [], "o": [], "1": [], "2": []}
        ok = True
        for r in range(repeat):
            order = [("b", c.base), ("o", c.ours), ("1", c.ours), ("2", c.ours)]
            if r % 2:
                order.reverse()  # interleaved, alternating which side goes first
            for tag, fn in order:
                if tag in "12":
                    F.set_threads(int(tag))
                elif tag == "o":
                    t = probe(n)
                    took[t] = took.get(t, 0) + 1
                try:
                    dt, res = timed(fn)
                finally:
                    if tag in "12":
                        F.set_threads(None)
                times[tag].append(dt)
                if r == 0:
                    if tag == "b":
                        ref = res
                    elif c.per == 1.0:
                        ok = ok and same(res, ref)
                    else:
                        ok = ok and same(np.asarray(res)[: len(ref)], ref)
        b = statistics.median(times["b"]) * c.per
        o, one, two = (statistics.median(times[k]) for k in "o12")
        rows.append((c.fmt, c.kernel, b / o, b / one, ok))
        print(f"  {c.fmt:9s} {c.kernel:11s} {c.work:24s} {n / b / 1e6:7.1f}M/s {n / o / 1e6:7.1f}M/s {b / o:5.2f}x "
              f"{n / one / 1e6:7.1f}M/s {b / one:5.2f}x {n / two / 1e6:7.1f}M/s {b / two:5.2f}x  "
              f"{'yes' if ok else 'NO':11s}  {c.baseline}", flush=True)
    print("  archc's default, just before its calls, would take: " +
          ", ".join(f"{t} thread{'s' if t > 1 else ''} {k} times" for t, k in sorted(took.items())))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=10_000_000, help="values per call (default 10^7)")
    ap.add_argument("--repeat", type=int, default=7, help="interleaved repeats per row (default 7)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--quiet", action="store_true", help="only the quiet section")
    which.add_argument("--loaded", action="store_true", help="only the section with one core kept busy")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        ap.error("N and --repeat are at least 1")
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    print(f"archc format kernels against same-work baselines: {cpus} CPUs this process may run on "
          f"({os.cpu_count()} online); ratio = baseline time / archc time, > 1: archc is faster. "
          "Other processes on this machine are not stopped: 'quiet' means only that this script "
          "starts nothing.")
    all_cases, _ = cases(args.n)
    worst = {}
    if not args.loaded:
        for fmt, kernel, ratio, _, ok in run("quiet", args.n, args.repeat, all_cases):
            worst.setdefault("quiet", []).append((ratio, fmt, kernel, ok))
    if not args.quiet:
        with spinner() as proc:
            print(f"  (spinner pid {proc.pid} keeps one core busy)", flush=True)
            for fmt, kernel, ratio, _, ok in run("loaded (one core kept busy by a spinning process)", args.n,
                                                 args.repeat, all_cases):
                worst.setdefault("loaded", []).append((ratio, fmt, kernel, ok))
    for section, rows in worst.items():
        low = min(rows)
        print(f"{section}: lowest ratio {low[0]:.2f}x ({low[1]} {low[2]}); outputs "
              f"{'all the same as the baselines' if all(r[3] for r in rows) else 'DIFFER (see NO above)'}")
    return 0 if all(r[3] for rows in worst.values() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
