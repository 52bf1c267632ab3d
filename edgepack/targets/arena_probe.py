"""Ask TFLite Micro itself how large a tensor arena a model needs: the smallest arena (to the byte) in
which the ``tflite_micro`` wheel allocates it, found by bisection.

The probes run in the runtime child process (isolated.py): some TFLM kernels (MEAN, for one)
dereference a failed allocation and crash instead of reporting that the arena is too small, so a
probe that crashes counts as "does not fit" (the child is restarted for the next one).
"""
from __future__ import annotations

from . import isolated
from .runtimes import RuntimeFailure, missing_kernel
from .tflite_file import read_tflite


def measure_arena(model_bytes: bytes, where: str = "the model") -> int:
    """The smallest arena (to the byte) in which TFLM (the wheel) allocates the model."""
    data = bytes(model_bytes)
    read_tflite(data)  # a file that is not a model fails here, with a clear message
    hi = max(10 * len(data), 64 * 1024)
    while True:  # a crash at a generous size is the file's fault, not the arena's: it propagates
        answer = isolated.tflm_loads(data, hi, where=where)
        if answer["loads"]:
            break
        error = answer["error"]
        if error:  # not a matter of size (an op TFLM lacks, a broken file...)
            missing = missing_kernel(data, error)
            if missing is not None:
                raise missing
            raise RuntimeFailure(f"{where}: TFLite Micro cannot load the model: {error}")
        hi *= 2
        if hi > 1 << 30:
            raise RuntimeFailure(f"{where}: TFLite Micro could not allocate the model even in a 1 GiB arena")
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _fits(data, mid, where) else (mid, hi)
    return hi


def _fits(data: bytes, size: int, where: str) -> bool:
    try:
        return bool(isolated.tflm_loads(data, size, where=where)["loads"])
    except isolated.RuntimeCrash as exc:
        if exc.signal == "timeout":
            raise
        return False  # it allocates in a larger arena: this crash was for want of memory
