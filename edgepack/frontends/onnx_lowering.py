"""ONNX rules that lower ops into the IR's forms: ConvTranspose, LayerNormalization, Gelu (opset 20), the
1-D forms of Conv / MaxPool / AveragePool / GlobalAveragePool, Slice / Split / Gather on constant
indices (as static Slice windows), Pow with a constant exponent, Min / Max, Expand to a constant shape and
InstanceNormalization (as a LayerNormalization over the flattened spatial axes).

1-D ops are normalised to their 2-D form on (N, C, 1, T) between two Reshapes, so that every later
stage (passes, both emitters, the layout planner) sees only 2-D convolutions; ``lift_1d`` then removes
the Reshape pairs between consecutive 1-D layers.
"""
from __future__ import annotations

import numpy as np

from .onnx_builder import Builder, capped_concat, unsupported_variant


def _input(node, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def _used(b: Builder, node, i: int) -> bool:
    return i < len(node.output) and node.output[i] != "" and node.output[i] in b.used


# ---- 1-D as 2-D on (N, C, 1, T) -----------------------------------------------------------------
def _to_2d(b: Builder, x: str) -> str:
    n, c, t = b.shape(x)
    x4 = b.new_tensor(f"{x}_2d", (n, c, 1, t))
    b.emit("Reshape", [x], [x4], {"shape": [n, c, 1, t]}, suffix="to_2d")
    return x4


def _out_2d(b: Builder, y: str) -> str:
    """The (N, C, 1, T) tensor a 2-D op writes for the 1-D output ``y``."""
    n, c, t = b.shape(y)
    return b.new_tensor(f"{y}_2d", (n, c, 1, t))


def _finish_1d(b: Builder, y4: str, y: str) -> None:
    b.emit("Reshape", [y4], [y], {"shape": list(b.shape(y))}, suffix="from_2d")


def conv1d(b: Builder, node, strides, pads, dilations, group: int) -> None:
    """Conv with 3-D weights (O, I, k): a Conv with weights (O, I, 1, k) on (N, C, 1, T)."""
    w = b.const(node.input[1])
    x4 = _to_2d(b, node.input[0])
    inputs = [x4, b.new_const(f"{node.input[1]}_2d", np.ascontiguousarray(w[:, :, None, :]))]
    if _input(node, 2):
        inputs.append(node.input[2])
    y4 = _out_2d(b, node.output[0])
    b.emit("Conv", inputs, [y4], {"strides": [1, strides[0]], "pads": [0, pads[0], 0, pads[1]],
                                  "dilations": [1, dilations[0]], "group": group})
    _finish_1d(b, y4, node.output[0])


def pool1d(b: Builder, op: str, node, kernel, strides, pads, ceil_mode: int, count_include_pad: int) -> None:
    x4 = _to_2d(b, node.input[0])
    y4 = _out_2d(b, node.output[0])
    b.emit(op, [x4], [y4], {"kernel_shape": [1, kernel[0]], "strides": [1, strides[0]],
                            "pads": [0, pads[0], 0, pads[1]], "ceil_mode": ceil_mode,
                            "count_include_pad": count_include_pad})
    _finish_1d(b, y4, node.output[0])


def global_average_pool1d(b: Builder, node) -> None:
    x4 = _to_2d(b, node.input[0])
    y4 = _out_2d(b, node.output[0])
    b.emit("GlobalAveragePool", [x4], [y4])
    _finish_1d(b, y4, node.output[0])


# ---- ConvTranspose -----------------------------------------------------------------------------
def _conv_transpose(b: Builder, node, attrs):
    w = b.need_const(node, 1, "weight")
    if w.ndim != 4:
        raise unsupported_variant("ConvTranspose", b.current, f"{w.ndim - 2}-D transposed convolution; "
                                  "only 2-D (NCHW) is supported")
    if _input(node, 2):
        b.need_const(node, 2, "bias")
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in attrs.get("dilations", [1, 1])]
    extra = [int(p) for p in attrs.get("output_padding", [0, 0])]
    in_hw, out_hw = b.shape(node.input[0])[2:], b.shape(node.output[0])[2:]
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "VALID":
        pads = [0, 0, 0, 0]
    elif "pads" in attrs and "output_shape" not in attrs and auto == "NOTSET":
        pads = [int(p) for p in attrs["pads"]]
    else:  # output_shape or SAME_*: ONNX derives the pads from the (inferred) output size
        begin, end = [], []
        for i in range(2):
            total = strides[i] * (in_hw[i] - 1) + extra[i] + (kernel[i] - 1) * dilations[i] + 1 - out_hw[i]
            if total < 0:
                raise unsupported_variant("ConvTranspose", b.current,
                                          f"output {out_hw} larger than the full output; use output_padding")
            small, large = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else large)
            end.append(large if auto == "SAME_UPPER" else small)
        pads = begin + end
    b.emit("ConvTranspose", [i for i in node.input[:3] if i], [node.output[0]],
           {"strides": strides, "pads": pads, "dilations": dilations, "group": int(attrs.get("group", 1)),
            "output_padding": extra})


# ---- LayerNormalization, Gelu ------------------------------------------------------------------
def _layer_norm(b: Builder, node, attrs):
    if _used(b, node, 1) or _used(b, node, 2):
        raise unsupported_variant("LayerNormalization", b.current, "its Mean / InvStdDev outputs are used")
    x, rank = node.input[0], b.rank(node.input[0])
    axis = int(attrs.get("axis", -1)) % rank
    scale = b.need_const(node, 1, "scale")
    if _input(node, 2):
        b.need_const(node, 2, "bias")
        bias = node.input[2]
    else:
        bias = b.new_const(f"{node.input[1]}_zero_bias", np.zeros_like(scale))
    b.emit("LayerNormalization", [x, node.input[1], bias], [node.output[0]],
           {"axis": axis, "epsilon": float(attrs.get("epsilon", 1e-5))})


def _instance_norm(b: Builder, node, attrs):
    """InstanceNormalization (torch's GroupNorm with one group per channel, e.g. Wav2Vec2's first conv):
    a LayerNormalization over the last axis of (N, C, spatial flattened), then the per-channel scale and
    bias as Mul and Add on (C, 1)."""
    x, y = node.input[0], node.output[0]
    shape = tuple(b.shape(x))
    scale, bias = b.need_const(node, 1, "scale"), b.need_const(node, 2, "B")
    flat = (shape[0], shape[1], int(np.prod(shape[2:])))
    cur = x
    if len(shape) != 3:
        cur = b.new_tensor(f"{y}/flat", flat)
        b.emit("Reshape", [x], [cur], {"shape": list(flat)}, suffix="flat")
    normed = b.new_tensor(f"{y}/normed", flat)
    b.emit("LayerNormalization", [cur, b.new_const(f"{y}/unit_gamma", np.ones(flat[2:], np.float32)),
                                  b.new_const(f"{y}/zero_beta", np.zeros(flat[2:], np.float32))], [normed],
           {"axis": 2, "epsilon": float(attrs.get("epsilon", 1e-5))}, suffix="normed")
    scaled = b.new_tensor(f"{y}/scaled", flat)
    per_channel = (shape[1], 1)
    b.emit("Mul", [normed, b.new_const(f"{y}/channel_scale", scale.reshape(per_channel).astype(np.float32))], [scaled],
           suffix="scaled")
    out = y if len(shape) == 3 else b.new_tensor(f"{y}/shifted", flat)
    b.emit("Add", [scaled, b.new_const(f"{y}/channel_bias", bias.reshape(per_channel).astype(np.float32))], [out],
           suffix=None if out == y else "shifted")
    if out != y:
        b.emit("Reshape", [out], [y], {"shape": list(shape)})


def _gelu(b: Builder, node, attrs):
    approximate = attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise unsupported_variant("Gelu", b.current, f"approximate='{approximate}' (allowed: none, tanh)")
    b.emit("Gelu", [node.input[0]], [node.output[0]], {"approximate": approximate})


# ---- Slice, Split, Gather on constant indices: static windows ----------------------------------
def _window(b: Builder, x: str, y: str, starts: list[int], sizes: list[int], suffix: str | None = None) -> None:
    full = list(b.shape(x))
    if starts == [0] * len(full) and sizes == full:
        b.emit("Identity", [x], [y], suffix=suffix)
    else:
        axes = [a for a, (s, n) in enumerate(zip(starts, sizes)) if s != 0 or n != full[a]]
        b.emit("Slice", [x], [y], {"starts": starts, "sizes": sizes, "axes": axes}, suffix=suffix)


def _slice(b: Builder, node, attrs):
    x, shape = node.input[0], list(b.shape(node.input[0]))
    if b.opset >= 10:
        starts = b.need_const(node, 1, "starts").reshape(-1).tolist()
        ends = b.need_const(node, 2, "ends").reshape(-1).tolist()
        axes = b.need_const(node, 3, "axes").reshape(-1).tolist() if _input(node, 3) else list(range(len(starts)))
        steps = b.need_const(node, 4, "steps").reshape(-1).tolist() if _input(node, 4) else [1] * len(starts)
    else:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    if any(int(s) != 1 for s in steps):
        raise unsupported_variant("Slice", b.current, f"steps {steps}; only step 1")
    begin, sizes = [0] * len(shape), list(shape)
    for a, s, e in zip(axes, starts, ends):
        a = int(a) % len(shape)
        lo, hi, _ = slice(int(s), int(e)).indices(shape[a])  # ONNX clamps as Python slicing does
        begin[a], sizes[a] = lo, max(hi - lo, 0)
    _window(b, x, node.output[0], begin, sizes)


def _split(b: Builder, node, attrs):
    x, shape = node.input[0], list(b.shape(node.input[0]))
    axis = int(attrs.get("axis", 0)) % len(shape)
    if _input(node, 1):
        parts = [int(v) for v in b.need_const(node, 1, "split").reshape(-1)]
    elif "split" in attrs:
        parts = [int(v) for v in attrs["split"]]
    else:
        k = int(attrs.get("num_outputs", len(node.output)))
        step = -(-shape[axis] // k)
        parts = [min(step, shape[axis] - i * step) for i in range(k)]
    start = 0
    for i, (y, n) in enumerate(zip(node.output, parts)):
        if y and y in b.used:
            begin, sizes = [0] * len(shape), list(shape)
            begin[axis], sizes[axis] = start, n
            _window(b, x, y, begin, sizes, suffix=f"part{i}")
        start += n


def _gather(b: Builder, node, attrs):
    x, shape = node.input[0], list(b.shape(node.input[0]))
    axis = int(attrs.get("axis", 0)) % len(shape)
    idx = b.const(node.input[1])
    if idx is None:
        raise unsupported_variant("Gather", b.current, "indices must be a constant")
    flat = [int(i) % shape[axis] for i in np.asarray(idx).reshape(-1)]
    y = node.output[0]
    if np.ndim(idx) == 0 or flat == list(range(flat[0], flat[0] + len(flat))):  # one window
        begin, sizes = [0] * len(shape), list(shape)
        begin[axis], sizes[axis] = flat[0], len(flat)
        if tuple(sizes) == b.shape(y):
            _window(b, x, y, begin, sizes)
            return
        part = b.new_tensor(f"{y}/window", sizes)
        _window(b, x, part, begin, sizes)
        b.emit("Reshape", [part], [y], {"shape": list(b.shape(y))}, suffix="reshape")
        return
    if np.ndim(idx) != 1:
        raise unsupported_variant("Gather", b.current, "indices of rank > 1 that are not one contiguous range")
    pieces = []
    for j, i in enumerate(flat):  # any other index list: one window per index, concatenated
        begin, sizes = [0] * len(shape), list(shape)
        begin[axis], sizes[axis] = i, 1
        pieces.append(b.new_tensor(f"{y}/index{j}", sizes))
        _window(b, x, pieces[-1], begin, sizes, suffix=f"index{j}")
    b.emit("Concat", pieces, [y], {"axis": axis}, suffix="concat")


# ---- Pow with a constant exponent, Min / Max -----------------------------------------------------
def _pow(b: Builder, node, attrs):
    e = b.const(node.input[1])
    if e is None or np.asarray(e).size != 1:
        raise unsupported_variant("Pow", b.current, "the exponent must be one constant")
    x, y, e = node.input[0], node.output[0], float(np.asarray(e).reshape(-1)[0])
    if e in (2.0, 3.0, 4.0):  # small integer powers as products: int8 MUL kernels everywhere
        cur = x
        for k in range(int(e) - 1):
            out = y if k == int(e) - 2 else b.new_tensor(f"{y}/power{k + 2}", b.shape(x))
            b.emit("Mul", [cur, x], [out], suffix=None if out == y else f"power{k + 2}")
            cur = out
        return
    simple = {1.0: "Identity", 0.5: "Sqrt", -0.5: "Rsqrt"}
    if e in simple:
        b.emit(simple[e], [x], [y])
    else:
        b.emit("Pow", [x], [y], {"exponent": e})


def _min_max(op: str):
    def rule(b: Builder, node, attrs):
        ins = [i for i in node.input if i]
        if len(ins) == 1:
            b.emit("Identity", ins, [node.output[0]])
            return
        cur = ins[0]
        for k, other in enumerate(ins[1:]):
            last = k == len(ins) - 2
            out = node.output[0] if last else b.new_tensor(f"{node.output[0]}/{op.lower()}{k}",
                                                            np.broadcast_shapes(b.shape(cur), b.shape(other)))
            b.emit(op, [cur, other], [out], suffix=None if last else f"{op.lower()}{k}")
            cur = out
    return rule


def _softplus(b: Builder, node, attrs):
    """log(1 + exp(x)) as relu(x) + log(1 + exp(-|x|)): the same in float, and every intermediate stays in a
    small range int8 resolves (exp(x) itself would need a range up to e^max(x))."""
    x, y = node.input[0], node.output[0]
    shape = b.shape(x)
    steps = [("Abs", "abs"), ("Neg", "neg"), ("Exp", "exp"), ("Add", "one_plus"), ("Log", "log")]
    cur = x
    for op, key in steps:
        out = b.new_tensor(f"{y}/{key}", shape)
        ins = [cur, b.new_const(f"{y}/one", np.ones((), np.float32))] if op == "Add" else [cur]
        b.emit(op, ins, [out], suffix=key)
        cur = out
    pos = b.new_tensor(f"{y}/relu", shape)
    b.emit("Relu", [x], [pos], suffix="relu")
    b.emit("Add", [pos, cur], [y])


def _tile(b: Builder, node, attrs):
    """Tile with constant repeats as one Concat of copies per repeated axis: exact, values copied (one
    scale), kernels everywhere. (Reshape, Tile, Reshape spelling a nearest upsampling is read as Resize.)"""
    x, y = node.input[0], node.output[0]
    reps = [int(r) for r in b.need_const(node, 1, "repeats").reshape(-1)]
    cur, shape = x, list(b.shape(x))
    axes = [a for a, r in enumerate(reps) if r != 1]
    if not axes:
        b.emit("Identity", [x], [y])
    for k, a in enumerate(axes):
        shape[a] *= reps[a]
        out = y if k == len(axes) - 1 else b.new_tensor(f"{y}/tile{a}", shape)
        capped_concat(b, [cur] * reps[a], out, a, None if out == y else f"tile{a}")
        cur = out


def _expand(b: Builder, node, attrs):
    """Expand to a constant shape: Identity when nothing grows, else a Mul by ones of that shape (ONNX
    Expand broadcasts both ways, as Mul does). tf2onnx writes it for a Mul by a ones tensor, e.g. Keras'
    LayerNorm on a 1x1 feature map. Ones are exact in int8 (127 * 1/127), so only the Mul's rounding adds."""
    x, y = node.input[0], node.output[0]
    target = [int(d) for d in b.need_const(node, 1, "shape").reshape(-1)]
    if tuple(np.broadcast_shapes(b.shape(x), tuple(target))) == tuple(b.shape(x)):
        b.emit("Identity", [x], [y])
    else:
        b.emit("Mul", [x, b.new_const(f"{y}/ones", np.ones(target, np.float32))], [y])


LOWERING_RULES = {
    "Expand": _expand,
    "Softplus": _softplus,
    "Tile": _tile,
    "Slice": _slice,
    "Split": _split,
    "Gather": _gather,
    "Pow": _pow,
    "Max": _min_max("Max"),
    "Min": _min_max("Min"),
    "ConvTranspose": _conv_transpose,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "Gelu": _gelu,
}
