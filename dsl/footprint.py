"""Memory footprint of a mapped run: what each chip must hold, and where it must fit."""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph, Machine, Mapping, Precision


@dataclass(frozen=True)
class Footprint:
    weights: float  # bytes per chip
    optimizer: float  # gradients, master weights, optimizer moments
    activations: float
    cache: float  # KV cache
    capacity: float
    where: str  # the memory it must fit in

    @property
    def total(self) -> float:
        return self.weights + self.optimizer + self.activations + self.cache

    def items(self) -> tuple[tuple[str, float], ...]:
        return (("weights", self.weights), ("optimizer", self.optimizer),
                ("activations", self.activations), ("kv_cache", self.cache),
                ("total", self.total), ("capacity", self.capacity))


def _per_graph(graph: Graph, key, fn):
    """fn() kept on the graph (a checked model's graph is built once and estimated at many
    mappings: dsl/runs.py keeps instances by arguments); not a field, so not part of its equality."""
    memo = graph.__dict__.setdefault("_footprint_memo", {})
    if key not in memo:
        memo[key] = fn()
    return memo[key]


def saved_elems(graph: Graph, recompute: str) -> float:
    return _per_graph(graph, ("saved", recompute), lambda: _saved_elems(graph, recompute))


def _saved_elems(graph: Graph, recompute: str) -> float:
    """Elements kept from the forward pass for the backward pass, per micro-batch.

    Every op keeps its inputs (a tensor read by several ops is kept once), and unfused
    attention keeps its score matrix. Selective recompute drops the scores (Korthikanti et al.
    2022); full recompute keeps only each layer's input."""
    seen: dict[int, float] = {}
    first_in_layer: dict[str, tuple[int, float]] = {}
    scores = 0.0
    for op in graph.ops:
        for t in op.inputs:
            seen.setdefault(t.id, t.elems * op.count)
        if op.kind == "attention" and not op.attr("flash"):
            scores += op.attr("scores") * op.count  # the probabilities the backward needs
        if op.layer:
            tid = min(t.id for t in op.inputs)
            if op.layer not in first_in_layer or tid < first_in_layer[op.layer][0]:
                first_in_layer[op.layer] = (tid, min(t.elems for t in op.inputs) * op.count)
    total = sum(seen.values())
    if recompute == "full":
        in_layers = {t.id for op in graph.ops if op.layer for t in op.inputs}
        outside = sum(v for k, v in seen.items() if k not in in_layers)
        return outside + sum(v for _, v in first_in_layer.values())
    if recompute == "selective":
        return total
    return total + scores


def footprint(graph: Graph, machine: Machine, mapping: Mapping, prec: Precision, mode: str,
              act_bytes: float, weight_bytes: float) -> Footprint:
    chip = machine.chip
    shards = mapping.tp * mapping.pp
    cache = _per_graph(graph, "cache", lambda: sum(
        2 * op.inputs[1].shape[0] * op.attr("cache", 0) * op.inputs[1].shape[2] * op.count
        for op in graph.ops if op.kind == "attention")) * act_bytes / shards
    live = _per_graph(graph, "live", lambda: max(
        (op.output.elems + sum(t.elems for t in op.inputs) for op in graph.ops), default=0))
    if mapping.strategy in ("spatial", "weight_streaming"):
        sram = chip.tiles * machine.tile.sram_bytes
        if mapping.strategy == "spatial":
            # every layer's weights stay in SRAM; each layer region holds its live activations
            weights = graph.params_elems * weight_bytes / mapping.pp
            acts = live * act_bytes * (1 if mode == "infer" else 2)
            opt = graph.params_elems * prec.master_bytes / mapping.pp if mode == "train" else 0.0
            return Footprint(weights, opt, acts, cache, sram, "on-chip SRAM")
        layer_w = _per_graph(graph, "layer_w", lambda: max((op.weight_elems for op in graph.ops), default=0)) \
            * weight_bytes
        acts = saved_elems(graph, mapping.recompute) * act_bytes if mode == "train" else live * act_bytes
        return Footprint(2 * layer_w, 0.0, acts, cache, sram, "on-chip SRAM (weights stream in)")
    # a mixture of experts' experts are split ep ways more (expert parallelism)
    expert = _per_graph(graph, "expert", lambda: sum(op.weight_elems * op.count for op in graph.ops
                                                     if op.kind == "experts"))
    params = graph.params_elems - expert + expert / mapping.ep
    weights = params * weight_bytes / shards
    opt = params * prec.master_bytes / shards if mode == "train" else 0.0
    if mode == "train":
        # 1F1B holds at most pp micro-batches' activations on its first stage; GPipe runs every
        # forward before the first backward and holds all of them
        m = max(1, mapping.micro_batches)
        in_flight = m if mapping.schedule == "gpipe" and mapping.pp > 1 else min(mapping.pp, m)
        acts = saved_elems(graph, mapping.recompute) * act_bytes / mapping.tp / mapping.pp * in_flight
    else:
        acts = live * act_bytes / mapping.tp
    if chip.memory is not None:
        return Footprint(weights, opt, acts, cache, chip.memory.capacity, f"{chip.memory.name} ({chip.name})")
    return Footprint(weights, opt, acts, cache, chip.tiles * machine.tile.sram_bytes, f"on-chip SRAM ({chip.name})")
