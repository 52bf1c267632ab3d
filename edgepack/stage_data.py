"""The data the export stages read (export_stages.py, calibrate_stage.py): the calibration, training and
validation samples of every graph input, each read from what the caller gave (``s.given``, an ExportInputs);
and ``timed``, the stopwatch of the stages (report.timing)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import ExportConfig
from .ir import Graph


def read_samples(source, graph: Graph, cfg: ExportConfig, limit=None):
    """The samples of every graph input: a SampleSet, or a MultiSampleSet for several inputs."""
    from .calibration import load_samples

    if len(graph.inputs) > 1:
        from .calibration.multi_input import load_input_samples

        return load_input_samples(source, {n: graph.tensors[n].shape for n in graph.inputs}, mean=cfg.mean,
                                  std=cfg.std, limit=limit)
    return load_samples(source, graph.tensors[graph.inputs[0]].shape, input_name=graph.inputs[0],
                        mean=cfg.mean, std=cfg.std, limit=limit)


def training_data(s, graph: Graph):
    """(x, labels) for distillation and taylor importance: --train if given, else the calibration data."""
    from .calibration import load_labels

    source = s.given.train if s.given.train is not None else s.calib
    if source is None:
        return None, None
    samples = read_samples(source, graph, s.cfg)
    labels = s.given.train_labels
    labels = load_labels(labels) if isinstance(labels, (str, Path)) else labels
    if labels is None:
        labels = samples.labels
    return samples.as_array(), (None if labels is None else np.asarray(labels))


def validation_data(s, limit: int | None = None):
    """(samples array, labels or None, where they came from): --val, else the calibration samples; at most
    ``limit`` of them (default: --val-limit)."""
    from .calibration import load_labels

    cfg, val, val_labels = s.cfg, s.given.val, s.given.val_labels
    limit = cfg.val_limit if limit is None else limit
    if val is None:
        samples = s.samples
        where = "the calibration samples (pass val= / --val for held-out data)"
    else:
        samples = read_samples(val, s.graph, cfg, limit=limit)
        where = "the validation data"
    labels = load_labels(val_labels) if isinstance(val_labels, (str, Path)) else val_labels
    if labels is None and samples is not None:
        labels = samples.labels
    x = samples.as_array()[:limit] if samples is not None else None
    return x, (None if labels is None else np.asarray(labels)[:limit]), where


@contextmanager
def timed(s, name: str):
    """Adds the wall seconds of the block to ``s.timing[name]`` (a stage the budget ladder runs again adds up)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        s.timing[name] = s.timing.get(name, 0.0) + time.perf_counter() - t0
