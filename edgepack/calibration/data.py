"""Calibration sample readers: .npy/.npz files, folders of .npy or image files, Python iterables.

``load_samples`` turns any of them into a ``SampleSet`` (samples.py): float32 samples shaped like the model
input (batch 1), optional integer labels. Folders are read lazily, file by file (data_files.py); arrays
and iterables are held in memory. ``mean``/``std`` (scalar or one value per channel) are applied to every
source, after images are scaled to [0, 1].
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgepack.errors import ConfigError, DataError
from .data_files import load_path
from .samples import (SampleSet, _as_labels, _from_items, _pick_arrays, _to_numpy, _unpack_item, load_labels,
                      looks_like_raw_bytes)

log = logging.getLogger(__name__)

__all__ = ["SampleSet", "load_samples", "load_labels", "looks_like_raw_bytes"]


def load_samples(source, input_shape: tuple[int, ...] | None = None, *, input_name: str | None = None,
                 mean=None, std=None, limit: int | None = None, labels=None) -> SampleSet:
    """Read calibration samples from a path (.npy, .npz, image file, folder) or a Python iterable.

    ``input_shape`` is the model input including batch 1, e.g. (1, 1, 8, 8). Samples may come with or
    without the batch dim; shapes differing only in size-1 dims are accepted. ``labels`` (array or
    path) attaches labels when the source carries none.
    """
    if limit is not None and int(limit) < 1:
        raise ConfigError(f"limit must be a positive number of samples, got {limit}", key="limit")
    shape = None if input_shape is None else tuple(int(d) for d in input_shape)
    if shape is not None and (len(shape) < 1 or shape[0] != 1):
        raise ConfigError(f"input_shape must include batch 1 first, e.g. (1, 1, 8, 8); got {shape}",
                          key="input_shape")
    sample_shape = None if shape is None else shape[1:]
    if isinstance(source, SampleSet):
        ss = source if limit is None else source.subset(range(min(limit, len(source))))
    elif isinstance(source, (str, os.PathLike)):
        ss = load_path(Path(source), sample_shape, input_name, mean, std, limit)
    elif isinstance(source, Mapping):
        xy = _pick_arrays(dict(source), input_name, "the given mapping")
        ss = _from_items([xy], sample_shape, True, mean, std, limit, "the given mapping")
    elif isinstance(source, np.ndarray) or hasattr(source, "detach"):
        ss = _from_items([_to_numpy(source)], sample_shape, True, mean, std, limit, "the given array")
    elif hasattr(source, "__iter__"):
        batched = getattr(source, "batch_size", None) is not None and hasattr(source, "dataset")
        items = (_unpack_item(it, input_name) for it in source)
        ss = _from_items(items, sample_shape, batched, mean, std, limit, type(source).__name__)
    else:
        raise DataError(f"cannot read samples from a {type(source).__name__} (allowed: path to .npy, "
                        ".npz, image or folder; numpy array; iterable of arrays, tensors, (x, y), dicts)")
    if shape is not None and ss.sample_shape != sample_shape:
        raise DataError(f"sample shape {ss.input_shape} from {ss.source} does not fit the model input "
                        f"{shape}")
    if labels is not None:
        lab = load_labels(labels) if isinstance(labels, (str, os.PathLike)) else _as_labels(labels)
        if limit is not None and len(lab) > len(ss):
            lab = lab[: len(ss)]
        ss = ss.with_labels(lab)
    log.info("loaded %s", ss)
    return ss
