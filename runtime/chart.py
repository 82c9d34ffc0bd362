"""Owns the plots of many runs: a sweep's figures against its swept parameters, and a comparison's normalised bars.

Built like runtime/plots.py's (a Figure without pyplot, its fixed style and size) and saved by
its save(), byte-stable. A sweep gets one figure per metric: a line over the values of its one
parameter; a heatmap over two (every point's value written in its cell); with three or more, one
panel per parameter with a line for each combination of the others. Values are placed in the
order the grid gives them (a category axis: 1, 2, 4, 8 are evenly spaced), failed points are
gaps (grey cells).
"""
from __future__ import annotations

import math

import matplotlib

from .plots import _figure, _style
from .report import si

_LINE_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]
MAX_LEGEND = 12  # lines named in a legend; more are drawn and counted


def _unit(sw, unit: str | None) -> str:
    if unit is not None:
        return unit
    units = sorted({r["throughput_unit"] for r in sw.rows if r is not None and r["status"] == "ok"})
    return units[0] if len(units) == 1 else "/".join(units)


def _value(row, key: str) -> float:
    if row is None or row["status"] != "ok" or row.get(key) is None:
        return math.nan
    v = float(row[key])
    return v * 100 if key == "utilization" else v


def _label(v: float, unit: str) -> str:
    """A heatmap cell's text: the value with its unit when that is short (the colour bar names
    a long one, such as sequences/s)."""
    if math.isnan(v):
        return "failed"
    return f"{v:.1f}%" if unit == "%" else si(v, unit if len(unit) <= 3 else "")


def _log(values) -> bool:
    pos = [v for v in values if not math.isnan(v) and v > 0]
    return bool(pos) and len(pos) == len([v for v in values if not math.isnan(v)]) and max(pos) / min(pos) >= 100


def sweep_figures(sw, metrics) -> dict:
    """{file stem: Figure} for every metric (key, label, unit) of the runtime/sweep.py Sweep
    `sw` with at least one value."""
    out = {}
    for key, label, unit in metrics:
        values = [_value(r, key) for r in sw.rows]
        if all(math.isnan(v) for v in values):
            continue
        u = _unit(sw, unit)
        title = f"{label}: run {sw.run} of {sw.file} ({sw.level} level)"
        if len(sw.grid.keys) == 2:
            out[key] = _heatmap(sw, values, u, f"{label} ({u})", title)
        else:
            out[key] = _lines(sw, values, u, f"{label} ({u})", title)
    return out


def _heatmap(sw, values, unit: str, axis_label: str, title: str):
    import numpy as np
    from matplotlib.colors import LogNorm, Normalize
    (ka, kb), (va, vb) = sw.grid.keys, sw.grid.values
    grid = np.array(values, dtype=float).reshape(len(va), len(vb))  # the last key varies fastest
    finite = grid[~np.isnan(grid)]
    lo, hi = float(finite.min()), float(finite.max())
    norm = LogNorm(lo, hi) if _log(list(finite)) else Normalize(lo, hi if hi > lo else lo + (abs(lo) or 1.0))
    with _style():
        fig = _figure((max(5.0, 1.3 + 1.1 * len(vb)), max(3.5, 1.6 + 0.6 * len(va))))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd"),
                       norm=norm, interpolation="nearest", aspect="auto")
        fig.colorbar(im, ax=ax).set_label(axis_label)
        for (r, c), v in np.ndenumerate(grid):
            dark = not math.isnan(v) and norm(v) < 0.6
            ax.text(c, r, _label(v, unit), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
        ax.set_xticks(range(len(vb)), list(vb))
        ax.set_yticks(range(len(va)), list(va))
        ax.set_xlabel(kb)
        ax.set_ylabel(ka)
        ax.set_title(title)
        fig.tight_layout()
    return fig


def _lines(sw, values, unit: str, axis_label: str, title: str):
    keys, vals = sw.grid.keys, sw.grid.values
    index = {tuple(p.params[k] for k in keys): v for p, v in zip(sw.points, values)}
    log = _log(values)
    with _style():
        n = len(keys)
        fig = _figure((max(6.0, 4.2 * min(n, 3)), 4.2 * math.ceil(n / 3)))
        for i, key in enumerate(keys):
            ax = fig.add_subplot(math.ceil(n / 3), min(n, 3), i + 1)
            others = [k for k in keys if k != key]
            combos = list(_product([vals[keys.index(k)] for k in others]))
            for j, combo in enumerate(combos):
                fixed = dict(zip(others, combo))
                ys = [index[tuple(fixed.get(k, x) if k != key else x for k in keys)] for x in vals[i]]
                name = ", ".join(f"{k}={v}" for k, v in fixed.items()) or None
                ax.plot(range(len(vals[i])), ys, marker="o", markersize=4, linewidth=1.2,
                        color=_LINE_COLORS[j % len(_LINE_COLORS)],
                        label=name if j < MAX_LEGEND else None)
            if len(combos) > 1:
                more = f"{len(combos) - MAX_LEGEND} more lines" if len(combos) > MAX_LEGEND else None
                if more:
                    ax.plot([], [], " ", label=more)
                ax.legend(fontsize=7, frameon=True)
            ax.set_xticks(range(len(vals[i])), list(vals[i]))
            ax.set_xlabel(key)
            ax.set_ylabel(axis_label)
            if log:
                ax.set_yscale("log")
            elif unit == "%":
                ax.set_ylim(0, max(100.0, max((v for v in values if not math.isnan(v)), default=0.0) * 1.05))
            ax.grid(True, linewidth=0.4, alpha=0.5)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def _product(lists):
    import itertools
    return itertools.product(*lists)


# ---------------------------------------------------------------- comparison

_BAR_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def compare_figure(c):
    """Three bar charts of a runtime/compare.py Comparison, one bar per run: throughput per
    chip, per kW and per million USD of the chips it uses ("not declared" where the machine
    declares no cost)."""
    E = c.entries
    units = sorted({e.throughput_unit for e in E})
    unit = units[0] if len(units) == 1 else " | ".join(units)
    panels = (("per chip", [e.per_chip for e in E]),
              ("per kW", [e.per_watt * 1e3 for e in E]),
              ("per million USD", [None if e.per_usd is None else e.per_usd * 1e6 for e in E]))
    with _style():
        fig = _figure((max(8.0, 2.2 + 1.6 * len(E) * 3), 4.6))
        for k, (what, values) in enumerate(panels):
            ax = fig.add_subplot(1, 3, k + 1)
            xs = list(range(len(E)))
            shown = [v if v is not None else 0.0 for v in values]
            ax.bar(xs, shown, color=[_BAR_COLORS[i % len(_BAR_COLORS)] for i in xs], width=0.6)
            top = max(shown) or 1.0
            for x, v in zip(xs, values):
                ax.text(x, (v or 0.0) + top * 0.02, "not declared" if v is None else si(v, ""), ha="center",
                        va="bottom", fontsize=7, rotation=90 if v is None else 0)
            ax.set_ylim(0, top * 1.25)
            ax.set_xticks(xs, [f"{e.system}\n{e.run}" for e in E], fontsize=7)
            ax.set_ylabel(f"{unit} {what}")
            ax.set_title(f"throughput {what}")
            ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        fig.suptitle(f"compare: {', '.join(e.label for e in E)} ({c.level} level)", fontsize=9)
        fig.tight_layout()
    return fig
