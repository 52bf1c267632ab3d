"""Activation statistics for the lint's data rules: exact min/max plus a bounded random sample of |x|.

The sample keeps the memory bounded whatever the number of inputs while still giving a usable 99.9th
percentile (with 200k values, 200 of them lie above it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..ir import Graph

log = logging.getLogger(__name__)

KEPT_VALUES = 200_000  # |x| values kept per tensor for percentiles
BATCH_SIZE = 32


@dataclass
class TensorStats:
    """What the lint knows about one activation tensor after running the samples."""

    lo: float = np.inf
    hi: float = -np.inf
    count: int = 0
    zeros: int = 0
    abs_parts: list = field(default_factory=list)  # sampled |x| of the non-zero values

    @property
    def span(self) -> float:
        """Width of the int8 range calibration would give this tensor (always contains 0)."""
        return max(self.hi, 0.0) - min(self.lo, 0.0) if self.count else 0.0

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi)) if self.count else 0.0

    def abs_values(self) -> np.ndarray:
        return np.concatenate(self.abs_parts) if self.abs_parts else np.zeros(0, np.float32)

    def abs_quantile(self, q: float) -> float | None:
        """Quantile q (0..1) of |x| over the non-zero values; None without values."""
        values = self.abs_values()
        return float(np.quantile(values, q)) if values.size else None


def as_sample_array(graph: Graph, samples) -> np.ndarray:
    """Samples (an array shaped like the graph input, with or without batch dim, or a SampleSet) as
    one float32 array (N, ...); DataError when they do not fit the graph."""
    if len(graph.inputs) != 1:
        raise DataError(f"lint with sample data handles single-input models; this one has {len(graph.inputs)} "
                        f"inputs ({', '.join(graph.inputs)})")
    if hasattr(samples, "as_array"):  # a calibration SampleSet
        samples = samples.as_array()
    if hasattr(samples, "detach"):  # a torch tensor
        samples = samples.detach().cpu().numpy()
    try:
        x = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"lint samples must be a numeric array, got {type(samples).__name__}") from None
    shape = tuple(graph.tensors[graph.inputs[0]].shape)
    if x.shape == shape[1:]:
        x = x[None]
    if x.ndim != len(shape) or x.shape[1:] != shape[1:] or not len(x):
        raise DataError(f"lint samples shaped {x.shape} do not fit the model input '{graph.inputs[0]}' "
                        f"{shape} (allowed: (N, {', '.join(map(str, shape[1:]))}))")
    if not np.isfinite(x).all():
        raise DataError("lint samples contain NaN or Inf values")
    return x


def collect_stats(graph: Graph, samples: np.ndarray, seed: int = 0) -> dict[str, TensorStats]:
    """Run the float graph on ``samples`` (N, ...) and return statistics of every activation tensor."""
    import torch

    from ..ir.torch_exec import to_module

    module = to_module(graph).eval()
    stats = {name: TensorStats() for name in graph.activations()}
    n_batches = -(-len(samples) // BATCH_SIZE)
    per_batch = max(1000, KEPT_VALUES // n_batches)
    rng = np.random.default_rng(seed)

    def observe(name: str, value) -> None:
        st = stats.get(name)
        if st is None or not value.is_floating_point():
            return
        a = value.detach().cpu().numpy().ravel()
        if not np.isfinite(a).all():  # (checked first: copying out the finite values is the slow part)
            a = a[np.isfinite(a)]
        if not a.size:
            return
        st.lo, st.hi = min(st.lo, float(a.min())), max(st.hi, float(a.max()))
        nonzero = np.abs(np.compress(a != 0, a))  # = a[a != 0], twice as fast
        st.count += a.size
        st.zeros += a.size - nonzero.size
        if nonzero.size > per_batch:
            nonzero = rng.choice(nonzero, per_batch, replace=False)
        st.abs_parts.append(nonzero.astype(np.float32))

    with torch.no_grad():
        for start in range(0, len(samples), BATCH_SIZE):
            module.run_dict([torch.from_numpy(samples[start:start + BATCH_SIZE])], observe=observe)
    log.debug("lint: statistics of %d tensors from %d samples", len(stats), len(samples))
    return stats
