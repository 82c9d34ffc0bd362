"""The `archc` command: check, compile, run and manage the cache. Exit codes live here."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

from archc.dsl.diagnostics import ArchcError, printable

EXIT_DRIFT = 6  # archc test: a figure drifted, a run vanished or has no expectation
EXIT_INTERNAL = 70
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_CODES = f"""exit codes:
  0    success (warnings, if any, on stderr)
  1    a mistake in the input: FILE:LINE:COL: error: ... with the line and a caret, on stderr;
       also an unwritable output or cache (archc: error: ...)
  2    the command line itself (an unknown option, a missing argument)
  3    code generation refused the design
  4    building a kernel failed (the C compiler); the log is kept and named
  5    a run failed (the event-level simulation)
  {EXIT_DRIFT}    archc test: a figure drifted, a run vanished or a run has no expectation
  {EXIT_INTERNAL}   an internal error: a bug in archc (ARCHC_DEBUG=1 shows the traceback)
  130  interrupted (Ctrl-C);  {EXIT_TERMINATED}  terminated (SIGTERM)"""

# what `run --out DIR` writes (checked up front: an existing entry must be a regular file)
_OUT_FILES = ("report.json", "report.txt", "ops.csv") + tuple(
    f"{stem}.{ext}" for stem in ("roofline", "utilisation", "links") for ext in ("png", "svg"))

# How every output is written (runtime/outputs.py), said once in --help.
_OUTPUT_RULES = ("written atomically; only a new path or a regular file is replaced (a device, FIFO, "
                 "socket or directory is refused), and a symlink to a regular file has its target replaced, "
                 "the link kept")
_DIR_RULES = ("DIR may be new or an existing directory (a symlink to one is followed); files in it are "
              "replaced only if regular, all at the end, none on failure")


def _tolerance(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not (x >= 0 and x != float("inf")):
        raise argparse.ArgumentTypeError(f"a relative tolerance is a number >= 0, such as 1e-6; found '{text}'")
    return x


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a number of workers is a whole number >= 1; found '{text}'")
    return n


def _say(text: str) -> None:
    """Write to stdout what archc prints: names, units and strings a user wrote pass through
    printable() (no terminal escapes, no carriage returns); JSON escapes them itself."""
    sys.stdout.write(printable(text))


def _warnings(design) -> None:
    """A valid design's warnings (a capacity written in bits, ...) on stderr."""
    for w in getattr(design, "warnings", ()):
        print(w.render(), file=sys.stderr)


def _progress_printer(stream=None, after_s: float = 1.0):
    """Build progress, for every build that takes more than `after_s` seconds: "archc: building
    WHAT (first use; cached afterwards)…" once it has taken that long, then its seconds when it
    is done. Always shown (a CI log wants to know why a command is quiet for 20 s), always on
    stderr (the real one: a build may redirect sys.stderr while Cython runs), never on stdout,
    which holds only the report or its JSON. On a terminal the line is completed in place
    ("… 1.8 s"); elsewhere a second line says "archc: built WHAT in 1.8 s", so that every line
    of a log is whole."""
    out = stream if stream is not None else sys.__stderr__
    tty = bool(getattr(out, "isatty", lambda: False)())
    lock = threading.Lock()
    state: dict = {"timer": None, "shown": False, "what": ""}

    def write(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr costs no build
            out.write(text)
            out.flush()

    def show() -> None:
        with lock:
            state["shown"] = True
            write(f"archc: building {state['what']} (first use; cached afterwards)…" + ("" if tty else "\n"))

    def cb(message: str) -> None:
        verb, _, rest = message.partition(" ")
        if verb == "compiling":
            # "compiling kernel NAME for LABEL": the label is what a person knows it by
            what, sep, label = rest.partition(" for ")
            with lock:
                state.update(what=label if sep else what, shown=False)
                state["timer"] = threading.Timer(after_s, show)
                state["timer"].daemon = True
                state["timer"].start()
        elif verb in ("built", "failed"):
            with lock:
                if state["timer"] is not None:
                    state["timer"].cancel()
                    state["timer"] = None
                if state["shown"]:
                    seconds = rest.split()[-2]  # "NAME in S s" / "NAME after S s"
                    if verb == "failed":
                        write(" failed\n" if tty else f"archc: building {state['what']} failed after {seconds} s\n")
                    else:
                        write(f" {seconds} s\n" if tty else f"archc: built {state['what']} in {seconds} s\n")
                state["shown"] = False
    return cb


def _described(sub, name: str, description: str, **kw) -> argparse.ArgumentParser:
    """A subcommand whose --help prints `description` filled to 100 columns and its epilog as
    written (test, sweep, compare)."""
    return sub.add_parser(name, description=textwrap.fill(description, 100),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def _set_option(p: argparse.ArgumentParser, help: str) -> None:
    """`--set KEY=VALUE`, repeatable: what check, run, accuracy, sweep and compare take."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _level_option(p: argparse.ArgumentParser, help: str) -> None:
    """`--level`: the levels of runtime/pipeline.py LEVELS (not imported: `--help` stays fast)."""
    p.add_argument("--level", choices=["analytic", "event"], default="analytic", help=help)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archc", description="Describe an AI machine, its number formats "
                                "and its model in one .arch file; check it, generate and build Cython "
                                "kernels specialised to it, and report speed, efficiency and energy.",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from archc import __version__
    p.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every command that reads a design finds the files it imports the same way
    reads = argparse.ArgumentParser(add_help=False)
    reads.add_argument("-I", dest="include", action="append", default=[], metavar="DIR",
                       help="look for imported files (`import \"m.arch\"`) in DIR, after the importing "
                            "file's own directory and before the directories of ARCHC_PATH; repeatable")
    c = sub.add_parser("check", parents=[reads], help="parse and check a design; exit 1 with located errors")
    c.add_argument("file")
    _set_option(c, "override a run parameter (with --run)")
    c.add_argument("--run", help="check only this run")
    c = sub.add_parser("compile", parents=[reads], help="generate the kernels and build them")
    c.add_argument("file")
    c.add_argument("-o", "--output", metavar="DIR",
                   help="write the .pyx sources and built modules here (importable by name); " + _DIR_RULES)
    c.add_argument("--emit", choices=["ast", "ir", "plan", "pyx"],
                   help="print one stage's product to stdout instead of building (plan: every run lowered, "
                        "one line per task)")
    r = sub.add_parser("run", parents=[reads], help="run a design's runs and report")
    r.add_argument("file")
    r.add_argument("--run", help="the run to execute (default: every run)")
    _set_option(r, "override a run parameter; repeatable")
    _level_option(r, "simulation fidelity: analytic roofline per op, or event (the task graph "
                     "simulated: pipelines, collectives as flows over shared links)")
    r.add_argument("--trace", metavar="FILE",
                   help="with --level event: write the timeline as a Chrome trace (chrome://tracing, Perfetto); "
                        "at most 250,000 tasks: the first by start time and the critical path; " + _OUTPUT_RULES)
    r.add_argument("--json", action="store_true", help="print the report as one JSON object")
    r.add_argument("--out", metavar="DIR", help="also write report.json, report.txt, ops.csv and plots (roofline; at the event "
                        "level utilisation and link load, PNG and SVG) here; " + _DIR_RULES)
    r.add_argument("--search", action="store_true",
                   help="search the run's mapping (tp, pp, dp, micro_batch, interleave, recompute; a spatial "
                        "run's region_rows and placement) at the analytic level (or --level event), chips and "
                        "global_batch fixed; report the best and the latency-energy Pareto front")
    r.add_argument("--trials", type=int, default=None, metavar="N", help="with --search: trials (default 200)")
    r.add_argument("--seed", type=int, default=None, metavar="N", help="with --search: sampler seed (default 0)")
    r.add_argument("--write-run", metavar="NAME",
                   help="with --search: append run NAME, the run with the best mapping, to the file (which "
                        "must be a writable regular file, or a symlink to one: its target is rewritten); "
                        + _OUTPUT_RULES)
    f = sub.add_parser("formats", parents=[reads], help="list number formats with their range, precision and MAC cost")
    f.add_argument("file", nargs="?", help="a design (default: the standard formats)")
    f.add_argument("--node", default="7", metavar="NM", help="process node in nm for the cost model (default 7)")
    a = sub.add_parser("accuracy", parents=[reads], help="run a reduced instance of a run in float64 and in its declared "
                       "precisions; report the numerical error op by op")
    a.add_argument("file")
    a.add_argument("--run", help="the run to evaluate (default: the design's only run)")
    a.add_argument("--seed", type=int, default=0, help="seed of the random weights, inputs and analog noise")
    _set_option(a, "override a parameter of the reduced instance; repeatable")
    a.add_argument("--precision", action="append", default=[], metavar="GLOB=FORMAT",
                   help="compute the ops whose names match GLOB (fnmatch) in FORMAT; repeatable")
    a.add_argument("--json", action="store_true", help="print the report as one JSON object")
    o = sub.add_parser("ops", help="print the op and block reference (every op's signature, defaults and cost; "
                       "the standard library's blocks and models)")
    o.add_argument("--markdown", action="store_true", help="as Markdown (docs/ops.md is this output)")
    t = _described(sub, "test", help="run every run of the designs in DIR and compare latency, throughput, energy "
                       "and memory with their NAME.expected.json files",
                       description=("Golden regression tests of designs: every run of every design DIR's expectation "
                       "files cover (and of every .arch file in DIR) is run at the file's level and its figures "
                       "compared with the expected ones within the file's tolerances. Prints one line per file and "
                       "a table of every figure that drifted (file, run, metric, expected, got, relative change, "
                       "status); exits 6 on a drift, a vanished run or a run without an expectation, and with the "
                       "error's code (1: FILE:LINE:COL: error: ...) when a design or an expectation file has one."),
                       epilog=TEST_SCHEMA)
    t.add_argument("dir", metavar="DIR", help="a directory of NAME.expected.json files and/or .arch designs")
    t.add_argument("--rtol", type=_tolerance, default=None, metavar="X",
                   help="relative tolerance of every figure, over each file's \"rtol\" (a file's "
                        "\"rtol_per_metric\" entries still apply); default: the file's, 1e-6 if it has none")
    t.add_argument("--update", action="store_true",
                   help="rewrite the expectation files from the figures computed (and create NAME.expected.json "
                        "for a design in DIR without one); exit 0 unless a design has errors. " + _OUTPUT_RULES
                        + "; only a file read as an expectation file is replaced")
    t.add_argument("-v", "--verbose", action="store_true", help="list every figure, not only those that fail")
    m = sub.add_parser("import", help="turn an ONNX model into a readable .arch model (docs/onnx.md)")
    m.add_argument("file", metavar="MODEL.onnx")
    m.add_argument("-o", "--output", metavar="FILE",
                   help="write the .arch model here instead of stdout; an existing FILE is refused unless "
                        "--force; " + _OUTPUT_RULES)
    m.add_argument("--force", action="store_true", help="with -o: replace an existing FILE")
    m.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                   help="the size of a dynamic input dimension named NAME (batch=8); repeatable")
    m.add_argument("--name", help="the model's name (default: the file's, made an identifier)")
    w = _described(sub, "sweep", parents=[reads], help="run a run at every combination of parameter values "
                       "(a local process pool or a Dask cluster); a table, CSV, JSON and plots",
                       description=("Estimate a run at every combination of the --grid values (run "
                       "parameters, as --set takes them), each point on a local process pool or on an existing Dask "
                       "cluster. Progress on stderr; on stdout a table with one line per point (latency, throughput, "
                       "utilisation, energy per item, power, memory per chip, bottleneck, status) and the errors of "
                       "the points that failed (a mapping that needs more chips than the machine has, memory that "
                       "does not fit): a failed point is a result, and the sweep goes on. Exit 0 when every point "
                       "ran, 70 if a point met an internal error."),
                       epilog=SWEEP_OUTPUTS)
    w.add_argument("file")
    w.add_argument("--run", help="the run to sweep (default: the design's only run)")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a run parameter and its values, separated by commas; repeatable (every combination runs)")
    _set_option(w, "override a run parameter at every point; repeatable")
    _level_option(w, "simulation fidelity (as run's)")
    w.add_argument("--out", metavar="DIR", help="write sweep.json, sweep.csv and a plot per metric (PNG and SVG) "
                   "here, and take from an earlier sweep.json in DIR the points it already has; " + _DIR_RULES
                   + " (sweep.json is also rewritten while points finish, so that an interrupted sweep resumes)")
    w.add_argument("--scheduler", metavar="ADDRESS", help="run the points on the Dask cluster whose scheduler is at "
                   "ADDRESS (such as tcp://10.0.0.5:8786); its workers need archc and must read FILE at the same path")
    w.add_argument("--workers", type=_count, metavar="N", help="local worker processes (default: the cores this "
                   "process may run on, os.sched_getaffinity)")
    v = _described(sub, "compare", parents=[reads], help="runs of the same model on different machines side by side: "
                       "figures per chip, per watt and per declared cost, and top ops",
                       description=("Run each FILE:RUN (with the same --set values and level) and print one "
                       "table, a column per run: system and chips, latency, throughput and that throughput per chip, "
                       "per kW and per million USD of the chips the run uses (a machine's declared `cost`, or \"not "
                       "declared\"), utilisation, energy per step and per item, power, memory per chip, cost, "
                       "bottleneck and the top 3 ops by time."))
    v.add_argument("targets", nargs="+", metavar="FILE:RUN", help="a design and one of its runs; two or more")
    _set_option(v, "override a parameter of every run; repeatable")
    _level_option(v, "simulation fidelity (as run's)")
    v.add_argument("--out", metavar="DIR", help="also write compare.txt, compare.json, compare.csv and the plot "
                   "(compare.png, compare.svg: bars of throughput per chip, per kW and per million USD) here; "
                   + _DIR_RULES)
    k = sub.add_parser("cache", help="manage the compiled-kernel cache")
    k.add_argument("action", choices=["clear", "dir"])
    return p


SWEEP_OUTPUTS = """outputs (--out DIR):
  sweep.json   {"schema": "archc.sweep/1", "file", "run", "level", "digest", "set", "grid",
                "points": [{"params": {KEY: VALUE}, "key", "latency_s", "throughput", "throughput_unit",
                            "utilization", "energy_per_step_j", "energy_per_item_j", "power_w",
                            "memory_per_chip_b", "chips", "bottleneck", "status", "error"}]}
  sweep.csv    the same, one row per point: the grid's keys, then those figures
  METRIC.png, METRIC.svg   per metric (latency_s, throughput, utilization, energy_per_step_j,
               energy_per_item_j, power_w, memory_per_chip_b): a line over one swept key; a
               heatmap over two; with more, a panel per key, a line per combination of the others
  A point is taken from sweep.json when its key matches: a hash of the design's sources (the
  file and every file it imports, and archc's version), the run, the level and every parameter
  value; a point whose status is "ok" or "error" (an archc error, its message in "error") is
  reused, one with "internal error" is computed again. A sweep.json that is not an archc
  sweep's is refused, never replaced."""


TEST_SCHEMA = """expectation files (schema "archc.expected/1"; docs/regression.md):
  {
    "schema": "archc.expected/1",
    "source": "../h100.arch",        optional: the design, relative to this file
                                     (default: NAME.arch beside it)
    "level": "analytic",             optional: analytic (default) | event
    "rtol": 1e-06,                   optional: relative tolerance of every figure (default 1e-6)
    "rtol_per_metric": {"energy_per_step_j": 0.001},   optional: per metric, over rtol and --rtol
    "runs": {"RUN": {"latency_s": ..., "throughput": ..., "throughput_unit": "tokens/s",
                     "energy_per_step_j": ..., "energy_per_item_j": ..., "memory_per_chip_b": ...}}
  }
  latency_s: one step; throughput: in throughput_unit (compared exactly); energy_per_step_j: all
  chips, one step; energy_per_item_j: per item the throughput counts (sequence, token, image; FLOP);
  memory_per_chip_b: the mapping's peak footprint on one chip. A figure passes when
  |got - expected| <= rtol x |expected|; figures a run's entry leaves out are not checked.
  --update writes sorted keys, each figure to two more digits than its tolerance resolves."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is, so that what Ctrl-C cleans up (temporary output
    directories, compiler process groups: runtime/outputs.py, runtime/cache.py) is cleaned up too."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _dispatch(args)
    except ArchcError as e:
        print(e.render(), file=sys.stderr)  # rendered terminal-safe (dsl/diagnostics.py)
        return e.exit_code
    except _Terminated:
        print("archc: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug in archc, not a user mistake: say so plainly
        if os.environ.get("ARCHC_DEBUG"):
            raise
        print(printable(f"archc: internal error: {type(e).__name__}: {e}\n"
                        "archc: this is a bug in archc; set ARCHC_DEBUG=1 for details"), file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _dispatch(args) -> int:
    from archc import api
    if args.command == "ops":
        from archc.dsl import reference
        _say(reference.markdown() if args.markdown else reference.text())
        return 0
    if args.command == "cache":
        from archc.runtime import cache
        if args.action == "dir":
            _say(f"{cache.cache_dir()}\n")
            return 0
        n = cache.clear()  # CacheError (archc: error: ...) when the directory cannot be cleared
        _say(f"removed {n} cache entr{'y' if n == 1 else 'ies'} from {cache.cache_dir(create=False)}\n")
        return 0
    if args.command == "formats":
        from archc.formats_table import table
        try:
            node = float(args.node)
            if not 0 < node < 1000:
                raise ValueError
        except ValueError:
            raise ArchcError(f"--node takes a process node in nm, such as 7; found '{args.node}'") from None
        if args.file:
            design = api.check(args.file, include=args.include)
            _warnings(design)
            formats = dict(design.formats)
        else:
            from archc.dsl.check import standard_formats
            formats = standard_formats()
        _say(table(formats, node))
        return 0
    if args.command == "check":
        if args.set and not args.run:
            raise ArchcError("--set needs --run NAME")
        design = api.check(args.file, args.set, args.run, args.include)
        _warnings(design)
        counts = [(len(design.formats), "format"), (len(design.chips), "chip"),
                  (len(design.systems), "system"), (len(design.models), "model"), (len(design.runs), "run")]
        _say(f"{args.file}: ok (" + ", ".join(f"{n} {w}{'s' if n != 1 else ''}" for n, w in counts) + ")\n")
        return 0
    if args.command == "compile":
        return _compile(args, api)
    if args.command == "import":
        return _import(args)
    if args.command == "accuracy":
        return _accuracy(args, api)
    if args.command == "test":
        return _test(args)
    if args.command == "sweep":
        return _sweep(args, api)
    if args.command == "compare":
        from archc.runtime import compare, outputs
        if args.out:
            outputs.check_dir(args.out, compare.OUT_FILES)
        result = compare.compare(args.targets, dict(api.split_set(x) for x in args.set), args.level, args.include,
                                 _progress_printer())
        written = compare.write(args.out, result) if args.out else []
        _say(result.to_text())
        if written:
            _say(f"wrote {', '.join(written)} to {args.out}\n")
        return 0
    return _run(args, api)


def _compile(args, api) -> int:
    from archc import __version__
    if args.output and not args.emit:  # before the minutes of building, not after
        from archc.runtime import outputs
        outputs.check_dir(args.output)
    stages = api.compile_stages(args.file, include=args.include)
    _warnings(stages.ir)
    if args.emit == "ast":
        from archc.dsl.ast import dump
        _say(dump(stages.ast))
        return 0
    if args.emit == "ir":
        from archc.dsl.ir import dump
        _say(dump(stages.ir) + "\n")
        return 0
    if args.emit == "plan":
        from archc.codegen.lower import lower
        from archc.codegen.show import dump
        _say("\n".join(dump(lower(r)) for _, r in stages.ir.runs))
        return 0
    sources = api.kernel_sources(stages.ir)
    if args.emit == "pyx":
        for name, text in sources.items():
            _say(f"# ==== {name}.pyx\n{text}")
        return 0
    from archc.codegen.render import module_stem
    from archc.runtime import cache
    machines = {module_stem(r.machine): r.machine for _, r in stages.ir.runs}

    def what(stem: str) -> str:
        return f"analytic kernel of {machines[stem].name}" if stem in machines else "number formats"
    progress = _progress_printer()
    if args.output:
        from archc.runtime import outputs
        out = Path(args.output)
        outputs.atomic_dir(out, lambda tmp: [cache.build_into(sources[s], s, tmp, archc_version=__version__,
                                                             progress=progress, label=f"the {what(s)}")
                                             for s in sources])
        for s in sources:
            _say(f"{out / (cache.module_name(s, cache.cache_key(sources[s], archc_version=__version__)))}"
                 f" ({what(s)})\n")
        return 0
    for s in sources:
        mod = cache.build(sources[s], s, archc_version=__version__, progress=progress, label=f"the {what(s)}")
        _say(f"{mod.__name__} ({what(s)}): built\n")
    return 0


def _run(args, api) -> int:
    if args.search or args.trials is not None or args.seed is not None or args.write_run:
        return _search(args, api)
    from archc.runtime import outputs, pipeline
    # every output path, before checking, building and simulating (runtime/outputs.py's rules)
    if args.trace and args.level != "event":
        raise ArchcError("--trace needs --level event: the analytic level computes no timeline")
    if args.trace:
        outputs.check_file(args.trace, what="the trace")
    if args.out:
        outputs.check_dir(args.out, _OUT_FILES)
    if args.set and not args.run:
        design = api.check(args.file, include=args.include)
        if len(design.runs) != 1:
            raise ArchcError(f"--set needs --run NAME; this design has the runs "
                             f"{', '.join(n for n, _ in design.runs)}")
        args.run = design.runs[0][0]
    design = api.check(args.file, args.set, args.run, args.include)
    _warnings(design)
    runs = [r for _, r in design.runs]
    if args.json and len(runs) != 1:
        raise ArchcError(f"--json prints one run; choose one with --run ({', '.join(r.name for r in runs)})")
    if args.trace and len(runs) != 1:
        raise ArchcError(f"--trace writes one run; choose one with --run ({', '.join(r.name for r in runs)})")
    progress = _progress_printer()
    if args.out and len(runs) != 1:
        raise ArchcError("--out writes one run; choose one with --run")
    captured: dict = {}  # the event level's (builder, result) for the plots
    reports = [pipeline.execute(r, args.level, progress, trace=args.trace,
                                capture=captured if args.out and args.level == "event" else None).report
               for r in runs]
    if args.out:
        rep = reports[0]

        def fill(tmp: Path):
            from archc.runtime.plots import write_plots
            (tmp / "report.json").write_text(rep.to_json())
            (tmp / "report.txt").write_text(rep.to_text(max_ops=10**9))
            (tmp / "ops.csv").write_text(rep.to_csv())
            ev = (captured["builder"], captured["result"]) if "result" in captured else None
            write_plots(tmp, rep, runs[0], ev)
        outputs.atomic_dir(Path(args.out), fill, _OUT_FILES)
    if args.json:
        _say(reports[0].to_json())
    else:
        _say("\n".join(r.to_text() for r in reports))
    return 0


def _sweep(args, api) -> int:
    from archc.progress import SweepProgress
    from archc.runtime import outputs, sweep
    if not args.grid:
        raise ArchcError("archc sweep needs at least one --grid KEY=V1,V2,...")
    if args.scheduler and args.workers:
        raise ArchcError("--workers sets the local pool; with --scheduler the Dask cluster's workers run the points")
    fixed = dict(api.split_set(x) for x in args.set)
    grid = sweep.parse_grid(args.grid, fixed)
    if args.out:  # every file it writes, before checking or running anything (runtime/outputs.py's rules)
        outputs.check_dir(args.out, sweep.output_names(grid))
    if args.run is None:
        names = [n for n, _ in api.check(args.file, include=args.include).runs]
        if len(names) != 1:
            raise ArchcError(f"name the run to sweep with --run; this design has {', '.join(names) or 'no runs'}")
        args.run = names[0]
    with SweepProgress(grid.size) as bar:
        result = sweep.sweep(args.file, args.run, grid, fixed, args.level, args.include, args.out, args.workers,
                             args.scheduler, progress=_progress_printer(), on_point=bar.point)
    written = sweep.write_results(args.out, result) if args.out else []
    _say(result.to_text())
    if written:
        _say(f"wrote {', '.join(written)} to {args.out}\n")
    internal = [r for r in result.rows if r is not None and r["status"] == sweep.INTERNAL]
    if internal:
        print(printable(f"archc: internal error in {len(internal)} point{'s' if len(internal) != 1 else ''}: "
                        f"{internal[0]['error']}\narchc: this is a bug in archc"), file=sys.stderr)
        return EXIT_INTERNAL
    return 0


def _search(args, api) -> int:
    from archc.runtime import search
    if not args.search:
        raise ArchcError("--trials, --seed and --write-run need --search")
    if args.trace or args.out:
        raise ArchcError("--search writes no trace or plots; run the mapping it finds with --trace / --out")
    if args.write_run:  # the design is rewritten: a writable regular file, checked before any work
        from archc.runtime import outputs
        outputs.check_file(args.file)
    if args.run is None:
        design = api.check(args.file, include=args.include)
        if len(design.runs) != 1:
            raise ArchcError(f"--search needs --run NAME; this design has the runs "
                             f"{', '.join(n for n, _ in design.runs) or '(none)'}")
        args.run = design.runs[0][0]
    if args.write_run:  # refuse an existing name before spending the search (search checks the run)
        search.check_new_name(args.file, args.write_run, args.run, args.include)
    result = search.search(args.file, args.run, args.set, trials=200 if args.trials is None else args.trials,
                           seed=0 if args.seed is None else args.seed, progress=_progress_printer(),
                           level=args.level, include=args.include)
    if args.write_run:
        if result.best is None:
            raise ArchcError(f"--write-run {args.write_run}: no feasible mapping found; nothing written")
        values = {**dict(api.split_set(x) for x in args.set), **result.best.params}
        search.write_run(args.file, args.run, args.write_run, values, args.include)
    _say(result.to_json() if args.json else result.to_text())
    if args.write_run and not args.json:
        _say(f"wrote run {args.write_run} to {args.file}\n")
    return 0


def _test(args) -> int:
    """archc test DIR: runtime/regress.py compares; this prints the lines, the table and the
    located errors (on stderr, as every command does) and chooses the exit code."""
    from archc.runtime import regress
    progress = _progress_printer()
    found = regress.discover(args.dir)
    if args.update:  # every file --update would write, before running anything (runtime/outputs.py's rules)
        from archc.runtime import outputs
        for e in found:
            if isinstance(e, regress.Expectations):
                outputs.check_file(e.path, what="the expectation file")
    outcomes, errors, lines, rows = [], [], [], []
    for e in found:
        if isinstance(e, regress.Unreadable):
            errors.append(e.error)
            print(e.error.render(), file=sys.stderr)
            lines.append(e.line)
            rows.append(e.row)
            continue
        o = regress.verify(e, args.rtol, progress)
        for err in ((o.error,) if o.error else ()) + o.run_errors:
            errors.append(err)
            print(err.render(), file=sys.stderr)
        outcomes.append(o)
        lines.append(regress.summary_line(o))
        rows += o.rows
    _say("".join(f"{x}\n" for x in lines))
    failing = [r for r in rows if r.status != regress.OK]
    shown = rows if args.verbose else failing
    if shown:
        _say("\n" + regress.table(shown))
    written = []
    if args.update:
        for o in outcomes:
            if regress.update(o):
                written.append(o.expectations.path)
        for p in written:
            _say(f"wrote {regress.shown(p)}\n")
    runs = sum(len(o.figures) for o in outcomes)
    figures = sum(1 for o in outcomes for r in o.rows if r.metric != "-")
    counts = {s: sum(1 for r in failing if r.status == s) for s in (regress.DRIFT, regress.NEW, regress.GONE)}
    if errors or (failing and not args.update):
        parts = [f"{counts[regress.DRIFT]} figure{'s' if counts[regress.DRIFT] != 1 else ''} drifted",
                 f"{counts[regress.GONE]} run{'s' if counts[regress.GONE] != 1 else ''} vanished",
                 f"{counts[regress.NEW]} run{'s' if counts[regress.NEW] != 1 else ''} without expectations",
                 f"{len(errors)} error{'s' if len(errors) != 1 else ''}"]
        _say(f"\nFAILED: {', '.join(parts)} ({len(lines)} file{'s' if len(lines) != 1 else ''}, "
             f"{runs} run{'s' if runs != 1 else ''})"
             + ("; `archc test --update` accepts the new figures" if failing and not errors else "") + "\n")
        return errors[0].exit_code if errors else EXIT_DRIFT
    if args.update:
        _say(f"\nupdated: {len(written)} of {len(outcomes)} expectation files rewritten ({runs} run{'s' if runs != 1 else ''})\n")
        return 0
    _say(f"\nok: {len(outcomes)} file{'s' if len(outcomes) != 1 else ''}, {runs} run{'s' if runs != 1 else ''}, "
         f"{figures} figures within tolerance\n")
    return 0


def _import(args) -> int:
    from archc.onnx_import import import_onnx
    from archc.runtime import outputs
    dims: dict[str, int] = {}
    for item in args.dim:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip().isdigit() or int(value) <= 0:
            raise ArchcError(f"--dim takes NAME=VALUE with a positive whole VALUE (batch=8), found '{item}'")
        if key.strip() in dims:
            raise ArchcError(f"--dim {key.strip()} is given twice")
        dims[key.strip()] = int(value)

    def refuse_existing():
        if args.output and not args.force and os.path.lexists(args.output):
            raise ArchcError(f"{args.output} exists; archc import does not replace a file unless --force")
    if args.force and not args.output:
        raise ArchcError("--force needs -o FILE")
    if args.output:  # before the import's work, and again before writing
        refuse_existing()
        outputs.check_file(args.output, what="the model")
    text = import_onnx(args.file, dims, args.name)
    if not args.output:
        _say(text)
        return 0
    refuse_existing()
    outputs.write_text(args.output, text, what="the model")
    return 0


def _accuracy(args, api) -> int:
    if args.run is None:
        design = api.check(args.file, include=args.include)
        if len(design.runs) != 1:
            raise ArchcError(f"name the run to evaluate with --run; this design has "
                             f"{', '.join(n for n, _ in design.runs) or 'no runs'}")
        args.run = design.runs[0][0]
    report = api.accuracy(args.file, args.run, seed=args.seed, overrides=args.set, precision=args.precision,
                          progress=_progress_printer(), include=args.include)
    _say(report.to_json() if args.json else report.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
