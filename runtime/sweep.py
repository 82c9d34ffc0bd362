"""Owns `archc sweep`: a run's parameters over a grid of values, every point estimated on a local process pool or an existing Dask cluster, resumed from the results already in the output directory, and the results as rows (text, CSV, JSON).

Points travel as plain data: a worker gets a dict naming the design (its path, the run, the
level, the `--set` values, the `-I` directories, the digest of its sources) and the point's
values, and returns a dict of figures or of the error that stopped the point. Nothing a worker
reads is unpickled from a file; the results file is JSON.

A worker process links the design once (read, parse, resolve imports) and checks it per point
with the point's values (a few milliseconds); kernels come from the shared compile cache, built
once by the command before the points are sent out.

A point is known by a key: the hash of the design's sources (the file and every file it
imports, and archc's version), the run, the level and every parameter value (`--set` and the
grid's). A second sweep into the same directory takes every point whose key is in its
sweep.json and computes only the others.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archc.dsl.diagnostics import ArchcError, ArchSyntaxError, Diagnostic, printable
from archc.dsl.parser import parse_value
from archc.dsl.source import Source

from . import pipeline
from .report import csv_cell, si

SCHEMA = "archc.sweep/1"
RESULTS_JSON, RESULTS_CSV = "sweep.json", "sweep.csv"
OK, FAILED, INTERNAL = "ok", "error", "internal error"  # a point's status
MAX_POINTS = 100_000
MAX_RESULTS_BYTES = 256 << 20  # a sweep.json larger than this is not one archc wrote

# a point's figures: (key, label, unit; None: the run's throughput unit, "%": a fraction)
METRICS = (
    ("latency_s", "latency", "s"),
    ("throughput", "throughput", None),
    ("utilization", "utilisation", "%"),
    ("energy_per_step_j", "energy per step", "J"),
    ("energy_per_item_j", "energy per item", "J"),
    ("power_w", "power", "W"),
    ("memory_per_chip_b", "memory per chip", "B"),
)
FIELDS = ("latency_s", "throughput", "throughput_unit", "utilization", "energy_per_step_j", "energy_per_item_j",
          "power_w", "memory_per_chip_b", "chips", "bottleneck", "status", "error")


# ---- the grid ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """The swept run parameters, in the order given, each with its values (as written)."""

    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.values)

    def points(self) -> list[dict[str, str]]:
        """Every combination, the last key varying fastest."""
        return [dict(zip(self.keys, combo)) for combo in itertools.product(*self.values)]


def _cli_error(flag: str, text: str, start: int, end: int, message: str) -> ArchSyntaxError:
    src = Source(f"<{flag}>", text)
    return ArchSyntaxError([Diagnostic(src.span_at(start, max(1, end - start)), message)])


def parse_grid(items: list[str], fixed: dict[str, str] | None = None) -> Grid:
    """`--grid KEY=V1,V2,...` options -> Grid. Each value is parsed as `--set` parses it, so a
    malformed one is refused before any point runs; a key given twice, or also with `--set`,
    and an empty or repeated value are refused too."""
    keys, values = [], []
    for text in items:
        key, sep, rest = text.partition("=")
        name = key.strip()
        if not sep or not name:
            raise _cli_error("--grid", text, 0, len(text), f"'--grid {text}' needs the form KEY=V1,V2,...")
        if not name.isidentifier():
            raise _cli_error("--grid", text, 0, len(key), f"'{name}' is not a parameter name")
        if name in keys:
            raise _cli_error("--grid", text, 0, len(key), f"'{name}' is swept by two --grid options; give its "
                                                          f"values in one (--grid {name}=V1,V2,...)")
        if fixed and name in fixed:
            raise _cli_error("--grid", text, 0, len(key), f"'{name}' is both swept (--grid) and set (--set)")
        vals, pos = [], len(key) + 1
        for raw in rest.split(","):
            v = raw.strip()
            if not v:
                raise _cli_error("--grid", text, pos, pos + len(raw), f"'--grid {text}' has an empty value; "
                                                                     f"values are separated by commas")
            if v in vals:
                raise _cli_error("--grid", text, pos, pos + len(raw), f"'{v}' is given twice for '{name}'")
            parse_value(name, v)  # a syntax error names the value, as --set's do
            vals.append(v)
            pos += len(raw) + 1
        keys.append(name)
        values.append(tuple(vals))
    if not keys:
        raise ArchcError("archc sweep needs at least one --grid KEY=V1,V2,...")
    grid = Grid(tuple(keys), tuple(values))
    if grid.size > MAX_POINTS:
        raise ArchcError(f"the grid has {grid.size:,} points; archc sweeps at most {MAX_POINTS:,} at a time")
    return grid


# ---- one point, in a worker -------------------------------------------------------------------

def point_key(digest: str, run: str, level: str, params: dict[str, str]) -> str:
    """What a point's figures depend on, hashed: the design's sources, the run, the level and
    every parameter value (`--set` and the grid's together)."""
    text = json.dumps({"digest": digest, "run": run, "level": level, "params": params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


_linked: dict[tuple, tuple] = {}  # per process: (path, include) -> (source, linked AST, digest)
_linked_lock = threading.Lock()  # a Dask worker may run points in threads


def _design(spec: dict) -> tuple:
    key = (spec["path"], tuple(spec["include"]))
    with _linked_lock:
        got = _linked.get(key)
        if got is None:
            source, tree = pipeline.link_file(spec["path"], spec["include"])
            got = _linked[key] = (source, tree, pipeline.sources_digest(source, tree))
    return got


def one_line(err: ArchcError) -> str:
    """An error in one line per diagnostic (`FILE:LINE:COL: error: MESSAGE`), joined by ' / '."""
    return " / ".join(d.render().splitlines()[0] for d in err.diagnostics)


def _as_shown(message: str, spec: dict) -> str:
    """A message with the files named as the user named them: a Dask worker reads the design
    by its absolute path (and the files it imports under the same directory), so that the
    points' errors read the same wherever they ran."""
    read, shown = spec["path"], spec.get("shown", spec["path"])
    if read == shown:
        return message
    return message.replace(os.path.join(os.path.dirname(read), ""),
                           os.path.join(os.path.dirname(shown), "") if os.path.dirname(shown) else "")


def figures(report) -> dict:
    """The figures of a point a sweep keeps, from its report."""
    items = report.throughput["value"] * report.latency_s  # what the throughput counts, per step
    return {"latency_s": report.latency_s, "throughput": report.throughput["value"],
            "throughput_unit": report.throughput["unit"], "utilization": report.utilization,
            "energy_per_step_j": report.energy_j, "energy_per_item_j": report.energy_j / items if items else 0.0,
            "power_w": report.power_w, "memory_per_chip_b": float(report.memory["total"]), "chips": report.chips,
            "bottleneck": report.bottleneck}


def warm(spec: dict) -> None:
    """A worker's start: Ctrl-C is the command's to handle (it cancels the points), and the
    design is linked before the first point arrives."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _design(spec)
    except ArchcError:
        pass  # reported with the first point


def evaluate(spec: dict, params: dict[str, str]) -> dict:
    """One point, where it runs: the design checked with the point's values and estimated at
    the spec's level. Plain data in and out. An archc error (a mapping that needs more chips
    than the machine has, memory that does not fit) is the point's result, status "error";
    anything else is a bug in archc, status "internal error"."""
    try:
        source, tree, digest = _design(spec)
        if digest != spec["digest"]:
            raise ArchcError(f"{spec['path']} (or a file it imports) is not the one the sweep started with: it "
                             f"changed, or this worker reads another copy")
        run = spec["run"]
        design = pipeline.check_linked(source, tree, {**spec["set"], **params}, run)
        report = pipeline.execute(design.run(run), spec["level"]).report
        return {**figures(report), "status": OK, "error": ""}
    except ArchcError as e:
        return failure(FAILED, _as_shown(one_line(e), spec))
    except Exception as e:  # noqa: BLE001  (reported, and the sweep goes on)
        return failure(INTERNAL, printable(f"{type(e).__name__}: {e}"))


def failure(status: str, error: str) -> dict:
    """The row of a point that failed: no figures, its status and error."""
    return {**{f: None for f in FIELDS}, "status": status, "error": error}


# ---- the sweep --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    params: dict  # the grid's values, as written
    key: str


@dataclass(frozen=True)
class Sweep:
    """A finished (or interrupted) sweep: every point of the grid, in grid order, with its
    row (None: not computed)."""

    file: str
    run: str
    level: str
    digest: str
    fixed: dict  # the --set values
    grid: Grid
    points: tuple[Point, ...]
    rows: tuple  # per point: its figures and status, or None
    computed: int
    reused: int

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r is not None and r["status"] != OK)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "file": self.file, "run": self.run, "level": self.level, "digest": self.digest,
                "set": dict(self.fixed), "grid": {k: list(v) for k, v in zip(self.grid.keys, self.grid.values)},
                "points": [{"params": p.params, "key": p.key, **{f: r.get(f) for f in FIELDS}}
                           for p, r in zip(self.points, self.rows) if r is not None]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(list(self.grid.keys) + list(FIELDS))
        for p, r in zip(self.points, self.rows):
            if r is None:
                continue
            w.writerow([p.params[k] for k in self.grid.keys] + [csv_cell(r.get(f)) for f in FIELDS])
        return out.getvalue()

    def to_text(self) -> str:
        """A table, one line per point, and the errors of the points that failed."""
        head = list(self.grid.keys) + ["latency", "throughput", "util", "energy/item", "power", "memory/chip",
                                       "bottleneck", "status"]
        body = []
        for p, r in zip(self.points, self.rows):
            cells = [p.params[k] for k in self.grid.keys]
            if r is None:
                body.append(cells + ["-"] * 6 + ["", "not run"])
            elif r["status"] != OK:
                body.append(cells + ["-"] * 6 + ["", r["status"]])
            else:
                body.append(cells + [si(r["latency_s"], "s"), si(r["throughput"], r["throughput_unit"]),
                                     f"{r['utilization'] * 100:.1f}%", si(r["energy_per_item_j"], "J"),
                                     si(r["power_w"], "W"), si(r["memory_per_chip_b"], "B"), r["bottleneck"], OK])
        lines = [f"sweep of run {self.run} in {self.file}, {self.level} level"
                 + (f", with {', '.join(f'{k}={v}' for k, v in self.fixed.items())}" if self.fixed else ""), ""]
        lines += _table(head, body, right=set(range(len(self.grid.keys), len(self.grid.keys) + 6)))
        errors = [(p, r) for p, r in zip(self.points, self.rows) if r is not None and r["status"] != OK]
        if errors:
            lines += ["", "failed points:"]
            lines += [f"  {', '.join(f'{k}={v}' for k, v in p.params.items())}: {r['error']}" for p, r in errors]
        done = sum(1 for r in self.rows if r is not None)
        lines += ["", f"{done} of {len(self.points)} point{'s' if len(self.points) != 1 else ''}: "
                      f"{done - self.failed} ok, {self.failed} failed; {self.computed} computed, {self.reused} reused"]
        return printable("\n".join(lines) + "\n")


def _table(head: list[str], body: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return [line(head)] + [line(r) for r in body]


def read_results(path: Path) -> dict[str, dict]:
    """The rows of an earlier sweep's sweep.json by point key: the points that finished, with
    figures or with an archc error (an internal error is computed again). A file there that is
    not an archc sweep's results is refused: archc replaces only its own."""
    from .outputs import OutputError
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RESULTS_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise OutputError(f"cannot read {path}: {e.strerror or e}") from None

    def refuse(why: str):
        return OutputError(f"cannot write {path}: it is not the results of an archc sweep ({why}); archc "
                           f"replaces only its own: choose another --out or move the file away")
    if len(data) > MAX_RESULTS_BYTES:
        raise refuse("it is larger than any sweep archc writes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise refuse(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("points"), list):
        raise refuse(f"no \"schema\": \"{SCHEMA}\" with a list of points")
    out = {}
    for row in doc["points"]:
        if isinstance(row, dict) and isinstance(row.get("key"), str) and row.get("status") in (OK, FAILED) \
                and all(f in row for f in FIELDS):
            out[row["key"]] = {f: row[f] for f in FIELDS}
    return out


def plot_names(grid: Grid) -> tuple[str, ...]:
    return tuple(f"{key}.{ext}" for key, _, _ in METRICS for ext in ("png", "svg"))


def output_names(grid: Grid) -> tuple[str, ...]:
    """Every file a sweep writes into its output directory."""
    return (RESULTS_JSON, RESULTS_CSV) + plot_names(grid)


def default_workers() -> int:
    """The cores this process may run on (os.sched_getaffinity where there is one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def sweep(path: str | Path, run: str, grid: Grid, fixed: dict[str, str] | None = None, level: str = "analytic",
          include=(), out: str | Path | None = None, workers: int | None = None, scheduler: str | None = None,
          progress: Callable | None = None, on_point: Callable | None = None,
          checkpoint_s: float = 5.0) -> Sweep:
    """Run every point of `grid` (with `fixed`, the `--set` values) not already in `out`'s
    sweep.json, on a process pool of `workers` (default: the usable cores) or, with
    `scheduler`, on the Dask cluster at that address. `progress`: build progress (the command's
    printer); `on_point(done, total, point, row, computed)`: after every point, reused ones
    first. With `out`, sweep.json is rewritten (atomically) at most every `checkpoint_s` seconds
    while points finish, so that an interrupted sweep resumes from them; the caller writes the
    final results (write_results)."""
    import time

    from . import outputs
    if level not in pipeline.LEVELS:
        raise ValueError(f"unknown level '{level}'; archc has: {', '.join(pipeline.LEVELS)}")
    fixed = dict(fixed or {})
    source, tree = pipeline.link_file(path, include)
    digest = pipeline.sources_digest(source, tree)
    shown = os.fspath(source.name)
    points = tuple(Point(p, point_key(digest, run, level, {**fixed, **p})) for p in grid.points())
    # a local worker starts in this directory and names the file as the user did; a Dask
    # worker may not, and reads it by its absolute path
    where = os.path.abspath if scheduler else os.fspath
    spec = {"path": where(path), "shown": os.fspath(path), "include": [where(d) for d in include], "run": run,
            "level": level, "set": fixed, "digest": digest}
    known = read_results(Path(out) / RESULTS_JSON) if out is not None else {}  # refused before any work
    _validate(source, tree, run, fixed, points, progress)
    rows: dict[str, dict] = {p.key: known[p.key] for p in points if p.key in known}
    todo = [p for p in points if p.key not in rows]
    total, done = len(points), 0
    for p in points:
        if p.key in rows:
            done += 1
            if on_point:
                on_point(done, total, p, rows[p.key], False)
    state = {"last": time.monotonic(), "computed": 0}

    def result(point: Point, row: dict) -> None:
        nonlocal done
        rows[point.key] = row
        done += 1
        state["computed"] += 1
        if on_point:
            on_point(done, total, point, row, True)
        if out is not None and time.monotonic() - state["last"] >= checkpoint_s:
            outputs.make_dir(out)
            outputs.write_text(Path(out) / RESULTS_JSON, snapshot().to_json())
            state["last"] = time.monotonic()

    def snapshot() -> Sweep:
        return Sweep(shown, run, level, digest, fixed, grid, points,
                     tuple(rows.get(p.key) for p in points), state["computed"], total - len(todo))
    try:
        if todo:
            if scheduler:
                _on_dask(scheduler, spec, todo, result)
            else:
                _on_pool(min(workers or default_workers(), len(todo)), spec, todo, result)
    except KeyboardInterrupt:
        if out is not None and state["computed"]:
            outputs.make_dir(out)
            outputs.write_text(Path(out) / RESULTS_JSON, snapshot().to_json())
        raise
    return snapshot()


def _validate(source, tree, run: str, fixed: dict, points, progress) -> None:
    """Before any point is sent out: the command line's own mistakes (no such run, a parameter
    the run does not have) stop the sweep, and the kernel is built (once, here, with the
    command's build progress) from the first point that checks. Points that fail for the
    design's reasons (it does not fit) are results, reported with the rest."""
    for p in points[:64]:  # a few milliseconds each
        try:
            design = pipeline.check_linked(source, tree, {**fixed, **p.params}, run)
        except ArchcError as e:
            first = e.diagnostics[0] if e.diagnostics else None
            if first is None or first.span is None or first.span.source.name.startswith("<--"):
                raise  # about the command line, not about this point
            continue  # this point's own failure: its row will say why
        pipeline.build(design.run(run).machine, progress)
        return


def _on_pool(workers: int, spec: dict, todo: list[Point], result: Callable) -> None:
    """The points on a local pool of `workers` processes, started fresh (spawn: no state
    inherited from the command) and each linking the design once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=warm, initargs=(spec,))
    try:
        futures = {pool.submit(evaluate, spec, p.params): p for p in todo}
        for f in as_completed(futures):
            result(futures[f], _outcome(f))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _on_dask(address: str, spec: dict, todo: list[Point], result: Callable) -> None:
    """The points on the Dask cluster whose scheduler is at `address` (its workers must read
    the design at the same path). dask is imported here only: other commands never pay for it."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError as e:
        raise ArchcError(f"--scheduler needs dask.distributed ({e}); install it with pip install 'dask[distributed]'") \
            from None
    try:
        client = Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ArchcError(f"cannot connect to the Dask scheduler at {address}: {e}") from None
    futures = {}
    try:
        for p in todo:
            f = client.submit(evaluate, spec, p.params, key=f"archc-sweep-{p.key}", pure=False)
            futures[f.key] = (f, p)
        for f in as_completed([f for f, _ in futures.values()], loop=client.loop):
            result(futures[f.key][1], _outcome(f))
    except BaseException:
        client.cancel([f for f, _ in futures.values()])
        raise
    finally:
        client.close()


def _outcome(future) -> dict:
    """A finished point's row; a point whose worker failed (it died, the cluster lost it) is
    an internal error of that point, and the sweep goes on."""
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001
        return failure(INTERNAL, printable(f"{type(e).__name__}: {e}"))


def write_results(out: str | Path, sw: Sweep) -> list[str]:
    """sweep.json, sweep.csv and the plots into `out`, all at the end (runtime/outputs.py's
    rules for a directory); returns the names written."""
    from . import outputs
    written = [RESULTS_JSON, RESULTS_CSV]

    def fill(tmp: Path) -> None:
        from .chart import sweep_figures
        from .plots import save
        (tmp / RESULTS_JSON).write_text(sw.to_json())
        (tmp / RESULTS_CSV).write_text(sw.to_csv())
        for stem, fig in sweep_figures(sw, METRICS).items():
            written.extend(p.name for p in save(fig, tmp / stem))
    outputs.atomic_dir(Path(out), fill, output_names(sw.grid))
    return written
