"""LiteRT latency of int8 .tflite files for bench_shrink.py: every (file, kernels) pair timed in one
interleaved loop, batch 1, 1 thread, as median wall and CPU time per invoke and speed-ups against the first
file."""
from __future__ import annotations

import time

import numpy as np

from common import interleaved, median

BLOCK_S = 0.02  # each timed block of invokes lasts about this long, far above the clock's resolution
KERNELS = ("xnnpack", "ref")


def _interpreter(data: bytes, kernels: str):
    from edgepack.targets.io_mapping import quantize_input
    from edgepack.targets.runtimes import LiteRT
    from edgepack.targets.tflite_file import read_tflite

    rt = LiteRT(data, reference=kernels == "ref", threads=1)
    tm = read_tflite(data)
    i = tm.tensors[tm.inputs[0]]
    x = np.random.default_rng(0).random(i.shape, np.float32)
    rt.interp.set_tensor(rt.inputs[0]["index"], quantize_input(x, np.dtype(i.dtype), i.scale[0], i.zero_point[0]))
    return rt.interp


def _block_size(invoke) -> int:
    for _ in range(20):  # warm up (XNNPACK packs weights on the first invoke)
        invoke()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.01:
        invoke()
        n += 1
    return max(3, int(BLOCK_S / ((time.perf_counter() - t0) / n)))


def time_files(files: dict[str, bytes], rounds: int) -> dict:
    """Median microseconds per batch-1 invoke of every (file, kernels) pair, all interleaved in one loop.

    Each block is timed twice: wall clock (what `common.interleaved` returns) and the CPU time of this
    thread (1-thread LiteRT runs in the calling thread, so on an idle core the two agree; on a shared,
    loaded machine the CPU time leaves out the time the OS gave to other processes). Speed-ups are
    against the first file with the same kernels: ratio of medians, and median (range) of the per-round
    ratios."""
    interps = {(name, k): _interpreter(data, k) for name, data in files.items() for k in KERNELS}
    blocks = {key: _block_size(it.invoke) for key, it in interps.items()}
    cpu = {key: [] for key in interps}

    def runner(key):
        invoke, n, spent = interps[key].invoke, blocks[key], cpu[key]

        def run():
            t0 = time.thread_time()
            for _ in range(n):
                invoke()
            spent.append(time.thread_time() - t0)
        return run

    wall = interleaved({key: runner(key) for key in interps}, rounds)
    base = next(iter(files))
    out = {}
    for clock, times in (("cpu", cpu), ("wall", wall)):
        per_call = {key: [t / blocks[key] for t in v] for key, v in times.items()}
        for (name, k), v in per_call.items():
            ref = per_call[(base, k)]
            paired = [b / t for b, t in zip(ref, v)]
            out.setdefault(name, {}).setdefault(k, {"block": blocks[(name, k)], "rounds": rounds})[clock] = {
                "median_us": median(v) * 1e6, "speedup": median(ref) / median(v),
                "paired_speedup": median(paired), "paired_range": [min(paired), max(paired)]}
    return out

