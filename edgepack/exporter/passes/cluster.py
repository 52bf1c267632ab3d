"""Weight sharing by clustering (Deep Compression, Han et al. 2016): the weights of each Conv / Gemm take
only K values, a per-layer codebook, so that a layer is stored as K values plus log2(K)-bit indices.

- k-means in 1-D per layer, initialised linearly between the smallest and largest weight (the paper's
  best init: it keeps the rare large weights, which matter most), Lloyd iterations to convergence;
  no randomness, so the same weights give the same codebook;
- the codebook is then put on a symmetric int8 grid: scale = max|centroid| / 127 and each centroid is
  scale * q with K *distinct* integers q (two centroids rounding to one q are pushed apart). The int8
  quantizer (calibration/quantize.py) sees weights already on a grid and keeps its one scale for all
  channels, so the int8 file holds exactly K distinct values per layer: the codebook is quantized, not
  the weights;
- ``ClusterPass.assignments`` keeps each weight's cluster index, so that distillation can fine-tune the
  centroids (``share_weights`` after each step: every weight of a cluster set to the cluster's mean) and
  ``snap_to_grid`` puts the tuned codebook back on the int8 grid.
"""
from __future__ import annotations

import logging

import numpy as np

from edgepack.ir import OPS, Graph
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)

MIN_K, MAX_K = 2, 128  # 128 distinct integers fit [-127, 127] with room to push colliding centroids apart
INT8_MAX = 127


def clustered_layers(graph: Graph, k: int) -> list:
    """The Conv / ConvTranspose / Gemm nodes whose float weight has more than ``k`` values."""
    out = []
    for node in graph.nodes:
        if OPS[node.op].weight_axis is None or len(node.inputs) < 2:
            continue
        t = graph.tensors[node.inputs[1]]
        if t.is_const and t.dtype.startswith("float") and np.unique(t.data).size > k:
            out.append(node)
    return out


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(centroids sorted ascending, index of each value): Lloyd's k-means with linear initialisation."""
    v = np.asarray(values, np.float64).ravel()
    centroids = np.linspace(v.min(), v.max(), k)
    idx = np.zeros(v.size, np.int64)
    for _ in range(iterations):
        bounds = (centroids[1:] + centroids[:-1]) / 2  # 1-D: nearest centroid = the interval between midpoints
        idx = np.searchsorted(bounds, v)
        sums = np.bincount(idx, weights=v, minlength=k)
        counts = np.bincount(idx, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        empty = np.flatnonzero(counts == 0)
        if empty.size:  # re-seed an empty cluster at the value farthest from its centroid
            far = np.argsort(-np.abs(v - new[idx]), kind="stable")[:empty.size]
            new[empty] = v[far]
        elif np.allclose(new, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.sort(new)
    bounds = (centroids[1:] + centroids[:-1]) / 2
    idx = np.searchsorted(bounds, v)
    return centroids, idx


def grid_codebook(centroids: np.ndarray) -> tuple[np.ndarray, float]:
    """(K distinct integers in [-127, 127] in the centroids' order, scale) with centroid ~ scale * q and the
    largest |q| exactly 127 (so the int8 quantizer's symmetric scale is this scale)."""
    c = np.asarray(centroids, np.float64)
    k = c.size
    if not 1 <= k <= MAX_K:
        raise ValueError(f"codebook of {k} values (allowed 1..{MAX_K})")
    amax = float(np.max(np.abs(c)))
    scale = max(amax, 1e-12) / INT8_MAX
    order = np.argsort(c, kind="stable")
    q = np.clip(np.round(c[order] / scale), -INT8_MAX, INT8_MAX).astype(np.int64)
    for i in range(1, k):  # push collisions upwards ...
        q[i] = max(q[i], q[i - 1] + 1)
    q[-1] = min(q[-1], INT8_MAX)
    for i in range(k - 2, -1, -1):  # ... and back down from +127: K distinct, still sorted, the extreme
        q[i] = min(q[i], q[i + 1] - 1)  # centroid stays at -127 or +127 (K <= 128 leaves room)
    out = np.empty(k, np.int64)
    out[order] = q
    return out, scale


def snap_to_grid(w: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Weights of one layer set to their cluster's int8-grid centroid (cluster centroid = mean of its
    members); ``idx``: cluster of each weight (flat)."""
    flat = np.asarray(w, np.float64).ravel()
    counts = np.bincount(idx, minlength=k)
    means = np.bincount(idx, weights=flat, minlength=k) / np.maximum(counts, 1)
    used = np.flatnonzero(counts)
    q, scale = grid_codebook(means[used])
    values = np.zeros(k)
    values[used] = q * np.float32(scale)
    return values[idx].reshape(np.shape(w)).astype(np.float32)


class ClusterPass:
    """Copying pass: every Conv / ConvTranspose / Gemm weight with more than K values -> K shared values on
    an int8 grid. ``assignments``: weight tensor name -> flat cluster index of each weight."""

    def __init__(self, k: int, k_for=None):
        self.k = int(k)
        self.k_for = k_for  # (node, op) -> this layer's K, or None for k (per-layer settings); 0: not clustered
        self.assignments: dict[str, np.ndarray] = {}
        graph_pass(self, in_place=False, name="cluster_weights")

    def _k(self, node) -> int:
        k = self.k_for(node.name, node.op) if self.k_for is not None else None
        return self.k if k is None else int(k)

    def __call__(self, graph: Graph) -> PassResult:
        layers = [(n, self._k(n)) for n in clustered_layers(graph, MIN_K)]
        layers = [(n, k) for n, k in layers if k and np.unique(graph.tensors[n.inputs[1]].data).size > k]
        if not layers:
            return PassResult(graph, False)
        g = graph.copy()
        for node, k in layers:
            t = g.tensors[node.inputs[1]]
            _, idx = kmeans_1d(t.data, k)
            t.data = snap_to_grid(t.data, idx, k)
            self.assignments[t.name] = idx
            log.info("clustered '%s' into %d shared values", node.name, np.unique(t.data).size)
        return PassResult(g, True)


def share_weights(module, assignments: dict[str, np.ndarray]) -> None:
    """After an optimizer step: each clustered weight set to its cluster's mean, so the layer keeps K
    shared values and training moves the centroids (the mean of the members' updates)."""
    import torch

    with torch.no_grad():
        for name, idx in assignments.items():
            attr = module.attr_of.get(name)
            if attr is None:
                continue
            p = getattr(module, attr)
            index = torch.from_numpy(idx)
            flat = p.view(-1)
            k = int(idx.max()) + 1
            sums = torch.zeros(k, dtype=flat.dtype).index_add_(0, index, flat)
            counts = torch.bincount(index, minlength=k).clamp_min(1).to(flat.dtype)
            flat.copy_((sums / counts)[index])


def snap_graph(graph: Graph, assignments: dict[str, np.ndarray]) -> Graph:
    """A copy of ``graph`` with each clustered weight put back on its layer's int8-grid codebook."""
    g = graph.copy()
    for name, idx in assignments.items():
        if name in g.tensors and g.tensors[name].size == idx.size:
            t = g.tensors[name]
            t.data = snap_to_grid(t.data, idx, int(idx.max()) + 1)
    return g


def codebook_summary(graph: Graph, assignments: dict[str, np.ndarray]) -> dict:
    """Per clustered weight: distinct values and the bits an index needs (for the report)."""
    out = {}
    for name in sorted(assignments):
        if name in graph.tensors:
            n = int(np.unique(graph.tensors[name].data).size)
            out[name] = {"values": n, "index_bits": max(1, int(np.ceil(np.log2(n)))),
                         "weights": int(graph.tensors[name].size)}
    return out
