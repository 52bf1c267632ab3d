"""Calibration data of a model with several inputs: one set of samples per input, paired by position.

Accepted sources (each checked against the model's input names and shapes before any long work):
- an ``.npz`` whose arrays are keyed by input name (``np.savez(f, image=..., features=...)``), optionally
  with labels under ``y`` / ``labels``;
- a folder holding one sub-folder per input, named like the input (characters outside ``A-Za-z0-9._-``
  written as ``_``), each with that input's samples as ``.npy`` or image files; samples are paired by
  file name, so every sub-folder holds the same file names (``calib/image/0001.npy`` goes with
  ``calib/features/0001.npy``);
- a dict ``{input name: (N, ...) array}`` in Python (labels under ``y`` / ``labels``).

The result is a ``MultiSampleSet``: the SampleSet interface, yielding ``InputBatch``es (input_batch.py).
"""
from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgepack.errors import ConfigError, DataError, one_line
from edgepack.input_batch import InputBatch

from .samples import LABEL_KEYS, SampleSet, _as_labels, _to_numpy


def folder_name(input_name: str) -> str:
    """The sub-folder holding an input's samples."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", input_name)


class MultiSampleSet:
    """Samples of every input of a model (one SampleSet each, same count); yields InputBatches."""

    def __init__(self, sets: dict[str, SampleSet], labels=None, source: str = "samples"):
        self.sets, self.labels, self.source = dict(sets), labels, source
        self.class_names = None

    def __len__(self) -> int:
        return len(next(iter(self.sets.values())))

    def __getitem__(self, i: int) -> InputBatch:
        return InputBatch({k: s[i] for k, s in self.sets.items()})

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"MultiSampleSet({len(self)} x {', '.join(f'{k} {s.input_shape}' for k, s in self.sets.items())})"

    def batches(self, batch_size: int):
        parts = {k: s.batches(batch_size) for k, s in self.sets.items()}
        for chunk in zip(*parts.values()):
            yield InputBatch(dict(zip(parts, chunk)))

    def as_array(self) -> InputBatch:
        return InputBatch({k: s.as_array() for k, s in self.sets.items()})

    def subset(self, indices) -> "MultiSampleSet":
        idx = np.asarray(indices, dtype=np.int64)
        return MultiSampleSet({k: s.subset(idx) for k, s in self.sets.items()},
                              None if self.labels is None else self.labels[idx], self.source)


def load_input_samples(source, shapes: dict[str, tuple], *, mean=None, std=None, limit=None) -> MultiSampleSet:
    """Samples for each of ``shapes`` ({input name: shape with batch 1}) from an .npz, a folder of
    per-input folders, a dict, or a MultiSampleSet."""
    from .data import load_samples

    if isinstance(source, MultiSampleSet):
        return source if limit is None else source.subset(range(min(limit, len(source))))
    if mean is not None or std is not None:
        raise ConfigError(f"--mean/--std apply to single-input models; this one has {len(shapes)} inputs "
                          f"({', '.join(shapes)}): normalise each input's samples before", key="mean")
    arrays, labels, where = _per_input_sources(source, shapes)
    sets = {}
    for name, shape in shapes.items():
        try:
            sets[name] = load_samples(arrays[name], shape, input_name=name, limit=limit)
        except DataError as exc:
            raise DataError(f"input '{name}': {exc}") from None
    counts = {k: len(s) for k, s in sets.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"the inputs of {where} have different sample counts "
                        f"({', '.join(f'{k}: {n}' for k, n in counts.items())}); each needs the same number")
    n = len(next(iter(sets.values())))
    if labels is not None:
        labels = _as_labels(labels, where)[:n]
        if len(labels) != n:
            raise DataError(f"{len(labels)} labels for {n} samples from {where}: they must match one to one")
    return MultiSampleSet(sets, labels, where)


def _expected(shapes: dict) -> str:
    return ", ".join(f"'{k}' {tuple(s)}" for k, s in shapes.items())


def _check_keys(given, shapes: dict, where: str, what: str = "arrays") -> None:
    missing = [k for k in shapes if k not in given]
    extra = sorted(str(k) for k in given if k not in shapes and k not in LABEL_KEYS)
    if missing or extra:
        raise DataError(f"{where} has {what} {', '.join(map(repr, sorted(map(str, given)))) or 'none'} but the model's "
                        f"inputs are {_expected(shapes)}" + (f": missing {', '.join(map(repr, missing))}" if missing
                                                             else f": unknown {', '.join(map(repr, extra))}"))


def _per_input_sources(source, shapes: dict):
    """({input name: what load_samples reads for it}, labels or None, a description of the source)."""
    if isinstance(source, Mapping):
        _check_keys(source, shapes, "the given dict", "keys")
        label_key = next((k for k in LABEL_KEYS if k in source), None)
        return ({k: _to_numpy(source[k]) for k in shapes}, None if label_key is None else source[label_key],
                "the given dict")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _folders(path, shapes), None, str(path)
        if path.suffix.lower() == ".npz" and path.is_file():
            return _npz(path, shapes)
    raise DataError(f"the model has {len(shapes)} inputs ({_expected(shapes)}): give calibration data per input "
                    "as an .npz keyed by input name, a folder with one sub-folder per input, or a dict "
                    f"{{input name: array}} (got {type(source).__name__} {str(source)[:80]!r})")


def _npz(path: Path, shapes: dict):
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise DataError(f"{path} is not an .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {one_line(e)}") from None
    _check_keys(keys, shapes, str(path))
    label_key = next((k for k in LABEL_KEYS if k in keys), None)
    labels = None
    if label_key is not None:
        with np.load(path, allow_pickle=False) as z:
            labels = z[label_key]
    return {k: f"{path}:{k}" for k in shapes}, labels, str(path)


def _folders(folder: Path, shapes: dict) -> dict:
    subs = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    wanted = {k: folder_name(k) for k in shapes}
    _check_keys({n: 1 for n in subs}, {wanted[k]: s for k, s in shapes.items()}, str(folder), "sub-folders")
    names = {k: sorted(p.name for p in (folder / wanted[k]).iterdir() if p.is_file() and not p.name.startswith("."))
             for k in shapes}
    first, *rest = shapes
    for k in rest:
        if names[k] != names[first]:
            odd = sorted(set(names[k]) ^ set(names[first]))[:3]
            raise DataError(f"{folder}: the sub-folders '{wanted[first]}' and '{wanted[k]}' do not hold the same "
                            f"file names (e.g. {', '.join(odd)}); samples are paired by file name")
    return {k: folder / wanted[k] for k in shapes}
