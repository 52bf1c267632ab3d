"""The message format between edgepack and its runtime child process (isolated.py, runtime_jobs.py):
an 8-byte length, a JSON header, then the raw bytes of the arrays the header lists (name, dtype,
shape). Plain numbers and bytes only: nothing is unpickled, so a child that a malformed model has
taken over still cannot run code in edgepack.
"""
from __future__ import annotations

import json
import struct

import numpy as np

MAX_HEADER = 64 << 20
NUMERIC_KINDS = "biuf"


class FrameError(Exception):
    """A frame that is not one we wrote (a child that went wrong)."""


def encode(meta: dict, arrays: dict[str, np.ndarray] | None = None) -> list[bytes]:
    """The pieces of one frame, to be written in order."""
    arrays = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items()}
    header = json.dumps({"meta": meta, "arrays": [[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]})
    head = header.encode()
    return [struct.pack("<Q", len(head)), head, *(v.tobytes() for v in arrays.values())]


def decode(read_exact) -> tuple[dict, dict[str, np.ndarray]]:
    """One frame from ``read_exact(n) -> bytes`` (which raises when the stream ends early)."""
    (size,) = struct.unpack("<Q", read_exact(8))
    if size > MAX_HEADER:
        raise FrameError(f"header of {size} bytes")
    try:
        header = json.loads(read_exact(size))
        arrays = {}
        for name, dtype, shape in header["arrays"]:
            dt = np.dtype(dtype)
            if dt.kind not in NUMERIC_KINDS or any(int(d) < 0 for d in shape):
                raise FrameError(f"array {name!r} of {dtype} {shape}")
            count = int(np.prod(shape, dtype=np.int64))
            arrays[str(name)] = np.frombuffer(read_exact(count * dt.itemsize), dt).reshape(shape)
        return header["meta"], arrays
    except (ValueError, TypeError, KeyError) as exc:
        raise FrameError(str(exc)) from None
