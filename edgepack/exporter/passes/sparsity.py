"""Unstructured magnitude pruning (Han et al. 2015, the first step of Deep Compression): the smallest
weights of each Conv / ConvTranspose / Gemm layer (and MatMul by a constant) are set to zero.

The zeros stay in the dense weight tensor: int8 quantization is symmetric (zero-point 0), so a zero stays
a zero in both files, and the zeros make the file compress (the size ladder's Huffman / zlib / lzma rungs).
``SparsityPass.masks`` keeps which weights are zero so that distillation between steps keeps them zero
(``keep_zeros`` after each optimizer step); shrink.py raises the sparsity in steps (``schedule``) with
distillation in between, so that the network adapts before the next weights go.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from edgepack.ir import OPS, Graph
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)

STEPS = 4  # distillation rounds between the first cut and the target sparsity


def schedule(target: float, steps: int = STEPS) -> list[float]:
    """Sparsity after each step: Zhu & Gupta's cubic ramp s_i = s (1 - (1 - i/n)^3), which cuts most while
    the network still has much to spare and the last weights slowly."""
    return [float(target) * (1.0 - (1.0 - i / steps) ** 3) for i in range(1, steps + 1)]


def prunable_weights(graph: Graph) -> list[tuple]:
    """(node, weight tensor name) of each layer with a constant float weight: Conv, ConvTranspose, Gemm
    (the op table's weighted layers) and MatMul whose second input is a constant."""
    out = []
    for node in graph.nodes:
        if len(node.inputs) < 2:
            continue
        weighted = OPS[node.op].weight_axis is not None or node.op == "MatMul"
        t = graph.tensors.get(node.inputs[1])
        if weighted and t is not None and t.is_const and t.dtype.startswith("float"):
            out.append((node, t.name))
    return out


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """True where a weight is kept: all but the round(sparsity * size) smallest |w| (ties by position, so
    the same weights give the same mask)."""
    flat = np.abs(np.asarray(w, np.float64)).ravel()
    n_zero = int(round(float(sparsity) * flat.size))
    keep = np.ones(flat.size, bool)
    if n_zero:
        keep[np.argsort(flat, kind="stable")[:n_zero]] = False
    return keep.reshape(np.shape(w))


class SparsityPass:
    """Copying pass: each prunable layer's weights with the fraction ``sparsity_of(node, op)`` of them
    (the smallest in magnitude) set to zero. ``masks``: weight tensor name -> kept (bool, weight shape)."""

    def __init__(self, sparsity_of: Callable[[str, str], float]):
        self.sparsity_of = sparsity_of
        self.masks: dict[str, np.ndarray] = {}
        graph_pass(self, in_place=False, name="sparse_weights")

    def __call__(self, graph: Graph) -> PassResult:
        todo = [(node, name, float(self.sparsity_of(node.name, node.op))) for node, name in prunable_weights(graph)]
        todo = [(node, name, s) for node, name, s in todo if s > 0]
        if not todo:
            return PassResult(graph, False)
        g = graph.copy()
        for node, name, s in todo:
            t = g.tensors[name]
            keep = magnitude_mask(t.data, s)
            t.data = np.where(keep, t.data, 0).astype(t.data.dtype)
            self.masks[name] = keep
            log.info("'%s': %.1f%% of %d weights set to zero", node.name, 100 * (1 - keep.mean()), keep.size)
        return PassResult(g, True)


def keep_zeros(module, masks: dict[str, np.ndarray]) -> None:
    """After an optimizer step: the pruned weights back to zero (they must not grow back)."""
    import torch

    with torch.no_grad():
        for name, keep in masks.items():
            attr = module.attr_of.get(name)
            if attr is not None:
                p = getattr(module, attr)
                p.mul_(torch.from_numpy(keep.reshape(p.shape)).to(p.dtype))


def zero_fractions(graph: Graph) -> dict[str, float]:
    """Fraction of zero weights per prunable layer's weight tensor (for the report)."""
    return {name: float(np.mean(graph.tensors[name].data == 0)) for _, name in prunable_weights(graph)}
