"""The Report: what a run costs, per op and in total, as text, JSON and CSV."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

from archc.dsl.diagnostics import printable

SCHEMA = "archc.report/1"


@dataclass(frozen=True)
class OpRow:
    name: str
    kind: str
    time_s: float  # busy time per chip per step, all phases
    flops: float  # per chip per step
    bytes: float  # bytes moved to and from where the op's data lives, per chip per step
    comm_bytes: float
    bound_by: str
    energy_j: float
    share: float  # of the step's busy time
    efficiency: float | None  # the efficiency the chip declares for the op's class (it overrides `utilisation`), or None
    utilisation: float  # of the matrix peak, derived from the engines' geometry over all its passes (1: not a GEMM)
    levels: dict = field(default_factory=dict)  # memory level -> {"bytes", "time_s"}, per chip per step
    clock_hz: float = 0.0  # the tile clock it ran at, time-weighted: below the run's where the power limit holds it
    link_bytes: float = 0.0  # bytes its collectives and transfers send over the links, per chip per step


@dataclass(frozen=True)
class Report:
    schema: str
    run: str
    system: str
    model: str
    level: str
    mode: str
    params: dict
    latency_s: float
    throughput: dict
    flops: float
    model_flops: float
    achieved_flops_per_s: float
    achieved_flops_per_s_per_chip: float
    peak_flops_per_s_per_chip: float
    utilization: float
    energy_j: float
    power_w: float
    bottleneck: str
    bottleneck_reason: str
    chips: int
    mapping: dict
    precision: dict
    memory: dict
    breakdown: dict
    time_by_resource: dict
    machine: dict
    notes: tuple
    ops: tuple
    memory_levels: dict = field(default_factory=dict)  # level -> {"bytes", "time_s"} per chip per step
    # per (collective kind, level it crosses): {"collective", "level", "network", "bytes" (each chip
    # sends), "time_s" (uncontended), "energy_j", "energy_declared", "ops"}, per chip per step
    communication: tuple = ()
    # training runs on machines with failure rates (runtime/goodput.py): MTTI, checkpoint, interval,
    # goodput, time to train, and at the event level the Monte Carlo's distribution; None otherwise
    goodput: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.goodput is None:
            del d["goodput"]  # runs without failure figures keep their JSON as it was
        d["notes"] = list(self.notes)
        d["communication"] = [dict(c, ops=list(c["ops"])) for c in self.communication]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["name", "kind", "time_s", "flops", "bytes", "comm_bytes", "bound_by", "energy_j",
                    "share", "efficiency", "utilisation", "link_bytes"])
        for r in self.ops:
            w.writerow([r.name, r.kind, f"{r.time_s:.6g}", f"{r.flops:.6g}", f"{r.bytes:.6g}",
                        f"{r.comm_bytes:.6g}", r.bound_by, f"{r.energy_j:.6g}", f"{r.share:.4f}",
                        "" if r.efficiency is None else f"{r.efficiency:.3g}", f"{r.utilisation:.3g}",
                        f"{r.link_bytes:.6g}"])
        return out.getvalue()

    def to_text(self, max_ops: int = 15) -> str:
        t = self.throughput
        lines = [
            f"run {self.run}: model {self.model} on {self.system} ({self.chips} chip{'s' if self.chips != 1 else ''}), "
            f"{self.mode}, {self.level} level",
            f"  parameters  {', '.join(f'{k}={v}' for k, v in self.params.items())}",
            f"  mapping     {_mapping_text(self.mapping)}",
            f"  precision   {self.precision['matrix']} x {self.precision['matrix']} -> {self.precision['acc']}"
            f" (vector {self.precision['vector']})",
            "",
            f"  latency     {si(self.latency_s, 's')} per step",
            f"  throughput  {si(t['value'], t['unit'])}",
            f"  achieved    {si(self.achieved_flops_per_s_per_chip, 'FLOP/s')} per chip, "
            f"{self.utilization * 100:.1f}% of {si(self.peak_flops_per_s_per_chip, 'FLOP/s')} peak",
            f"  energy      {si(self.energy_j, 'J')} per step ({si(self.power_w, 'W')} average over "
            f"{self.chips} chip{'s' if self.chips != 1 else ''})",
            f"  memory      {si(self.memory['total'], 'B')} per chip of {si(self.memory['capacity'], 'B')}"
            f" ({self.memory['where']})",
            f"  bottleneck  {self.bottleneck}: {self.bottleneck_reason}",
            f"  machine     {self.machine['tiles_per_chip']} x {self.machine['tile']} per {self.machine['chip']}"
            f" at {si(self.machine['clock_hz'], 'Hz')}{_clock_note(self.machine.get('clock'))}"
            + (f" (declared; its power limit would give this step {si(d, 'Hz')})"
               if (d := self.machine.get("clock_from_power_hz")) else "") + "; "
            f"fixed cost per op {si(self.machine['launch_s'], 's')}"
            + (f"; declared efficiency {', '.join(f'{k} {v:.0%}' for k, v in self.machine['efficiency'].items())}"
               if self.machine["efficiency"] else ""),
        ]
        if (use := _matrix_use(self.ops)):
            lines.append(f"  matrix use  {use}")
        if (held := _held_clock(self)):
            lines.append(f"  clock       {held}")
        lines.append("")
        width = max([len(r.name) for r in self.ops[:max_ops]] + [4])
        width = min(width, 48)
        lines.append(f"  {'op':<{width}}  {'kind':<17} {'time':>10} {'share':>6} {'FLOP':>10} "
                     f"{'bytes':>10} {'link bytes':>10} {'bound by':<9} {'energy':>9}")
        ranked = sorted(self.ops, key=lambda r: (-r.time_s, r.name))
        for r in ranked[:max_ops]:
            name = r.name if len(r.name) <= width else "…" + r.name[-(width - 1):]
            link = si(r.link_bytes, "B") if r.link_bytes else "-"
            lines.append(f"  {name:<{width}}  {r.kind:<17} {si(r.time_s, 's'):>10} {r.share * 100:5.1f}% "
                         f"{si(r.flops, ''):>10} {si(r.bytes, 'B'):>10} {link:>10} {r.bound_by:<9} "
                         f"{si(r.energy_j, 'J'):>9}")
        if len(ranked) > max_ops:
            rest = ranked[max_ops:]
            lines.append(f"  … {len(rest)} more ops, {si(sum(r.time_s for r in rest), 's')} together "
                         f"(--json or --out for all)")
        lines.append("")
        lines += _communication_text(self.communication)
        if self.memory_levels:
            lines.append("  levels      " + ", ".join(f"{k} {si(v['bytes'], 'B')} in {si(v['time_s'], 's')}"
                                                       for k, v in self.memory_levels.items()))
        lines.append("  step        " + ", ".join(f"{k} {si(v, 's')}" for k, v in self.breakdown.items() if v))
        lines.append("  time by     " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in self.time_by_resource.items() if v >= 0.005))
        lines += _goodput_text(self.goodput)
        for n in self.machine.get("derived", ()):
            lines.append(f"  derived     {n}")
        for n in self.notes:
            lines.append(f"  note        {n}")
        return printable("\n".join(lines) + "\n")  # names and units a user wrote reach the terminal


def duration(x: float) -> str:
    """A long time in the unit that reads best: s, min, h or days."""
    for f, u in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if x >= f:
            return f"{x / f:.3g} {u}"
    return si(x, "s")


def _goodput_text(g: dict | None) -> list[str]:
    """The goodput section: what stops the job, the checkpoint, the interval, the goodput and
    the time to train; which figures are declared and where the machine's come from."""
    if g is None:
        return []
    lines = ["  failures and goodput (Poisson failures, Young/Daly checkpoints; docs/language.md):"]
    for c in g["components"]:
        lines.append(f"    {'stops the job' if c['stops_job'] else 'absorbed':<14} {c['count']:,} x {c['where']} "
                     f"{c['kind']}, MTBF {duration(c['mtbf_s'])} each ({c['source']})")
    if g["mtti_s"] is not None:
        lines.append(f"    MTTI          {duration(g['mtti_s'])} ({86400.0 / g['mtti_s']:.3g} interruptions a day)")
    if "checkpoint" in g:
        ck = g["checkpoint"]
        lines.append(f"    checkpoint    {si(ck['bytes'], 'B')} per {ck['bytes_per']} ({ck['bytes_per_param']:g} B per "
                     f"parameter) to {ck['to']} at {si(ck['bandwidth'], 'B/s')} per {ck['bandwidth_per']}: "
                     f"{duration(ck['write_s'])} ({'declared' if ck['declared'] else 'archc default: no checkpoint declared'})")
        lines.append(f"    interval      {duration(g['interval_s'])} of work ({g['interval']}; Young 1974: "
                     f"{duration(g['young_s'])}, Daly 2006: {duration(g['daly_s'])})")
        sp = g["spare_nodes"]
        lines.append(f"    restart       {duration(g['restart_s'])} ({g['restart']})"
                     + (f"; {sp['spares']} spare nodes in {sp['at']}, repair {duration(sp['repair_s'])}: "
                        f"P(no spare) {sp['p_wait']:.3g}, expected restart {duration(g['restart_effective_s'])}"
                        if sp else ""))
        lines.append(f"    goodput       {g['goodput'] * 100:.1f}% of wall time does new work (steady state)")
    if g.get("train"):
        tr = g["train"]
        wall = (f"{duration(tr['wall_s'])} expected wall time, {tr['interruptions']:,.0f} interruptions"
                if tr["wall_s"] is not None else "not expected to finish")
        lines.append(f"    train         {tr['amount']:.4g} {tr['what']} ({tr['steps']:,.0f} steps): "
                     f"{duration(tr['useful_s'])} of steps, {wall}")
    if g.get("monte_carlo"):
        mc = g["monte_carlo"]
        lines.append(f"    monte carlo   {mc['trials']:,} runs (seed {mc['seed']}): mean {duration(mc['mean_s'])} "
                     f"+- {duration(mc['ci95_s'])} (95%), p50 {duration(mc['p50_s'])}, p90 {duration(mc['p90_s'])}; "
                     f"interruptions mean {mc['interruptions_mean']:,.1f}, p90 {mc['interruptions_p90']:,.0f}")
    for n in g["notes"]:
        lines.append(f"    note          {n}")
    lines.append("")
    return lines


def _communication_text(comm: tuple) -> list[str]:
    """The communication summary: per collective kind and level, what each chip sends, in what
    time and for what energy per step; a level that declares no link energy says so."""
    if not comm:
        return []
    lines = ["  communication per chip per step (bytes each chip sends; link time uncontended):"]
    where = [f"{c['level']} ({c['network']})" for c in comm]
    w1 = max(len(c["collective"]) for c in comm)
    w2 = max(len(x) for x in where)
    energy = [si(c["energy_j"], "J") if c["energy_declared"] else "0 J (no link energy declared)" for c in comm]
    w3 = max(len(x) for x in energy)
    for c, at, e in zip(comm, where, energy):
        ops = ", ".join(c["ops"][:3]) + (f" and {len(c['ops']) - 3} more" if len(c["ops"]) > 3 else "")
        lines.append(f"    {c['collective']:<{w1}}  {at:<{w2}}  {si(c['bytes'], 'B'):>9} {si(c['time_s'], 's'):>9}  "
                     f"{e:>{w3}}  ({ops})")
    lines.append("")
    return lines


def _held_clock(rep: "Report") -> str:
    """What the power limit did to the clock, when it held any op below the run's clock."""
    p = rep.machine.get("power") or {}
    busy = sum(r.time_s for r in rep.ops)
    slow = [r for r in rep.ops if r.clock_hz < rep.machine["clock_hz"] * (1 - 1e-9)]
    if not p.get("clock_from_limit") or not slow or busy <= 0:
        return ""
    mean = sum(r.clock_hz * r.time_s for r in rep.ops) / busy
    low = min(slow, key=lambda r: (r.clock_hz, r.name))
    law = "voltage following the clock, power ~ f^3" if p["scaling"] == "cubic" else "fixed voltage, power ~ f"
    return (f"{si(mean, 'Hz')} time-weighted, derived: the {p['limit_w']:.4g} W limit holds {len(slow)} op"
            f"{'s' if len(slow) != 1 else ''} below {si(rep.machine['clock_hz'], 'Hz')}, {low.name} at "
            f"{si(low.clock_hz, 'Hz')} ({law})")


def _matrix_use(ops) -> str:
    """The matrix engines' utilisation over the ops that use them, FLOP-weighted: derived from
    their geometry where the chip declares no efficiency for the op's class, and for declared
    classes what the declaration overrides."""
    derived = [(r.flops, r.utilisation) for r in ops if r.efficiency is None and r.utilisation < 1.0]
    declared: dict[float, list] = {}
    for r in ops:
        if r.efficiency is not None and r.flops > 0:
            declared.setdefault(r.efficiency, []).append((r.flops, r.utilisation))
    parts = []
    if derived and (w := sum(f for f, _ in derived)) > 0:
        # time-weighted: FLOPs over the FLOP-weighted sum of 1 / utilisation
        parts.append(f"{w / sum(f / u for f, u in derived):.1%} of peak, derived from the engines' geometry")
    for eff, xs in sorted(declared.items()):
        w = sum(f for f, _ in xs)
        if w > 0:
            parts.append(f"{eff:.0%} declared where the geometry derives {w / sum(f / u for f, u in xs):.1%}")
    return "; ".join(parts)


def summary(rep: "Report", top: int = 5) -> str:
    """A report in a few lines, figures to 4 significant digits: what a golden file keeps, so
    that a change shows as a diff a person can read."""
    t = rep.throughput
    lines = [f"[{rep.run}] {rep.model} on {rep.system} ({rep.chips} chip{'s' if rep.chips != 1 else ''}), "
             f"{rep.mode}, {rep.level}",
             f"  latency {si(rep.latency_s, 's', 4)}, throughput {si(t['value'], t['unit'], 4)}, "
             f"utilization {rep.utilization * 100:.4g}%",
             f"  energy {si(rep.energy_j, 'J', 4)}, memory {si(rep.memory['total'], 'B', 4)} of "
             f"{si(rep.memory['capacity'], 'B', 4)}, bottleneck {rep.bottleneck}"]
    for r in sorted(rep.ops, key=lambda r: (-r.time_s, r.name))[:top]:
        lines.append(f"  {si(r.time_s, 's', 4):>10} {r.share * 100:5.1f}% {r.bound_by:<8} {r.name} ({r.kind})")
    for c in rep.communication:
        lines.append(f"  comm {c['collective']} over {c['level']}: {si(c['bytes'], 'B', 4)} per chip in "
                     f"{si(c['time_s'], 's', 4)}, {si(c['energy_j'], 'J', 4) if c['energy_declared'] else 'no link energy declared'}"
                     f" ({', '.join(c['ops'])})")
    if (g := rep.goodput) and g.get("mtti_s") is not None:
        line = f"  goodput MTTI {si(g['mtti_s'], 's', 4)}"
        if "checkpoint" in g:
            line += (f", checkpoint {si(g['checkpoint']['bytes'], 'B', 4)} in {si(g['checkpoint']['write_s'], 's', 4)}, "
                     f"every {si(g['interval_s'], 's', 4)}, goodput {g['goodput'] * 100:.4g}%")
        lines.append(line)
    return printable("\n".join(lines) + "\n")


def _mapping_text(m: dict) -> str:
    parts = [m["strategy"]]
    for k in ("tp", "pp", "dp", "ep"):
        if m.get(k, 1) > 1:
            parts.append(f"{k}={m[k]}")
    parts.append(f"micro_batch={m['micro_batch']}")
    parts.append(f"global_batch={m['global_batch']}")
    if m["recompute"] != "none":
        parts.append(f"recompute={m['recompute']}")
    if m["interleave"] > 1:
        parts.append(f"interleave={m['interleave']}")
    if m.get("schedule") == "gpipe" and m["pp"] > 1:
        parts.append("schedule=gpipe")
    if m.get("region_rows"):
        parts.append(f"region_rows={m['region_rows']}")
    if m.get("placement", "adjacent") != "adjacent":
        parts.append(f"placement={m['placement']}")
    if m.get("overlap_dp"):
        parts.append(f"overlap_dp (buckets of {si(m['bucket_bytes'], 'B')})")
    if m.get("accumulate_in_gemm"):
        parts.append("accumulate_in_gemm")
    if m.get("dispatch_s"):
        parts.append(f"dispatch {m['dispatch']} ({si(m['dispatch_s'], 's')} per op on the host)")
    return ", ".join(parts)


_PREFIX = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""),
           (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")]


def _clock_note(clock: str | None) -> str:
    """How the clock was chosen, for a tile that declares a sustained clock."""
    return {"sustained": " (sustained at the power limit; `clock boost` for a burst)",
            "boost": " (boost: a burst; the sustained clock is lower)"}.get(clock or "", "")


def si(x: float, unit: str, digits: int = 3) -> str:
    """`digits` significant digits with an SI prefix: 1.23 ms, 456 GFLOP/s."""
    if x == 0:
        return f"0 {unit}".strip()
    ax = abs(x)
    for f, p in _PREFIX:
        if ax >= f * (1 - 0.5 * 10 ** -digits):
            return f"{x / f:.{digits}g} {p}{unit}".strip()
    return f"{x:.{digits}g} {unit}".strip()


def csv_cell(v) -> str:
    """A figure as a CSV cell: empty for None, floats to 10 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)
