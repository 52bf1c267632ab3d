"""Samples in memory: ``SampleSet`` and the helpers every reader shares (fitting shapes, normalising,
picking arrays, refusing non-finite values). The readers are data.py (entry) and data_files.py (files).

Everything becomes a ``SampleSet``: float32 samples shaped like the model input (batch 1), optional
integer labels. Folders are read lazily, file by file; arrays and iterables are held in memory.
``mean``/``std`` (scalar or one value per channel) are applied to every source, after images are
scaled to [0, 1].
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgepack.errors import ConfigError, DataError, one_line
from edgepack.input_files import MAX_DATA_BYTES, check_file, read_text

log = logging.getLogger(__name__)

# Image suffix -> its PIL decoder; only these decoders may open a sample image (PIL picks a decoder by content: an EPS file
# named .png would otherwise run Ghostscript).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)
SAMPLE_SUFFIXES = (".npy",) + IMAGE_SUFFIXES
INPUT_KEYS = ("x", "inputs", "input", "arr_0")  # arr_0: what np.savez(f, x) names an unnamed array
LABEL_KEYS = ("y", "labels", "label")


class SampleSet:
    """Samples of one model input; iterating yields float32 arrays of shape ``input_shape``."""

    def __init__(self, sample_shape, fetch: Callable[[int], np.ndarray], count: int,
                 labels: np.ndarray | None = None, *, source: str = "samples",
                 class_names: list[str] | None = None):
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self._fetch = fetch  # index -> float32 array of sample_shape
        self._count = int(count)
        self.labels = labels
        self.source = source
        self.class_names = class_names

    @classmethod
    def from_array(cls, array: np.ndarray, labels=None, *, source: str = "array") -> "SampleSet":
        """Samples from an in-memory (N, ...) array."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        return cls(array.shape[1:], array.__getitem__, len(array), labels, source=source)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1,) + self.sample_shape

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> np.ndarray:
        if not -self._count <= i < self._count:
            raise IndexError(f"sample {i} out of range for {self._count} samples")
        return self._fetch(i % self._count)[None]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self._count):
            yield self._fetch(i)[None]

    def __repr__(self) -> str:
        return (f"SampleSet({self._count} x {self.input_shape}, labels={self.labels is not None}, "
                f"from {self.source})")

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Stacked (b, ...) float32 arrays, the last one possibly shorter."""
        if int(batch_size) < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}", key="batch_size")
        for start in range(0, self._count, batch_size):
            stop = min(start + batch_size, self._count)
            yield np.stack([self._fetch(i) for i in range(start, stop)])

    def as_array(self) -> np.ndarray:
        """All samples as one (N, ...) float32 array (loads a folder fully)."""
        if not self._count:
            return np.zeros((0,) + self.sample_shape, np.float32)
        return np.stack([self._fetch(i) for i in range(self._count)])

    def subset(self, indices) -> "SampleSet":
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[idx]
        return SampleSet(self.sample_shape, lambda i: self._fetch(int(idx[i])), len(idx), labels,
                         source=self.source, class_names=self.class_names)

    def split(self, fraction: float, seed: int = 0) -> tuple["SampleSet", "SampleSet"]:
        """Random split: the first set holds ``fraction`` of the samples, the second the rest."""
        if not 0.0 < float(fraction) < 1.0:
            raise ConfigError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}",
                              key="fraction")
        n_first = int(round(self._count * fraction))
        if n_first < 1 or n_first >= self._count:
            raise DataError(f"cannot split {self._count} samples from {self.source} with fraction "
                            f"{fraction}: both parts need at least one sample")
        order = np.random.default_rng(seed).permutation(self._count)
        return self.subset(np.sort(order[:n_first])), self.subset(np.sort(order[n_first:]))

    def with_labels(self, labels) -> "SampleSet":
        """The same samples with labels (an array or a path to a .npy/.txt file)."""
        labels = load_labels(labels) if isinstance(labels, (str, os.PathLike)) else _as_labels(labels)
        if len(labels) != self._count:
            raise DataError(f"{len(labels)} labels for {self._count} samples from {self.source}: "
                            "they must match one to one")
        return SampleSet(self.sample_shape, self._fetch, self._count, labels, source=self.source,
                         class_names=self.class_names)


def load_labels(path) -> np.ndarray:
    """Integer labels from a .npy (ints, or one-hot rows) or a .txt file with one label per line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"labels file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _as_labels(_read_npy(path), str(path))
    if suffix == ".txt":
        values = []
        for no, line in enumerate(read_text(path, "labels file", error=DataError).splitlines(), 1):
            if line.strip():
                try:
                    values.append(int(line.strip()))
                except ValueError:
                    raise DataError(f"{path}:{no}: label {line.strip()!r} is not an integer") from None
        return np.asarray(values, dtype=np.int64)
    raise DataError(f"cannot read labels from {path} (allowed: .npy, .txt with one integer per line)")


# ---- paths ----------------------------------------------------------------------------------------

def _read_npy(path: Path) -> np.ndarray:
    check_file(path, ".npy file", MAX_DATA_BYTES, error=DataError)
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":  # else numpy falls back to pickle and says so
            raise DataError(f"{path} is not a .npy file (no NUMPY header)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError, TokenError... on a broken file
        raise DataError(f"cannot read {path}: {one_line(e)}") from None


def _pick_arrays(arrays: dict, input_name, where) -> tuple[np.ndarray, np.ndarray | None]:
    """The sample array and the label array (or None) of an .npz or a dict item."""
    label_key = next((k for k in LABEL_KEYS if k in arrays), None)
    data_keys = [k for k in arrays if k != label_key]
    if len(arrays) == 1:
        key = next(iter(arrays))
    elif input_name is not None and input_name in arrays:
        key = input_name
    elif any(k in arrays for k in INPUT_KEYS):
        key = next(k for k in INPUT_KEYS if k in arrays)
    elif len(data_keys) == 1:
        key = data_keys[0]
    else:
        wanted = ([repr(input_name)] if input_name else []) + [repr(k) for k in INPUT_KEYS]
        raise DataError(f"{where} holds several arrays ({', '.join(sorted(map(str, arrays)))}) and none is "
                        f"named {' or '.join(wanted)}")
    y = arrays[label_key] if label_key is not None and label_key != key else None
    return _to_numpy(arrays[key]), (None if y is None else _to_numpy(y))


# ---- images ---------------------------------------------------------------------------------------

# ---- iterables and arrays -------------------------------------------------------------------------

def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # torch tensor, without importing torch
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def _to_float(x: np.ndarray, where: str) -> np.ndarray:
    x = _to_numpy(x)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise DataError(f"samples from {where} have dtype {x.dtype}; numbers are needed")
    return x.astype(np.float32, copy=False)


def _unpack_item(item, input_name) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(item, Mapping):
        return _pick_arrays(dict(item), input_name, "a dict sample")
    if isinstance(item, (tuple, list)):
        if len(item) == 1:
            return _to_numpy(item[0]), None
        if len(item) == 2:
            return _to_numpy(item[0]), _to_numpy(item[1])
        raise DataError(f"samples must be x, (x, y) or {{input: x}}; got a {type(item).__name__} "
                        f"of {len(item)}")
    return _to_numpy(item), None


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _fit_sample(x: np.ndarray, shape, where) -> np.ndarray:
    """One sample reshaped to ``shape`` when only size-1 dims differ (e.g. batch 1, or (8,8) for (1,8,8))."""
    if x.shape == tuple(shape):
        return x
    if x.size == math.prod(shape) and _squeezed(x.shape) == _squeezed(shape):
        return x.reshape(shape)
    raise DataError(f"sample shape {x.shape} from {where} does not fit the model input {(1,) + tuple(shape)}")


def _split_batch(x: np.ndarray, shape, where) -> np.ndarray:
    """An item holding one sample or a batch -> (B, *shape)."""
    if x.size == math.prod(shape) and _squeezed(x.shape) == _squeezed(shape):
        return x.reshape((1,) + tuple(shape))
    if x.ndim >= 1 and x.shape[0] > 0 and _squeezed(x.shape[1:]) == _squeezed(shape):
        return x.reshape((x.shape[0],) + tuple(shape))
    raise DataError(f"sample shape {x.shape} from {where} does not fit the model input {(1,) + tuple(shape)}")


def _from_items(items, sample_shape, batched: bool, mean, std, limit, where) -> SampleSet:
    """SampleSet from (x, y) items (x one sample or a batch); held in memory."""
    chunks, label_chunks, all_labelled, n = [], [], True, 0
    shape = sample_shape
    for item in items:
        x, y = item if isinstance(item, tuple) else (item, None)
        x = _to_float(x, where)
        if shape is None:  # no model shape: the first item decides; labels counting dim 0 mean a batch
            labelled_batch = y is not None and np.ndim(y) == 1 and x.ndim >= 2 and len(y) == x.shape[0]
            shape = tuple(x.shape[1:]) if (batched or labelled_batch) else tuple(x.shape)
        xs = _split_batch(x, shape, where)
        chunks.append(xs)
        y_int = _item_labels(y, len(xs), where)
        all_labelled &= y_int is not None
        label_chunks.append(y_int)
        n += len(xs)
        if limit is not None and n >= limit:
            break
    if not n:
        raise DataError(f"no samples in {where} (0 samples given)")
    data = np.concatenate(chunks)
    labels = np.concatenate(label_chunks) if all_labelled else None
    if not all_labelled and any(c is not None for c in label_chunks):
        log.warning("some samples from %s have no integer label: labels ignored", where)
    if limit is not None:
        data = data[:limit]
        labels = None if labels is None else labels[:limit]
    bad = int(np.count_nonzero(~np.isfinite(data.reshape(len(data), -1)).all(axis=1)))
    _refuse_non_finite(bad, len(data), where)
    data = _normaliser(mean, std, shape)(data)  # (C,1,1) broadcasts over the batch too
    return SampleSet.from_array(data, labels, source=where)


def _item_labels(y, count: int, where: str) -> np.ndarray | None:
    """Integer labels of one item's samples, or None when y is missing or not class indices."""
    if y is None:
        return None
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.integer) or
            (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))) or y.ndim > 1:
        return None
    if y.size != count:
        raise DataError(f"{y.size} labels for {count} samples from {where}: they must match one to one")
    return y.reshape(count).astype(np.int64)


# ---- checks ---------------------------------------------------------------------------------------

def _normaliser(mean, std, shape):
    """(x - mean) / std; per-channel values go on the first axis of a sample (NCHW channel axis)."""
    if mean is None and std is None:
        return lambda x: x
    vals = []
    for name, v, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        a = np.asarray(default if v is None else v, np.float32).ravel()
        if a.size != 1 and (not shape or a.size != shape[0]):
            raise ConfigError(f"{name} has {a.size} values but the model input {(1,) + tuple(shape)} has "
                              f"{shape[0] if shape else 1} channels on axis 1", key=name)
        if name == "std" and np.any(a == 0):
            raise ConfigError("std must not contain 0", key="std")
        vals.append(a.reshape((-1,) + (1,) * (len(shape) - 1)) if a.size > 1 else a.reshape(()))
    m, s = vals
    return lambda x: ((x - m) / s).astype(np.float32)


def looks_like_raw_bytes(x: np.ndarray) -> bool:
    """Samples that look like unscaled 8-bit pixels: integral values in [0, 255] reaching above 2."""
    x = np.asarray(x)
    return bool(x.size and x.min() >= 0 and 2 < x.max() <= 255 and np.all(np.mod(x, 1) == 0))


def _refuse_non_finite(bad: int, n: int, where: str) -> None:
    if bad:
        raise DataError(f"{bad} of {n} samples contain NaN or Inf ({where}); clean or drop them")


def _as_labels(labels, where: str = "labels") -> np.ndarray:
    arr = _to_numpy(labels)
    if arr.ndim == 2 and arr.shape[1] > 1:  # one-hot rows
        arr = arr.argmax(axis=1)
    arr = arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr
    if arr.ndim != 1:
        raise DataError(f"labels from {where} must be one integer per sample, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"labels from {where} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)
