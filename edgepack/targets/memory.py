"""How much flash and RAM an int8 .tflite needs on TensorFlow Lite Micro, without running TFLM.

Flash is the .tflite file (weights included; ``weights_bytes`` says how much of it). RAM is the tensor
arena a user must provision. We replay what TFLM's ``MicroInterpreter::AllocateTensors`` puts in the
arena, in order, and take the largest of its moments. The arena is one buffer: the *tail* (persistent
data) grows down from the end, the *head* (the activation plan, and temporary data while it is
being built) grows up from the start. The moments:

* **prepare <op>**: tail so far + the head's list of scratch requests (16 B x (requests + 12)) + the
  temporary TfLiteTensors that op's Prepare reads (freed only when the op is done, so they add up);
* **planning**: tail + request list + an AllocationInfo per tensor + the greedy planner's bookkeeping
  (40 B per planned buffer);
* **final**: the whole tail + the activation plan.

The plan is a port of TFLM's GreedyMemoryPlanner: buffers rounded up to 16 bytes, largest first,
each at the lowest offset that does not collide with a buffer alive at the same time. Lifetimes
follow micro_allocation_info.cc: graph inputs live from step 0, op ``i``'s outputs from step ``i+1``,
a tensor until the step of its last reader, graph outputs to the end; scratch buffers live in their
op's step. The tail is replayed allocation by allocation with TFLM's alignment rules: the allocator
objects, a TfLiteEvalTensor per tensor, a NodeAndRegistration per op, each op's builtin parameters,
each kernel's OpData (Init), what Prepare keeps (per-channel multipliers and shifts of convolutions
and of FULLY_CONNECTED with per-channel weights, BATCH_MATMUL's transposed operands), scratch handles, and the persistent TfLiteTensors (with their
quantization) of the graph's inputs and outputs.

Sizes are those of the runtime we measure against, the ``tflite_micro`` Python wheel (x86-64,
reference kernels, RecordingMicroAllocator): struct layouts from TFLM's sources, each kernel checked
against ``print_allocations`` on chains of 1 to 8 copies of the op. The result, rounded up to 16, is
never below the wheel's smallest working arena and within a few bytes of it: 8 to 16 bytes above on
the zoo (TFLM gets by with a bit less when the arena's end is not 16-aligned), 4 % at most on one-op
toy models (a lone BATCH_MATMUL, whose Prepare we count a little more conservatively than TFLM).

Not modelled: CMSIS-NN or other optimised kernels (their scratch buffers), int16 softmax tables,
variable tensors and resource variables, subgraphs other than the first, and a misaligned arena
start (TFLM skips up to 15 bytes to align it). A 32-bit MCU build has smaller structs and a plain
MicroAllocator, so it needs a few hundred bytes less than this estimate. Ops missing from ``KERNELS``
get generous defaults and are listed in ``unmodelled_ops``.

``lower_bound_bytes`` is what no planner can beat: the largest sum of activation bytes alive at one
step. ``measure_arena`` (arena_probe.py) asks TFLM itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .arena_probe import measure_arena
from .tflite_file import TfliteModel, read_tflite
from .tflm_sizes import (ALIGN, AFFINE_QUANTIZATION, ALLOCATION_INFO, ALLOCATOR_OBJECTS, BUILTIN_DATA_ALLOCATOR,
                         EVAL_TENSOR, ITEMSIZE, KERNELS, MAX_SCRATCH_PER_OP, NODE_AND_REGISTRATION,
                         PLANNER_PER_BUFFER, SCRATCH_HANDLE, SCRATCH_REQUEST, SUBGRAPH_ALLOCATIONS, TFLITE_TENSOR,
                         UNKNOWN_KERNEL, Kernel)

log = logging.getLogger(__name__)

__all__ = ["MemoryEstimate", "estimate_memory", "greedy_plan", "lower_bound", "measure_arena",
           "planned_buffers", "read_offline_plan", "scratch_buffers"]

@dataclass
class MemoryEstimate:
    """Flash and TFLM arena of one .tflite, the arena split the way TFLM fills it (bytes)."""

    flash_bytes: int  # the .tflite file
    weights_bytes: int  # constant tensor data inside it
    arena_bytes: int  # tensor arena to provision (a multiple of 16)
    lower_bound_bytes: int  # largest sum of activations alive at one step: no plan does better
    planned_bytes: int  # the head: activation plan, scratch buffers included
    scratch_bytes: int  # scratch buffers in the plan
    persistent: dict[str, int]  # the tail by category, each with its alignment padding
    alignment_bytes: int  # padding: planned buffers rounded up to 16 + the tail's alignment
    binding_phase: str  # "final", "planning" or "prepare <op index>": the moment that needs most
    phases: dict[str, int] = field(default_factory=dict)  # arena needed at each moment
    offsets: dict[int, int] = field(default_factory=dict)  # tensor index -> offset in the plan
    unmodelled_ops: list[str] = field(default_factory=list)  # ops sized with generous defaults

    @property
    def persistent_bytes(self) -> int:
        return sum(self.persistent.values())


def estimate_memory(model) -> MemoryEstimate:
    """Flash, TFLM arena and its lower bound for a .tflite given as bytes, a path or a TfliteModel.

    Bytes or a path are better: a TfliteModel carries neither an offline memory plan nor
    BATCH_MATMUL's adjoint flags (then both operands are taken as transposed, the larger case)."""
    info, offline, adjoints = _load(model)
    tensors, ops = info.tensors, info.ops
    buffers, scratch = planned_buffers(info), scratch_buffers(info)
    ids = sorted(buffers)
    plan_input = [buffers[i] for i in ids] + scratch
    fixed = [offline.get(i) if offline else None for i in ids] + [None] * len(scratch)
    offsets, planned = greedy_plan(plan_input, fixed)
    unmodelled = sorted({o.op for o in ops if o.op not in KERNELS})
    if unmodelled:
        log.warning("TFLM arena estimate uses generous defaults for %s", ", ".join(unmodelled))

    tail = _Tail()
    tail.add(ALLOCATOR_OBJECTS + BUILTIN_DATA_ALLOCATOR + SUBGRAPH_ALLOCATIONS, 8, "allocator objects")
    tail.add(EVAL_TENSOR * len(tensors), 8, "TfLiteEvalTensor")
    tail.add(NODE_AND_REGISTRATION * len(ops), 8, "NodeAndRegistration")
    for o in ops:  # builtin parameters are parsed for every op before any kernel's Init
        tail.add(*_kernel(o).params, "op parameters")
    for o in ops:
        tail.add(_kernel(o).init, ALIGN, "kernel data")
    phases, n_scratch = {}, 0
    for k, o in enumerate(ops):
        for nbytes in _prepare_persistent(o, tensors, adjoints.get(k)):
            tail.add(nbytes, ALIGN, "kernel data")
        head = _Head(SCRATCH_REQUEST * (n_scratch + MAX_SCRATCH_PER_OP))
        for t in _prepare_temp_tensors(o, tensors):
            _temp_tensor(head, t)
        phases[f"prepare {k}"] = tail.used + head.used
        n_scratch += sum(1 for _, step, _ in scratch if step == k + 1)
    tail.add(SCRATCH_HANDLE * n_scratch, 8, "scratch handles")
    head = _Head(SCRATCH_REQUEST * (n_scratch + MAX_SCRATCH_PER_OP))
    head.add(8, 8)  # subgraph offsets
    head.add(ALLOCATION_INFO * (len(tensors) + n_scratch), 8)
    head.add(PLANNER_PER_BUFFER * len(plan_input), ALIGN)
    phases["planning"] = tail.used + _align(head.used)
    for group in (info.inputs, info.outputs):  # allocated after the plan is committed
        tail.add(8 * len(group), ALIGN, "input/output TfLiteTensors")
        for i in group:
            _persistent_tensor(tail, tensors[i])
    phases["final"] = tail.used + planned
    binding = max(phases, key=phases.get)
    return MemoryEstimate(
        flash_bytes=info.size, weights_bytes=sum(t.data_bytes for t in tensors),
        arena_bytes=_align(phases[binding]), lower_bound_bytes=lower_bound(info), planned_bytes=planned,
        scratch_bytes=sum(size for size, _, _ in scratch), persistent=dict(tail.by_category),
        alignment_bytes=sum(buffers[i][0] - _nbytes(tensors[i]) for i in ids) + tail.padding,
        binding_phase=binding, phases=phases, offsets={i: offsets[n] for n, i in enumerate(ids)},
        unmodelled_ops=unmodelled)


def planned_buffers(info: TfliteModel) -> dict[int, tuple[int, int, int]]:
    """Tensor index -> (size rounded up to 16, first step, last step) of every tensor TFLM plans.

    Constants live in the flatbuffer and empty tensors need nothing. Steps as AllocationInfoBuilder
    marks them: graph inputs and outputs are created at 0, op ``i``'s outputs at ``i+1``, each tensor
    is used until the step of its last reader, graph outputs until the last step."""
    sizes = {t.index: _nbytes(t) for t in info.tensors if not t.is_const and _nbytes(t) > 0}
    first = {i: -1 for i in sizes}
    last = dict(first)
    for i in [*info.inputs, *info.outputs]:
        if i in sizes:
            first[i] = last[i] = 0
    for step, op in enumerate(info.ops, start=1):
        for i in op.outputs:
            if i in sizes:
                first[i] = last[i] = step
        for i in [*op.inputs, *op.outputs]:
            if i in sizes:
                last[i] = step
    for i in info.outputs:
        if i in sizes:
            last[i] = len(info.ops)
    return {i: (_align(sizes[i]), first[i], last[i]) for i in sizes}


def scratch_buffers(info: TfliteModel) -> list[tuple[int, int, int]]:
    """(size rounded up to 16, step, step) of each scratch buffer the kernels request, in order."""
    return [(_align(b), k + 1, k + 1)
            for k, o in enumerate(info.ops) for b in _scratch_requests(o, info.tensors)]


def lower_bound(info: TfliteModel) -> int:
    """Largest sum of activation bytes (unrounded) alive at one step."""
    live = [(_nbytes(info.tensors[i]), a, b) for i, (_, a, b) in planned_buffers(info).items()]
    steps = range(-1, len(info.ops) + 1)
    return max((sum(size for size, a, b in live if a <= step <= b) for step in steps), default=0)


def greedy_plan(buffers: list[tuple[int, int, int]], fixed: list[int | None] | None = None):
    """TFLM's GreedyMemoryPlanner on (size, first step, last step) buffers -> (offsets, arena size).

    Buffers with a ``fixed`` offset (an offline plan) are placed first, as given; the others go
    largest first (equal sizes: the last added first, as TFLM fills its sort array from the back),
    each at the lowest offset clear of the buffers placed so far that are alive at the same time."""
    fixed = fixed or [None] * len(buffers)
    order = [i for i in range(len(buffers)) if fixed[i] is not None]
    online = [i for i in reversed(range(len(buffers))) if fixed[i] is None]
    order += sorted(online, key=lambda i: -buffers[i][0])
    offsets = [0] * len(buffers)
    placed: list[int] = []  # by offset
    for i in order:
        size, first, last = buffers[i]
        offset = fixed[i] if fixed[i] is not None else 0
        if fixed[i] is None:
            for j in placed:
                if buffers[j][1] > last or first > buffers[j][2]:
                    continue  # not alive at the same time
                if offsets[j] - offset >= size:
                    break  # fits in the gap before j
                offset = max(offset, offsets[j] + buffers[j][0])
        offsets[i] = offset
        placed.insert(sum(1 for j in placed if offsets[j] <= offset), i)
    return offsets, max((offsets[i] + buffers[i][0] for i in range(len(buffers))), default=0)


def read_offline_plan(data: bytes) -> dict[int, int] | None:
    """Tensor index -> arena offset from the "OfflineMemoryAllocation" metadata (None without one)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for m in range(model.MetadataLength()):
        meta = model.Metadata(m)
        if meta.Name() == b"OfflineMemoryAllocation":
            words = memoryview(model.Buffers(meta.Buffer()).DataAsNumpy().tobytes()).cast("i")
            return {i: int(off) for i, off in enumerate(words[3:3 + words[2]]) if off >= 0}
    return None


# ---- the replay ------------------------------------------------------------------------------------
def _align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


class _Tail:
    """Persistent allocations, from the arena's end down, each aligned down to its own alignment."""

    def __init__(self):
        self.used, self.padding, self.by_category = 0, 0, {}

    def add(self, size: int, align: int, category: str) -> None:
        if size > 0:
            new = _align(self.used + size, align)
            self.padding += new - self.used - size
            self.by_category[category] = self.by_category.get(category, 0) + new - self.used
            self.used = new


class _Head:
    """Temporary allocations, from the start of the arena up."""

    def __init__(self, used: int = 0):
        self.used = used

    def add(self, size: int, align: int) -> None:
        self.used = _align(self.used, align) + size


def _quant_channels(t) -> int:
    return len(t.scale) if t.scale and t.zero_point else 0


def _temp_tensor(head: _Head, t) -> None:
    head.add(TFLITE_TENSOR, 8)
    if _quant_channels(t):
        head.add(AFFINE_QUANTIZATION, 8)
        head.add(4 + 4 * _quant_channels(t), 4)  # zero points: a TfLiteIntArray


def _persistent_tensor(tail: _Tail, t) -> None:
    tail.add(TFLITE_TENSOR, 8, "input/output TfLiteTensors")
    if _quant_channels(t):
        tail.add(AFFINE_QUANTIZATION, 8, "input/output TfLiteTensors")
        tail.add(4 + 4 * _quant_channels(t), 4, "input/output TfLiteTensors")


def _kernel(op) -> Kernel:
    return KERNELS.get(op.op, UNKNOWN_KERNEL)


def _prepare_persistent(op, tensors, adjoint: tuple[bool, bool] | None) -> list[int]:
    """Buffers a kernel's Prepare allocates for good (each aligned to 16)."""
    out = tensors[op.outputs[0]] if op.outputs else None
    if _kernel(op).per_channel:  # int32 multiplier and shift per output channel
        channels = out.shape[-1] if out is not None and out.shape else 1
        return [4 * channels, 4 * channels]
    if _kernel(op).per_channel_filter and len(op.inputs) > 1 and op.inputs[1] >= 0:
        w = tensors[op.inputs[1]]
        if len(w.scale) > 1:  # per-channel weights: multiplier + shift per channel on the quantized axis
            channels = w.shape[w.quantized_dimension] if w.shape else len(w.scale)
            return [4 * channels, 4 * channels]
        return []
    if op.op != "BATCH_MATMUL":
        return []
    # quantization struct (7 ints), a writable copy of the output dims, and a transposed copy of each
    # operand whose adjoint flag asks for one (TfLiteEvalTensor + dims + data)
    adj_x, adj_y = adjoint or (True, False)
    sizes = [28, 4 + 4 * len(out.shape)]
    for t, transposed in ((tensors[op.inputs[0]], adj_x), (tensors[op.inputs[1]], not adj_y)):
        if transposed:
            sizes += [EVAL_TENSOR, 4 + 4 * len(t.shape), _nbytes(t)]
    return sizes


def _prepare_temp_tensors(op, tensors) -> list:
    picked = []
    for token in _kernel(op).temp.split():
        if token in ("I", "O"):
            picked += op.inputs if token == "I" else op.outputs
        else:
            group, n = (op.inputs if token[0] == "i" else op.outputs), int(token[1:])
            picked += group[n:n + 1]
    return [tensors[i] for i in picked if i >= 0]  # an omitted optional input (-1) allocates nothing


def _scratch_requests(op, tensors) -> list[int]:
    """Scratch buffers a reference kernel requests in Prepare (planned with the activations)."""
    rule = _kernel(op).scratch
    if rule == "mean":  # int32 partial sums per output element (int8/int16), then index and axis lists
        out, axis = tensors[op.outputs[0]], tensors[op.inputs[1]]
        sums = [4 * _elements(out)] if out.dtype in ("int8", "int16") else []
        return sums + [4 * len(tensors[op.inputs[0]].shape), 4 * _elements(axis)]
    if rule == "transpose_conv":  # int32 accumulators per output element (int8/int16 only)
        out = tensors[op.outputs[0]]
        return [4 * _elements(out)] if out.dtype in ("int8", "int16") else []
    if rule == "mirror_pad":  # element counts per dimension, for the input and for the output
        return [4 * len(tensors[op.outputs[0]].shape)] * 2
    if rule == "unknown":
        return [max((_nbytes(tensors[i]) for i in [*op.inputs, *op.outputs] if i >= 0), default=0)]
    return []


def _elements(t) -> int:
    n = 1
    for d in t.shape:
        n *= int(d) if int(d) >= 0 else 1  # a dynamic (-1) dimension: TFLM plans it as 1
    return n


def _nbytes(t) -> int:
    return _elements(t) * ITEMSIZE.get(t.dtype, 4)


def _load(model):
    """(TfliteModel, offline plan or None, {op index: (adj_x, adj_y)} of the BATCH_MATMULs)."""
    if isinstance(model, TfliteModel):
        return model, None, {}
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    info = read_tflite(data)
    return info, read_offline_plan(data), _matmul_adjoints(data)


def _matmul_adjoints(data: bytes) -> dict[int, tuple[bool, bool]]:
    from ai_edge_litert import schema_py_generated as schema

    sub, flags = schema.Model.GetRootAs(data, 0).Subgraphs(0), {}
    for k in range(sub.OperatorsLength()):
        op = sub.Operators(k)
        if op.BuiltinOptionsType() == schema.BuiltinOptions.BatchMatMulOptions:
            opts = schema.BatchMatMulOptions()
            opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            flags[k] = (bool(opts.AdjX()), bool(opts.AdjY()))
    return flags
