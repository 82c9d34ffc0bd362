"""Mapping search: explore a run's parallel mapping (tp, pp, dp, micro_batch, interleave,
recompute) and, for a spatial run, its region shapes and placement (region_rows, placement),
at the analytic or the event level, keeping the chip count and the global batch fixed.

The sampler is Optuna's TPE (seeded, sequential: deterministic); without Optuna a seeded random
search plus greedy local search in numpy is used. Every candidate is checked by the front end
and run by the analytic kernel; a mapping the checker or the runtime rejects is infeasible and
the reason is recorded. The starting mapping is always evaluated first, so the best found is
never slower than it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from archc.dsl.diagnostics import ArchcError

from . import outputs

SEARCHED = ("tp", "pp", "dp", "micro_batch", "interleave", "recompute", "chips", "region_rows", "placement")
PLACED = ("raster", "serpentine")  # the placements searched (adjacent idealises the carriage between regions)
EVENT_ONLY = ("placement",)  # parameters only the event level sees
RECOMPUTE = ("none", "selective", "full")


@dataclass
class Candidate:
    params: dict
    latency_s: float | None = None
    energy_j: float | None = None
    reason: str | None = None  # why it is infeasible

    @property
    def feasible(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        d = {"params": dict(self.params), "feasible": self.feasible}
        if self.feasible:
            d.update(latency_s=self.latency_s, energy_j=self.energy_j)
        else:
            d["reason"] = self.reason
        return d


@dataclass
class SearchResult:
    run: str
    space: dict
    fixed: dict
    trials: int
    seed: int
    algorithm: str
    start: Candidate
    evaluated: list[Candidate] = field(default_factory=list)

    @property
    def feasible(self) -> list[Candidate]:
        return [c for c in self.evaluated if c.feasible]

    @property
    def best(self) -> Candidate | None:
        f = self.feasible
        return min(f, key=lambda c: (c.latency_s, c.energy_j)) if f else None

    @property
    def pareto(self) -> list[Candidate]:
        return pareto_front(self.feasible)

    def to_dict(self) -> dict:
        infeasible = [c for c in self.evaluated if not c.feasible]
        return {"run": self.run, "algorithm": self.algorithm, "seed": self.seed, "trials": self.trials,
                "space": self.space, "fixed": self.fixed, "evaluated": len(self.evaluated),
                "feasible": len(self.feasible), "start": self.start.to_dict(),
                "best": self.best.to_dict() if self.best else None,
                "pareto": [c.to_dict() for c in self.pareto],
                "infeasible": [c.to_dict() for c in infeasible]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_text(self) -> str:
        keys = list(self.start.params)
        out = [f"mapping search of run {self.run}: {self.algorithm}, seed {self.seed}, {self.trials} trials, "
               f"{len(self.evaluated)} distinct mappings, {len(self.feasible)} feasible",
               "fixed: " + ", ".join(f"{k} = {v}" for k, v in self.fixed.items())]

        def row(tag, c):
            vals = [str(c.params[k]) for k in keys]
            if c.feasible:
                return [tag] + vals + [f"{c.latency_s * 1e3:.4f}", f"{c.energy_j:.4g}"]
            return [tag] + vals + ["-", "-"]

        def table(rows):
            head = ["", *keys, "latency ms", "energy J"]
            w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
            return ["  ".join(str(x).rjust(w[i]) for i, x in enumerate(r)).rstrip() for r in [head] + rows]
        out.append("")
        rows = [row("start", self.start)]
        if self.best:
            rows.append(row("best", self.best))
        out += table(rows)
        if not self.start.feasible:
            out.append(f"start is infeasible: {self.start.reason}")
        if self.best and self.start.feasible:
            out.append(f"speedup over start: {self.start.latency_s / self.best.latency_s:.3f}x")
        out += ["", f"latency-energy Pareto front ({len(self.pareto)}):"]
        out += table([row(str(i + 1), c) for i, c in enumerate(self.pareto)])
        reasons: dict[str, int] = {}
        for c in self.evaluated:
            if not c.feasible:
                reasons[c.reason] = reasons.get(c.reason, 0) + 1
        if reasons:
            out += ["", "infeasible mappings:"]
            ranked = sorted(reasons.items(), key=lambda t: (-t[1], t[0]))
            out += [f"  {n:3d} x {r}" for r, n in ranked[:8]]
            if len(ranked) > 8:
                out.append(f"  ... and {len(ranked) - 8} more reasons (all of them in --json)")
        return "\n".join(out) + "\n"


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """Non-dominated candidates on (latency, energy), both minimised; sorted by latency."""
    front = []
    for c in cands:
        dominated = any(o is not c and o.latency_s <= c.latency_s and o.energy_j <= c.energy_j
                        and (o.latency_s < c.latency_s or o.energy_j < c.energy_j) for o in cands)
        if not dominated and not any(f.latency_s == c.latency_s and f.energy_j == c.energy_j for f in front):
            front.append(c)
    return sorted(front, key=lambda c: (c.latency_s, c.energy_j))


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def build_space(params: dict, grid_rows: int = 0) -> tuple[dict, dict, list[tuple]]:
    """(space: name -> choices, fixed: name -> value, parallel: the allowed (tp, pp, dp) triples
    over the names present). `chips` and `global_batch` are fixed: the comparison is fair.
    region_rows: 0 (archc's choice) and the chip's grid_rows over 1, 2, 4, ... 16."""
    fixed = {k: params[k] for k in ("chips", "global_batch") if k in params}
    par = [k for k in ("tp", "pp", "dp") if k in params]
    for k in [k for k in par + ["micro_batch", "interleave"] if k in params]:
        if not isinstance(params[k], int) or isinstance(params[k], bool) or params[k] < 1:
            raise ArchcError(f"--search needs '{k}' to be a positive integer; the run has {params[k]!r}")
    n = 1
    for k in par:
        n *= params[k]
    fixed["tp*pp*dp" if len(par) > 1 else (par[0] if par else "chips")] = n if par else params.get("chips")
    factors = [d for d in _divisors(n) if _is_pow2(d)] if _is_pow2(n) else _divisors(n)
    triples = [()]
    for i in range(len(par)):
        triples = [t + (f,) for t in triples for f in factors]
    triples = [t for t in triples if _prod(t) == n]
    space: dict = {}
    if par:
        space["parallel"] = ["x".join(map(str, t)) for t in triples]
    gb = params.get("global_batch")
    if "micro_batch" in params and isinstance(gb, int) and gb > 0:
        # only with a fixed global batch: otherwise micro_batch is the workload itself
        space["micro_batch"] = sorted(set(_pow2_upto(gb)) | {params["micro_batch"]})
    elif "micro_batch" in params:
        fixed["micro_batch"] = params["micro_batch"]
    if "interleave" in params:
        layers = params.get("layers")
        limit = layers if isinstance(layers, int) and layers > 0 else 8
        space["interleave"] = sorted(set(_pow2_upto(min(limit, 16))) | {params["interleave"]})
    if "recompute" in params:
        space["recompute"] = list(RECOMPUTE)
    if "region_rows" in params and grid_rows > 0:
        space["region_rows"] = sorted({0, params["region_rows"]} | {-(-grid_rows // k) for k in (1, 2, 4, 8, 16)})
    if "placement" in params:
        if params["placement"] not in PLACED:
            raise ArchcError(f"--search compares placed layouts: set the run's placement to raster or serpentine "
                             f"(it has {params['placement']}, which takes consecutive regions to touch)")
        space["placement"] = list(PLACED)
    return space, fixed, par


def _prod(t) -> int:
    p = 1
    for x in t:
        p *= x
    return p


def _candidate(choice: dict, par: list[str]) -> dict:
    out = {}
    if "parallel" in choice:
        out.update(zip(par, (int(x) for x in str(choice["parallel"]).split("x"))))
    out.update({k: v for k, v in choice.items() if k != "parallel"})
    return out


def _precheck(cand: dict, params: dict) -> str | None:
    """Constraints cheaper than the checker: divisibility of the batch and the layers."""
    gb, dp, mb = params.get("global_batch"), cand.get("dp", params.get("dp", 1)), cand.get("micro_batch")
    if mb is not None and isinstance(gb, int):
        if gb % (dp * mb):
            return f"micro_batch * dp ({mb} * {dp}) does not divide global_batch ({gb})"
    layers, pp, il = params.get("layers"), cand.get("pp", params.get("pp", 1)), cand.get("interleave", 1)
    if isinstance(layers, int) and layers % (pp * il):
        return f"pp * interleave ({pp} * {il}) does not divide layers ({layers})"
    if il > 1 and pp == 1:
        return "interleave > 1 needs pp > 1"
    return None


def search(path, run: str, overrides=None, trials: int = 200, seed: int = 0, progress=None,
           level: str = "analytic", include=()) -> SearchResult:
    from . import pipeline as api
    from .pipeline import run_analytic, run_event
    evaluate_run = run_event if level == "event" else run_analytic
    if trials < 1:
        raise ArchcError(f"--trials must be at least 1; found {trials}")
    overrides = _as_dict(overrides)
    source, linked = api.link_file(path, include)  # read and linked once; each candidate re-checks the run only
    design = api.check_linked(source, linked, overrides, run)
    names = [n for n, _ in design.runs]
    if run not in names:
        raise ArchcError(f"no run named '{run}'")
    start_run = dict(design.runs)[run]
    params = dict(start_run.params)
    if not any(k in params for k in SEARCHED):
        raise ArchcError(f"run '{run}' has none of the mapping parameters {', '.join(SEARCHED)}: "
                         "nothing to search")
    space, fixed, par = build_space(params, start_run.machine.chip.rows if start_run.mapping.strategy == "spatial" else 0)
    if level != "event" and any(k in space for k in EVENT_ONLY):
        raise ArchcError(f"run '{run}' has {', '.join(k for k in EVENT_ONLY if k in space)}, which only the event "
                         f"level sees: search it with --search --level event")
    if not any(len(v) > 1 for v in space.values()):
        raise ArchcError(f"run '{run}' has no mapping parameter to search: of {', '.join(SEARCHED)} it has "
                         f"only {', '.join(k for k in SEARCHED if k in params)} (the chip count is kept fixed, and micro_batch too when the run has no global_batch)")
    cache: dict[tuple, Candidate] = {}
    order: list[Candidate] = []

    def evaluate(cand: dict) -> Candidate:
        key = tuple(sorted(cand.items()))
        if key in cache:
            return cache[key]
        c = Candidate(dict(cand))
        reason = _precheck(cand, params)
        if reason is None:
            try:
                r = api.check_linked(source, linked, {**overrides, **{k: str(v) for k, v in cand.items()}}, run).run(run)
                rep = evaluate_run(r, progress=progress)
                c.latency_s, c.energy_j = float(rep.latency_s), float(rep.energy_j)
            except ArchcError as e:
                reason = e.diagnostics[0].message if e.diagnostics else str(e)
        c.reason = reason
        cache[key] = c
        order.append(c)
        return c

    keys = [k for k in ("tp", "pp", "dp") if k in par] + [k for k in space if k != "parallel"]
    start_choice = {}
    if par:
        start_choice["parallel"] = "x".join(str(params[k]) for k in par)
    for k in space:
        if k != "parallel":
            start_choice[k] = params[k]
    start = evaluate({k: params[k] for k in keys})
    try:
        import optuna
        algorithm = "optuna TPE"
        _optuna(optuna, space, start_choice, trials, seed, lambda ch: evaluate(_candidate(ch, par)))
    except ImportError:
        algorithm = "seeded random + greedy local search"
        _random_local(space, start_choice, trials, seed, lambda ch: evaluate(_candidate(ch, par)))
    shown_space = {(",".join(par) if k == "parallel" else k): v for k, v in space.items()}
    return SearchResult(run, shown_space, fixed, trials, seed, f"{algorithm}, {level} level", start, order)


def _as_dict(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return {k: str(v) for k, v in overrides.items()}
    from .pipeline import split_set
    return dict(split_set(s) for s in overrides)


def _optuna(optuna, space, start_choice, trials, seed, score) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, trials))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(start_choice)

    def objective(trial):
        choice = {k: trial.suggest_categorical(k, v) for k, v in space.items()}
        c = score(choice)
        return c.latency_s if c.feasible else float("inf")
    study.optimize(objective, n_trials=trials, n_jobs=1, show_progress_bar=False)


def _random_local(space, start_choice, trials, seed, score) -> None:
    import numpy as np
    rng = np.random.default_rng(seed)
    keys = list(space)
    val = lambda c: c.latency_s if c.feasible else float("inf")  # noqa: E731
    best, best_v = dict(start_choice), val(score(start_choice))
    n_random = max(1, trials // 2)
    for i in range(1, trials):
        if i < n_random:  # explore: uniform random
            choice = {k: space[k][int(rng.integers(len(space[k])))] for k in keys}
        else:  # exploit: one neighbouring value of one parameter of the best so far
            choice = dict(best)
            k = keys[int(rng.integers(len(keys)))]
            j = space[k].index(choice[k]) + int(rng.choice([-1, 1]))
            choice[k] = space[k][min(max(j, 0), len(space[k]) - 1)]
        v = val(score(choice))
        if v < best_v:
            best, best_v = choice, v


# ---- writing the found mapping back as a new run ---------------------------------------------

def _offset(lines_start: list[int], line: int, col: int) -> int:
    return lines_start[line - 1] + col - 1


def check_new_name(path, new_name: str, run: str | None = None, include=()):
    """Refuse a --write-run name that is not an identifier or is already declared; the stages
    (of run `run` checked, the others only parsed)."""
    from . import pipeline
    from archc.dsl.ast import Call, Name
    if not new_name.isidentifier():
        raise ArchcError(f"--write-run needs a name; '{new_name}' is not an identifier")
    stages = pipeline.front(path, None, run, include)
    taken = set()
    for s in stages.ast.stmts:  # the design's declarations and those it imports
        a = s.args[0] if getattr(s, "args", None) else None
        if isinstance(a, Call) and isinstance(a.func, Name):
            taken.add(a.func.id)
        elif isinstance(a, Name):
            taken.add(a.id)
    if new_name in taken:
        raise ArchcError(f"--write-run {new_name}: the design already declares '{new_name}'; choose another name")
    return stages


def write_run(path, run: str, new_name: str, values: dict, include=()) -> str:
    """Append `run NEW_NAME(...)`: the text of run RUN with the given parameter defaults
    substituted. Atomic (runtime/outputs.py: temp file + fsync + os.replace, onto a regular
    file, through a symlink); the result must check. Returns the new text."""
    from archc.dsl.ast import Call, Kwarg, Name, Prop

    from . import pipeline as api
    stages = check_new_name(path, new_name, run, include)
    decl = None
    for s in stages.ast.stmts:
        a = s.args[0] if getattr(s, "args", None) else None
        if isinstance(s, Prop) and s.name == "run" and isinstance(a, Call) and isinstance(a.func, Name) and a.func.id == run:
            decl = s
    if decl is None:
        raise ArchcError(f"--write-run: no run named '{run}' in {path}")
    text = stages.source.text
    starts, pos = [0], 0
    for ln in text.split("\n")[:-1]:
        pos += len(ln) + 1
        starts.append(pos)
    lo = _offset(starts, decl.span.line, decl.span.col)
    hi = _offset(starts, decl.span.end_line, decl.span.end_col)
    call = decl.args[0]
    edits = [(call.func.span, new_name)]
    missing = set(values)
    for a in call.args:
        if isinstance(a, Kwarg) and a.name in values:
            edits.append((a.value.span, _literal(values[a.name])))
            missing.discard(a.name)
    if missing:
        raise ArchcError(f"--write-run: run '{run}' declares no parameter {', '.join(sorted(missing))}")
    body = text[lo:hi]
    for sp, new in sorted(edits, key=lambda e: (e[0].line, e[0].col), reverse=True):
        a, b = _offset(starts, sp.line, sp.col) - lo, _offset(starts, sp.end_line, sp.end_col) - lo
        body = body[:a] + new + body[b:]
    header = f"// {new_name}: run {run} with the mapping found by `archc run --search`\n"
    new_text = text + ("" if text.endswith("\n") else "\n") + "\n" + header + body + "\n"
    # as every output (runtime/outputs.py): a temporary file next to the design (a symlink's
    # target), checked, then renamed onto it; the design keeps its mode and a link stays a link
    with outputs.replacing(path, suffix=".arch") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(new_text)
        try:
            api.check(tmp, None, new_name, include)  # the new run; the file's other runs are not the search's business
        except ArchcError as e:
            raise ArchcError(f"--write-run: the new run would not check, so {path} is unchanged:\n"
                             f"{e.render()}") from None
    return header + body


def _literal(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)
