"""The event-level simulator: a task graph (flat numpy arrays) run by a generated Cython kernel
(codegen/templates/events.pyx.j2).

Model
-----
- Resources (``n_resources``: a tile, a region, a memory channel, an SM...) run one compute
  task at a time. A compute task queues on its resource when all its predecessors have
  ended; a free resource starts the task that became ready first (ties: lowest task id).
- Links (``link_bw[l]``, B/s, finite and > 0) are shared by the flows active on them,
  max-min fairly (progressive filling: a flow's rate is the smallest fair share over the
  links of its route).
- A flow (kind 1) moves ``bytes`` over a route of links (CSR: ``route_ptr``/``route_links``).
  Its ``latency`` is a pure delay *before* its bytes start moving: a flow ready at t occupies
  no link during [t, t + latency), then shares its links until its bytes are through. So an
  uncontended flow takes latency + bytes / min(bandwidth on its route). A flow with no bytes
  or an empty route ends right after its latency.
- A delay (kind 2) waits ``duration`` and uses nothing (barriers: duration 0).
- ``start[t]`` is when a task began: for compute tasks when its resource took it, for flows
  and delays when they became ready (a flow's latency is part of it). ``ready[t]`` is when
  its last predecessor ended. ``link_busy[l]``: seconds during which at least one flow's
  bytes were moving over l. ``link_bytes[l]``: bytes of all flows routed over l.

Max-min rates (incremental, exact)
----------------------------------
Flows with identical routes form a *route class* (found in `finalize`): max-min gives them
equal rates, so rates are computed per class, weighted by its number of active flows. Each
class keeps a virtual clock (bytes served to each of its flows since it became active) and a
leftist heap of its flows' targets on that clock; only the class's next end is in the event
heap. A class's rate change therefore costs O(log) however many flows it holds: n flows of
different sizes on one link end in O(n log n), not O(n^2).

All events at one time are applied first; then, once per distinct time at which some link's
set of active flows changed, the rates are repaired around those ("dirty") links:
1. the classes within d layers of the dirty links are *inside* (layer 1: the classes on them;
   layer k+1: the classes on the links of layer k), their links are *local*; the other
   classes on local links are the *boundary*, kept at their rates, their usage deducted;
2. progressive filling of the inside classes on the local links (a lazy heap of (fair share,
   link id): the smallest share saturates its link and freezes its classes at that share);
3. the result is accepted if the max-min optimality conditions (Bertsekas & Gallager: every
   flow has a bottleneck, a saturated link where no flow is faster) hold at the boundary:
   each inside class's freezing link has no faster boundary class, and each boundary class's
   bottleneck is not local, or is still saturated with no faster inside class. The optimal
   allocation is unique, so the accepted one is exactly it (to a relative 1e-10 in the
   checks); otherwise d doubles (1, 2, 4, ...) up to the whole connected component of the
   dirty links, which has no boundary and is plain progressive filling.
Classes whose rate changed (by more than 1e-13 relative: rounding) bank their progress and
move their event. Cost of a repair: O((C_n*h + L_n) log(C_n*h + L_n)) for the C_n classes
(h links each on average) and L_n links it covers, summed over its attempts (at most ~2x the
last). Flows on disjoint links (nearest-neighbour traffic) cost O(h log h) per event; a
change whose effect on the rates stays local costs the size of that neighbourhood, not of
its component (a mesh with 4-hop flows: rows are components, repairs cover ~9 links). The
worst case is n flows of distinct routes on one bottleneck ending one by one: every end
changes every rate, O(n^2 log n) in total. Starts and ends at one instant share one repair.
``simulate(..., local=False)`` always fills whole components (a reference).

A class's clock restarts at 0 whenever it empties; a class active without a break for a long
time loses relative precision ~1e-16 x (bytes served) / (bytes left) on its flows' ends.

Critical path: from the task that ends last, repeatedly the task that gated the current one:
the previous task on its resource if it waited for it (start > ready: reason "resource"),
else the predecessor whose end made it ready ("dependency"); the first has reason "source".

Everything is deterministic: events are ordered by (time, push sequence number), ties
between tasks ready at one time by task id, and the loop is sequential.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

KIND = {"compute": 0, "flow": 1, "delay": 2}
KINDS = ("compute", "flow", "delay")
REASONS = ("source", "dependency", "resource")
TEMPLATE_VERSION = "1"

__all__ = ["TaskGraph", "FinalGraph", "EventResult", "simulate", "render_events", "kernel", "route_classes",
           "to_chrome_trace", "write_chrome_trace", "KIND", "KINDS", "REASONS"]


# ---- the kernel -------------------------------------------------------------------------------

def render_events(version: str, constants: tuple = (), title: str = "generic engine") -> str:
    """The .pyx text of the event kernel. `constants`: (name, value, comment) triples for the
    machine constants block (none yet: every quantity comes from the task graph)."""
    from archc.codegen.mangle import comment, number
    from archc.codegen.render import environment

    consts = [dict(name=n, value=number(v), comment=comment(c)) for n, v, c in constants]
    body = environment().get_template("events.pyx.j2").render(title=comment(title), constants=consts)
    key = hashlib.sha256((TEMPLATE_VERSION + version + body).encode()).hexdigest()
    header = f"# Generated by archc {version}: do not edit.\n# content key: {key}\n"
    return header + body


_kernels: dict[str, object] = {}


def kernel(version: str | None = None, progress=None):
    """The compiled event kernel (built through the compile cache once, then loaded)."""
    from . import cache

    if version is None:
        from archc.dsl.version import __version__ as version
    mod = _kernels.get(version)
    if mod is None:
        try:
            mod = cache.build(render_events(version), "events", archc_version=version, progress=progress,
                              label="the event-level simulator")
        except cache.BuildError as e:
            from archc.dsl.diagnostics import BuildError

            raise BuildError(f"building the event kernel failed: {e}") from None
        _kernels[version] = mod
    return mod


# ---- the task graph ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FinalGraph:
    """A task graph as the kernel takes it: CSR arrays, validated."""
    kind: np.ndarray         # int8[T]: 0 compute, 1 flow, 2 delay
    duration: np.ndarray     # float64[T] (compute, delay)
    resource: np.ndarray     # int32[T] (compute; -1 otherwise)
    bytes: np.ndarray        # float64[T] (flow)
    latency: np.ndarray      # float64[T] (flow)
    route_ptr: np.ndarray    # int64[T+1]
    route_links: np.ndarray  # int32[route_ptr[T]]
    succ_ptr: np.ndarray     # int64[T+1]
    succ: np.ndarray         # int32[succ_ptr[T]]
    n_preds: np.ndarray      # int32[T]
    link_bw: np.ndarray      # float64[L]
    n_resources: int
    flow_class: np.ndarray   # int32[T]: route class of each flow (-1: not a flow, or no links)
    class_ptr: np.ndarray    # int64[C+1]: CSR of each class's route
    class_links: np.ndarray  # int32[class_ptr[C]]

    @property
    def n_classes(self) -> int:
        return int(self.class_ptr.shape[0] - 1)

    @property
    def n_tasks(self) -> int:
        return int(self.kind.shape[0])

    @property
    def n_links(self) -> int:
        return int(self.link_bw.shape[0])

    def first_link(self) -> np.ndarray:
        """Per task, the first link of its route (-1: none), for timelines."""
        lens = np.diff(self.route_ptr)
        out = np.full(self.n_tasks, -1, dtype=np.int32)
        has = lens > 0
        out[has] = self.route_links[self.route_ptr[:-1][has]]
        return out


_F64 = np.float64
_I32 = np.int32


def _column(v, dt, n: int) -> np.ndarray:
    """v as a C-contiguous array of n entries of dtype dt (a scalar repeated; an array of that
    dtype and length as it is, not copied)."""
    if type(v) is np.ndarray and v.dtype == dt and v.shape == (n,) and v.flags.c_contiguous:
        return v
    if np.ndim(v) == 0:
        return np.full(n, v, dt)
    return np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dt), (n,)))


def _pair(a, b, ta, tb) -> tuple[np.ndarray, np.ndarray]:
    """a and b (arrays or scalars) broadcast to one length, flattened, of dtypes ta and tb:
    np.broadcast_arrays without its cost when both are already arrays of one shape (the graph
    builders' usual call)."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.shape == b.shape:
        return a.astype(ta, copy=False).reshape(-1), b.astype(tb, copy=False).reshape(-1)
    x, y = np.broadcast_arrays(np.asarray(a, ta), np.asarray(b, tb))
    return x.reshape(-1), y.reshape(-1)


class TaskGraph:
    """Builds a task graph. Scalar calls (add_compute, add_flow, add_delay, add_dep) for small
    graphs and tests; array calls (add_computes, add_flows, add_delays, add_deps) for millions
    of tasks. Task ids are consecutive in the order of the calls. `finalize()` returns the
    CSR arrays (FinalGraph)."""

    def __init__(self, n_resources: int = 0, link_bw=()):
        self.n_resources = int(n_resources)
        self._bw: list[np.ndarray] = [np.asarray(link_bw, dtype=_F64).reshape(-1)]
        self._n_links = int(self._bw[0].shape[0])
        self._chunks: list[tuple] = []  # (kind, duration, resource, bytes, latency, route_len, route_links)
        self._pend = ([], [], [], [], [], [], [])
        self._dep_chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._dep_src: list[int] = []
        self._dep_dst: list[int] = []
        self._late: list[tuple[np.ndarray, np.ndarray]] = []  # add_deps_late, before the scalar ones left
        self._n = 0
        self._final: FinalGraph | None = None

    @property
    def n_tasks(self) -> int:
        return self._n

    @property
    def n_links(self) -> int:
        return self._n_links

    # resources and links
    def add_resource(self) -> int:
        self.n_resources += 1
        return self.n_resources - 1

    def add_resources(self, n: int) -> np.ndarray:
        first = self.n_resources
        self.n_resources += int(n)
        return np.arange(first, self.n_resources, dtype=_I32)

    def add_link(self, bandwidth: float) -> int:
        return int(self.add_links([bandwidth])[0])

    def add_links(self, bandwidths) -> np.ndarray:
        bw = np.asarray(bandwidths, dtype=_F64).reshape(-1)
        first = self._n_links
        self._bw.append(bw)
        self._n_links += bw.shape[0]
        self._final = None
        return np.arange(first, self._n_links, dtype=_I32)

    # scalar tasks
    def _add(self, kind, duration, resource, nbytes, latency, route, after) -> int:
        k, d, r, b, lat, rl, links = self._pend
        k.append(kind)
        d.append(float(duration))
        r.append(int(resource))
        b.append(float(nbytes))
        lat.append(float(latency))
        rl.append(len(route))
        links.extend(int(x) for x in route)
        tid = self._n
        self._n += 1
        self._final = None
        for p in after:
            self.add_dep(p, tid)
        return tid

    def add_compute(self, duration: float, resource: int, after=()) -> int:
        """A compute task of `duration` seconds on `resource`, after the tasks in `after`."""
        return self._add(0, duration, resource, 0.0, 0.0, (), after)

    def add_flow(self, nbytes: float, route, latency: float = 0.0, after=()) -> int:
        """A flow of `nbytes` over the links `route`, its bytes moving after `latency` s."""
        return self._add(1, 0.0, -1, nbytes, latency, tuple(route), after)

    def add_delay(self, duration: float = 0.0, after=()) -> int:
        """A pure delay (duration 0: a barrier joining its predecessors)."""
        return self._add(2, duration, -1, 0.0, 0.0, (), after)

    def add_dep(self, before: int, after: int) -> None:
        """Task `after` cannot start before task `before` has ended."""
        self._dep_src.append(int(before))
        self._dep_dst.append(int(after))
        self._final = None

    # array tasks
    def _flush(self) -> None:
        k, d, r, b, lat, rl, links = self._pend
        if k:
            self._chunks.append((np.array(k, np.int8), np.array(d, _F64), np.array(r, _I32), np.array(b, _F64),
                                 np.array(lat, _F64), np.array(rl, np.int64), np.array(links, _I32)))
            self._pend = ([], [], [], [], [], [], [])

    def _add_chunk(self, kind, n, duration=0.0, resource=-1, nbytes=0.0, latency=0.0,
                   route_len=None, route_links=None) -> np.ndarray:
        self._flush()
        full = lambda v, dt: _column(v, dt, n)  # noqa: E731
        self._chunks.append((np.full(n, kind, np.int8), full(duration, _F64), full(resource, _I32),
                             full(nbytes, _F64), full(latency, _F64),
                             np.zeros(n, np.int64) if route_len is None else np.asarray(route_len, np.int64),
                             np.zeros(0, _I32) if route_links is None else np.asarray(route_links, _I32)))
        first = self._n
        self._n += n
        self._final = None
        return np.arange(first, self._n, dtype=_I32)

    def add_computes(self, durations, resources) -> np.ndarray:
        """Compute tasks (arrays, or scalars broadcast to the other's length); returns ids."""
        d, r = _pair(durations, resources, _F64, _I32)
        return self._add_chunk(0, d.size, duration=d, resource=r)

    def add_delays(self, durations) -> np.ndarray:
        d = np.asarray(durations, _F64).reshape(-1)
        return self._add_chunk(2, d.size, duration=d)

    def add_flows(self, nbytes, route_ptr, route_links, latency=0.0) -> np.ndarray:
        """Flows: flow i moves nbytes[i] over route_links[route_ptr[i]:route_ptr[i+1]]."""
        ptr = np.asarray(route_ptr, np.int64)
        n = ptr.size - 1
        b = np.broadcast_to(np.asarray(nbytes, _F64), (n,))
        links = np.asarray(route_links, _I32)
        if ptr[0] != 0 or ptr[-1] != links.size or np.any(np.diff(ptr) < 0):
            raise ValueError("add_flows: route_ptr must rise from 0 to len(route_links)")
        return self._add_chunk(1, n, nbytes=b, latency=latency, route_len=np.diff(ptr), route_links=links)

    def add_deps_each(self, before, after) -> None:
        """As add_dep(before[k], after[k]) for each k in turn (the scalar dependencies a
        builder's add_* calls with `after` would have made)."""
        if len(before) != len(after):
            raise ValueError("add_deps_each: before and after must have one entry each")
        self._dep_src.extend(int(b) for b in before)
        self._dep_dst.extend(int(a) for a in after)
        self._final = None

    def add_deps(self, before, after) -> None:
        s, d = _pair(before, after, _I32, _I32)
        self._dep_chunks.append((s.copy(), d.copy()))
        self._final = None

    def finalize(self) -> FinalGraph:
        """CSR arrays, validated (ValueError names the first problem)."""
        if self._final is not None:
            return self._final
        self._flush()
        T = self._n
        cat = lambda i, dt: (np.concatenate([c[i] for c in self._chunks]).astype(dt, copy=False)  # noqa: E731
                             if self._chunks else np.zeros(0, dt))
        kind, dur, res, nb, lat = cat(0, np.int8), cat(1, _F64), cat(2, _I32), cat(3, _F64), cat(4, _F64)
        route_len, route_links = cat(5, np.int64), cat(6, _I32)
        route_ptr = np.zeros(T + 1, np.int64)
        np.cumsum(route_len, out=route_ptr[1:])
        bw = np.concatenate(self._bw) if self._bw else np.zeros(0, _F64)
        srcs = [c[0] for c in self._dep_chunks] + [c[0] for c in self._late] + [np.array(self._dep_src, _I32)]
        dsts = [c[1] for c in self._dep_chunks] + [c[1] for c in self._late] + [np.array(self._dep_dst, _I32)]
        src, dst = np.concatenate(srcs), np.concatenate(dsts)
        _validate(T, kind, dur, res, nb, lat, route_links, bw, src, dst, self.n_resources)
        # CSR of successors, each task's successors in the order the dependencies were added
        # (the event kernel's stable counting sort)
        succ_ptr, succ, n_preds = kernel().successors(src.astype(_I32, copy=False), dst.astype(_I32, copy=False), T)
        flow_class, class_ptr, class_links = route_classes(kind, route_ptr, route_links, bw.size)
        self._final = FinalGraph(kind, dur, res, nb, lat, route_ptr, route_links, succ_ptr, succ, n_preds,
                                 bw, self.n_resources, flow_class, class_ptr, class_links)
        return self._final

    def add_repeated(self, other: "TaskGraph", times: int) -> np.ndarray:
        """`times` copies of the tasks of `other`, one after the other, each with the
        dependencies among its own tasks (as if `other`'s calls were made `times` times on this
        graph). `other` holds tasks only: its compute tasks' resources and its flows' links are
        this graph's. Returns the first task id of each copy."""
        if other.n_resources or other.n_links:
            raise ValueError("add_repeated: the repeated graph's resources and links must be this graph's")
        other._flush()
        self._flush()
        times, nt = int(times), other._n
        first = self._n + nt * np.arange(times, dtype=np.int64)
        if times <= 0 or nt == 0:
            return first
        if times == 1:  # the chunks themselves (never written once added)
            self._chunks.extend(other._chunks)
        else:
            cat = lambda i, dt: np.concatenate([c[i] for c in other._chunks]).astype(dt, copy=False)  # noqa: E731
            cols = [cat(0, np.int8), cat(1, _F64), cat(2, _I32), cat(3, _F64), cat(4, _F64), cat(5, np.int64),
                    cat(6, _I32)]
            self._chunks.append(tuple(np.tile(c, times) for c in cols))
        # in finalize's order: the array dependencies, then the scalar ones (late, then the rest)
        src = np.concatenate([c[0] for c in other._dep_chunks] + [c[0] for c in other._late] +
                             [np.array(other._dep_src, _I32)]).astype(np.int64)
        dst = np.concatenate([c[1] for c in other._dep_chunks] + [c[1] for c in other._late] +
                             [np.array(other._dep_dst, _I32)]).astype(np.int64)
        if src.size:
            if self._n + times * nt >= 2**31:
                raise ValueError(f"add_repeated: {self._n + times * nt} tasks do not fit 32-bit ids")
            self._dep_chunks.append(((first[:, None] + src[None, :]).reshape(-1).astype(_I32),
                                     (first[:, None] + dst[None, :]).reshape(-1).astype(_I32)))
        self._n += times * nt
        self._final = None
        return first


    # bulk building: blocks of tasks of any kind (a pipeline schedule's passes replicated)
    def add_tasks(self, kind, duration, resource, nbytes, latency, route_len, route_links) -> int:
        """Tasks of any kinds from arrays (one per task; route_links: their routes one after
        the other, route_len[i] links each); returns the first task's id (ids are consecutive)."""
        kind = np.asarray(kind, np.int8).reshape(-1)
        n = kind.size
        route_len = np.asarray(route_len, np.int64).reshape(-1)
        route_links = np.asarray(route_links, _I32).reshape(-1)
        if route_len.size != n or int(route_len.sum()) != route_links.size:
            raise ValueError("add_tasks: route_len must sum to len(route_links), with one entry per task")
        self._flush()
        self._chunks.append((kind, _column(duration, _F64, n), _column(resource, _I32, n), _column(nbytes, _F64, n),
                             _column(latency, _F64, n), route_len, route_links))
        first = self._n
        self._n += n
        self._final = None
        return first

    def add_made(self, kind, duration, resource, nbytes, latency, route_len, route_links, src, dst, late) -> int:
        """add_tasks(kind, ..., route_links), add_deps(src, dst) and add_deps_late(*late): the
        tasks and dependencies an event kernel wrote, in one call. Returns the first task's id."""
        first = self.add_tasks(kind, duration, resource, nbytes, latency, route_len, route_links)
        self.add_deps(src, dst)
        self.add_deps_late(*late)
        return first

    def add_deps_late(self, before, after) -> None:
        """Dependencies as if added now one by one with add_dep: a task's successors list the
        add_deps ones first, then the add_dep (and add_deps_late) ones, each in call order."""
        if self._dep_src:
            self._late.append((np.array(self._dep_src, _I32), np.array(self._dep_dst, _I32)))
            self._dep_src, self._dep_dst = [], []
        s, d = _pair(before, after, _I32, _I32)
        self._late.append((s.copy(), d.copy()))
        self._final = None


_H1 = np.uint64(0x9E3779B97F4A7C15)
_H2 = np.uint64(0xC2B2AE3D27D4EB4F)


def route_classes(kind, route_ptr, route_links, n_links):
    """Group flows with identical routes (same links in the same order) into classes.

    One-link routes: one class per link used. Longer routes: a polynomial hash (mod 2^64)
    groups them, then every flow is compared link by link with its group's first flow; a
    hash collision only splits a class (each mismatching flow gets a class of its own), so
    classes are exact. Returns (flow_class[T], class_ptr[C+1], class_links)."""
    T = kind.shape[0]
    lens = np.diff(route_ptr)
    flow_class = np.full(T, -1, np.int32)
    is_flow = (kind == 1) & (lens > 0)
    # one-link routes: class = rank of the link among the links used that way
    one = np.flatnonzero(is_flow & (lens == 1))
    one_link = route_links[route_ptr[:-1][one]]
    used = np.zeros(n_links + 1, bool)
    used[one_link] = True
    rank = np.cumsum(used) - 1
    flow_class[one] = rank[one_link]
    n_one = int(used.sum())
    parts_ptr = [np.zeros(1, np.int64), np.arange(1, n_one + 1, dtype=np.int64)]
    parts_links = [np.flatnonzero(used[:n_links]).astype(np.int32)]
    multi = np.flatnonzero(is_flow & (lens > 1))
    if multi.size:
        mlen = lens[multi]
        starts = route_ptr[:-1][multi]
        # positions of the multi-link routes, flattened, and each one's offset in its route
        seg = np.repeat(np.arange(multi.size), mlen)
        off = np.arange(seg.size, dtype=np.int64) - np.repeat(np.cumsum(mlen) - mlen, mlen)
        links = route_links[np.repeat(starts, mlen) + off]
        pw = np.multiply.accumulate(np.full(int(mlen.max()), _H1, np.uint64))
        with np.errstate(over="ignore"):
            h = np.add.reduceat((links.astype(np.uint64) + np.uint64(1)) * pw[off], np.cumsum(mlen) - mlen)
            h = h ^ (mlen.astype(np.uint64) * _H2)
        _, first, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        rep = first[inv]  # the first flow (index into multi) with the same hash
        same = (mlen == mlen[rep])
        rep_pos = np.repeat(starts[rep], mlen) + off
        ok_pos = (route_links[np.minimum(rep_pos, route_links.size - 1)] == links) & np.repeat(same, mlen)
        ok = np.logical_and.reduceat(ok_pos, np.cumsum(mlen) - mlen)
        cls = inv.astype(np.int64)
        n_multi = first.size
        bad = np.flatnonzero(~ok)
        cls[bad] = n_multi + np.arange(bad.size)  # collisions: classes of their own
        reps = np.concatenate([first, bad])
        flow_class[multi] = n_one + cls
        rl = mlen[reps]
        parts_ptr.append(n_one + np.cumsum(rl))
        rs = starts[reps]
        parts_links.append(route_links[np.repeat(rs, rl) + np.arange(rl.sum()) - np.repeat(np.cumsum(rl) - rl, rl)])
    # one-link classes hold n_one links in all, so the longer routes' offsets start there
    return flow_class, np.concatenate(parts_ptr).astype(np.int64), np.concatenate(parts_links).astype(np.int32)


def _validate(T, kind, dur, res, nb, lat, route_links, bw, src, dst, n_resources) -> None:
    if T >= 2**30:
        raise ValueError(f"{T} tasks: at most 2^30 - 1 (task and class events share 32-bit ids)")
    if np.any((kind < 0) | (kind > 2)):
        raise ValueError("task kinds are 0 (compute), 1 (flow) or 2 (delay)")
    bad = ~(dur >= 0) | ~np.isfinite(dur)
    if np.any(bad):
        raise ValueError(f"task {int(np.argmax(bad))}: duration must be finite and >= 0")
    bad = ~(nb >= 0) | ~np.isfinite(nb) | ~(lat >= 0) | ~np.isfinite(lat)
    if np.any(bad):
        raise ValueError(f"task {int(np.argmax(bad))}: bytes and latency must be finite and >= 0")
    comp = kind == 0
    bad = comp & ((res < 0) | (res >= n_resources))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"task {i}: resource {int(res[i])} is not one of the {n_resources} resources")
    bad = ~(bw > 0) | ~np.isfinite(bw)
    if np.any(bad):
        raise ValueError(f"link {int(np.argmax(bad))}: bandwidth must be finite and > 0")
    if route_links.size and (route_links.min() < 0 or route_links.max() >= bw.size):
        raise ValueError(f"a route names a link outside 0..{bw.size - 1}")
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= T):
        raise ValueError(f"a dependency names a task outside 0..{T - 1}")
    if np.any(src == dst):
        raise ValueError(f"task {int(src[np.argmax(src == dst)])} depends on itself")


# ---- results ----------------------------------------------------------------------------------

@dataclass
class EventResult:
    """What a simulation measured. Times in seconds (float64)."""
    start: np.ndarray        # float64[T]
    end: np.ndarray          # float64[T]
    ready: np.ndarray        # float64[T]: when its last predecessor ended
    kind: np.ndarray         # int8[T]
    resource: np.ndarray     # int32[T] (-1: not a compute task)
    first_link: np.ndarray   # int32[T] (-1: not a flow or no links)
    dep_pred: np.ndarray     # int32[T]: the predecessor whose end made it ready (-1: none)
    res_pred: np.ndarray     # int32[T]: the task before it on its resource (-1: none)
    busy: np.ndarray         # float64[R]: busy seconds per resource
    link_bytes: np.ndarray   # float64[L]
    link_busy: np.ndarray    # float64[L]: seconds with at least one flow moving bytes
    makespan: float
    critical_path: np.ndarray    # int32[n]: task ids in time order, ending at the last to finish
    critical_reason: np.ndarray  # int8[n]: how each was gated (REASONS: source/dependency/resource)
    stats: dict = field(default_factory=dict)

    def utilization(self) -> np.ndarray:
        """Busy fraction per resource over the makespan."""
        return self.busy / self.makespan if self.makespan > 0 else np.zeros_like(self.busy)

    def link_utilization(self) -> np.ndarray:
        """Fraction of the makespan each link carried at least one flow."""
        return self.link_busy / self.makespan if self.makespan > 0 else np.zeros_like(self.link_busy)

    def bubble_fraction(self, resources=None) -> float:
        """1 - busy / (resources x makespan): idle share over the given (default all) resources."""
        b = self.busy if resources is None else self.busy[np.asarray(resources)]
        if b.size == 0 or self.makespan <= 0:
            return 0.0
        return float(1.0 - b.sum() / (b.size * self.makespan))

    def critical(self) -> list[tuple[int, str]]:
        """The critical path as (task id, reason) pairs in time order."""
        return [(int(t), REASONS[int(r)]) for t, r in zip(self.critical_path, self.critical_reason)]


def _padded(a: np.ndarray, dtype) -> np.ndarray:
    """Contiguous, of `dtype`, at least one element (the kernel takes &a[0])."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.size else np.zeros(1, dtype)


def simulate(graph, *, local: bool = True, progress=None) -> EventResult:
    """Run a TaskGraph (or FinalGraph) through the event kernel. local=False recomputes max-min
    rates over the whole connected component of every change (no local repair): slower on
    large components, the same rates up to rounding (a reference for tests)."""
    g = graph.finalize() if isinstance(graph, TaskGraph) else graph
    mod = kernel(progress=progress)
    T, L, R = g.n_tasks, g.n_links, g.n_resources
    tp = max(T, 1)
    start = np.zeros(tp)
    end = np.full(tp, np.nan)  # NaN: never finished
    ready = np.zeros(tp)
    dep_pred = np.full(tp, -1, _I32)
    res_pred = np.full(tp, -1, _I32)
    busy = np.zeros(max(R, 1))
    link_bytes = np.zeros(max(L, 1))
    link_busy = np.zeros(max(L, 1))
    # empty graphs: the kernel sees T = 0 via kind's length, so only kind stays unpadded
    kind = np.ascontiguousarray(g.kind, np.int8)
    t0 = time.perf_counter()
    done, st = mod.simulate(
        kind, _padded(g.duration, _F64), _padded(g.resource, _I32), _padded(g.bytes, _F64),
        _padded(g.latency, _F64), _padded(g.flow_class, _I32), np.ascontiguousarray(g.class_ptr, np.int64),
        _padded(g.class_links, _I32), np.ascontiguousarray(g.succ_ptr, np.int64), _padded(g.succ, _I32),
        _padded(g.n_preds, _I32), _padded(g.link_bw, _F64), R, g.n_classes, 1 if local else 0,
        start, end, ready, dep_pred, res_pred, busy, link_bytes, link_busy)
    seconds = time.perf_counter() - t0
    if done != T:
        stuck = np.flatnonzero(np.isnan(end[:T]))[:5]
        raise ValueError(f"{T - done} of {T} tasks never ran: the dependencies have a cycle "
                         f"(e.g. through tasks {', '.join(map(str, stuck))})")
    start, end, ready, dep_pred, res_pred = start[:T], end[:T], ready[:T], dep_pred[:T], res_pred[:T]
    makespan = float(end.max()) if T else 0.0
    if T:
        path = np.empty(T, _I32)
        reason = np.empty(T, np.int8)
        n = mod.critical_path(start, ready, dep_pred, res_pred, int(np.argmax(end)), path, reason)
        cpath, creason = path[T - n:].copy(), reason[T - n:].copy()
    else:
        cpath, creason = np.zeros(0, _I32), np.zeros(0, np.int8)
    stats = dict(zip(mod.STATS, (int(x) for x in st)))
    stats["seconds"] = seconds
    return EventResult(start=start, end=end, ready=ready, kind=g.kind, resource=g.resource,
                       first_link=g.first_link(), dep_pred=dep_pred, res_pred=res_pred,
                       busy=busy[:R], link_bytes=link_bytes[:L], link_busy=link_busy[:L], makespan=makespan,
                       critical_path=cpath, critical_reason=creason, stats=stats)


# ---- timelines ----------------------------------------------------------------------------------

def trace_selection(result: EventResult, max_tasks: int | None = None) -> np.ndarray:
    """Task ids a trace holds, in id order: all of them, or (more than `max_tasks`) the first
    `max_tasks` by start time and every task of the critical path."""
    T = result.start.shape[0]
    if max_tasks is None or T <= max_tasks:
        return np.arange(T)
    first = np.argsort(result.start, kind="stable")[:max_tasks]
    return np.union1d(first, result.critical_path.astype(np.int64))


def _trace_events(result: EventResult, names, sel, resource_names, link_names):
    """The trace's events one at a time (a list of millions of dicts does not fit memory)."""
    pids = {0: 0, 1: 1, 2: 2}
    for n, p in (("resources", 0), ("links", 1), ("delays", 2)):
        yield {"name": "process_name", "ph": "M", "pid": p, "tid": 0, "args": {"name": n}}
    kind = result.kind[sel]
    for r in np.unique(result.resource[sel][kind == 0]):
        label = resource_names[int(r)] if resource_names is not None else f"resource {int(r)}"
        yield {"name": "thread_name", "ph": "M", "pid": 0, "tid": int(r), "args": {"name": label}}
    for l in np.unique(result.first_link[sel][kind == 1]):
        label = link_names[int(l)] if link_names is not None else f"link {int(l)}"
        yield {"name": "thread_name", "ph": "M", "pid": 1, "tid": int(l), "args": {"name": label}}
    for i in sel:
        i = int(i)
        k = int(result.kind[i])
        if names is None:
            name = f"{KINDS[k]} {i}"
        elif callable(names):
            name = str(names(i))
        else:
            name = str(names[i])
        tid = int(result.resource[i]) if k == 0 else int(result.first_link[i]) if k == 1 else 0
        yield {"name": name, "cat": KINDS[k], "ph": "X", "pid": pids[k], "tid": tid,
               "ts": float(result.start[i]) * 1e6, "dur": float(result.end[i] - result.start[i]) * 1e6,
               "args": {"task": i, "ready_us": float(result.ready[i]) * 1e6}}


def _trace_other(result: EventResult, sel) -> dict:
    other = {"makespan_s": result.makespan, "critical_path": [int(x) for x in result.critical_path]}
    if sel.shape[0] < result.start.shape[0]:
        other["tasks"] = int(result.start.shape[0])
        other["tasks_written"] = int(sel.shape[0])
        other["written"] = "the first tasks by start time and every task of the critical path"
    return other


def to_chrome_trace(result: EventResult, names=None, *, resource_names=None, link_names=None,
                    max_tasks: int | None = None) -> dict:
    """A Chrome trace (chrome://tracing, Perfetto): one "X" event per task, microseconds.
    Compute tasks on process "resources" (one thread per resource), flows on "links" (thread:
    the first link of the route), delays on "delays". `names`: per task (list or callable).
    `max_tasks`: see trace_selection."""
    sel = trace_selection(result, max_tasks)
    return {"traceEvents": list(_trace_events(result, names, sel, resource_names, link_names)),
            "displayTimeUnit": "ns", "otherData": _trace_other(result, sel)}


def write_chrome_trace(path, result: EventResult, names=None, *, resource_names=None, link_names=None,
                       max_tasks: int | None = None) -> int:
    """Write the trace of to_chrome_trace to `path`, streaming; returns the tasks written."""
    sel = trace_selection(result, max_tasks)
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"traceEvents": [')
        for k, e in enumerate(_trace_events(result, names, sel, resource_names, link_names)):
            f.write((",\n" if k else "\n") + json.dumps(e))
        f.write('\n], "displayTimeUnit": "ns", "otherData": ' + json.dumps(_trace_other(result, sel)) + "}\n")
    return int(sel.shape[0])
