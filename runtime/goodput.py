"""Failures and goodput of a training run: which failures stop the job, the checkpoint's size and
write time, the job's mean time to interruption (MTTI), the checkpoint interval (Young 1974,
Daly 2006), the expected goodput and wall time to train (Daly's completion-time model), and, at
the event level, a seeded Monte Carlo of the whole run.

Model (docs/language.md, "Failures and goodput"):
- Every component fails as a Poisson process of rate 1 / MTBF (FIT / 1e9 per hour). A
  synchronous data / tensor / pipeline parallel job stops at the failure of any chip, memory,
  link or node it runs on (its blast radius is the whole job), so the job's interruptions are a
  Poisson process of rate lambda = sum of count_i / MTBF_i (components in series) and MTTI =
  1 / lambda. A wafer's spare tiles absorb tile failures (they route around a failed tile), so
  tile failures on a chip that declares spares do not stop it; the report gives the chance that
  some chip runs out of them.
- Checkpoint: the model's state (weights, master weights and optimizer moments; not the
  gradients) once, written to a storage at its aggregate bandwidth; or each chip's share of it
  copied to a peer's memory over the outermost network (Gemini: Wang et al., SOSP 2023).
  delta = bytes / bandwidth. A restart takes R (declared; by default the checkpoint read back,
  a lower bound).
- Interval tau: Young (1974) sqrt(2 delta M); Daly (2006, FGCS 22, eq. 37) for delta < 2M:
  sqrt(2 delta M) [1 + sqrt(delta / 2M) / 3 + (delta / 2M) / 9] - delta, else M.
- Each interval of tau work and its checkpoint must run failure-free; a failure loses the work
  since the last checkpoint and costs a restart, itself restarted by a failure during it. Daly
  (2006, eq. 13): an interval takes M e^(R/M) (e^((tau + delta)/M) - 1) in expectation, so the
  goodput (useful work over wall time) is tau / (M e^(R/M) (e^((tau + delta)/M) - 1)), and the
  time to train T_s of work is the sum over its intervals (the last one shorter).
- Spare nodes: a failed node is swapped for a spare and repaired in `repair`; with none free
  the job waits for the first back. Analytically the restart grows by P(wait) x repair, P(wait)
  the chance that `spares` or more nodes are in repair (their number is Poisson of mean
  repair / M: an M/G/inf queue); the Monte Carlo follows the pool exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archc.dsl.ir import Run

MC_TRIALS = 1000
MC_SEED = 0
Z95 = 1.959963984540054  # the normal's two-sided 95% quantile: the Monte Carlo mean's interval
MAX_EXPONENT = 700.0  # e^700 is near float64's limit: beyond, the run is not expected to end


@dataclass(frozen=True)
class Component:
    """A kind of component of the run: `count` of them, each failing at `rate_per_s`."""

    where: str  # the chip or system that declares it
    kind: str  # chip | memory | link | tile | node
    count: int
    rate_per_s: float
    source: str
    stops_job: bool  # False: spare tiles absorb its failures
    spares: int = 0


@dataclass(frozen=True)
class Inputs:
    """What the analysis needs, in seconds: MTTI M, checkpoint write delta, interval tau,
    restart R (with the expected wait for a spare), and the spare-node pool."""

    mtti_s: float
    delta_s: float
    tau_s: float
    restart_s: float
    spares: int = 0
    repair_s: float = 0.0


# ---- closed forms ---------------------------------------------------------------------------
def mtti(rates_per_s) -> float:
    """Components in series: the job stops at the first failure of any, so MTTI = 1 / sum(rates)."""
    total = float(sum(rates_per_s))
    return math.inf if total <= 0 else 1.0 / total


def young(delta: float, m: float) -> float:
    """Young (1974), "A first order approximation to the optimum checkpoint interval": sqrt(2 delta M)."""
    return math.sqrt(2.0 * delta * m)


def daly(delta: float, m: float) -> float:
    """Daly (2006), "A higher order estimate of the optimum checkpoint interval for restart
    dumps", FGCS 22: eq. 37."""
    if delta >= 2.0 * m:
        return m
    x = delta / (2.0 * m)
    return math.sqrt(2.0 * delta * m) * (1.0 + math.sqrt(x) / 3.0 + x / 9.0) - delta


def segment_time(work: float, delta: float, m: float, restart: float) -> float:
    """Expected wall time of `work` then a checkpoint, with failures at rate 1/m restarting it
    after `restart` (Daly 2006, eq. 13): m e^(R/m) (e^((work + delta)/m) - 1). inf if it overflows."""
    if math.isinf(m):
        return work + delta
    a, b = restart / m, (work + delta) / m
    if a + b > MAX_EXPONENT:
        return math.inf
    return m * math.exp(a) * math.expm1(b)


def goodput(tau: float, delta: float, m: float, restart: float) -> float:
    """The steady-state fraction of wall time spent on new work: tau / segment_time(tau)."""
    t = segment_time(tau, delta, m, restart)
    return 0.0 if math.isinf(t) else tau / t


def wall_time(useful: float, tau: float, delta: float, m: float, restart: float) -> float:
    """Expected wall time to do `useful` seconds of work in intervals of tau, each followed by
    a checkpoint: floor(T_s / tau) whole intervals and the rest."""
    n = math.floor(useful / tau)
    rest = useful - n * tau
    total = n * segment_time(tau, delta, m, restart)
    if rest > 1e-12 * tau:
        total += segment_time(rest, delta, m, restart)
    return total


def p_wait(m: float, spares: int, repair: float) -> float:
    """The chance that a failed node finds no spare: `spares` or more nodes in repair, their
    number Poisson of mean repair / m (arrivals at 1/m, each away `repair`: M/G/inf)."""
    if repair <= 0:
        return 0.0
    if spares <= 0:
        return 1.0
    mu = repair / m
    below = sum(math.exp(-mu + k * math.log(mu) - math.lgamma(k + 1)) for k in range(spares)) if mu > 0 else 1.0
    return max(0.0, 1.0 - below)


# ---- Monte Carlo ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Trials:
    wall_s: np.ndarray  # per trial: wall time to finish the work
    interruptions: np.ndarray  # per trial: failures that stopped the job

    def summary(self, seed: int) -> dict:
        w = self.wall_s
        sd = float(w.std(ddof=1)) if w.size > 1 else 0.0
        return {"trials": int(w.size), "seed": seed, "mean_s": float(w.mean()),
                "ci95_s": Z95 * sd / math.sqrt(w.size), "p50_s": float(np.percentile(w, 50)),
                "p90_s": float(np.percentile(w, 90)), "interruptions_mean": float(self.interruptions.mean()),
                "interruptions_p90": float(np.percentile(self.interruptions, 90))}


def monte_carlo(useful: float, x: Inputs, trials: int = MC_TRIALS, seed: int = MC_SEED) -> Trials:
    """A whole training run, `trials` times (numpy Generator of `seed`): work in intervals of
    tau, each followed by a checkpoint of delta; job-stopping failures a Poisson process of
    rate 1/M over the whole wall time (work, checkpoints, restarts); a failure loses the work
    since the last checkpoint, takes a node from the spare pool (waiting for a repaired one if
    none is free) and restarts in R, a failure during the restart starting it over.

    Vectorised over trials: the intervals a trial completes before its next failure are
    geometric (each succeeds with e^(-(tau + delta)/M)), the time into the failed one an
    exponential truncated to the interval, so the loop runs once per failure, not per interval."""
    rng = np.random.default_rng(seed)
    m, tau, delta, r = x.mtti_s, x.tau_s, x.delta_s, x.restart_s
    n_full = math.floor(useful / tau)
    rest = useful - n_full * tau
    has_rest = rest > 1e-12 * tau
    t = np.zeros(trials)
    fails = np.zeros(trials, dtype=np.int64)
    left = np.full(trials, n_full, dtype=np.int64)  # whole intervals still to do
    last = np.full(trials, has_rest, dtype=bool)  # the shorter last interval still to do
    pool = np.zeros((trials, max(x.spares, 1)))  # when each spare node is ready

    def take_spare(ids: np.ndarray) -> np.ndarray:
        """The wait for a node to replace each failed one (at t[ids]); the failed node goes to repair."""
        if x.repair_s <= 0:
            return np.zeros(ids.size)
        if x.spares <= 0:
            return np.full(ids.size, x.repair_s)
        j = pool[ids].argmin(axis=1)
        ready = pool[ids, j]
        pool[ids, j] = t[ids] + x.repair_s
        return np.maximum(0.0, ready - t[ids])

    def restart(ids: np.ndarray) -> None:
        while ids.size:
            cost = r + take_spare(ids)
            y = rng.exponential(m, ids.size)
            ok = y >= cost
            t[ids[ok]] += cost[ok]
            bad = ids[~ok]
            t[bad] += y[~ok]
            fails[bad] += 1
            ids = bad

    if math.isinf(m):
        t[:] = n_full * (tau + delta) + (rest + delta if has_rest else 0.0)
        return Trials(t, fails)
    active = np.flatnonzero((left > 0) | last)
    while active.size:
        whole = left[active] > 0
        length = np.where(whole, tau, rest) + delta
        p_fail = -np.expm1(-length / m)
        # intervals completed before the next failure (numpy's geometric counts the trial that fails)
        k = rng.geometric(np.maximum(p_fail, 1e-15)) - 1
        todo = np.where(whole, left[active], 1)
        done = np.minimum(k, todo)
        t[active] += done * length
        finished = k >= todo
        left[active] = np.where(whole, left[active] - done, left[active])
        last[active[finished & ~whole]] = False
        failed = active[~finished]
        if failed.size:
            u = rng.random(failed.size)
            into = -m * np.log1p(-u * p_fail[~finished])  # exponential truncated to the interval
            t[failed] += np.minimum(into, length[~finished])
            fails[failed] += 1
            restart(failed)
        active = np.flatnonzero((left > 0) | last)
    return Trials(t, fails)


# ---- a run's figures ------------------------------------------------------------------------
def components(run: Run) -> list[Component]:
    """Every component kind the run's chips use, with how many of them the run has."""
    m = run.machine
    chips = run.mapping.chips
    out = [Component(m.chip.name, r.kind, r.count * chips, r.rate_per_s, r.source,
                     not (r.kind == "tile" and r.spares > 0), r.spares)
           for r in m.chip.reliability]
    per_member = 1  # chips per member of the level
    for lv in m.levels:
        per_instance = per_member * lv.fanout
        for r in lv.reliability:
            if r.kind == "node":
                n = -(-chips // per_instance)
            else:  # each member's link into this level's network
                n = r.count * -(-chips // per_member)
            out.append(Component(lv.name, r.kind, n, r.rate_per_s, r.source, True, r.spares))
        per_member = per_instance
    return out


def _pool(run: Run) -> tuple[int, float, str]:
    """The spare-node pool: the innermost system whose `reliability node` declares spares or a repair."""
    for lv in run.machine.levels:
        for r in lv.reliability:
            if r.kind == "node" and (r.spares or r.repair_s):
                return r.spares, r.repair_s, lv.name
    return 0, 0.0, ""


def checkpoint_cost(run: Run) -> dict:
    """The checkpoint's bytes and write time: the model state once to a storage, or each chip's
    share to a peer over the outermost network."""
    ck = run.checkpoint
    prec = run.precision
    fb = dict(run.format_bytes)
    per_param = fb[prec.weights] + prec.master_bytes - prec.grad_bytes  # weights + master + moments
    fp = dict(run.footprint)
    keep = (prec.master_bytes - prec.grad_bytes) / prec.master_bytes if prec.master_bytes else 0.0
    per_chip = fp["weights"] + fp["optimizer"] * keep
    if ck.to == "peers":
        top = run.machine.levels[-1]
        chips_per_member = run.machine.chips // top.fanout
        bw = top.network.link_bandwidth / chips_per_member
        return {"to": "peers", "bytes": per_chip, "bytes_per": "chip", "bandwidth": bw,
                "bandwidth_per": f"chip (its share of a {top.name} member's {top.network.link_bandwidth / 1e9:g} GB/s)",
                "write_s": per_chip / bw, "bytes_per_param": per_param}
    store = next(s for lv in run.machine.levels for s in lv.storage if s.name == ck.to)
    size = run.graph.params_elems * per_param
    return {"to": store.name, "bytes": size, "bytes_per": "run", "bandwidth": store.bandwidth,
            "bandwidth_per": "aggregate", "write_s": size / store.bandwidth, "bytes_per_param": per_param}


def applies(run: Run) -> bool:
    """A training run on a machine that declares failure rates, or one that declares checkpoints."""
    if run.mode != "train":
        return False
    m = run.machine
    declared = bool(m.chip.reliability) or any(lv.reliability for lv in m.levels)
    return declared or run.checkpoint is not None


def default_checkpoint(run: Run):
    """A run that declares no `checkpoint`: every = auto, to the machine's first storage (else peers)."""
    from dataclasses import replace

    from archc.dsl.ir import Checkpoint
    if run.checkpoint is not None:
        return run
    stores = [s.name for lv in run.machine.levels for s in lv.storage]
    to = stores[0] if stores else ("peers" if run.machine.levels else "")
    return replace(run, checkpoint=Checkpoint(None, to, None, False)) if to else run


def analyse(run: Run, step_s: float, level: str, trials: int = MC_TRIALS, seed: int = MC_SEED) -> dict | None:
    """The report's goodput section (None when it does not apply)."""
    if not applies(run):
        return None
    run = default_checkpoint(run)
    comps = components(run)
    stop = [c for c in comps if c.stops_job]
    m = mtti([c.count * c.rate_per_s for c in stop])
    out: dict = {"components": [{"where": c.where, "kind": c.kind, "count": c.count, "mtbf_s": 1.0 / c.rate_per_s,
                                 "source": c.source or "declared", "stops_job": c.stops_job, "spares": c.spares}
                                for c in comps],
                 "mtti_s": None if math.isinf(m) else m, "notes": []}
    notes = out["notes"]
    if run.checkpoint is None or math.isinf(m):
        notes.append(f"no failure rates declared on '{run.machine.name}' (`reliability` on its chip or systems)"
                     if math.isinf(m) else "a single chip keeps no checkpoint on peers: declare a system with a storage")
        return out
    ck = run.checkpoint
    cost = checkpoint_cost(run)
    delta = cost["write_s"]
    out["checkpoint"] = {**cost, "declared": ck.declared}
    tau_y, tau_d = young(delta, m), daly(delta, m)
    tau = ck.every_s if ck.every_s is not None else tau_d
    restart = ck.restart_s if ck.restart_s is not None else delta
    spares, repair, pool_at = _pool(run)
    pw = p_wait(m, spares, repair)
    r_eff = restart + pw * repair
    out.update(interval_s=tau, interval="declared" if ck.every_s is not None else "derived: Daly 2006",
               young_s=tau_y, daly_s=tau_d, restart_s=restart,
               restart="declared" if ck.restart_s is not None else "derived: the checkpoint read back (a lower bound)",
               spare_nodes={"at": pool_at, "spares": spares, "repair_s": repair, "p_wait": pw} if pool_at else None,
               restart_effective_s=r_eff, goodput=goodput(tau, delta, m, r_eff),
               interruptions_per_day=86400.0 / m, train=None, monte_carlo=None)
    for c in comps:
        if not c.stops_job:
            notes.append(f"{c.spares} spare {c.kind}s per {c.where} absorb its {c.kind} failures")
    if run.train is not None:
        useful = run.train.steps * step_s
        wall = wall_time(useful, tau, delta, m, r_eff)
        fin = not math.isinf(wall)
        out["train"] = {"what": run.train.what, "amount": run.train.amount, "steps": run.train.steps,
                        "useful_s": useful, "wall_s": wall if fin else None,
                        "interruptions": wall / m if fin else None}
        if not fin:
            notes.append(f"the run is not expected to finish: an interval of {tau:.3g} s and its checkpoint rarely "
                         f"run {tau + delta:.3g} s without one of the failures every {m:.3g} s")
        for c in comps:
            if not c.stops_job and fin:
                lam = c.rate_per_s * (c.count / max(1, run.mapping.chips)) * wall
                p_chip = 1.0 - sum(math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
                                   for k in range(c.spares + 1)) if lam > 0 else 0.0
                p_any = -math.expm1(run.mapping.chips * math.log1p(-min(p_chip, 1.0 - 1e-16)))
                notes.append(f"expected {lam:.3g} {c.kind} failures per {c.where} over the run against {c.spares} "
                             f"spares: {p_any:.3g} chance some {c.where} runs out")
        if level == "event" and fin:
            x = Inputs(m, delta, tau, restart, spares, repair)
            out["monte_carlo"] = monte_carlo(useful, x, trials, seed).summary(seed)
    elif level == "event":
        notes.append("declare `train tokens = N` (or samples, steps) for the time to train and its Monte Carlo")
    return out
