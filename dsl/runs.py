"""Runs: binds a model to a machine with a mapping and a precision, evaluating run parameters
(with `--set` overrides) and checking that the mapping fits."""
from __future__ import annotations

from dataclasses import replace

from . import ast
from . import units as U
from .diagnostics import did_you_mean as _hint
from .footprint import footprint
from .ir import DDP_BUCKET, Checkpoint, Mapping, Precision, Run, Train
from .models import Builder
from .source import Span
from .values import EvalError, Q, Str, Sym, brief, show
from .vocab import Strategy

MODES = ("train", "infer")
STRATEGIES = Strategy.words()
RECOMPUTE = ("none", "selective", "full")
SCHEDULES = ("one_f_one_b", "gpipe")  # names cannot start with a digit: 1F1B is one_f_one_b
# spatial regions: adjacent (consecutive regions taken to touch: an op's input crosses one link
# of its region's boundary, the analytic level's assumption), or placed in bands and the input
# carried between them over the fabric's links: raster (every band left to right) or serpentine
PLACEMENTS = ("adjacent", "raster", "serpentine")
OPTIMIZERS = ("adam", "adamw", "lamb", "sgd")
STRATEGY_OPTIONS = ("tp", "pp", "dp", "chips", "interleave", "micro_batch", "global_batch",
                    "recompute", "seq_parallel", "overlap_dp", "bucket", "schedule", "region_rows", "placement",
                    "accumulate_in_gemm", "ep")
RUN_SCHEMA = {"model": False, "on": False, "mode": False, "strategy": False, "precision": False,
              "optimizer": False, "throughput": False, "fuse": False, "clock": False, "accuracy": False,
              "dispatch": False, "checkpoint": False, "train": False}
FUSION = ("none", "elementwise", "epilogue")
CLOCKS = ("sustained", "boost")


def _gb(x: float) -> str:
    for f, u in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if x >= f:
            return f"{x / f:.3g} {u}"
    return f"{x:.3g} B"


def _name_span(decl: ast.Prop):
    head = decl.args[0]
    return head.func.span if isinstance(head, ast.Call) else head.span


def resolve_run(ck, name: str, decl: ast.Prop, overrides: dict) -> Run | None:
    """The run `name` with `overrides` ({parameter: AST of a `--set` value}) in place of its
    defaults. An error the overridden values cause further on (in a model, in the mapping)
    carries a note naming each `--set KEY=VALUE`, so the user sees where the value came from."""
    before = len(ck.diag.items)
    run = _resolve_run(ck, name, decl, overrides)
    if overrides and len(ck.diag.items) > before:
        notes = tuple((e.span, f"the run's parameter '{k}' is set by `{_set_text(k, e)}`")
                      for k, e in overrides.items())
        ck.diag.items[before:] = [d if _from_set(d.span) else replace(d, notes=d.notes + notes)
                                  for d in ck.diag.items[before:]]
    return run


def _set_text(key: str, e: ast.Expr) -> str:
    """How the user gave an overridden value: `--set KEY=VALUE` as typed (its source holds
    exactly `KEY=VALUE`), else `KEY=VALUE` from the value's text."""
    if _from_set(e.span):
        return f"--set {brief(e.span.source.text, 40)}"
    return f"{key}={brief(ast.expr_text(e), 40)}"


def _from_set(span) -> bool:
    return span is not None and span.source.name.startswith("<--set")


def _kind(v) -> str:
    """What a parameter's value is, to match an override against its default."""
    if isinstance(v, Q):
        return U.describe(v.dim)
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, Sym):
        return "a name"
    if isinstance(v, Str):
        return "a string"
    return "a list"


def _resolve_run(ck, name: str, decl: ast.Prop, overrides: dict) -> Run | None:
    params = ck.params(decl.args[0], "run", with_defaults=True)
    if params is None:
        return None
    known = [p.name for p in params]
    for key, expr in overrides.items():
        if key not in known:
            # `--set KEY=VALUE` sources hold exactly that text: point at the key
            key_span = Span(expr.span.source, 1, 1, 1, 1 + len(key))
            ck.diag.error(key_span, f"run '{name}' has no parameter '{key}'; it has "
                                    f"{', '.join(known) or 'none'}{_hint(key, known)}")
    # the names the run's body and its parameters' defaults refer to
    used = ast.names_in(decl.body) | set().union(*(ast.names_in(p.default) for p in params))
    env: dict = {}
    ok = True
    for p in params:
        default = ck.value(p.default, env)
        if p.name not in overrides:
            v = default
        else:
            e = overrides[p.name]
            v = ck.value(e, env)
            key_span = Span(e.span.source, 1, 1, 1, 1 + len(p.name))
            if v is not None and default is not None and _kind(v) != _kind(default):
                ck.diag.error(e.span, f"run '{name}' takes {_kind(default)} for '{p.name}' (its default is "
                                      f"{ast.expr_text(p.default).strip('()')}); found {show(v)}")
                v = None
            elif v is not None and p.name not in used and not _same(v, default):
                ck.diag.error(key_span, f"run '{name}' does not use its parameter '{p.name}': "
                                        f"`{_set_text(p.name, e)}` would change nothing")
                v = None
        if v is None:
            ok = False
        env[p.name] = v if v is not None else Q(0)
    if not ok:
        return None
    n_errors = len(ck.diag.items)
    ps = ck.props(decl, RUN_SCHEMA, "run")

    def one(key, required=True):
        if key not in ps:
            if required:
                ck.diag.error(_name_span(decl), f"run '{name}' needs '{key}'")
            return None
        return ps[key][0]

    # machine
    machine = None
    if (p := one("on")) and (a := ck.only(p, 1)):
        e = a[0][0]
        target = e.id if isinstance(e, ast.Name) else None
        if target in ck.chips or target in ck.systems:
            machine = ck.machine(target)
        elif target is not None and ck.reported(target, "chip", "system"):
            pass  # already reported
        else:
            ck.diag.error(e.span, f"'on' names a chip or system; '{ast.expr_text(e)}' is not one"
                          f"{_hint(target or '', list(ck.chips) + list(ck.systems))}")
    # a tile that declares a sustained clock runs at it unless the run says `clock boost`
    clock = "boost"
    if machine is not None:
        clock = "sustained" if machine.tile.sustained_hz else "boost"
        if (p := one("clock", False)) and (a := ck.only(p, 1)):
            c = ck.symbol(a[0][0], CLOCKS, "the clock", env)
            if c == "sustained" and not machine.tile.sustained_hz:
                if machine.tile.name not in ck.bad_sustained:  # else reported at the tile
                    ck.diag.error(a[0][0].span, f"tile '{machine.tile.name}' declares no sustained clock "
                                                "(`clock 1.41 GHz, sustained = 1.3 GHz`)")
            elif c:
                clock = c
        if clock == "sustained":
            machine = machine.at_sustained_clock()
    mode = "infer"
    if (p := one("mode", False)) and (a := ck.only(p, 1)):
        mode = ck.symbol(a[0][0], MODES, "the mode", env) or "infer"
    mapping = _mapping(ck, one("strategy", False), env, machine, mode, name)
    prec = _precision(ck, one("precision"), env, machine, mode)
    optimizer = "none"
    if mode == "train":
        optimizer = "adam"
        if (p := one("optimizer", False)) and (a := ck.only(p, 1)):
            optimizer = ck.symbol(a[0][0], OPTIMIZERS, "the optimizer", env) or "adam"
    fusion = "none"
    if (p := one("fuse", False)) and (a := ck.only(p, 1)):
        fusion = ck.symbol(a[0][0], FUSION, "fusion", env) or "none"
    dispatch, dispatch_s = _dispatch(ck, one("dispatch", False), env)
    reduced = []
    if (p := one("accuracy", False)) is not None:
        for a in p.args:
            if not isinstance(a, ast.Kwarg) or a.name not in known:
                ck.diag.error(a.span, "'accuracy' lists run parameters of the reduced instance: "
                                      f"`accuracy NAME = VALUE, ...` with NAME one of {', '.join(known)}")
            else:
                reduced.append((a.name, ast.expr_text(a.value)))
    items, unit = 0.0, "FLOP/s"
    if (p := one("throughput", False)) and (a := ck.only(p, 2)):
        (ie, ue), _ = a
        iv, uv = ck.value(ie, env), ck.value(ue, env)
        if isinstance(iv, Q) and iv.dim.dimensionless and iv.value > 0:
            items = iv.value
        else:
            ck.diag.error(ie.span, f"throughput counts items per step (a positive number), found {show(iv)}")
        if isinstance(uv, Str):
            unit = uv.value
        else:
            ck.diag.error(ue.span, 'the throughput unit is a string such as "sequences/s"')
    # model
    graph = None
    if (p := one("model")) and (a := ck.only(p, 1)):
        e = a[0][0]
        if isinstance(e, ast.Name):
            e = ast.Call(e, (), span=e.span)
        if not (isinstance(e, ast.Call) and isinstance(e.func, ast.Name)):
            ck.diag.error(e.span, "'model' names a model, with arguments: `model gpt(layers, hidden)`")
        elif e.func.id not in ck.callables or ck.callables[e.func.id].kind != "model":
            if not ck.reported(e.func.id, "model"):
                ck.diag.error(e.func.span, f"unknown model '{e.func.id}'{_hint(e.func.id, ck.decls['model'])}")
        else:
            graph = _instantiate(ck, e, env)
    if graph is None or machine is None or mapping is None or prec is None or len(ck.diag.items) > n_errors:
        return None
    if not machine.tile.vector:
        # vector work (activations, norms, softmax, the optimizer) needs a unit to run on
        vop = next((op for op in graph.ops if op.vector_flops > 0 and not (op.kind == "dropout" and mode != "train")),
                   None)
        if vop is not None or mode == "train":
            what = (f"op '{vop.name}' ({vop.kind}) does vector work" if vop is not None else
                    f"training runs the {optimizer} optimizer's update on the vector unit")
            ck.diag.error(vop.span if vop is not None else _name_span(decl),
                          f"{what} but tile '{machine.tile.name}' has no vector unit; "
                          "add one, e.g. `vector fp32 : 16 lanes`",
                          (_name_span(decl), f"in run '{name}' on '{machine.name}'"))
            return None
    fmt = dict(ck.formats)
    act_bytes = fmt[prec.weights].bytes
    fp = footprint(graph, machine, mapping, prec, mode, act_bytes, fmt[prec.weights].bytes)
    if fp.total > fp.capacity:
        parts = ", ".join(f"{k} {_gb(v)}" for k, v in fp.items()[:4] if v)
        ck.diag.error(_name_span(decl), f"run '{name}' does not fit: each chip needs {_gb(fp.total)} "
                                         f"({parts}) but has {_gb(fp.capacity)} of {fp.where}; "
                                         f"{_gb(fp.total - fp.capacity)} too much")
        return None
    if mapping.tp > 1:
        for op in graph.ops:
            if op.kind == "attention" and op.attr("heads") % mapping.tp:
                ck.diag.error(mapping.span, f"tp = {mapping.tp} does not divide the {op.attr('heads')} attention "
                                            f"heads of '{op.name}'; tensor parallelism splits whole heads")
                return None
            if op.kind == "attention" and op.attr("kv_heads") % mapping.tp and op.attr("kv_heads") > mapping.tp:
                ck.diag.error(mapping.span, f"tp = {mapping.tp} does not divide the {op.attr('kv_heads')} "
                                            f"key/value heads of '{op.name}'")
                return None
    if mapping.pp > 1 and mapping.strategy != "spatial":
        trips = max((n for lname, n in graph.layers if "." not in lname), default=0)
        if trips < mapping.pp:
            ck.diag.error(mapping.span, f"pp = {mapping.pp} pipeline stages need a model with at least "
                                        f"{mapping.pp} repeated layers; '{graph.model}' has {trips}")
            return None
    checkpoint = _checkpoint(ck, one("checkpoint", False), env, machine, mode)
    train = _train(ck, one("train", False), env, graph, mapping, mode)
    if len(ck.diag.items) > n_errors:
        return None
    shown = tuple((p.name, _shown(env[p.name])) for p in params)
    used = {prec.matrix, prec.acc, prec.vector, prec.weights} | {t.dtype for t in graph.inputs if t.dtype}
    fbytes = tuple(sorted((n, ck.formats[n].bytes) for n in used if n in ck.formats))
    return Run(name, shown, graph.model, machine, graph, mode, mapping, prec, optimizer, items, unit,
               fp.items(), fbytes, fusion, tuple(reduced), clock, dispatch, dispatch_s, checkpoint, train,
               span=decl.span)


def _checkpoint(ck, p, env, machine, mode) -> Checkpoint | None:
    """`checkpoint every = auto | TIME, to = STORAGE | peers, restart = TIME` (all optional):
    where a training run saves its state, how often, and how long a restart takes."""
    if p is None:
        return None
    if mode != "train":
        ck.diag.error(p.span, "'checkpoint' saves a training run's state; this run does not train (`mode train`)")
        return None
    a = ck.only(p, 0, ("every", "to", "restart"))
    if not a:
        return None
    kw = a[1]
    every = None
    if "every" in kw:
        e = kw["every"].value
        v = ck.value(e, env)
        if not (isinstance(v, Sym) and v.name == "auto"):
            every = ck.quantity(e, [U.TIME], "a checkpoint interval", env=env, within="checkpoint interval")
            if every is None:
                return None
    stores = [s.name for lv in machine.levels for s in lv.storage]
    to = stores[0] if stores else "peers"
    if "to" in kw:
        e = kw["to"].value
        v = ck.value(e, env)  # a run parameter may name it: `--set to=peers`
        to = v.name if isinstance(v, Sym) else None
        if to is None or (to != "peers" and to not in stores):
            ck.diag.error(e.span, f"'to' names a storage of '{machine.name}' or `peers` (the memory of peer chips); "
                                  f"found {brief(ast.expr_text(e), 40)}; "
                                  + (f"it has {', '.join(stores)}" if stores else
                                     "it declares no storage (`storage NAME, bandwidth = ...` on a system)")
                                  + (_hint(to, stores) if to else ""))
            return None
    if to == "peers" and not machine.levels:
        ck.diag.error(kw["to"].value.span if "to" in kw else p.span,
                      f"checkpoints to peers are copied to another chip's memory; '{machine.name}' is one chip")
        return None
    restart = None
    if "restart" in kw:
        restart = ck.quantity(kw["restart"].value, [U.TIME], "a restart time", env=env, allow_zero=True,
                              within="restart")
        if restart is None:
            return None
    return Checkpoint(every, to, restart, True, span=p.span)


TRAIN_AMOUNTS = ("tokens", "samples", "steps")


def _train(ck, p, env, graph, mapping, mode) -> Train | None:
    """`train tokens = N` (or samples, or steps): how much the run trains, as steps."""
    if p is None:
        return None
    if mode != "train":
        ck.diag.error(p.span, "'train' says how much a training run trains; this run does not train (`mode train`)")
        return None
    a = ck.only(p, 0, TRAIN_AMOUNTS)
    if not a:
        return None
    kw = a[1]
    if len(kw) != 1:
        ck.diag.error(p.span, "'train' takes one of `tokens = N`, `samples = N` or `steps = N`")
        return None
    (what, arg), = kw.items()
    v = ck.value(arg.value, env)
    if not (isinstance(v, Q) and v.dim.dimensionless and v.value >= 1):
        ck.diag.error(arg.value.span, f"'train {what}' counts {what} (a number of at least 1), found {show(v)}")
        return None
    amount = float(v.value)
    if what == "steps":
        steps = amount
    elif what == "samples":
        steps = amount / mapping.global_batch
    else:
        # tokens per sample: the model's first integer input, [batch, seq] (a language model's tokens)
        tok = next((t for t in graph.inputs if t.dtype and t.dtype.startswith("int") and len(t.shape) >= 2), None)
        if tok is None:
            ck.diag.error(arg.span, f"'train tokens' needs a model whose input is tokens ([batch, seq] integers); "
                                    f"'{graph.model}' has none: count `samples` or `steps`")
            return None
        per_sample = tok.elems / tok.shape[0]
        steps = amount / (per_sample * mapping.global_batch)
    return Train(what, amount, steps, span=p.span)


# The host's cost to issue one op. Eager: PyTorch runs about 280,000 tiny ops a second (Horace
# He, "Making Deep Learning Go Brrrr From First Principles", 2022): 3.57 us each. A captured
# graph or compiled program: a CUDA graph of a straight line of kernels launches in about
# 2.5 us + 1 ns per node (NVIDIA Technical Blog, "Constant Time Launch for Straight-Line CUDA
# Graphs and Other Performance Enhancements"): ~0 per op. The default is the graph: the
# device's own `launch` is then every op's fixed cost.
DISPATCH_S = {"eager": 1 / 280_000, "graph": 0.0}


def _dispatch(ck, p, env) -> tuple[str, float]:
    """A run's `dispatch eager | graph | TIME`: (what, seconds per op)."""
    if p is None or not (a := ck.only(p, 1)):
        return "graph", 0.0
    e = a[0][0]
    v = ck.value(e, env)
    if isinstance(v, Sym) and v.name in DISPATCH_S:
        return v.name, DISPATCH_S[v.name]
    if isinstance(v, Q) and v.dim == U.TIME:
        t = ck.quantity(e, [U.TIME], "a dispatch time", allow_zero=True, within="latency", env=env)
        return ("declared", t) if t is not None else ("graph", 0.0)
    found = f"'{v.name}'{_hint(v.name, list(DISPATCH_S))}" if isinstance(v, Sym) else show(v)
    ck.diag.error(e.span, f"the dispatch must be eager, graph or a time per op; found {found}")
    return "graph", 0.0


def _same(a, b) -> bool:
    if isinstance(a, Q) and isinstance(b, Q):
        return a.dim == b.dim and a.value == b.value
    return a == b


def _shown(v):
    if isinstance(v, Q):
        return v.value if not float(v.value).is_integer() else int(v.value)
    if isinstance(v, Sym):
        return v.name
    if isinstance(v, Str):
        return v.value
    return v if isinstance(v, bool) else show(v)


def _instantiate(ck, call: ast.Call, env):
    model = ck.callables[call.func.id]
    args, kwargs = [], {}
    for a in call.args:
        v = ck.value(a.value if isinstance(a, ast.Kwarg) else a, env)
        if v is None:
            return None
        if isinstance(a, ast.Kwarg):
            kwargs[a.name] = (v, a.span)
        else:
            args.append(v)
    try:
        scope_args = dict(zip([p.name for p in model.params], args))
        if len(args) > len(model.params):
            raise EvalError(call.span, f"model '{model.name}' takes {len(model.params)} arguments, {len(args)} given")
        for k, (v, s) in kwargs.items():
            if k not in scope_args and k not in [p.name for p in model.params]:
                raise EvalError(s, f"model '{model.name}' has no parameter '{k}'")
            if k in scope_args:
                raise EvalError(s, f"parameter '{k}' is given twice")
            scope_args[k] = v
    except EvalError as err:
        ck.diag.error(err.span, err.message)
        return None
    # A model's graph depends only on the model and its arguments: kept (per checked file, see
    # check.py `_declarations`) when building it raised nothing, so a run checked again with
    # parameters that leave its model's arguments alone does not rebuild it.
    try:
        key = (model.name, tuple(sorted(scope_args.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in ck.graphs:
        return ck.graphs[key]
    before = (len(ck.diag.items), len(ck.diag.warnings))
    graph = Builder(ck.callables, set(ck.formats), ck.diag, call.span).build(model, scope_args, call.span)
    if key is not None and graph is not None and (len(ck.diag.items), len(ck.diag.warnings)) == before:
        ck.graphs[key] = graph
    return graph


def _mapping(ck, p, env, machine, mode, run_name) -> Mapping | None:
    if p is None:
        return Mapping("single", 1, 1, 1, 1, 1, 1, "none", False, False)
    pos, kw = ck.split(p)
    if len(pos) != 1:
        ck.diag.error(p.span, f"'strategy' takes one of {', '.join(STRATEGIES)}, then options")
        return None
    strategy = ck.symbol(pos[0], STRATEGIES, "the strategy", env)
    if strategy in ("spatial", "weight_streaming") and machine is not None and len(machine.chip.grid) > 2:
        # their layouts place regions and stream rows across a plane of tiles (codegen/layout.py)
        ck.diag.error(pos[0].span, f"a {strategy} run lays its regions out on a 2-D grid of tiles; the chip "
                                   f"'{machine.chip.name}' has a {' x '.join(map(str, machine.chip.grid))} grid")
        return None
    for k, a in kw.items():
        if k not in STRATEGY_OPTIONS:
            ck.diag.error(a.span, f"'strategy' has no option '{k}'; "
                                  f"it takes {', '.join(STRATEGY_OPTIONS)}{_hint(k, STRATEGY_OPTIONS)}")
            return None

    def count(key, default=1, minimum=1):
        return ck.count(kw[key].value, f"'{key}'", env, minimum) if key in kw else default

    def flag(key, default=False):
        if key not in kw:
            return default
        v = ck.value(kw[key].value, env)
        if not isinstance(v, bool):
            ck.diag.error(kw[key].value.span, f"'{key}' must be true or false, found {show(v)}")
            return None
        return v

    tp, pp, dp, chips = count("tp"), count("pp"), count("dp"), count("chips", None)
    interleave, micro = count("interleave"), count("micro_batch")
    recompute = ck.symbol(kw["recompute"].value, RECOMPUTE, "recompute", env) if "recompute" in kw else "none"
    sp, overlap, in_gemm = flag("seq_parallel"), flag("overlap_dp"), flag("accumulate_in_gemm")
    schedule = ck.symbol(kw["schedule"].value, SCHEDULES, "the pipeline schedule", env) if "schedule" in kw else "one_f_one_b"
    region_rows = count("region_rows", 0, minimum=0)  # 0: archc chooses
    placement = ck.symbol(kw["placement"].value, PLACEMENTS, "the placement", env) if "placement" in kw else "adjacent"
    bucket = ck.quantity(kw["bucket"].value, [U.BYTES], "a gradient bucket size", env=env,
                         within="bucket") if "bucket" in kw else DDP_BUCKET
    if None in (strategy, tp, pp, dp, interleave, micro, recompute, sp, overlap, in_gemm, schedule, region_rows,
                placement, bucket) or ("chips" in kw and chips is None):
        return None
    if "bucket" in kw and not overlap:
        ck.diag.error(kw["bucket"].span, "'bucket' sizes the gradient all-reduce buckets of overlap_dp = true; "
                                         "this run does not overlap its gradient exchange")
        return None
    if strategy == "single":
        tp = pp = dp = 1
    elif strategy == "data":
        tp, pp, dp = 1, 1, chips or dp
    elif strategy == "spatial":
        tp, pp, dp = 1, chips or pp, 1
    elif strategy == "weight_streaming":
        tp, pp, dp = 1, 1, chips or dp
    elif chips is not None and chips != tp * pp * dp:
        ck.diag.error(kw["chips"].span, f"chips = {chips} but tp x pp x dp = {tp} x {pp} x {dp} = {tp * pp * dp}")
        return None
    gb = count("global_batch", micro * dp)
    if gb is None:
        return None
    if gb % (micro * dp):
        ck.diag.error(kw["global_batch"].span if "global_batch" in kw else p.span,
                      f"global_batch {gb} is not a multiple of micro_batch x dp = {micro} x {dp} = {micro * dp}")
        return None
    if interleave > 1 and pp == 1:
        ck.diag.error(kw["interleave"].span, "interleave > 1 needs pipeline parallelism (pp > 1)")
        return None
    if in_gemm and mode != "train":
        ck.diag.error(kw["accumulate_in_gemm"].span, "'accumulate_in_gemm' adds weight gradients in the GEMM; "
                                                     "this run does not train (`mode train`)")
        return None
    if in_gemm and strategy in ("spatial", "weight_streaming"):
        ck.diag.error(kw["accumulate_in_gemm"].span, f"'accumulate_in_gemm' adds weight gradients into a gradient "
                                                     f"buffer in the GEMM; a {strategy} run keeps no such buffer")
        return None
    for key in ("region_rows", "placement"):
        if key in kw and strategy != "spatial":
            ck.diag.error(kw[key].span, f"'{key}' lays out the regions of a spatial run; this run's strategy is {strategy}")
            return None
    if machine is not None and region_rows > machine.chip.rows:
        ck.diag.error(kw["region_rows"].value.span, f"region_rows = {region_rows} but the chip '{machine.chip.name}' "
                                                    f"has {machine.chip.rows} row{'s' if machine.chip.rows != 1 else ''} of tiles")
        return None
    if interleave > 1 and schedule == "gpipe":
        ck.diag.error(kw["schedule"].span, "the interleaved schedule is 1F1B's (Narayanan et al. 2021); "
                                           "GPipe takes interleave = 1")
        return None
    if machine is not None and tp * pp * dp > machine.chips:
        ck.diag.error(p.span, f"run '{run_name}' needs {tp * pp * dp} chips but '{machine.name}' has "
                              f"{machine.chips}; {tp * pp * dp - machine.chips} too many")
        return None
    ep = count("ep")
    if ep is None:
        return None
    if ep > 1 and strategy not in ("data", "parallel"):
        ck.diag.error(kw["ep"].span, f"'ep' splits a mixture of experts' experts over data-parallel replicas; "
                                     f"a {strategy} run has none (use strategy data or parallel)")
        return None
    if dp % ep:
        ck.diag.error(kw["ep"].span, f"ep = {ep} must divide dp = {dp}: each expert-parallel group is "
                                     f"ep of the data-parallel replicas")
        return None
    return Mapping(strategy, tp, pp, dp, interleave, micro, gb, recompute, sp, overlap, schedule,
                   region_rows, placement, bucket, in_gemm, ep, span=p.span)


def _precision(ck, p, env, machine, mode) -> Precision | None:
    if p is None or machine is None:
        return None
    a = ck.only(p, 1)
    if not a:
        return None
    e = a[0][0]
    acc_e = None
    if isinstance(e, ast.BinOp) and e.op == "->":
        e, acc_e = e.left, e.right
    v = ck.value(e, env)
    if not isinstance(v, Sym):
        ck.diag.error(e.span, f"precision names a format or 'amp', found {show(v)}")
        return None
    tile = machine.tile
    units = {(m.a, m.b): m for m in tile.matrix}
    have = sorted({m.a for m in tile.matrix})
    name = v.name
    if name == "amp":
        half = next((f for f in ("bf16", "fp16") if (f, f) in units), None)
        if half is None:
            ck.diag.error(e.span, f"'amp' needs a bf16 or fp16 matrix unit; tile '{tile.name}' has "
                                  f"{', '.join(have) or 'none'}")
            return None
        fmt = half
    elif name not in ck.formats:
        ck.diag.error(e.span, f"unknown format '{name}'{_hint(name, ck.formats)}")
        return None
    else:
        fmt = name
    if (fmt, fmt) not in units:
        ck.diag.error(e.span, f"tile '{tile.name}' has no {fmt} x {fmt} matrix unit; it has "
                              f"{', '.join(have) or 'none'}")
        return None
    acc = units[(fmt, fmt)].acc
    if acc_e is not None:
        acc_v = ck.value(acc_e, env)
        acc = acc_v.name if isinstance(acc_v, Sym) else None
        if acc not in ck.formats:
            ck.diag.error(acc_e.span, f"unknown accumulator format {show(acc_v)}")
            return None
    vec = {u.fmt for u in tile.vector}
    # element-wise work runs in the format itself where the tile has lanes for it (fp64, fp32),
    # else in fp32 (bf16 and narrower formats feed fp32 vector units), else the first it has
    vector = fmt if fmt in vec else "fp32" if "fp32" in vec else (sorted(vec)[0] if vec else fmt)
    fb = ck.formats[fmt].bytes
    # Training state per parameter besides the compute copy. Mixed precision (Megatron-LM)
    # keeps fp32 main gradients (4 B, also what data parallelism all-reduces), an fp32 master
    # copy and Adam's two fp32 moments (12 B): 18 B per parameter with the 2 B weights.
    # Full precision keeps a gradient and two moments in the format itself.
    if fb < 4:
        return Precision(name, fmt, acc, vector, fmt, 16.0, 4.0)
    return Precision(name, fmt, acc, vector, fmt, 3 * fb, fb)
