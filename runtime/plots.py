"""Report plots: a roofline of a run's ops (both levels) and, at the event level, the busy
fraction of each resource on the machine's grid and of each link.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, no global state) and
saved byte-stable: fixed size, DPI and font (DejaVu Sans, bundled with matplotlib), SVG with a
fixed hash salt and no date, PNG without the Software stamp.
"""
from __future__ import annotations

import io
import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

FIGSIZE = (8.0, 5.5)
DPI = 100
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "svg.hashsalt": "archc",
    "svg.fonttype": "none",  # text stays text: searchable, smaller, still byte-stable
    "axes.unicode_minus": True,
    "path.simplify": True,
}
# colours per bound (the kernel's BOUNDS), fixed so the same bound has the same colour everywhere
_BOUND_COLORS = {"compute": "#1f77b4", "memory": "#d62728", "sram": "#ff7f0e", "noc": "#9467bd",
                 "link": "#2ca02c", "overhead": "#7f7f7f"}
_EXTRA_COLORS = ["#8c564b", "#e377c2", "#bcbd22", "#17becf"]


@contextmanager
def _style():
    with matplotlib.rc_context(_RC):
        yield


def _figure(size=FIGSIZE) -> Figure:
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _si(x: float, unit: str) -> str:
    from .report import si
    return si(x, unit)


# ---------------------------------------------------------------- roofline

def memory_bandwidth(run) -> tuple[float, str]:
    """(B/s, what) of the memory the ops' data lives in, per chip: the chip's memory (HBM),
    the pooled memory of the system, or else the tiles' SRAM together."""
    m = run.machine
    mem = m.chip.memory or m.memory
    if mem is not None:
        return mem.bandwidth * (mem.efficiency or 1.0), mem.name
    return m.tile.sram_bandwidth * m.chip.tiles, "on-chip SRAM"


def roofline(report, run=None) -> Figure:
    """Each op at (FLOP/byte, achieved FLOP/s per chip), log-log, with the compute roof (the
    chip's peak) and, given the Run, the memory roof; coloured by what bounds the op."""
    with _style():
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        peak = report.peak_flops_per_s_per_chip
        pts = [(r.flops / r.bytes, r.flops / r.time_s, r.bound_by) for r in report.ops
               if r.flops > 0 and r.bytes > 0 and r.time_s > 0]
        bounds = sorted({b for _, _, b in pts})
        extra = iter(_EXTRA_COLORS * 4)
        colors = {b: _BOUND_COLORS.get(b) or next(extra) for b in bounds}
        for b in bounds:
            xs = [x for x, _, bb in pts if bb == b]
            ys = [y for _, y, bb in pts if bb == b]
            ax.scatter(xs, ys, s=22, color=colors[b], alpha=0.85, edgecolors="none",
                       label=f"{b}-bound ({len(xs)})")
        xs_all = [x for x, _, _ in pts] or [1.0]
        ys_all = [y for _, y, _ in pts] or [peak]
        bw, bw_what = memory_bandwidth(run) if run is not None else (None, "")
        lo = min(xs_all) / 4
        hi = max(xs_all) * 4
        if bw:
            ridge = peak / bw
            lo, hi = min(lo, ridge / 8), max(hi, ridge * 8)
            xr = [lo, ridge, hi]
            ax.plot(xr, [min(bw * x, peak) for x in xr], color="black", linewidth=1.4,
                    label=f"roof: {_si(peak, 'FLOP/s')} peak, {_si(bw, 'B/s')} effective {bw_what}")
            ax.axvline(ridge, color="black", linewidth=0.6, linestyle=":")
        else:
            ax.plot([lo, hi], [peak, peak], color="black", linewidth=1.4,
                    label=f"compute roof: {_si(peak, 'FLOP/s')} peak")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ymin = min(min(ys_all), (bw * lo) if bw else peak) / 2
        ax.set_ylim(max(ymin, peak * 1e-9), peak * 2)
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("achieved FLOP/s per chip")
        ax.set_title(f"roofline: run {report.run} ({report.model} on {report.system}, "
                     f"{report.level} level)")
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
        ax.legend(loc="lower right", fontsize=8, frameon=True)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------- event level

def _system_grid(machine, chips: int):
    """(rows, cols, position(chip) -> (r, c)) of the first `chips` chips on the system's nested
    grids: the levels they span, the outermost of them only as far as it is used."""
    dims = []  # (fanout, rows, cols) per level used
    inner = 1
    for lv in machine.levels:
        if inner >= chips:
            break
        f, lc = max(1, lv.fanout), max(1, lv.cols)
        used = min(f, -(-chips // inner))
        if used < f:  # the outermost level, partly used: its first `used` members, row-major
            lc = min(lc, used)
        lr = -(-used // lc) if used < f else max(1, lv.rows)
        if dims and lr == 1 and lc > 1 and math.prod(c for _, _, c in dims) > 1:
            lr, lc = lc, 1  # a line of groups of a line: the groups as rows, not one long line
        dims.append((f, lr, lc))
        inner *= f
    rows = math.prod(r for _, r, _ in dims) if dims else 1
    cols = math.prod(c for _, _, c in dims) if dims else 1

    def pos(chip: int):
        r = c = 0
        rmul = cmul = 1
        inner = 1
        for f, lr_n, lc_n in dims:
            member = (chip // inner) % f
            lr, lc = divmod(member, lc_n)
            r += lr * rmul
            c += lc * cmul
            rmul *= lr_n
            cmul *= lc_n
            inner *= f
        return r, c
    return rows, cols, pos


def utilisation_grid(run, builder, result):
    """(grid of busy fractions (NaN: unused), title) of the run's resources on the machine."""
    import numpy as np
    util = np.asarray(result.utilization(), dtype=float)
    m = run.machine
    mp = run.mapping
    W = getattr(builder, "wafer", None)
    if W is not None:  # a tile-granular run: its tiles (or blocks) where they are on the grid
        unit = "tile" if W.s == 1 else f"{W.s} x {W.s} block"
        if W.row_tiles:  # weight streaming: a row's tiles are busy alike (their row's resource)
            grid = np.repeat(util[W.res0:W.res0 + W.rows, None], W.cols, axis=1)
            return grid, f"busy fraction per {unit} ({W.rows} x {W.cols}; on the grid, the tiles of a row alike)"
        grid = W.tile_grid(util)  # a band's rows as its top row, which stands for them
        chips = W.rows // W.chip_rows
        stack = f", {chips} chips stacked" if chips > 1 else ""
        return grid, f"busy fraction per {unit} ({W.rows} x {W.cols}{stack}; on the grid)"
    if hasattr(builder, "stage_res") and m.levels and mp.chips > 1:
        # one cell per chip on the system grid; chips s*tp*dp .. (s+1)*tp*dp-1 run stage s
        rows, cols, pos = _system_grid(m, mp.chips)
        per_stage = max(1, mp.tp * mp.dp)
        grid = np.full((rows, cols), np.nan)
        for chip in range(min(mp.chips, rows * cols)):
            s = chip // per_stage
            if s < len(builder.stage_res):
                r, c = pos(chip)
                if r < rows and c < cols:
                    grid[r, c] = util[builder.stage_res[s]]
        return grid, f"busy fraction per chip ({mp.chips} of {m.chips} chips, system grid)"
    # on a chip's tile grid: each resource's share of the tiles in row-major order
    names = list(builder.res_names)
    chips = max(1, mp.chips)
    rows, cols = m.chip.rows, m.chip.cols * chips
    regions = [k for k, n in enumerate(names) if n != "optimizer"] or list(range(len(names)))
    n, cells = len(regions), rows * cols
    flat = np.full(cells, np.nan)
    if n:
        if n <= cells:
            for j, k in enumerate(regions):
                flat[j * cells // n:(j + 1) * cells // n] = util[k]
        else:
            acc, cnt = np.zeros(cells), np.zeros(cells)
            for j, k in enumerate(regions):
                acc[j * cells // n] += util[k]
                cnt[j * cells // n] += 1
            flat = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)
    what = f"{chips} chips x " if chips > 1 else ""
    return flat.reshape(rows, cols), (f"busy fraction per resource ({n} resources on {what}"
                                      f"{m.chip.rows} x {m.chip.cols} tiles, row-major)")


def _grid_figure(grid, cmap, norm, label: str, title: str, annotate: bool = False) -> Figure:
    """A heatmap of `grid` (row 0 on top; NaN cells drawn as unused) with a colour bar."""
    import numpy as np
    with _style():
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, interpolation="nearest",
                       aspect="auto" if grid.shape[1] > 4 * grid.shape[0] else "equal")
        fig.colorbar(im, ax=ax).set_label(label)
        if annotate:
            for (r, c), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(c, r, f"{v:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if v < 0.6 else "black")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        ax.set_title(title)
        fig.tight_layout()
    return fig


def utilisation_heatmap(report, run, builder, result) -> Figure:
    grid, what = utilisation_grid(run, builder, result)
    return _grid_figure(grid, matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd"), Normalize(0.0, 1.0),
                        "busy fraction of the makespan",
                        f"utilisation: run {report.run} ({report.system}, event level)\n{what}",
                        annotate=grid.size <= 64 and grid.shape[1] <= 16)


def wafer_link_grid(builder, result):
    """On a tile-granular run, (grid, title): the busy fraction of each east-west link of the
    tile grid (the busier of its two directions), at the position of its west end; None
    otherwise."""
    import numpy as np
    W = getattr(builder, "wafer", None)
    if W is None or W.cols < 2 or W.row_tiles:  # weight streaming makes no fabric links
        return None
    util = np.asarray(result.link_utilization(), dtype=float)
    east, west = W.link_grid(util, "east"), W.link_grid(util, "west")
    unit = "tile" if W.s == 1 else f"{W.s} x {W.s} block"
    return np.maximum(east, west), (f"east-west links between neighbouring {unit}s ({W.rows} x {W.cols - 1}), "
                                    f"busier direction")


def link_heatmap(report, builder, result, top: int = 50) -> Figure:
    """Busy fraction per link: on a tile grid a heatmap of its links where they are; otherwise a
    bar chart of the `top` most loaded links (system links are known by name only)."""
    import numpy as np
    wafer = wafer_link_grid(builder, result)
    if wafer is not None:
        grid, what = wafer
        top_u = float(np.nanmax(grid)) if grid.size else 0.0
        return _grid_figure(grid, matplotlib.colormaps["magma"], Normalize(0.0, max(top_u, 1e-9)),
                            "busy fraction of the makespan",
                            f"links: run {report.run} ({report.system}, event level)\n{what}")
    util = np.asarray(result.link_utilization(), dtype=float)
    names = list(builder.net.names)
    order = sorted(range(util.size), key=lambda k: (-util[k], names[k] if k < len(names) else ""))[:top]
    with _style():
        fig = _figure((8.0, max(3.0, 1.2 + 0.18 * max(1, len(order)))))
        ax = fig.add_subplot(1, 1, 1)
        if order:
            ys = list(range(len(order)))
            ax.barh(ys, [util[k] for k in order], color="#2ca02c", height=0.7)
            ax.set_yticks(ys, [names[k] if k < len(names) else f"link {k}" for k in order], fontsize=7)
            ax.invert_yaxis()
            for y, k in zip(ys, order):
                ax.text(util[k], y, f" {util[k]:.1%}", va="center", fontsize=6)
        else:
            ax.text(0.5, 0.5, "no links in this run", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        top_u = max((float(util[k]) for k in order), default=0.0)
        ax.set_xlim(0.0, min(1.0, top_u * 1.2) if top_u > 0 else 1.0)
        ax.set_xlabel("busy fraction of the makespan")
        shown = f"top {len(order)} of {util.size}" if util.size > len(order) else f"{util.size}"
        ax.set_title(f"links: run {report.run} ({report.system}, event level), {shown} links by load")
        ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------- writing

def save(fig: Figure, path_stem: Path) -> list[Path]:
    """Write `stem.png` and `stem.svg` byte-stably, each as runtime/outputs.py writes outputs
    (atomically, onto a new path or a regular file only, with the umask's mode); returns the paths."""
    from .outputs import write_bytes
    path_stem = Path(path_stem)
    png, svg = path_stem.with_suffix(".png"), path_stem.with_suffix(".svg")
    for path, options in ((png, dict(format="png", dpi=DPI, metadata={"Software": None})),
                          (svg, dict(format="svg", metadata={"Date": None}))):
        buf = io.BytesIO()
        with _style():
            fig.savefig(buf, **options)
        write_bytes(path, buf.getvalue())
    return [png, svg]


def write_plots(out_dir, report, run, event_result=None) -> list[Path]:
    """roofline.png/svg always; with `event_result` = (builder, EventResult) also
    utilisation.png/svg and links.png/svg."""
    out = Path(out_dir)
    written = save(roofline(report, run), out / "roofline")
    if event_result is not None:
        builder, result = event_result
        written += save(utilisation_heatmap(report, run, builder, result), out / "utilisation")
        written += save(link_heatmap(report, builder, result), out / "links")
    return written
