"""How every IR tensor (NCHW semantics, as ONNX) is stored in a TFLite file (NHWC kernels).

A layout is a permutation ``perm`` with ``stored = ir_array.transpose(perm)``:
rank-4 activations are NHWC ``(0, 2, 3, 1)``, everything else keeps the IR order, except
- a graph input whose consumers are all the same Transpose (a Keras/tf2onnx NHWC input feeding
  ``Transpose(0, 3, 1, 2)``) is stored so that this Transpose becomes the identity and vanishes;
- a Transpose whose output feeds no conv/pool/resize (the mirror Transpose before a graph output,
  or before a Flatten) stores its output so that it becomes the identity too;
- a Flatten/Reshape of a permuted 4-D activation to ``(N, C*H*W)`` read only by Gemm is stored as
  the flattening of the *stored* (NHWC) data: the Gemm weight columns are permuted instead of
  inserting a TRANSPOSE (see ``LayoutPlan.flattened``);
- any other Reshape keeps the stored bytes when the axes it splits or merges are stored together and
  in order (a channel shuffle's (N, C, H, W) -> (N, g, C/g, H, W) of NHWC data is stored
  (N, H, W, g, C/g)); otherwise its input is converted once (``reshape_layout``).

``plan_layout(graph)`` gives the plain ``{tensor: perm}`` mapping (what validate needs to move user
data between NCHW and the file); ``build_layout(graph)`` gives the full plan the emitter uses.
``padding_plan`` and ``resize_flags`` decide how IR pads / resize coordinates map onto TFLite's
SAME/VALID padding and align_corners/half_pixel_centers flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import Graph, Node, ops_where

NHWC = (0, 2, 3, 1)
SPATIAL_OPS = ops_where(layout="spatial")  # NHWC in TFLite
MATRIX_OPS = ops_where(layout="matrix")  # read and write the IR order


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def default_perm(rank: int) -> tuple[int, ...]:
    return NHWC if rank == 4 else identity(rank)


def inverse(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def stored_axis(perm, ir_axis: int) -> int:
    """Where an IR axis lands in the stored tensor."""
    return perm.index(ir_axis % len(perm))


def stored_shape(shape, perm) -> tuple[int, ...]:
    return tuple(int(shape[p]) for p in perm)


def file_transpose_perm(in_perm, ir_perm, out_perm) -> tuple[int, ...]:
    """The TRANSPOSE perm on stored tensors that implements IR ``Transpose(ir_perm)``."""
    inv_in = inverse(in_perm)
    return tuple(inv_in[ir_perm[j]] for j in out_perm)


def same_bytes(shape, perm) -> bool:
    """True when storing ``shape`` with ``perm`` keeps the element order (only size-1 dims move)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


@dataclass
class LayoutPlan:
    perms: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Reshape outputs stored as flatten(source stored layout): name -> (source IR shape, source perm)
    flattened: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    vanished: set[str] = field(default_factory=set)  # Transpose nodes that are identities on file
    reshape_input: dict[str, tuple[int, ...]] = field(default_factory=dict)  # Reshape node -> input layout

    def to_stored(self, name: str, x: np.ndarray) -> np.ndarray:
        """An IR-layout array of tensor ``name`` -> its layout in the file."""
        if name in self.flattened:
            shape, perm = self.flattened[name]
            return np.ascontiguousarray(x.reshape(shape).transpose(perm).reshape(x.shape))
        return np.ascontiguousarray(x.transpose(self.perms[name]))

    def from_stored(self, name: str, x: np.ndarray) -> np.ndarray:
        """A file-layout array of tensor ``name`` -> the IR (NCHW) layout."""
        if name in self.flattened:
            shape, perm = self.flattened[name]
            return np.ascontiguousarray(
                x.reshape(stored_shape(shape, perm)).transpose(inverse(perm)).reshape(x.shape))
        return np.ascontiguousarray(x.transpose(inverse(self.perms[name])))


def plan_layout(graph: Graph) -> dict[str, tuple[int, ...]]:
    """{activation name: perm} with ``stored = ir.transpose(perm)`` for every activation."""
    return dict(build_layout(graph).perms)


def build_layout(graph: Graph) -> LayoutPlan:
    plan = LayoutPlan()
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    rank = {k: len(t.shape) for k, t in graph.tensors.items()}

    for name in graph.inputs:
        plan.perms[name] = default_perm(rank[name])
        users = consumers.get(name, [])
        perms = {tuple(n.attrs.get("perm", ())) for n in users}
        if users and name not in graph.outputs and all(n.op == "Transpose" for n in users) \
                and len(perms) == 1:
            ir_perm = perms.pop()
            out_perm = default_perm(len(ir_perm))
            plan.perms[name] = tuple(ir_perm[j] for j in out_perm)  # makes the Transpose an identity

    for n in graph.nodes:
        _propagate(graph, n, plan, rank, consumers)

    for n in graph.nodes:
        if n.op == "Transpose" and file_transpose_perm(
                plan.perms[n.inputs[0]], tuple(n.attrs["perm"]), plan.perms[n.outputs[0]]) \
                == identity(rank[n.outputs[0]]):
            plan.vanished.add(n.name)
    return plan


def _first_activation(graph: Graph, n: Node, out_rank: int) -> str | None:
    for i in n.inputs:
        if i and not graph.tensors[i].is_const and len(graph.tensors[i].shape) == out_rank:
            return i
    return None


def _propagate(graph: Graph, n: Node, plan: LayoutPlan, rank, consumers) -> None:
    """Set the layout of the outputs of node ``n`` from its op and its inputs' layouts."""
    out = n.outputs[0]
    out_rank = rank[out]
    src = n.inputs[0] if n.inputs else None
    src_perm = plan.perms.get(src) if src else None
    if n.op in SPATIAL_OPS:
        perm = default_perm(out_rank)
    elif n.op in MATRIX_OPS:
        perm = identity(out_rank)
    elif n.op == "Reshape":
        perm = _reshape_layout(graph, n, plan, consumers)
    elif n.op == "Transpose":
        if any(u.op in SPATIAL_OPS for u in consumers.get(out, [])):
            perm = default_perm(out_rank)
        else:  # nothing downstream needs a particular layout: make this Transpose an identity
            inv_perm = inverse(tuple(n.attrs["perm"]))
            perm = tuple(inv_perm[p] for p in src_perm)
    elif n.op == "ReduceMean" and not n.attrs.get("keepdims", 1):
        axes = {a % rank[src] for a in n.attrs["axes"]}
        kept = [a for a in range(rank[src]) if a not in axes]  # IR axes surviving, IR order
        perm = tuple(kept.index(p) for p in src_perm if p not in axes)
    elif n.op == "Softmax":
        perm = src_perm
        axis = n.attrs.get("axis", -1) % out_rank
        if stored_axis(perm, axis) != out_rank - 1:  # SOFTMAX works on the last stored axis
            perm = tuple(p for p in perm if p != axis) + (axis,)
    else:  # elementwise, activations, pad, concat, reduce with keepdims
        act = _first_activation(graph, n, out_rank)
        perm = plan.perms[act] if act else default_perm(out_rank)
    for o in n.outputs:
        plan.perms[o] = tuple(perm)


def _reshape_layout(graph: Graph, n: Node, plan: LayoutPlan, consumers) -> tuple[int, ...]:
    src, out = n.inputs[0], n.outputs[0]
    in_shape, out_shape = graph.tensors[src].shape, graph.tensors[out].shape
    in_perm = plan.perms[src]
    users = consumers.get(out, [])
    flatten_to_gemm = (
        len(out_shape) == 2 and len(in_shape) > 2 and out_shape[0] == in_shape[0]
        and in_perm[0] == 0 and not same_bytes(in_shape, in_perm)
        and users and out not in graph.outputs
        and all(u.op == "Gemm" and u.inputs[0] == out for u in users))
    if flatten_to_gemm:
        plan.flattened[out] = (tuple(in_shape), tuple(in_perm))
        plan.reshape_input[n.name] = tuple(in_perm)
        return identity(2)
    need, perm = reshape_layout(tuple(in_shape), tuple(in_perm), tuple(out_shape))
    plan.reshape_input[n.name] = need
    return perm


def _axis_blocks(in_shape, out_shape) -> list[tuple[list[int], list[int]]]:
    """The non-unit axes of a reshape grouped into (input axes, output axes) with equal sizes, in order:
    (N, C, H, W) -> (N, g, C/g, H, W) gives ([0], [0]), ([1], [1, 2]), ([2], [3]), ([3], [4])."""
    ins = [a for a, d in enumerate(in_shape) if d != 1]
    outs = [a for a, d in enumerate(out_shape) if d != 1]
    blocks, i, j = [], 0, 0
    while i < len(ins) and j < len(outs):
        bi, bo, pi, po = [ins[i]], [outs[j]], in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != po:  # equal total sizes: always closes before either side runs out
            if pi < po:
                bi.append(ins[i])
                pi, i = pi * in_shape[ins[i]], i + 1
            else:
                bo.append(outs[j])
                po, j = po * out_shape[outs[j]], j + 1
        blocks.append((bi, bo))
    return blocks


def _carry(src_shape, src_perm, blocks, dst_shape, dst_default):
    """A layout of the reshape's other side whose stored bytes equal ``src`` stored with ``src_perm``
    (unit axes where ``dst_default`` has them), or None when the reshape must reorder bytes."""
    order = [a for a in src_perm if src_shape[a] != 1]
    by_first = {src[0]: (src, dst) for src, dst in blocks}
    dst_order, k = [], 0
    while k < len(order):
        block = by_first.get(order[k])
        if block is None or order[k:k + len(block[0])] != block[0]:
            return None
        dst_order += block[1]
        k += len(block[0])
    rest = iter(dst_order)
    return tuple(a if dst_shape[a] == 1 else next(rest) for a in dst_default)


def reshape_layout(in_shape, in_perm, out_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(layout the input must have, layout of the output) for a Reshape.

    A reshape is a copy of bytes when each group of axes it splits or merges is stored contiguously
    and in order: then the output takes the layout that keeps the bytes and no TRANSPOSE is needed
    (a channel split (N, C, H, W) -> (N, g, C/g, H, W) of NHWC data is stored (N, H, W, g, C/g)).
    Otherwise the input is converted once, to the layout that gives the output the default one."""
    blocks = _axis_blocks(in_shape, out_shape)
    out_default, in_default = default_perm(len(out_shape)), default_perm(len(in_shape))
    out = _carry(in_shape, in_perm, blocks, out_shape, out_default)
    if out is not None:
        return tuple(in_perm), out
    need = _carry(out_shape, out_default, [(o, i) for i, o in blocks], in_shape, in_default)
    if need is not None:
        return need, out_default
    ir_order = identity(len(in_shape))
    return ir_order, _carry(in_shape, ir_order, blocks, out_shape, out_default)


# ---- geometry: how IR pads and resize coordinates map onto TFLite's conventions ----------
def padding_plan(in_hw, out_hw, kernel, strides, dilations, pads, allow_same=True):
    """('SAME' | 'VALID', explicit [(begin, end)] per spatial dim or None) reproducing IR pads.

    Only the padding a window actually reads counts: ONNX's floor may leave end padding unused.
    SAME is chosen when TFLite would compute exactly these pads (before = total // 2); otherwise
    the caller writes an explicit PAD of (begin, end) and a VALID op."""
    dims = []
    for i in range(2):
        dk = (kernel[i] - 1) * dilations[i] + 1
        begin = int(pads[i])
        end = (out_hw[i] - 1) * strides[i] + dk - in_hw[i] - begin  # padding actually read
        dims.append((dk, begin, end))
    if all(b == 0 and e <= 0 for _, b, e in dims):
        return "VALID", None
    same = allow_same
    for i, (dk, b, e) in enumerate(dims):
        s_out = -(-in_hw[i] // strides[i])
        total = max((s_out - 1) * strides[i] + dk - in_hw[i], 0)
        same = same and out_hw[i] == s_out and b == total // 2 and e == total - total // 2
    if same:
        return "SAME", None
    return "VALID", [(b, max(e, 0)) for _, b, e in dims]


def _onnx_source_index(out_size, in_size, cotm, nearest_mode):
    """Input index ONNX Resize reads for each output index along one axis."""
    x = np.arange(out_size, dtype=np.float64)
    scale = out_size / in_size
    if cotm == "align_corners":
        orig = x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(x)
    elif cotm == "asymmetric":
        orig = x / scale
    elif cotm == "pytorch_half_pixel":
        orig = (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(x)
    elif cotm == "tf_half_pixel_for_nn":
        orig = (x + 0.5) / scale
    else:  # half_pixel
        orig = (x + 0.5) / scale - 0.5
    rounders = {"floor": np.floor, "ceil": np.ceil,
                "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                "round_prefer_floor": lambda v: np.ceil(v - 0.5)}
    return np.clip(rounders.get(nearest_mode, rounders["round_prefer_floor"])(orig), 0, in_size - 1)


def _tflite_source_index(out_size, in_size, align, half):
    """Input index TFLite's RESIZE_NEAREST_NEIGHBOR reads (float32 math, as the kernel)."""
    x = np.arange(out_size, dtype=np.float32)
    scale = np.float32((in_size - 1) / (out_size - 1) if align and out_size > 1 else in_size / out_size)
    off = np.float32(0.5 if half else 0.0)
    idx = np.round((x + off) * scale) if align else np.floor((x + off) * scale)
    return np.clip(idx, 0, in_size - 1)


def resize_flags(node, in_hw, out_hw):
    """(align_corners, half_pixel_centers) reproducing the ONNX Resize, or raise."""
    mode = node.attrs.get("mode", "nearest")
    cotm = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode == "linear":
        flags = {"half_pixel": (False, True), "align_corners": (True, False), "asymmetric": (False, False)}
        if cotm == "pytorch_half_pixel" and min(out_hw) > 1:
            cotm = "half_pixel"
        if cotm in flags:
            return flags[cotm]
    else:
        nearest_mode = node.attrs.get("nearest_mode", "round_prefer_floor")
        natural = {"align_corners": (True, False), "asymmetric": (False, False)}.get(cotm, (False, True))
        for align, half in (natural, (False, False), (False, True), (True, False)):
            if all(np.array_equal(_onnx_source_index(o, i, cotm, nearest_mode),
                                  _tflite_source_index(o, i, align, half))
                   for o, i in zip(out_hw, in_hw)):
                return align, half
    raise UnsupportedOpError(f"Resize({mode}, {cotm})", node.name,
                             ["linear with half_pixel, asymmetric or align_corners",
                              "nearest whose source pixels TFLite reproduces"], where="TFLite export")
