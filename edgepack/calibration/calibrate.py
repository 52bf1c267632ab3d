"""Run the float graph on sample data and stream every activation through an observer.

Only the observers' bounded state is kept (histograms, running min/max), never the activations,
so memory does not grow with the number of samples.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from edgepack.input_batch import as_float32, as_torch
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
            batch = as_float32(batch)
            module(as_torch(batch), observe=observe)
            count += len(batch)
            if progress:
                progress(len(batch))
    log.info("calibrated %d tensors on %d samples with %s", len(observers), count, method)
    return {name: tuple(float(v) for v in obs.range()) for name, obs in observers.items()}, observers


@dataclass
class Calibration:
    """What calibration produced: the quantized graph, the range and method of every activation tensor,
    and the facts the report's calibration section adds (auto choice, collapsed tensors, bias correction)."""

    qgraph: Graph
    ranges: dict[str, tuple[float, float]]
    methods: dict[str, str]
    section: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bias_deltas: dict = field(default_factory=dict)  # bias tensor -> correction subtracted (calibration.json)
    adaround_flips: dict = field(default_factory=dict)  # weight tensor -> packed mask of learned roundings


SCORING_SAMPLES = 256  # auto scores on this many calibration samples at most (in-sample: see auto.py)


def split_for_scoring(samples, n: int = 64, min_fit: int = 24, in_sample: bool = False):
    """(samples the ranges are fitted on, samples the candidates are scored on): at most ``n`` and at
    most a quarter of the set, spread evenly over it (class-sorted data stays mixed). Scoring on samples
    the ranges did not see measures the clipping new data will meet; too few samples: score in-sample."""
    count = len(samples)
    k = min(n, count // 4)
    if in_sample:
        return samples, as_float32(samples.subset(np.unique(np.linspace(0, count - 1, min(n, count)).round()
                                                   .astype(int))).as_array())
    if count - k < min_fit or k < 8:
        return samples, as_float32(samples.subset(np.arange(min(n, count))).as_array())
    score = np.unique(np.linspace(0, count - 1, k).round().astype(int))
    fit = np.setdiff1d(np.arange(count), score)
    return samples.subset(fit), as_float32(samples.subset(score).as_array())


def calibrate(graph: Graph, samples, method: str = "auto", *, rules=None, batch_size: int = 32,
              progress: Progress | None = None, ranges: dict | None = None, bias_correction: str = "off",
              bias_deltas: dict | None = None, per_tensor: dict | None = None, adaround: bool = False,
              adaround_flips: dict | None = None, adaround_iters: int | None = None, workers: int | None = 1,
              **observer_opts) -> Calibration:
    """Float graph + samples (a SampleSet) -> Calibration. ``method`` "auto" picks a range per tensor
    (auto.py, its candidates scored by ``workers`` processes); any other method is applied everywhere and
    tensors it collapses are flagged. ``adaround``: learned weight rounding (adaround.py), before
    ``bias_correction`` "auto": per-channel bias correction where it measurably helps (bias_correction.py).
    With ``ranges`` given (from a calibration.json, with its ``bias_deltas`` and ``adaround_flips``) the
    samples are not run again. ``per_tensor``: {tensor: (method, options)} from the per-layer settings,
    which win over ``method``."""
    from .quantize import QuantRules, quantize_graph

    rules = rules or QuantRules()
    cal = _calibrate_ranges(graph, samples, method, rules=rules, batch_size=batch_size, progress=progress,
                            ranges=ranges, per_tensor=per_tensor, workers=workers, **observer_opts)
    if ranges is not None and (bias_deltas or adaround_flips):  # a calibration file's records: same model bytes
        from .adaround import apply_flips
        from .bias_correction import apply_bias_deltas

        g = apply_flips(graph, cal.qgraph, adaround_flips) if adaround_flips else graph
        cal.qgraph = quantize_graph(apply_bias_deltas(g, bias_deltas or {}), ranges, rules)
        cal.bias_deltas, cal.adaround_flips = dict(bias_deltas or {}), dict(adaround_flips or {})
        return cal
    have_samples = samples is not None and len(samples) > 0
    if adaround and have_samples:
        from .adaround import adaround as learn_rounding

        x = split_for_scoring(samples, n=SCORING_SAMPLES, in_sample=True)[1]
        ar = learn_rounding(graph, cal.qgraph, x, **({"iters": adaround_iters} if adaround_iters else {}))
        if ar.flips:
            graph = ar.graph
            cal.qgraph = quantize_graph(graph, cal.ranges, rules)
            cal.adaround_flips = ar.flips
        cal.section["adaround"] = ar.to_json()
        cal.notes.append(ar.note)
    if bias_correction == "auto" and have_samples:
        from .bias_correction import correct_biases

        bc = correct_biases(graph, cal.ranges, rules, split_for_scoring(samples)[1])
        if bc.kept:
            cal.qgraph = quantize_graph(bc.graph, cal.ranges, rules)
            cal.bias_deltas = bc.deltas
        cal.section["bias_correction"] = bc.to_json()
        cal.notes.append(bc.note)
    return cal


def _calibrate_ranges(graph: Graph, samples, method: str, *, rules, batch_size: int, progress, ranges,
                      per_tensor: dict | None = None, workers: int | None = 1, **observer_opts) -> Calibration:
    from .auto import CLIP_WARN_ENERGY, COLLAPSE_ENERGY, STREAM_METHOD, choose_ranges, clipping_tensors
    from .quantize import QuantRules, quantize_graph

    rules = rules or QuantRules()
    if ranges is not None:
        return Calibration(quantize_graph(graph, ranges, rules), ranges, {t: "file" for t in ranges})
    if method == "auto":
        fit, x_score = samples, split_for_scoring(samples, n=SCORING_SAMPLES, in_sample=True)[1]
        _, observers = collect_ranges(graph, fit.batches(batch_size), STREAM_METHOD, progress)
        choice = choose_ranges(graph, observers, x_score, rules, held_out=fit is not samples,
                               workers=workers)
        if per_tensor:  # a layer's own method wins over the auto choice
            forced, _ = collect_ranges(graph, samples.batches(batch_size), "minmax", per_tensor=per_tensor)
            for t, (m, _opts) in per_tensor.items():
                choice.ranges[t], choice.methods[t] = forced[t], f"{m} (layer setting)"
        if progress and fit is not samples:
            progress(len(x_score))
        return Calibration(quantize_graph(graph, choice.ranges, rules), choice.ranges, choice.methods,
                           {"auto": choice.to_json()},
                           [f"auto calibration ({choice.scope}): " + ", ".join(f"{k} {v}" for k, v in
                                                                                choice.counts().items())])
    ranges, observers = collect_ranges(graph, samples.batches(batch_size), method, progress, per_tensor=per_tensor,
                                       **observer_opts)
    cal = Calibration(quantize_graph(graph, ranges, rules), ranges, {t: method for t in ranges})
    clipping = clipping_tensors(graph, observers, ranges)
    if clipping:
        cal.section["clipping"] = clipping
        names = ", ".join(c["tensor"] for c in clipping[:5]) + (" ..." if len(clipping) > 5 else "")
        collapsed = sum(c["collapsed"] for c in clipping)
        cal.notes.append(f"warning: {method} clips more than {CLIP_WARN_ENERGY:.0%} of the energy of {len(clipping)} "
                         f"tensor(s) ({collapsed} collapsed: more than {COLLAPSE_ENERGY:.0%}): {names}; "
                         "--calibration auto measures which range each tensor needs")
    return cal


def calibrate_graph(graph: Graph, samples, method: str = "minmax", *, batch_size: int = 32,
                    progress: Progress | None = None, ranges: dict | None = None, rules=None,
                    per_tensor: dict | None = None, **observer_opts):
    """Float graph + samples (a SampleSet) -> (graph with QuantParams on every tensor, ranges).

    With ``ranges`` given (from a calibration.json) the samples are not run again."""
    from .quantize import QuantRules, quantize_graph

    if ranges is None and method == "auto":
        cal = calibrate(graph, samples, method, rules=rules, batch_size=batch_size, progress=progress)
        return cal.qgraph, cal.ranges
    if ranges is None:
        ranges, _ = collect_ranges(graph, samples.batches(batch_size), method, progress, per_tensor=per_tensor,
                                   **observer_opts)
    return quantize_graph(graph, ranges, rules or QuantRules()), ranges
