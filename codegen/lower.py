"""Lowering: a checked run (model + machine + mapping + precision) -> a Plan (codegen/plan.py)
of typed tasks for one chip and one step.

One task is one op in one phase (forward, backward, recompute) or a step-level job (optimizer,
data-parallel gradient exchange, pipeline transfers). Counts are per micro-batch per chip."""
from __future__ import annotations

import math

from archc.dsl.ir import Machine, Op, Run
from archc.dsl.vocab import Collective, OpClass, Strategy

from . import collectives, schedule
from .plan import Comm, Gemm, Phase, Placement, Plan, Task, memory_levels
from .traffic import attention_rereads, gemm_rereads

ACCUMULATE = "gradient accumulation"  # the label of the rows adding weight gradients into the step's buffer
OPTIMIZER_FLOPS = {"adam": 12, "adamw": 13, "lamb": 16, "sgd": 2, "none": 0}

# Which ops' inputs or outputs carry Megatron tensor-parallel sharding (Shoeybi et al. 2019):
# a linear whose input is whole splits its columns; one whose input is split splits its rows
# and all-reduces its output.
_SHARD_FOLLOW = {"elementwise", "softmax", "attention", "loss", "movement"}


def _class_of(op: Op) -> OpClass:
    """The op's class. Every class dsl/models.py produces is one; an op of any other class is a
    bug in archc, never silently costed as another class."""
    try:
        return OpClass.of(op.cls)
    except KeyError:
        raise AssertionError(f"op '{op.name}' ({op.kind}) has the class '{op.cls}', which the lowering "
                             f"does not know ({', '.join(OpClass.words())})") from None


def _stage_of(op: Op, ops_before_layers: set[int], pp: int) -> Placement:
    if pp == 1 or op.layer:
        return Placement.EVERY_STAGE
    return Placement.FIRST_STAGE if id(op) in ops_before_layers else Placement.LAST_STAGE


def lower(run: Run) -> Plan:
    m = run.machine
    mp = run.mapping
    g = run.graph
    tile = m.tile
    chip = m.chip
    prec = run.precision
    fmt_bytes = _format_bytes(run)
    ab = fmt_bytes[prec.weights]  # activations and weights travel in the compute format
    munits = [(u.a, u.b) for u in tile.matrix]
    vunits = [u.fmt for u in tile.vector]
    unit = munits.index((prec.matrix, prec.matrix))
    operand_traffic = tile.matrix[unit].sram_per_flop  # B/FLOP of memory-to-memory datapaths
    vunit = vunits.index(prec.vector) if prec.vector in vunits else (0 if vunits else -1)
    train = run.mode == "train"
    tp, pp = mp.tp, mp.pp
    spatial = mp.strategy == "spatial"
    streaming = mp.strategy == "weight_streaming"
    # Tensors live in the chip's own DRAM when it has one; a system's pooled memory (MemoryX,
    # Dojo's interface processors) only feeds weight streaming.
    dram = chip.memory is not None
    has_mem = dram or (streaming and m.memory is not None)
    # Memory levels, innermost first. Each level sees an op's unique bytes and the re-reads a
    # tiling of its products makes when their operands do not fit the level inside it
    # (codegen/traffic.py). Inside the first level is the tiles' SRAM taken together: the
    # tiles share a product's operand panels over the NoC (each loads its part from memory and
    # the row or column broadcasts it, SUMMA: van de Geijn and Watts 1997), which is the
    # traffic `_noc_bytes` charges the NoC; so it is the chip's SRAM, not one tile's, that
    # bounds the tile of C kept on chip. Further out, each level holds what the next one re-reads.
    memories = memory_levels(m)
    inner = [chip.tiles * tile.sram_bytes] + [x.capacity for x in memories[:-1]]
    acc_b = fmt_bytes.get(prec.acc, 4.0)

    def at_levels(unique: float, rereads=None) -> tuple[float, ...]:
        if spatial or not memories or not (dram or streaming):
            return ()
        return tuple(unique + (rereads(c) if rereads is not None and dram else 0.0)
                     for c in inner)
    # Training accumulates weight gradients into a buffer per micro-batch unless one micro-batch
    # writes them in the buffer's format; a spatial pipeline keeps them in place and weight
    # streaming sends them out to the memory system, which sums them there.
    accumulate = train and not (spatial or streaming) and \
        (mp.micro_batches > 1 or prec.grad_bytes != ab)
    notes: list[str] = []

    # pipeline stages: ops before the first layer go to the first stage, after it to the last
    top_layers = [(name, n) for name, n in g.layers if "." not in name]
    layer_trips = max((n for _, n in top_layers), default=0)
    if spatial:  # every chip of a spatial pipeline holds whole ops; no per-layer split
        layer_trips, per_stage = 0, 1.0
    else:
        per_stage = math.ceil(layer_trips / pp) / layer_trips if layer_trips else 1.0
    first_layer_idx = next((i for i, op in enumerate(g.ops) if op.layer), len(g.ops))
    before = {id(op) for op in g.ops[:first_layer_idx]}

    fused = _fused_tensors(run) if run.fusion != "none" else set()
    sharded: set[int] = set()
    grad_reduced: set[int] = set()  # tensors whose input gradient is already all-reduced
    flops = {"forward": 0.0, "backward": 0.0, "recompute": 0.0}  # whole model, one micro-batch
    tasks: list[Task] = []
    net = collectives.Network.of(m)

    def add(label, kind, **kw):
        c = kw.pop("comm", None)
        if c is not None and c.nbytes:
            steps = collectives.decompose(net, c.kind, c.p, c.stride)
            c = Comm(c.kind, c.nbytes, c.p, c.stride, steps, *collectives.time(net, steps, c.nbytes))
        else:
            c = None
        tasks.append(Task(label, kind, unit=unit, vunit=vunit, comm=c, **kw))

    for i, op in enumerate(g.ops):
        if op.cls == "view" or (op.kind == "dropout" and not train):
            continue  # inference does not drop out: the op is the identity and costs nothing
        stage = Placement.EVERY_STAGE if spatial else _stage_of(op, before, pp)
        count = op.count * (per_stage if stage == Placement.EVERY_STAGE and pp > 1 else 1.0)
        ins_sharded = any(t.id in sharded for t in op.inputs)
        split = 1
        row_parallel = False  # a linear whose input is split: it splits the summed dimension
        comm_fwd = comm_bwd = 0.0
        weights = op.weight_elems
        if tp > 1:
            if op.kind in ("linear", "conv2d", "conv_transpose2d"):
                split = tp
                weights = op.weight_elems / tp
                if ins_sharded:  # row parallel: partial sums all-reduced
                    row_parallel = True
                    comm_fwd = op.output.elems * ab
                else:  # column parallel: output split; input gradient all-reduced
                    sharded.add(op.output.id)
                    # once per input: column-parallel ops reading the same tensor (q, k and v
                    # of one x) sum their input gradients locally and all-reduce the sum once,
                    # on the first of them in forward order (the last to finish backward)
                    if op.inputs[0].id not in grad_reduced:
                        grad_reduced.add(op.inputs[0].id)
                        comm_bwd = op.inputs[0].elems * ab
            elif op.kind == "experts":  # each expert's FFN column- then row-parallel, as an MLP's
                split = tp
                weights = op.weight_elems / tp
                comm_fwd = op.output.elems * ab
                if op.inputs[0].id not in grad_reduced:
                    grad_reduced.add(op.inputs[0].id)
                    comm_bwd = op.inputs[0].elems * ab
            elif op.kind == "embedding":  # vocabulary parallel
                weights = op.weight_elems / tp
                comm_fwd = op.output.elems * ab
            elif op.cls in _SHARD_FOLLOW or op.kind == "matmul":
                if ins_sharded:
                    split = tp
                    sharded.add(op.output.id)
            elif mp.seq_parallel and op.cls == "norm":
                split = tp
        if op.kind == "gather" or op.kind == "embedding" or op.attr("reads_output"):
            in_elems = op.output.elems  # only the rows gathered (the part sliced) are read
            tok_bytes = sum(t.elems * fmt_bytes.get(t.dtype or "", 4) for t in op.inputs) if op.kind == "embedding" else 0
        else:
            in_elems = sum(t.elems for t in op.inputs if t.id not in fused)
            tok_bytes = 0
        fused_in = any(t.id in fused for t in op.inputs)
        out_elems = 0 if op.output.id in fused else op.output.elems
        in_elems, out_elems = in_elems / split, out_elems / split
        extra = op.extra_bytes_elems / split
        if train and op.kind == "attention" and not op.attr("flash"):
            extra += 2 * op.attr("scores") / split  # dropout on the attention probabilities
        gm = op.gemms[0] if op.gemms else None
        shape = _gemm_shape(gm, split, row_parallel, heads=op.kind == "attention")
        load, w_read = 1.0, 1.0
        if op.kind == "experts":
            weights /= mp.ep
            load, w_read, shape, note = _experts(op, mp, split, spatial)
            if note not in notes:
                notes.append(note)
        w_bytes = weights * ab
        act_bytes = (in_elems + out_elems + extra) * ab + tok_bytes
        mflops, vflops = load * op.matrix_flops / split, load * op.vector_flops / split
        if spatial:
            mem_f, sram_f = 0.0, act_bytes + w_bytes
        elif streaming:
            mem_f, sram_f = w_bytes, act_bytes + w_bytes  # weights stream in from outside
        elif dram:  # a mixture of experts reads the weights of the experts its tokens reach
            mem_f, sram_f = act_bytes + w_read * w_bytes, act_bytes + w_read * w_bytes
        else:
            mem_f, sram_f = 0.0, act_bytes + w_bytes
        # a memory-to-memory datapath's per-MAC traffic already reads the weights and inputs
        sram_f = max(sram_f, op.matrix_flops / split * operand_traffic)
        fwd_rereads = _rereads(op, shape, ab, acc_b, backward=False)
        lv_f = at_levels(mem_f, fwd_rereads)
        noc_f = _noc_bytes(m, op, gm, split, ab, mem_f, spatial)
        # On a spatial fabric an op without matrix work (elementwise, norms, softmax)
        # runs in place on the tiles of the op that produced its input: no region of its own
        # (an embedding keeps its table in a region of its own; a gather of activations does not).
        colocate = spatial and not op.matrix_flops and i > 0 and (op.cls != "embedding" or not w_bytes)
        common = dict(op=i, placement=stage, count=count, colocate=colocate, cls=_class_of(op),
                      gemm=shape, weight_bytes=w_bytes)
        group_p = tp
        if op.cls == "collective":  # an explicit collective in the model spans the run's chips
            comm_fwd = op.output.elems * ab
            group_p = mp.chips
        kind_fwd = Collective.of(op.attr("collective")) if op.cls == "collective" else Collective.ALLREDUCE
        flops["forward"] += op.flops * op.count
        common["launches"] = 0.0 if fused_in else 1.0
        if op.kind == "experts" and mp.ep > 1:
            # expert parallelism: each token's hidden vector goes to its top_k experts' chips and
            # comes back (dispatch and combine, GShard's two all-to-alls), in backward as well
            moved = op.inputs[0].elems / split * op.attr("top_k") * ab
            for what in ("dispatch", "combine"):
                for phase in (Phase.FORWARD, Phase.BACKWARD) if train else (Phase.FORWARD,):
                    add(f"{op.name} {what}", "alltoall", op=i, phase=phase, placement=stage, count=count,
                        cls=OpClass.COLLECTIVE, comm=Comm(Collective.ALLTOALL, moved, mp.ep, tp), launches=1.0)
        add(op.name, op.kind, phase=Phase.FORWARD, mflops=mflops, vflops=vflops, levels=lv_f, sram_bytes=sram_f,
            noc_bytes=noc_f, comm=Comm(kind_fwd, comm_fwd, group_p, 1), **common)
        if not train:
            continue
        # The weight gradient of each micro-batch is added into the step's gradient buffer.
        # With accumulate_in_gemm a matrix op's weight-gradient GEMM does it in its epilogue
        # (Megatron-LM's --gradient-accumulation-fusion): it reads and writes the buffer in
        # place of writing the gradient. Otherwise it is a memory-bound pass of its own
        # (Megatron-LM's main_grad.add_ in a hook as each gradient is ready; PyTorch's
        # AccumulateGrad) reading the fresh gradient and reading and writing the buffer.
        in_gemm = accumulate and mp.accumulate_in_gemm and op.matrix_flops > 0
        apart = bool(accumulate and op.weight_elems and not in_gemm)
        if apart:
            # Backward rows run in reverse table order, so this row, before the backward's,
            # runs after it; the gradient is complete (its data-parallel bucket may go) then:
            # the backward row that holds the weight bytes completes it (runtime/buckets.py).
            acc = weights * (ab + 2 * prec.grad_bytes)
            add(ACCUMULATE, "accumulation", op=i, phase=Phase.BACKWARD, placement=stage, count=count,
                cls=OpClass.ELEMENTWISE, vflops=weights, levels=at_levels(acc) if dram else (), sram_bytes=acc,
                weight_bytes=w_bytes)
        # Backward: the input gradient and (for ops with weights) the weight gradient each cost
        # what the forward did; data read: dY, saved inputs, weights; written: dX, dW.
        bwd_bytes = (out_elems + 2 * in_elems + 2 * extra) * ab + 2 * w_bytes
        if op.cls == "movement":  # the inverse move: reads dY, writes dX, needs nothing saved
            bwd_bytes = (out_elems + in_elems) * ab
        if in_gemm:
            bwd_bytes += weights * (2 * prec.grad_bytes - ab)
        bwd_sram = max(bwd_bytes, 2 * op.matrix_flops / split * operand_traffic)
        mem_b = bwd_bytes if dram and not spatial else 0.0
        if streaming:
            mem_b = 2 * w_bytes  # weights stream in, gradients stream out
        factor = 2.0 if op.weight_elems or op.kind in ("matmul", "attention") else 1.0
        flops["backward"] += (2 * op.matrix_flops + factor * op.vector_flops) * op.count
        bwd_rereads = _rereads(op, shape, ab, acc_b, backward=True)
        lv_b = at_levels(mem_b, bwd_rereads)
        add(op.name, op.kind, phase=Phase.BACKWARD, mflops=2 * mflops, vflops=factor * vflops, levels=lv_b,
            sram_bytes=bwd_sram, noc_bytes=2 * noc_f, comm=Comm(Collective.ALLREDUCE, comm_bwd, group_p, 1),
            **{**common, "weight_bytes": 0.0 if apart else w_bytes})
        recompute = mp.recompute == "full" and op.layer or \
            (mp.recompute == "selective" and op.kind == "attention")
        if recompute:
            flops["recompute"] += op.flops * op.count
            add(op.name, op.kind, phase=Phase.RECOMPUTE, mflops=mflops, vflops=vflops, levels=lv_f,
                sram_bytes=sram_f, noc_bytes=noc_f, comm=Comm(kind_fwd, comm_fwd, group_p, 1), **common)

    # a mixture of experts' weights are split ep ways more, and their gradients all-reduced
    # only over the dp / ep replicas holding the same experts
    expert_elems = sum(op.weight_elems * op.count for op in g.ops if op.kind == "experts")
    params_chip = (g.params_elems - expert_elems + expert_elems / mp.ep) / (tp * pp)
    expert_chip = expert_elems / (tp * pp * mp.ep) if mp.ep > 1 else 0.0
    # every micro-batch of the step, over all data-parallel replicas
    batches = mp.global_batch / mp.micro_batch
    if train:
        ob = OPTIMIZER_FLOPS[run.optimizer]
        opt_bytes = params_chip * (2 * (prec.master_bytes + ab) - prec.grad_bytes)
        if accumulate:
            opt_bytes += params_chip * prec.grad_bytes  # and zeroes the gradient buffer for the next step
        add("optimizer step", Phase.OPTIMIZER.word, op=-1, phase=Phase.OPTIMIZER, placement=Placement.STEP,
            count=1, cls=OpClass.OPTIMIZER, vflops=ob * params_chip,
            levels=at_levels(opt_bytes) if dram and not spatial else (), sram_bytes=opt_bytes)
        if mp.dp > 1:
            add("gradient all-reduce", Phase.GRADIENT_EXCHANGE.word, op=-1, phase=Phase.GRADIENT_EXCHANGE,
                placement=Placement.STEP, count=1, cls=OpClass.COLLECTIVE,
                comm=Comm(Collective.ALLREDUCE, (params_chip - expert_chip) * prec.grad_bytes, mp.dp, tp), launches=1)
        if mp.dp // mp.ep > 1 and expert_chip:
            add("expert gradient all-reduce", Phase.GRADIENT_EXCHANGE.word, op=-1, phase=Phase.GRADIENT_EXCHANGE,
                placement=Placement.STEP, count=1, cls=OpClass.COLLECTIVE,
                comm=Comm(Collective.ALLREDUCE, expert_chip * prec.grad_bytes, mp.dp // mp.ep, tp * mp.ep),
                launches=1)
    if pp > 1:
        # activations forward and gradients backward across each stage boundary, per micro-batch
        boundary = max((op.output.elems for op in g.ops if op.layer), default=0) * ab / tp
        # a spatial pipeline passes each sample across its pp - 1 chip boundaries once
        xfers = (pp - 1) if spatial else (2 if train else 1) * mp.interleave
        add("pipeline send/recv", Phase.PIPELINE_TRANSFER.word, op=-1, phase=Phase.PIPELINE_TRANSFER,
            placement=Placement.EVERY_STAGE, count=xfers, cls=OpClass.COLLECTIVE,
            comm=Comm(Collective.P2P, boundary, 2, tp * mp.dp), launches=0)
    if spatial:
        notes.append("spatial: each op runs on its own region of tiles: what its weights need in SRAM, and "
                     "a share of the rest sized for the fastest pipeline of the step's samples (balanced "
                     "regions for many samples, larger shares for larger ops for one)")
    if not has_mem and not spatial:
        notes.append("no off-chip memory: tensors live in on-chip SRAM")
    sched = None if spatial else schedule.build(pp, mp.micro_batches, mp.interleave, mp.schedule, train)
    if sched is not None and mp.interleave > 1 and sched.chunks == 1:
        notes.append(f"interleave = {mp.interleave} needs the micro-batches ({mp.micro_batches}) to be a multiple "
                     f"of pp = {pp} (Megatron-LM's interleaved schedule); the run is plain 1F1B")
    return Plan(run, tuple(tasks), Strategy.of(mp.strategy), mp.micro_batches,
                {k: v * batches for k, v in flops.items()}, tuple(notes), sched, memories)


def _experts(op: Op, mp, split: int, spatial: bool):
    """A mixture of experts' dynamic part as static figures (dsl/models.py _experts): (the load
    of the busiest chip's experts over the mean, the fraction of the expert weights its tokens
    reach, the GEMM its busiest expert computes, the note naming the assumption).

    Load: with a capacity factor C every expert computes C x the mean tokens, padded (GShard,
    Switch); dropless experts compute what they are sent, so the busiest expert's chip waits
    `imbalance` x the mean when experts are split over chips (ep > 1) or pinned to regions of
    their own (spatial: every expert resident, idle when no token reaches it); on one chip
    without expert parallelism a grouped GEMM runs the same tokens in any spread (load 1).
    Weights read: an expert no token reaches is not read; with T tokens on the ep chips each
    choosing top_k of E experts independently, an expert is reached with probability
    1 - (1 - k/E)^T (the uniform-routing expectation: a one-token decode reads 2 of Mixtral's 8)."""
    e, k, ep = op.attr("experts"), op.attr("top_k"), mp.ep
    cap, imb = op.attr("capacity"), op.attr("imbalance")
    tokens = op.inputs[0].elems / op.inputs[0].shape[-1]
    load = cap if cap else (imb if ep > 1 or spatial else 1.0)
    reach = 1.0 - (1.0 - k / e) ** (tokens * ep)
    gm = op.gemms[0]
    shape = Gemm(float(gm.batch / ep), float(math.ceil(tokens * k * ep / e * load)), float(gm.n / split), float(gm.k))
    how = (f"capacity factor {cap:g}: every expert computes {cap:g} x the mean tokens, padded"
           + (f"; {1 - cap / imb:.0%} of the busiest expert's tokens are dropped" if imb > cap else "")
           if cap else f"dropless; the busiest expert takes {imb:g} x the mean tokens (declared imbalance)"
           + ("" if ep > 1 or spatial else ", which one chip's grouped GEMM absorbs"))
    return load, reach, shape, (f"mixture of experts ({op.name}): tokens routed to top {k} of {e} experts, "
                                f"the expected load ({how}); {reach:.0%} of the experts' weights reached per pass "
                                f"(uniform routing)" + (f"; experts split over ep = {ep} chips" if ep > 1 else ""))


def _rereads(op: Op, g: Gemm | None, ab: float, acc_b: float, backward: bool):
    """capacity -> the bytes the op's products re-read when the level inside holds `capacity`
    (codegen/traffic.py), for one pass; None for an op without products. A backward pass of a
    product makes two (dX = dY W^T, m x k summing n; dW = X^T dY, k x n summing m); a
    convolution's A operand is its input, rebuilt into im2col tiles inside (implicit GEMM)."""
    if g is None or not g.m or not g.n or not g.k:
        return None
    if op.kind == "attention":
        # the whole problem's sizes (a causal flash kernel's GEMM shape is its tiles)
        bh = op.output.shape[0] * op.attr("heads")
        s, t, d = op.attr("queries"), op.attr("keys"), op.attr("head_dim")
        if op.attr("flash"):
            causal = op.attr("causal")
            return lambda c: (2.0 if backward else 1.0) * attention_rereads(bh, s, t, d, c, ab, causal)
        return lambda c: (2.0 if backward else 1.0) * (gemm_rereads(bh, s, t, d, c, ab, ab, acc_b).rereads
                                                       + gemm_rereads(bh, s, d, t, c, ab, ab, acc_b).rereads)
    f = 1.0
    if op.kind == "conv2d" and g.m * g.k:  # input elements per im2col element
        f = min(1.0, op.inputs[0].elems / (g.b * g.m * g.k))
    if backward:
        return lambda c: (gemm_rereads(g.b, g.m, g.k, g.n, c, ab, ab, acc_b).rereads
                          + gemm_rereads(g.b, g.k, g.n, g.m, c, ab * f, ab, acc_b).rereads)
    return lambda c: gemm_rereads(g.b, g.m, g.n, g.k, c, ab * f, ab, acc_b).rereads


def _gemm_shape(gm, split: int, row_parallel: bool, heads: bool) -> Gemm | None:
    """The GEMM one chip computes (for wave quantisation) when the op is split `split` ways:
    a row-parallel linear splits the summed dimension K, attention splits its heads (the
    batch of GEMMs), any other op its output columns N."""
    if gm is None:
        return None
    return Gemm(float(gm.batch / split if heads else gm.batch), float(gm.m),
                float(gm.n if heads or row_parallel else gm.n / split),
                float(gm.k / split if row_parallel else gm.k))


# Ops a fused kernel takes in: elementwise ops (bias, activation, dropout, residual add) and,
# in inference, batch norm (with `fuse epilogue`, folded into the convolution before it).
_FUSABLE = {"elementwise"}


def _fused_tensors(run: Run) -> set[int]:
    """Tensors that never reach memory: produced by one op and consumed only by the
    elementwise op that follows it directly, which runs in the same kernel. `fuse epilogue`
    runs it in the producer's kernel whatever the producer (an inference engine's GEMM
    epilogue); `fuse elementwise` only joins elementwise ops to each other, so a matrix op's
    output is written and read back (Megatron's fused bias-GELU and bias-dropout-add kernels,
    TorchScript/NVFuser)."""
    ops = [op for op in run.graph.ops if op.cls != "view"]
    consumers: dict[int, int] = {}
    for op in ops:
        for t in op.inputs:
            consumers[t.id] = consumers.get(t.id, 0) + 1
    fused = set()
    for prev, op in zip(ops, ops[1:]):
        fusable = op.cls in _FUSABLE or (op.kind == "batchnorm" and run.mode == "infer")
        if run.fusion == "elementwise" and prev.cls not in _FUSABLE:
            continue
        if fusable and prev.cls != "collective" and any(t.id == prev.output.id for t in op.inputs) \
                and consumers.get(prev.output.id) == 1:
            fused.add(prev.output.id)
    return fused


def _format_bytes(run: Run) -> dict:
    out = {"int32": 4.0, "int64": 8.0, "uint8": 1.0}
    out.update(dict(run.format_bytes))
    return out


def _noc_bytes(m: Machine, op: Op, gm, split: int, ab: float, mem_bytes: float, spatial: bool) -> float:
    """On-chip network traffic of one op.

    A chip with off-chip memory (a GPU) moves what it reads and writes through its crossbar.
    An SRAM machine distributes a matrix product over its tile grid as SUMMA does: every tile
    receives its row panel of A and column panel of B (the weights stay in place: see below);
    the kernel divides the bytes one tile receives by that tile's link bandwidth. Spatial mappings carry each op's input in across
    its region's boundary."""
    chip = m.chip
    if chip.memory is not None and not spatial:
        return mem_bytes
    if spatial:
        return sum(t.elems for t in op.inputs) / split * ab
    if gm is None:
        return 0.0
    r, c = chip.rows, chip.cols
    if chip.noc.topology in ("crossbar", "alltoall", "switch") or len(chip.grid) > 2:
        # no grid to follow (a crossbar), or one of more than two dimensions: SUMMA's logical
        # grid is the squarest of the tiles (each row or column of it a sub-grid of the mesh)
        side = math.isqrt(chip.tiles)
        r, c = side, max(1, chip.tiles // side)
    m, n, k = gm.m, gm.n / split, gm.k
    # SUMMA (van de Geijn and Watts 1997): tile (i, j) needs the (m/r x k) row panel of A and
    # the (k x n/c) column panel of B, and holds 1/c and 1/r of them: it receives the rest
    summa = m / r * k * (c - 1) / c + k * n / c * (r - 1) / r
    if op.weight_elems > 0 or op.attr("cache", 0):
        # B is the op's weights (or attention's KV cache), resident in the tiles' SRAM in
        # (k/r x n/c) blocks: it may stay put. A tile then receives its block row's slice of
        # A (m x k/r) from the c - 1 tiles that hold the rest, and the partial sums of its
        # (m x n/c) output block reduce over the r tiles of its column. The cheaper of the two
        # schedules is taken (a GEMV keeps its weights; a convolution's many rows may move
        # its small weights instead). One tile moves nothing either way, so how finely a chip
        # is described changes only what the exchange really carries.
        summa = min(summa, m * k / r * (c - 1) / c + m * n / c * (r - 1) / r)
    return gm.batch * summa * ab
