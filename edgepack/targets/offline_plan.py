"""An offline memory plan for TFLM: compute tensor offsets here, store them in the .tflite.

TFLM honours a metadata entry "OfflineMemoryAllocation" (see TFLM's memory_management.md): an int32
array [version, subgraph, number of tensors, one arena offset per tensor (-1: planned at run time)].
Its GreedyMemoryPlanner then places those buffers as given and fits only the scratch buffers (and
any -1 tensor) around them. TFLM's own greedy order (largest first) is good but not optimal when
buffers of equal size compete (residual blocks); here several orders and two placement rules are
tried and the plan that leaves TFLM the smallest arena is kept. It never does worse than TFLM alone:
when no order beats TFLM's, ``add_offline_plan`` returns the model unchanged.
"""
from __future__ import annotations

import random

from ..tflite_buffer import AlignedBufferT
from .memory import estimate_memory, greedy_plan, planned_buffers, scratch_buffers
from .tflite_file import read_tflite

METADATA_NAME = "OfflineMemoryAllocation"
_VERSION = 1
_RANDOM_ORDERS = 64  # shuffled orders tried on top of the heuristic ones (seeded: deterministic)


def best_offline_plan(model_bytes: bytes) -> tuple[dict[int, int], int]:
    """(tensor index -> offset, planned arena bytes with TFLM's scratch buffers fitted around it)."""
    info = read_tflite(model_bytes)
    buffers = planned_buffers(info)
    ids = sorted(buffers)
    scratch = scratch_buffers(info)
    best, best_size = None, None
    for order in _orders(buffers):
        for rule in ("first", "best"):
            offsets = _place(buffers, order, rule)
            # TFLM fits the scratch buffers around the offline-planned tensors
            _, size = greedy_plan([buffers[i] for i in ids] + scratch,
                                  [offsets[i] for i in ids] + [None] * len(scratch))
            if best_size is None or size < best_size:
                best, best_size = offsets, size
    return best or {}, best_size or 0


def plan_offline(arena_plan: str, runtime: str) -> bool:
    """Whether ``--arena-plan`` asks for the offline plan on a target whose runtime is ``runtime``: auto
    only where TFLM runs the file (LiteRT ignores the metadata; it would only cost export time)."""
    return arena_plan == "offline" or (arena_plan == "auto" and runtime == "tflm")


def add_offline_plan(model_bytes: bytes) -> bytes:
    """The model with an "OfflineMemoryAllocation" plan that needs a smaller TFLM arena, or the model
    itself when TFLM's own plan is already as small as ours."""
    data = bytes(model_bytes)
    estimate = estimate_memory(data)
    if estimate.planned_bytes <= estimate.lower_bound_bytes:  # TFLM's plan is already optimal: no search
        return data
    offsets, size = best_offline_plan(data)
    if size >= estimate.planned_bytes:
        return data
    n_tensors = len(read_tflite(data).tensors)
    words = [_VERSION, 0, n_tensors] + [offsets.get(i, -1) for i in range(n_tensors)]
    return _with_metadata(data, METADATA_NAME, words)


def _orders(buffers: dict[int, tuple[int, int, int]]):
    """Candidate placement orders: TFLM's own, a few classic heuristics, then seeded shuffles."""
    ids = sorted(buffers)
    size = {i: buffers[i][0] for i in ids}
    span = {i: buffers[i][2] - buffers[i][1] + 1 for i in ids}
    yield sorted(reversed(ids), key=lambda i: -size[i])  # TFLM: largest first, last added first
    yield sorted(ids, key=lambda i: (-size[i], buffers[i][1]))  # largest first, earliest first
    yield sorted(ids, key=lambda i: (-size[i] * span[i], i))  # largest area in the memory/time plane
    yield sorted(ids, key=lambda i: (-span[i], -size[i]))  # longest lived first
    yield sorted(ids, key=lambda i: (buffers[i][1], -size[i]))  # in order of creation
    rng = random.Random(0)
    for _ in range(_RANDOM_ORDERS if len(ids) > 1 else 0):
        order = sorted(ids, key=lambda i: -size[i])
        # shuffle among buffers of similar size: keeps the large-first structure, explores the ties
        order.sort(key=lambda i: (-round(size[i] * rng.uniform(0.8, 1.25)), rng.random()))
        yield order


def _place(buffers, order, rule: str) -> dict[int, int]:
    """Offsets for ``order``: each buffer in the lowest gap that fits ("first") or in the tightest
    gap that fits ("best"), among the buffers already placed that are alive at the same time."""
    offsets: dict[int, int] = {}
    for i in order:
        size, first, last = buffers[i]
        busy = sorted((offsets[j], offsets[j] + buffers[j][0]) for j in offsets
                      if not (buffers[j][1] > last or first > buffers[j][2]))
        gaps, cursor = [], 0
        for start, end in busy:
            if start - cursor >= size:
                gaps.append((start - cursor, cursor))
            cursor = max(cursor, end)
        if rule == "best" and gaps:
            offsets[i] = min(gaps)[1]
        else:
            offsets[i] = gaps[0][1] if gaps else cursor
    return offsets


def _with_metadata(data: bytes, name: str, words: list[int]) -> bytes:
    """Re-pack the flatbuffer with one more metadata entry (replacing one of the same name)."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    model.buffers = [_aligned(b) for b in model.buffers]
    buf = AlignedBufferT()
    buf.data = np.asarray(words, dtype="<i4").view(np.uint8)
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name, meta.buffer = name, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name] + [meta]
    builder = flatbuffers.Builder(len(data) + 4 * len(words) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _aligned(buffer):
    out = AlignedBufferT()
    out.data, out.offset, out.size = buffer.data, buffer.offset, buffer.size
    return out
