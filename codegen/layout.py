"""Spatial layouts: which regions a spatial run has (regions), the order a sample visits them
(visits), and where a wafer-scale chip's regions go (layout). A spatial run gives each op a
region of tiles (the analytic kernel sizes them); on a mesh fabric the regions are laid out as
rectangles of whole blocks of tiles, in bands, in op order, so that consecutive regions
touch. A lowering decision; the event level executes the layout it is given (and, for long
runs, simulates the few the estimate ranks best and keeps the fastest, runtime/event_level.py)."""
from __future__ import annotations

import math
from collections.abc import Sequence


REFERENCE = False  # layouts(): every band height worked out one at a time in Python, as written,
# even when given the kernel's loops (the reference: tests/test_plan_cases.py checks _ranked gives
# the same ranked layouts)


class _Ranked(Sequence):
    """layouts()' ranked layouts, kept as one (layouts, regions, 4) array of (y, x, h, w) and
    made into lists of tuples only for the ranks asked for (the event level asks for a few)."""

    def __init__(self, rects):
        self._a = rects

    def __len__(self) -> int:
        return int(self._a.shape[0])

    def __getitem__(self, k: int) -> list[tuple[int, int, int, int]]:
        return [tuple(r) for r in self._a[k].tolist()]

    def array(self, k: int):
        """The k-th layout as a (regions, 4) int64 array."""
        return self._a[k]


def _total(xs) -> float:
    """xs summed left to right. Python's sum() compensates from 3.12; the layouts must not
    depend on the Python version (on 3.11 the two agree)."""
    t = 0.0
    for x in xs:
        t += x
    return t


def _ranked(nr: int, nc: int, s: int, tiles, d, work, entry, samples: int, serpentine: bool,
            hop, cands: list[int], loops):
    """layouts()'s ranking of every band height of `cands` at once, in the event kernel's
    typed loops (`loops`: layout_shares and layout_split, the bisections; layout_place and
    layout_balanced, the two packings; layout_costs, the estimate), the ranking in NumPy:
    the same floating-point operations in the same order as the reference (REFERENCE), so the
    same layouts in the same order (tests/test_plan_cases.py). None if no height has a
    layout."""
    import numpy as np

    n = len(d)
    if not cands:
        return None
    dd = np.asarray(d, np.float64)
    H = np.asarray(cands, np.int64)
    C = H.size
    # place(H, a) at each height's largest share a (fits()'s bisection: 40 halvings of [0, nr nc / min d])
    a = np.zeros(C)
    loops.layout_shares(dd, H, nr, nc, nr * nc / min(d), 40, a)
    placed = np.zeros((C, n, 4), np.int64)
    loops.layout_place(dd, a, H, nc, serpentine, placed.reshape(-1))
    out, which = [placed], [np.arange(C) * 2]  # found's order: each height's packing, then its balanced split
    # balanced(H): per band count K = nr // H, the split of least largest band demand
    # (balanced_split's bisection: 50 halvings of [max d, sum d])
    K = nr // H
    ok = (K >= 1) & (n <= K * nc)
    Ku = np.unique(K[ok])
    if Ku.size:
        cnt = np.zeros(Ku.size, np.int64)
        kb = np.zeros(Ku.size * n, np.int64)
        loops.layout_split(dd, Ku, nc, max(d), _total(d), 50, cnt, kb)
        at = np.searchsorted(Ku, K)
        hs = np.flatnonzero(ok & (cnt[np.minimum(at, Ku.size - 1)] <= Ku[np.minimum(at, Ku.size - 1)]))
        if hs.size:
            bal = np.zeros((hs.size, n, 4), np.int64)
            loops.layout_balanced(dd, kb, at[hs], H[hs], nc, serpentine, bal.reshape(-1))
            out.append(bal)
            which.append(hs * 2 + 1)
    rects = np.ascontiguousarray(np.concatenate(out))
    seq = np.concatenate(which)
    Hs = rects[:, 0, 2]
    cost = np.zeros(rects.shape[0])
    loops.layout_costs(rects.reshape(-1), dd, np.asarray(work, np.float64), np.asarray(entry, np.float64),
                       np.sqrt(np.asarray(tiles, np.float64)), s, 0.0 if hop is None else hop, hop is not None,
                       serpentine, nc, samples, cost)
    order = np.lexsort((seq, Hs, cost))
    ranked = rects[order]
    # both packings of a height can give the same rectangles: the same cost, so adjacent here
    pair = seq[order] // 2
    dup = np.zeros(order.size, bool)
    dup[1:] = (pair[1:] == pair[:-1]) & (ranked[1:] == ranked[:-1]).all(axis=(1, 2))
    return _Ranked(ranked[~dup])


def layout(nr: int, nc: int, s: int, tiles: list[float], work=None, entry=None,
            samples: int = 1, band: int = 0, serpentine: bool = False, hop: float | None = None,
            rank: int = 0, loops=None) -> tuple[list | None, bool]:
    """The rank-th layout of layouts() (None if there are not that many), and whether regions
    share blocks."""
    ranked, shared = layouts(nr, nc, s, tiles, work, entry, samples, band, serpentine, hop, loops)
    return (ranked[rank] if rank < len(ranked) else None), shared


def layouts(nr: int, nc: int, s: int, tiles: list[float], work=None, entry=None,
            samples: int = 1, band: int = 0, serpentine: bool = False,
            hop: float | None = None, loops=None) -> tuple[list, bool]:
    """Rectangles (y, x, h, w) of blocks for regions wanting `tiles` tiles each, in order:
    the grid is cut into bands of H block rows, regions are placed left to right in a
    band (a region of width ceil(a * demand / H) blocks of s x s tiles), a region that does not fit in
    what is left of a band starts the next; the columns a band has left over are shared out
    among its regions. For each H the largest a that fits (the smallest share of its demand
    any region gets); then the H whose pipeline of `samples` samples is estimated fastest
    (sum of the region times + (samples - 1) x the slowest), of this packing and of the
    regions split over all the bands with balanced demand (balanced): a region's time is estimated as
    work[r] x demand / tiles given (its compute and SRAM time at the analytic size) plus
    entry[r] x (analytic side) / (its rows) (its NoC input time at the analytic side,
    entering over the block rows of its west edge). `band` > 0 fixes H (block rows; the
    user's region_rows) if the regions fit in bands of that height. `serpentine`: the odd
    bands run right to left (their regions mirrored), so that consecutive regions meet at
    the band ends. With `hop` (seconds a block) a region that starts a band also pays its
    input's carriage from the band before (the event level's hand-over flows): its NoC input time again and the hops.
    With more regions than blocks, regions share blocks: ([rectangles], True). Returns the
    distinct layouts, the estimate's best first, and False. `loops`: the event kernel
    (runtime/events.py kernel()), whose typed loops run the bisections for every band height
    at once (_ranked); without it (or with REFERENCE) each height is worked out in Python."""
    d = [max(t, 1e-9) / (s * s) for t in tiles]
    n = len(d)
    if not n:
        return [[]], False
    work = work if work is not None else [1.0] * n
    entry = entry if entry is not None else [0.0] * n
    if n > nr * nc:
        return [[((k // nc) % nr, k % nc, 1, 1) for k in range(n)]], True

    def widths(H, a):
        return [max(1, math.ceil(a * x / H - 1e-9)) for x in d]

    def fits(H, a):
        bands, x = 1, 0
        for w in widths(H, a):
            if w > nc:
                return False
            if x + w > nc:
                bands, x = bands + 1, 0
            x += w
        return bands <= nr // H

    def lay(H, bands, w):
        """The rectangles of `bands` (lists of regions, in order, one band of H block rows
        each) with widths w; odd bands mirrored if serpentine."""
        out = [None] * n
        for b, regs in enumerate(bands):
            x = 0
            for r in regs:
                out[r] = (b * H, nc - x - w[r] if serpentine and b % 2 else x, H, w[r])
                x += w[r]
        return out

    def place(H, a):
        """Left to right at the smallest share a, a region that does not fit starting the next
        band; the columns a band has left over go to its regions in proportion to their demand
        (largest remainder first)."""
        bands: list[list[int]] = [[]]
        x = 0
        ws = widths(H, a)
        for r, w in enumerate(ws):
            if x + w > nc:
                bands.append([])
                x = 0
            bands[-1].append(r)
            x += w
        for regs in bands:
            spare = nc - sum(ws[r] for r in regs)
            tot = _total(d[r] for r in regs)
            extra = {r: int(spare * d[r] / tot) for r in regs}
            left = spare - sum(extra.values())
            for r in sorted(regs, key=lambda r: (-(spare * d[r] / tot - extra[r]), r))[:left]:
                extra[r] += 1
            for r in regs:
                ws[r] += extra[r]
        return lay(H, bands, ws)

    def balanced(H):
        """The regions, in order, split into the bands so that the largest band demand is
        least (each band at most nc regions), a band's columns shared in proportion to demand
        (largest remainder, at least one each); None if impossible."""
        K = nr // H
        if K < 1 or n > K * nc:
            return None
        got = balanced_split(K)
        return None if got is None else lay(H, *got)

    def balanced_split(K):
        """balanced()'s bands and widths for K bands (None if impossible)."""

        def groups(cap):
            out, cur, tot = [], [], 0.0
            for r in range(n):
                if cur and (tot + d[r] > cap or len(cur) == nc):
                    out.append(cur)
                    cur, tot = [], 0.0
                cur.append(r)
                tot += d[r]
            return out + [cur]
        lo_c, hi_c = max(d), _total(d)
        for _ in range(50):
            mid = (lo_c + hi_c) / 2
            lo_c, hi_c = (lo_c, mid) if len(groups(mid)) <= K else (mid, hi_c)
        bands = groups(hi_c)
        if len(bands) > K:
            return None
        ws = [1] * n
        for regs in bands:
            tot = _total(d[r] for r in regs)
            want = {r: max(1.0, nc * d[r] / tot) for r in regs}
            for r in regs:
                ws[r] = max(1, int(want[r]))
            while sum(ws[r] for r in regs) > nc:  # the minimums overshoot: take from the widest
                ws[max(regs, key=lambda r: (ws[r], -r))] -= 1
            for r in sorted(regs, key=lambda r: (-(want[r] - ws[r]), r))[:nc - sum(ws[r] for r in regs)]:
                ws[r] += 1
        return bands, ws

    every = n * nr <= 20_000
    cands = sorted(set(range(1, nr + 1)) if every else
                   {h for h in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if h <= nr}
                   | {nr, max(1, round(math.sqrt(_total(d) / n)))})
    if band > 0 and fits(min(band, nr), 0.0):
        cands = [min(band, nr)]
    slow = REFERENCE or loops is None
    if slow:
        cands = [H for H in cands if fits(H, 0.0)]
    else:  # at share 0 every region is one block wide: ceil(n / nc) bands of H rows
        cands = [H for H in cands if -(-n // nc) <= nr // H]
    if not slow:
        ranked = _ranked(nr, nc, s, tiles, d, work, entry, samples, serpentine, hop, cands, loops)
        if ranked is None:  # not even one block per region in a band of one row: share blocks
            return [[((k // nc) % nr, k % nc, 1, 1) for k in range(n)]], True
        return ranked, False
    found = []  # (slowest region's time, H, a)
    for H in cands:
        lo, hi = 0.0, nr * nc / min(d)
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(H, mid) else (lo, mid)
        for rects in (place(H, lo), balanced(H)):
            if rects is None:
                continue
            t = [work[r] * d[r] / (h * w) + entry[r] * math.sqrt(tiles[r]) / (h * s)
                 for r, (_, _, h, w) in enumerate(rects)]
            for r in range(1, n if hop is not None else 0):
                if rects[r][0] != rects[r - 1][0]:  # starts a band: its input crosses from the band before
                    far = rects[r][3] + rects[r - 1][3] if serpentine else nc
                    t[r] += entry[r] * math.sqrt(tiles[r]) / (H * s) + hop * (H + far)
            found.append((_total(t) + (samples - 1) * max(t), H, rects))
    if not found:  # not even one block per region in a band of one row: share blocks
        return [[((k // nc) % nr, k % nc, 1, 1) for k in range(n)]], True
    ranked, seen = [], set()
    for f in sorted(found, key=lambda f: (f[0], f[1])):
        if tuple(f[2]) not in seen:  # both packings can give the same rectangles
            seen.add(tuple(f[2]))
            ranked.append(f[2])
    return ranked, False


def regions(T, fwd, bwd) -> tuple[list[int], dict[int, list[int]]]:
    """The spatial regions: (owner row of each region, row -> its region per instance). A
    forward row of `count` repeats owns `count` regions (the analytic kernel sizes a region
    per op instance); an op that runs in place uses the regions of the op before it;
    backward rows use their op's."""
    owner: list[int] = []
    region: dict[int, list] = {}
    row_regs: dict[int, list] = {}
    last = None
    for i in fwd:
        k = max(1, int(round(T[i].count)))
        if not T[i].colocate or last is None:
            last = list(range(len(owner), len(owner) + k))
            owner += [i] * k
        region[int(T[i].op)] = last
        row_regs[i] = [last[j % len(last)] for j in range(k)]
    for i in bwd:
        regs = region.get(int(T[i].op), last)
        if not regs:
            regs = [len(owner)]
            owner.append(i)
        k = max(1, int(round(T[i].count)))
        row_regs[i] = [regs[j % len(regs)] for j in range(k)]
    return owner, row_regs


def visits(plan, rows, backward: bool) -> list[tuple[int, int]]:
    """The order a sample passes the op instances of `rows` (forward order), as (row, k):
    the rows of one repeated layer (consecutive rows of the same repeat body) run
    instance by instance, all of instance 0 before instance 1; a backward pass visits the
    reverse order."""
    ops = plan.run.graph.ops
    out: list[tuple[int, int]] = []
    g: list[int] = []

    def flush():
        if g:
            k = max(1, int(round(plan.tasks[g[0]].count)))
            out.extend((i, j) for j in range(k) for i in g)
            g.clear()
    for i in rows:
        layer = ops[int(plan.tasks[i].op)].layer
        if g and (not layer or ops[int(plan.tasks[g[0]].op)].layer != layer):
            flush()
        g.append(i)
        if not layer:
            flush()
    flush()
    return out[::-1] if backward else out
