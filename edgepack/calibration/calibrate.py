"""Run the float graph on sample data and stream every activation through an observer.

Only the observers' bounded state is kept (histograms, running min/max), never the activations,
so memory does not grow with the number of samples.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

import numpy as np

from ..ir import Graph
from .observers import make_observer

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of samples just processed


def collect_ranges(graph: Graph, batches: Iterable[np.ndarray], method: str = "minmax",
                   progress: Progress | None = None, *, per_tensor: dict | None = None, **observer_opts):
    """Returns ({activation tensor: (min, max)}, {tensor: observer}) after streaming all batches.

    ``batches`` yields arrays shaped like the graph input with any batch size. ``per_tensor``:
    {tensor: (method, observer options)} for the tensors a per-layer setting observes otherwise."""
    import torch

    from ..ir.torch_exec import to_module

    module = to_module(graph)
    names = set(graph.activations())
    per_tensor = per_tensor or {}
    observers = {name: make_observer(per_tensor[name][0], **per_tensor[name][1]) if name in per_tensor
                 else make_observer(method, **observer_opts) for name in sorted(names)}

    def observe(name, value):
        if name in observers:
            observers[name].update(value.detach().numpy())

    count = 0
    with torch.no_grad():
        for batch in batches:
            batch = np.asarray(batch, np.float32)
            module(torch.from_numpy(batch), observe=observe)
            count += len(batch)
            if progress:
                progress(len(batch))
    log.info("calibrated %d tensors on %d samples with %s", len(observers), count, method)
    return {name: tuple(float(v) for v in obs.range()) for name, obs in observers.items()}, observers


def calibrate_graph(graph: Graph, samples, method: str = "minmax", *, batch_size: int = 32,
                    progress: Progress | None = None, ranges: dict | None = None, rules=None,
                    per_tensor: dict | None = None, **observer_opts):
    """Float graph + samples (a SampleSet) -> (graph with QuantParams on every tensor, ranges).

    With ``ranges`` given (from a calibration.json) the samples are not run again."""
    from .quantize import QuantRules, quantize_graph

    if ranges is None:
        ranges, _ = collect_ranges(graph, samples.batches(batch_size), method, progress, per_tensor=per_tensor,
                                   **observer_opts)
    return quantize_graph(graph, ranges, rules or QuantRules()), ranges
