"""Map user data (the model's NCHW float layout) to an artifact's own inputs and back.

An edgepack .tflite stores 4-D tensors NHWC and may take int8 input; a .tflite from another tool is
NHWC already. The file's shapes decide: data that already has the file's shape is used as it is,
NCHW data whose NHWC transpose has the file's shape is transposed.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def to_file_layout(x: np.ndarray, file_shape) -> np.ndarray:
    file_shape = tuple(int(d) for d in file_shape)
    if tuple(x.shape) == file_shape:
        return x
    if x.ndim == 4 and tuple(x.transpose(NCHW_TO_NHWC).shape) == file_shape:
        return x.transpose(NCHW_TO_NHWC)
    if x.size == int(np.prod(file_shape)) and x.ndim != 4:
        return x.reshape(file_shape)
    raise ShapeError(f"data of shape {tuple(x.shape)} does not fit the model input {file_shape}")


def from_file_layout(y: np.ndarray, reference_shape=None) -> np.ndarray:
    """Bring an output back to the reference model's layout (NHWC -> NCHW when that is what fits)."""
    if reference_shape is None or tuple(y.shape) == tuple(reference_shape):
        return y
    if y.ndim == 4 and tuple(y.transpose(NHWC_TO_NCHW).shape) == tuple(reference_shape):
        return y.transpose(NHWC_TO_NCHW)
    return y.reshape(reference_shape) if y.size == int(np.prod(reference_shape)) else y


def quantize_input(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    """Float data -> the integer input tensor (round half away from zero, as TFLite does)."""
    if np.dtype(dtype).kind == "f":
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = x / scale
    q = np.sign(q) * np.floor(np.abs(q) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    if y.dtype.kind == "f" or not scale:
        return y.astype(np.float32)
    return ((y.astype(np.int64) - zero_point) * scale).astype(np.float32)


def file_inputs(x, file_names: list[str]) -> list[np.ndarray]:
    """The (N, ...) arrays of a sample batch in the order of the file's inputs: a plain array is the one
    input; an InputBatch (several inputs) is matched by name, else taken in the model's input order."""
    arrays = getattr(x, "arrays", None)
    if arrays is None:
        return [x]
    if set(arrays) == set(file_names):
        return [arrays[n] for n in file_names]
    if len(arrays) != len(file_names):
        raise ShapeError(f"the file has {len(file_names)} inputs ({', '.join(file_names)}) but the data "
                         f"has {len(arrays)} ({', '.join(arrays)})")
    return list(arrays.values())


def feed_tflite(xs: list[np.ndarray], tensors) -> list[np.ndarray]:
    """One sample of each input (batch 1, model layout) -> the file's input tensors (layout, integer type)."""
    feeds = []
    for x, t in zip(xs, tensors):
        f = to_file_layout(x, t.shape)
        if t.dtype != "float32":
            f = quantize_input(f, np.dtype(t.dtype), t.scale[0], t.zero_point[0])
        feeds.append(f)
    return feeds
