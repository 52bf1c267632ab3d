"""What the runtime child process does (see isolated.py): each job is one whole run of a .tflite on
TFLite Micro or LiteRT, all samples at once. isolated.py starts it running ``serve``, which answers
jobs read from stdin (frames.py) until stdin closes.
"""
from __future__ import annotations

import os
import resource
import sys
import time

import numpy as np

from ..errors import EdgepackError, UnsupportedOpError
from ..input_batch import unpack
from .io_mapping import dequantize_output, feed_tflite, file_inputs, from_file_layout
from .tflite_file import read_tflite

PROGRESS_EVERY = 16  # samples between two progress messages (each also tells the parent we are alive)
OUT_OF_MEMORY = 3  # exit code when even a request does not fit in the memory limit


def _runner(data: bytes, runtime: str, arena_size: int | None = None):
    from .runtimes import TFLM, LiteRT

    if runtime == "tflm":
        return TFLM(data, arena_size=arena_size)
    return LiteRT(data, reference=runtime == "litert-ref")


def run_tflite(data: bytes, runtime: str, samples: np.ndarray, out_shape=None, tick=None):
    """(dequantized outputs in the reference layout, raw integer outputs or None) for N samples."""
    runner = _runner(data, runtime)
    info = read_tflite(data)
    tins, tout = [info.tensors[i] for i in info.inputs], info.tensors[info.outputs[0]]
    arrays = file_inputs(samples, [t.name for t in tins])
    deq, raw = [], []
    for i in range(len(samples)):
        y = runner.run(*feed_tflite([a[i:i + 1] for a in arrays], tins))[0]
        raw.append(y)
        y = dequantize_output(y, tout.scale[0] if tout.scale else 0.0,
                              tout.zero_point[0] if tout.zero_point else 0)
        deq.append(from_file_layout(y, (1, *out_shape[1:]) if out_shape is not None else None))
        if tick and (i + 1) % PROGRESS_EVERY == 0:
            tick(PROGRESS_EVERY)
    if tick and len(samples) % PROGRESS_EVERY:
        tick(len(samples) % PROGRESS_EVERY)
    integer = np.concatenate(raw) if tout.dtype in ("int8", "uint8", "int16") else None
    return np.concatenate(deq), integer


def layer_sqnr(int8_tflite: bytes, float_tflite: bytes, samples: np.ndarray, tick=None) -> dict:
    """{"layers": [{tensor, op, sqnr_db, clipped_fraction, clipped_energy}]}: SQNR of every int8 tensor
    (dequantized) against the same-named tensor of the float file over the given samples, in tensor
    order, and the share of float values (and energy) outside the int8 range (validate.py ranks them).

    Each tensor is compared as soon as both files have computed it, one sample at a time, and only running
    sums are kept: memory is one tensor pair, whatever the number of samples and layers."""
    from .runtimes import LiteRT

    qinfo, finfo = read_tflite(int8_tflite), read_tflite(float_tflite)
    qrt = LiteRT(int8_tflite, reference=True, preserve_all=True)
    frt = LiteRT(float_tflite, reference=True, preserve_all=True)
    producers = {o: op.op for op in qinfo.ops for o in op.outputs}
    float_index = {t.name: t.index for t in finfo.tensors if not t.is_const}
    pairs = [(t, float_index[t.name]) for t in qinfo.tensors
             if not t.is_const and t.name in float_index and t.scale]
    sums: dict[int, LayerSums] = {}
    tin_q, tin_f = [qinfo.tensors[i] for i in qinfo.inputs], [finfo.tensors[i] for i in finfo.inputs]
    q_arrays, f_arrays = file_inputs(samples, [t.name for t in tin_q]), file_inputs(samples, [t.name for t in tin_f])
    for i in range(len(samples)):
        qrt.run(*feed_tflite([a[i:i + 1] for a in q_arrays], tin_q))
        frt.run(*feed_tflite([a[i:i + 1] for a in f_arrays], tin_f))
        for t, f_index in pairs:
            got, ref = _tensor(qrt, t.index), _tensor(frt, f_index)
            if got is None or ref is None or got.shape != ref.shape:
                continue
            sums.setdefault(t.index, LayerSums(t.scale[0], t.zero_point[0])).add(
                ref, dequantize_output(got, t.scale[0], t.zero_point[0]))
        if tick and (i + 1) % PROGRESS_EVERY == 0:
            tick(PROGRESS_EVERY)
    if tick and len(samples) % PROGRESS_EVERY:
        tick(len(samples) % PROGRESS_EVERY)
    layers = [{"tensor": qinfo.tensors[k].name, "op": producers.get(k, "INPUT"), **acc.result()}
              for k, acc in sorted(sums.items())]
    return {"layers": layers}


def _tensor(runtime, index: int) -> np.ndarray | None:
    try:
        return runtime.interp.get_tensor(index)
    except ValueError:  # tensors without data (e.g. optional inputs)
        return None


class LayerSums:
    """Running sums of one tensor over samples: signal and noise energy (SQNR) and what the int8 range
    [s*(-128-z), s*(127-z)] clips (diagnose.clipping's figures, summed instead of concatenated)."""

    def __init__(self, scale: float, zero_point: int):
        self.scale, self.lo, self.hi = scale, scale * (-128 - zero_point), scale * (127 - zero_point)
        self.signal = self.noise = self.cut = 0.0
        self.values = self.clipped = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref = np.asarray(ref, np.float64).ravel()
        noise = ref - np.asarray(got, np.float64).ravel()
        self.signal += float(np.dot(ref, ref))
        self.noise += float(np.dot(noise, noise))
        self.values += ref.size
        half = self.scale / 2
        self.clipped += int(np.count_nonzero((ref < self.lo - half) | (ref > self.hi + half)))
        cut = np.where(ref > self.hi, ref - self.hi, np.where(ref < self.lo, ref - self.lo, 0.0))
        self.cut += float(np.dot(cut, cut))

    def result(self) -> dict:
        if self.noise == 0.0:
            sqnr = float("inf")
        elif self.signal == 0.0:
            sqnr = float("-inf")
        else:
            sqnr = float(10.0 * np.log10(self.signal / self.noise))
        return {"sqnr_db": sqnr, "clipped_fraction": self.clipped / self.values if self.values else 0.0,
                "clipped_energy": self.cut / self.signal if self.signal > 0 else 0.0}


def litert_latency(data: bytes, threads: int, repeats: int = 30) -> dict:
    """Median LiteRT (XNNPACK) latency of one inference here, batch 1, and the ops XNNPACK left out."""
    from .runtimes import LiteRT

    info = read_tflite(data)
    tin = info.tensors[info.inputs[0]]
    rt = LiteRT(data, threads=threads)
    x = np.zeros(tin.shape, np.dtype(tin.dtype))
    rt.run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        rt.run(x)
        times.append(time.perf_counter() - t)
    return {"ms": float(np.median(times) * 1000.0), "undelegated": rt.undelegated_ops()}


def tflm_loads(data: bytes, arena_size: int) -> dict:
    """Whether TFLM allocates the model in ``arena_size`` bytes; ``error``: its complaint when the
    failure is not a matter of size (an op it lacks, a broken file...)."""
    import re

    import tflite_micro

    from .runtimes import _captured_stderr

    with _captured_stderr() as err:
        try:
            tflite_micro.runtime.Interpreter.from_bytes(data, arena_size=int(arena_size))
            return {"loads": True, "error": ""}
        except Exception as exc:
            answer = str(exc)
    text = err.getvalue()
    if re.search(r"missing: \d+|Failed to (allocate|resize)|Too many buffers", text):
        return {"loads": False, "error": ""}
    return {"loads": False, "error": " ".join(((text.strip() or answer).splitlines() or ["?"])[0].split())}


def _job(meta: dict, arrays: dict, tick):
    """One request -> (result meta, result arrays)."""
    job = meta["job"]
    model = arrays["model"].tobytes() if "model" in arrays else b""
    if job == "run":
        samples = unpack(arrays, meta.get("input_names"))
        deq, raw = run_tflite(model, meta["runtime"], samples, meta.get("out_shape"), tick)
        return {}, {"outputs": deq, **({"raw": raw} if raw is not None else {})}
    if job == "layers":
        samples = unpack(arrays, meta.get("input_names"))
        return layer_sqnr(model, arrays["float_model"].tobytes(), samples, tick), {}
    if job == "latency":
        return litert_latency(model, meta["threads"], meta["repeats"]), {}
    if job == "tflm_loads":
        return tflm_loads(model, meta["arena_size"]), {}
    raise ValueError(f"unknown job {job!r}")


def _describe(exc: BaseException) -> dict:
    text = str(exc).strip()
    error = {"class": type(exc).__name__, "message": text.splitlines()[0] if text else type(exc).__name__,
             "edgepack": isinstance(exc, EdgepackError)}
    if isinstance(exc, UnsupportedOpError):
        error.update(op=exc.op, node=exc.node, supported=exc.supported, where=exc.where)
    return error


def serve(limit: int, parent: int = 0) -> None:
    """Answer jobs until stdin closes. ``limit``: address-space bytes (0: none); ``parent``: a pid whose
    death kills this process even in the middle of a native hang (Linux; 0: none)."""
    from . import frames

    if parent:
        _die_with(parent)
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what native code prints to stdout must not land in our frames

    def send(meta, arrays=None):
        for piece in frames.encode(meta, arrays):
            out.write(piece)
        out.flush()

    def read_exact(n: int) -> bytes:
        data = sys.stdin.buffer.read(n)
        if len(data) != n:
            raise EOFError
        return data

    while True:
        try:
            meta, arrays = frames.decode(read_exact)
        except EOFError:
            return
        except MemoryError:  # the rest of the request is still in the pipe: no way to answer it
            os._exit(OUT_OF_MEMORY)
        try:
            result, result_arrays = _job(meta, arrays, lambda n: send({"progress": n}))
        except Exception as exc:
            send({"error": _describe(exc)})
            continue
        send({"result": result}, result_arrays)


def _die_with(parent: int) -> None:
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)
