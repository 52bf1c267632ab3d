"""Ask TFLite Micro itself how large a tensor arena a model needs: the smallest arena (to the byte) in
which the ``tflite_micro`` wheel allocates it, found by bisection.

The probes run in a child Python: some TFLM kernels (MEAN, for one) dereference a failed allocation
and crash the process instead of reporting that the arena is too small.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .runtimes import RuntimeFailure, missing_kernel
from .tflite_file import read_tflite


def measure_arena(model_bytes: bytes) -> int:
    """The smallest arena (to the byte) in which TFLM (the wheel) allocates the model."""
    data = bytes(model_bytes)
    read_tflite(data)  # a file that is not a model fails here, with a clear message
    prober = _Prober(data)
    try:
        hi = max(10 * len(data), 64 * 1024)
        while not prober.loads(hi):
            if prober.error:  # not a matter of size (an op TFLM lacks, a broken file...)
                missing = missing_kernel(data, prober.error)
                if missing is not None:
                    raise missing
                raise RuntimeFailure(f"TFLite Micro cannot load the model: {prober.error}")
            hi *= 2
            if hi > 1 << 30:
                raise RuntimeFailure("TFLite Micro could not allocate the model even in a 1 GiB arena")
        lo = 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if prober.loads(mid) else (mid, hi)
        return hi
    finally:
        prober.close()


# The child answers 1 (allocated), 0 (out of memory) or E and TFLM's first complaint (anything else).
_PROBE_SERVER = r"""
import re, sys
import tflite_micro
from edgepack.targets.runtimes import _captured_stderr
model = sys.stdin.buffer.read(int(sys.stdin.buffer.readline()))
for line in sys.stdin.buffer:
    with _captured_stderr() as err:
        try:
            tflite_micro.runtime.Interpreter.from_bytes(model, arena_size=int(line))
            answer = "1"
        except Exception as exc:
            answer = str(exc)
    text = err.getvalue()
    if answer != "1":
        oom = re.search(r"missing: \d+|Failed to (allocate|resize)|Too many buffers", text)
        answer = "0" if oom else "E " + ((text.strip() or answer).splitlines() or ["?"])[0]
    sys.stdout.write(answer + "\n")
    sys.stdout.flush()
"""


class _Prober:
    """A child Python that answers "does TFLM allocate the model in N bytes?". A child that dies
    (TFLM's MEAN kernel dereferences a failed allocation) means no; the next question restarts it."""

    def __init__(self, model: bytes):
        self.model, self.proc, self.error = model, None, ""

    def loads(self, size: int) -> bool:
        if self.proc is None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                 env.get("PYTHONPATH", "")])
            self.proc = subprocess.Popen([sys.executable, "-c", _PROBE_SERVER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            self.proc.stdin.write(b"%d\n" % len(self.model) + self.model)
        try:
            self.proc.stdin.write(b"%d\n" % size)
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline().decode("utf-8", "replace").strip()
        except OSError:
            answer = ""
        self.error = " ".join(answer[2:].split()) if answer.startswith("E ") else ""
        if not answer:
            self.error = f"it crashed in a {size}-byte arena"
            self.close()
        return answer == "1"

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None
