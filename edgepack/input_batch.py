"""Samples of a model with several inputs: ``InputBatch``, one (N, ...) array per input name.

A single-input model's samples are a plain (N, ...) array everywhere; a model with several inputs gets an
InputBatch instead, which slices like that array (``x[:64]``, ``x[idx]``, ``len(x)``) so the stages pass it
along unchanged. Where values are computed, the helpers below turn either form into what is needed:
``as_float32`` / ``as_torch`` per input, ``per_sample`` for the runtimes (one list of arrays per sample),
``pack`` / ``unpack`` for the runtime child process. torch_exec takes ``[batch]`` of either form.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


class InputBatch:
    """N samples of every input: {input name: (N, ...) array}, in the model's input order."""

    def __init__(self, arrays: dict):
        self.arrays = dict(arrays)
        counts = {len(a) for a in self.arrays.values()}
        if len(counts) > 1:
            raise ValueError(f"inputs with different sample counts: "
                             f"{', '.join(f'{k} {len(a)}' for k, a in self.arrays.items())}")

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.arrays[key]
        return InputBatch({k: a[key] for k, a in self.arrays.items()})

    def __repr__(self) -> str:
        return "InputBatch(" + ", ".join(f"{k}: {tuple(a.shape)}" for k, a in self.arrays.items()) + ")"


def as_float32(x):
    """A float32 array, or an InputBatch of float32 arrays."""
    if isinstance(x, InputBatch):
        return InputBatch({k: np.asarray(a, np.float32) for k, a in x.arrays.items()})
    return np.asarray(x, np.float32)


def as_torch(x):
    """torch tensors sharing the memory of ``x`` (an array, or an InputBatch of them)."""
    import torch

    if isinstance(x, InputBatch):
        return InputBatch({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in x.arrays.items()})
    return torch.from_numpy(x)


def per_sample(x) -> Iterator[list[np.ndarray]]:
    """Each sample as [one array per input, batch dim 1], in input order."""
    arrays = list(x.arrays.values()) if isinstance(x, InputBatch) else [x]
    for i in range(len(x)):
        yield [a[i:i + 1] for a in arrays]


def pack(x, key: str = "samples") -> tuple[dict, list[str] | None]:
    """(arrays to send to the runtime child, the input names or None for a plain array)."""
    if isinstance(x, InputBatch):
        return {f"{key}:{i}": np.asarray(a, np.float32) for i, a in enumerate(x.arrays.values())}, x.names
    return {key: np.asarray(x, np.float32)}, None


def unpack(arrays: dict, names: list[str] | None, key: str = "samples"):
    """What ``pack`` sent, back as an array or an InputBatch."""
    if names is None:
        return arrays[key]
    return InputBatch({n: arrays[f"{key}:{i}"] for i, n in enumerate(names)})
