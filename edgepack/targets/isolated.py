"""TFLite Micro and LiteRT run in a child process, never in edgepack's own: a malformed or hostile
.tflite can make their C++ crash (SIGSEGV, SIGFPE, SIGABRT) or hang, and that must end in one line
and exit 2, not a dead edgepack.

One child serves the whole edgepack process (started on first use, about 0.2 s, restarted after a
crash), and each job is one whole artifact run (all samples), so isolation costs a pipe copy of the
model and the samples per run. The child's address space is limited (RLIMIT_AS, ``MEMORY_LIMIT`` or
$EDGEPACK_RUNTIME_MEMORY bytes) and it must say something (a result, or progress every 16 samples)
within ``STALL_SECONDS`` ($EDGEPACK_RUNTIME_TIMEOUT), or its process group is killed.
"""
from __future__ import annotations

import atexit
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import EdgepackError, ModelLoadError, UnsupportedOpError
from ..input_batch import InputBatch, pack
from . import aarch64, frames
from .runtime_jobs import OUT_OF_MEMORY
from .runtimes import RuntimeFailure
from .tflite_check import check_tflite

log = logging.getLogger(__name__)

STALL_SECONDS = 120.0
MEMORY_LIMIT = 4 << 30  # the child peaks near 200 MB on the zoo (address space, XNNPACK threads included)
BATCH_BYTES = 32 << 20  # input bytes per run job: bounds the memory of both processes
NAMES = {"tflm": "TFLite Micro", "litert": "LiteRT", "litert-ref": "LiteRT (reference kernels)",
         "litert-aarch64": "LiteRT aarch64 (qemu)"}
# Runtimes of another CPU architecture: (the child's architecture, the runtime it runs there); aarch64.py.
EMULATED = {"litert-aarch64": ("aarch64", "litert")}


class RuntimeAbsent(RuntimeFailure):
    """A runtime that is not installed here (LiteRT aarch64 without qemu-user or its aarch64 build)."""


class RuntimeCrash(RuntimeFailure):
    """A runtime died (a signal) or hung on a file; ``signal`` is e.g. 'SIGSEGV' or 'timeout'."""

    def __init__(self, message: str, signal_name: str):
        self.signal = signal_name
        super().__init__(message)


def run_tflite(data: bytes, runtime: str, samples: np.ndarray, out_shape=None, *, where: str = "the model",
               progress=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(dequantized outputs in the reference layout, raw integer outputs or None) of a .tflite on
    ``runtime`` (tflm, litert, litert-ref, litert-aarch64) for N samples, sent to the child in batches of at most
    ``BATCH_BYTES`` of input so that neither process holds a second copy of every sample."""
    def tick(n):
        if progress:
            progress(runtime, n, len(samples))

    arch, job_runtime = EMULATED.get(runtime, ("native", runtime))
    absent = aarch64.missing() if arch == "aarch64" else None
    if absent:
        raise RuntimeAbsent(f"{NAMES[runtime]} is not installed here: {absent}")
    model, outs, raws = _bytes(data, where), [], []
    for batch in batches(samples):
        sent, names = pack(batch)
        meta, arrays = _call({"job": "run", "runtime": job_runtime, "input_names": names,
                              "out_shape": list(out_shape) if out_shape is not None else None},
                             {"model": model, **sent}, NAMES[runtime], where, tick, arch)
        outs.append(arrays["outputs"])
        raws.append(arrays.get("raw"))
    raw = None if any(r is None for r in raws) else np.concatenate(raws)
    return np.concatenate(outs), raw


def batches(samples: np.ndarray):
    """``samples`` in consecutive slices of at most BATCH_BYTES (float32), at least one sample each."""
    arrays = samples.arrays.values() if isinstance(samples, InputBatch) else [samples]
    per_sample = max(1, sum(int(np.prod(np.shape(a)[1:])) for a in arrays) * 4)
    step = max(1, BATCH_BYTES // per_sample)
    for start in range(0, len(samples), step):
        yield samples[start:start + step]


def layer_sqnr(int8_tflite: bytes, float_tflite: bytes, samples: np.ndarray, *, where: str = "the model",
               progress=None) -> dict:
    """{"layers": [...]}: per-layer SQNR and clipping of the int8 file against the float one, on
    LiteRT's reference kernels (runtime_jobs.layer_sqnr)."""
    def tick(n):
        if progress:
            progress("litert-ref", n, len(samples))

    sent, names = pack(samples)
    meta, _ = _call({"job": "layers", "input_names": names},
                    {"model": _bytes(int8_tflite, where), "float_model": _bytes(float_tflite, where), **sent},
                    NAMES["litert-ref"], where, tick)
    return meta


def litert_latency(data: bytes, threads: int, repeats: int = 30, *, where: str = "the model") -> dict:
    """{"ms": median LiteRT (XNNPACK) latency here, "undelegated": [{op, node}] XNNPACK did not take}."""
    meta, _ = _call({"job": "latency", "threads": int(threads), "repeats": int(repeats)},
                    {"model": _bytes(data, where)}, NAMES["litert"], where)
    return meta


def tflm_loads(data: bytes, arena_size: int, *, where: str = "the model") -> dict:
    """{"loads": whether TFLM allocates the model in ``arena_size`` bytes, "error": its complaint when
    that is not a matter of size}. A crash raises RuntimeCrash (some kernels crash when short)."""
    meta, _ = _call({"job": "tflm_loads", "arena_size": int(arena_size)}, {"model": _bytes(data, where)},
                    NAMES["tflm"], where)
    return meta


def _bytes(data: bytes, where: str) -> np.ndarray:
    check_tflite(data, where)  # the cheap refusal first, with the field at fault
    return np.frombuffer(bytes(data), np.uint8)


def _call(meta: dict, arrays: dict, runtime: str, where: str, tick=None, arch: str = "native"):
    with _LOCK:
        worker = _worker(arch)
        reply = worker.request(meta, arrays, runtime, where, tick)
    error = reply[0].get("error")
    if error is not None:
        raise _rebuild(error, runtime, where)
    return reply[0]["result"], reply[1]


def _rebuild(error: dict, runtime: str, where: str) -> EdgepackError:
    """The child's exception as an EdgepackError with one line naming the runtime and the file."""
    if error.get("class") == "UnsupportedOpError":
        return UnsupportedOpError(error["op"], error["node"], error["supported"], where=error["where"])
    if error.get("class") == "MemoryError":
        return RuntimeFailure(f"{where}: {runtime} ran out of memory (limit {_memory_limit() >> 20} MiB)")
    if error.get("class") == "ModelLoadError":
        return ModelLoadError(error["message"])
    if error.get("edgepack"):
        return RuntimeFailure(f"{where}: {error['message']}")
    return RuntimeFailure(f"{where}: {runtime} failed: {error['message']}")


def _stall_seconds() -> float:
    return float(os.environ.get("EDGEPACK_RUNTIME_TIMEOUT") or STALL_SECONDS)


def _memory_limit() -> int:
    return int(os.environ.get("EDGEPACK_RUNTIME_MEMORY") or MEMORY_LIMIT)


class _Stalled(Exception):
    pass


class _Worker:
    """The child process and its two pipes."""

    def __init__(self, arch: str = "native"):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the child imports this very edgepack
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # Tied to the parent's life only when started from the main thread: PR_SET_PDEATHSIG follows the
        # thread that started the child, and a worker thread may end before edgepack does. qemu-user does not
        # apply RLIMIT_AS (it would bind qemu itself): no memory limit on an emulated child.
        code = "from edgepack.targets.runtime_jobs import serve; serve(%d, %d)" % (
            _memory_limit() if arch == "native" else 0, os.getpid() if _in_main_thread() else 0)
        argv = [sys.executable, "-c", code] if arch == "native" else aarch64.child_command(code)
        self.pid_owner = os.getpid()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        self.out = self.proc.stdout.fileno()

    def alive(self) -> bool:
        return self.pid_owner == os.getpid() and self.proc.poll() is None

    def request(self, meta: dict, arrays: dict, runtime: str, where: str, tick):
        finished = False
        try:
            try:
                for piece in frames.encode(meta, arrays):
                    self.proc.stdin.write(piece)
                self.proc.stdin.flush()
                while True:
                    reply = frames.decode(self._read_exact)
                    if "progress" not in reply[0]:
                        finished = True
                        return reply
                    if tick:
                        tick(int(reply[0]["progress"]))
            except _Stalled:
                raise RuntimeCrash(f"{where}: {runtime} did not finish (nothing for {_stall_seconds():.0f} s: "
                                   "a hang, stopped)", "timeout") from None
            except (OSError, EOFError, frames.FrameError):
                raise self._death(runtime, where) from None
        finally:
            if not finished:  # a crash, a hang, Ctrl-C: this child is done
                self.kill()

    def _death(self, runtime: str, where: str) -> RuntimeCrash:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code == OUT_OF_MEMORY:
            return RuntimeCrash(f"{where}: {runtime} ran out of memory (limit {_memory_limit() >> 20} MiB)", "memory")
        name = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
        return RuntimeCrash(f"{where}: {runtime} crashed ({name}); the file is malformed or hits a bug in "
                            "that runtime (edgepack ran it in a separate process)", name)

    def _read_exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            ready, _, _ = select.select([self.out], [], [], _stall_seconds())
            if not ready:
                raise _Stalled
            chunk = os.read(self.out, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        if self.pid_owner != os.getpid():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_LOCK = threading.Lock()
_WORKERS: dict[str, _Worker] = {}  # one child per architecture ("native", "aarch64")


def _worker(arch: str = "native") -> _Worker:
    if arch not in _WORKERS or not _WORKERS[arch].alive():
        _WORKERS[arch] = _Worker(arch)
    return _WORKERS[arch]


@atexit.register
def shutdown() -> None:
    """Stop the children (each exits when its stdin closes)."""
    for arch, worker in list(_WORKERS.items()):
        if worker.pid_owner == os.getpid():
            _WORKERS.pop(arch).close()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()

