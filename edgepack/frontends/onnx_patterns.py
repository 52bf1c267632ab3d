"""Multi-node ONNX patterns that stand for one IR op, rewritten on the folded model before the per-node
rules run.

- GELU before opset 20 (what torch exports): ``x * 0.5 * (1 + erf(x / sqrt(2)))`` in any of the orders
  the exporters write (Div by sqrt(2) or Mul by 1/sqrt(2); the 0.5 applied first, last, or to the sum)
  becomes one ``Gelu`` node. An Erf outside this pattern stays unsupported and is named as such.
- 1/sqrt(x) (``Reciprocal(Sqrt(x))`` or ``Div(1, Sqrt(x))``: ONNX has no Rsqrt, and it is how edgepack's
  own float .onnx writes a lowered LayerNorm) becomes one ``Rsqrt`` node. A lone Sqrt stays unsupported.
- relu6(x + 3) / 6 (Keras's hard_sigmoid as tf2onnx writes it: Add, Clip, Mul or Div) becomes one
  ``HardSigmoid`` node, and x times it (Keras's hard_swish) one ``HardSwish``: one int8 kernel instead of
  three or four requantized steps. PaddlePaddle's spelling x * relu6(x + 3) / 6 (the product before the
  division) and x * HardSigmoid(x; 1/6, 1/2) are HardSwish too.
- GELU's tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (x^3 as Pow or two Muls) is one
  ``Gelu(approximate="tanh")``.
- A decomposed LayerNorm over the last axes, as exporters (paddle2onnx, tf2onnx, hand-written) write it:
  ReduceMean, Sub, Pow(d, 2) or Mul(d, d), ReduceMean, Add eps, then Sqrt + Div or 1/sqrt (Reciprocal,
  Pow -0.5) + Mul, then optionally Mul gamma and Add beta, is one ``LayerNormalization`` (lowered later
  to kernels every runtime has in int8).
- Left over: a / sqrt(b) becomes a * Rsqrt(b) (DIV of two activations has no int8 kernel).
- Reshape, Tile, Reshape repeating each pixel s x t times (UpSampling2D as repeats) is a nearest Resize.
"""
from __future__ import annotations

import logging

import numpy as np
from onnx import helper

from .onnx_fold import TensorInfo

log = logging.getLogger(__name__)

# Node types only these patterns make (ONNX itself has no such op); their rules read the fused node.
PATTERN_OPS = frozenset({"Rsqrt"})


class _Index:
    def __init__(self, nodes, consts, outputs):
        self.consts, self.outputs = consts, set(outputs)
        self.producer = {o: n for n in nodes for o in n.output}
        self.readers: dict[str, list] = {}
        for n in nodes:
            for i in dict.fromkeys(n.input):  # a node reading a tensor twice (Mul(d, d)) is one reader
                self.readers.setdefault(i, []).append(n)
        self.infos: dict = {}  # tensor -> TensorInfo (shape, type) from shape inference

    def scalar(self, name: str):
        c = self.consts.get(name)
        return float(np.asarray(c).reshape(-1)[0]) if c is not None and np.asarray(c).size == 1 else None

    def only_reader(self, name: str):
        """The single node reading ``name`` (None when it has several readers or is a graph output)."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def other(self, node, name: str) -> str | None:
        """The other input of a two-input node that reads ``name``."""
        if len(node.input) != 2 or name not in node.input:
            return None
        return node.input[1] if node.input[0] == name else node.input[0]


def _is(index: _Index, node, op: str, name: str, value: float) -> bool:
    """``node`` is ``op`` of ``name`` and a constant close to ``value``."""
    if node is None or node.op_type != op:
        return False
    c = index.scalar(index.other(node, name) or "")
    return c is not None and abs(c - value) <= 1e-4 * abs(value)


def _match_gelu(index: _Index, erf):
    """("Gelu", x, y, nodes of the pattern, {}) for an Erf inside x * 0.5 * (1 + erf(x / sqrt 2))."""
    found = _match_erf_gelu(index, erf)
    return None if found is None else ("Gelu", *found, {})


def _gelu_tail(index: _Index, f, x: str) -> tuple[str, list] | None:
    """(y, nodes) for 0.5 * x * (1 + f) around the node ``f`` in the orders exporters write it."""
    add = index.only_reader(f.output[0])
    if not _is(index, add, "Add", f.output[0], 1.0):
        return None
    m1 = index.only_reader(add.output[0])
    if m1 is None or m1.op_type != "Mul":
        return None
    other = index.other(m1, add.output[0])
    if other == x:  # (x * (1 + f)) * 0.5
        m2 = index.only_reader(m1.output[0])
        if _is(index, m2, "Mul", m1.output[0], 0.5):
            return m2.output[0], [f, add, m1, m2]
    elif index.scalar(other or "") is not None:  # x * ((1 + f) * 0.5)
        m2 = index.only_reader(m1.output[0])
        if _is(index, m1, "Mul", add.output[0], 0.5) and m2 is not None and m2.op_type == "Mul" \
                and index.other(m2, m1.output[0]) == x:
            return m2.output[0], [f, add, m1, m2]
    else:  # (x * 0.5) * (1 + f)
        half = index.producer.get(other)
        if _is(index, half, "Mul", x, 0.5) and index.only_reader(half.output[0]) is m1:
            return m1.output[0], [f, add, half, m1]
    return None


def _cube_of(index: _Index, name: str) -> str | None:
    """x when ``name`` is x^3: Pow(x, 3), x * (x * x) or (x * x) * x."""
    n = index.producer.get(name)
    if n is None or len(n.input) != 2:
        return None
    if n.op_type == "Pow" and index.scalar(n.input[1]) == 3.0:
        return n.input[0]
    if n.op_type == "Mul":
        for sq, x in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            p = index.producer.get(sq)
            if p is not None and p.op_type == "Mul" and list(p.input) == [x, x]:
                return x
    return None


def _match_tanh_gelu(index: _Index, tanh):
    """("Gelu", x, y, nodes, {"approximate": "tanh"}) for 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    scaled = index.producer.get(tanh.input[0])
    if scaled is None or scaled.op_type != "Mul" or len(scaled.input) != 2:
        return None
    inner = next((i for i in scaled.input if index.scalar(i) is None), None)
    if inner is None or not _is(index, scaled, "Mul", inner, float(np.sqrt(2 / np.pi))):
        return None
    add = index.producer.get(inner)
    if add is None or add.op_type != "Add" or len(add.input) != 2:
        return None
    for x, small in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        mul = index.producer.get(small)
        if mul is None or mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        cube_name = next((i for i in mul.input if index.scalar(i) is None), None)
        if cube_name is None or not _is(index, mul, "Mul", cube_name, 0.044715) or _cube_of(index, cube_name) != x:
            continue
        tail = _gelu_tail(index, tanh, x)
        if tail is None:
            return None
        cube = index.producer[cube_name]
        parts = [cube] + ([index.producer[cube.input[0] if cube.input[1] == x else cube.input[1]]]
                          if cube.op_type == "Mul" else [])
        if any(index.only_reader(p.output[0]) is None for p in [*parts, mul, add, scaled]):
            return None
        return "Gelu", x, tail[0], [*parts, mul, add, scaled, *tail[1]], {"approximate": "tanh"}
    return None


def _match_erf_gelu(index: _Index, erf) -> tuple[str, str, list] | None:
    scaled = index.producer.get(erf.input[0])
    if scaled is None or scaled.op_type not in ("Div", "Mul") or len(scaled.input) != 2:
        return None
    x = next((i for i in scaled.input if index.scalar(i) is None), None)
    want = np.sqrt(2.0) if scaled.op_type == "Div" else 1.0 / np.sqrt(2.0)
    if x is None or (scaled.op_type == "Div" and scaled.input[0] != x) or not _is(index, scaled,
                                                                                scaled.op_type, x, want):
        return None
    if index.only_reader(scaled.output[0]) is not erf:
        return None
    tail = _gelu_tail(index, erf, x)
    return None if tail is None else (x, tail[0], [scaled, *tail[1]])


def _fuse(nodes: list, consts: dict, outputs, anchor: str, match, infos: dict) -> list:
    """Return ``nodes`` with every pattern ``match`` finds around an ``anchor`` node replaced by the one
    node it stands for (at the place of the pattern's last node, so the order stays topological).
    ``match`` gives (op, x, y, nodes of the pattern, attributes) or None."""
    index = _Index(nodes, consts, outputs)
    index.infos = infos
    replace: dict[int, object] = {}
    drop: set[int] = set()
    for node in [n for n in nodes if n.op_type == anchor and n.domain in ("", "ai.onnx")]:
        found = match(index, node)
        if found is None:
            continue
        op, x, y, pattern, attrs = found
        positions = sorted(i for i, n in enumerate(nodes) if any(n is p for p in pattern))
        if any(i in drop or i in replace for i in positions):  # overlaps a pattern already taken
            continue
        if isinstance(op, list):  # several nodes stand for the pattern (already made)
            replace[positions[-1]] = op
        else:
            ins = [x] if isinstance(x, str) else list(x)
            replace[positions[-1]] = helper.make_node(op, ins, [y], name=node.name or y, **attrs)
        drop.update(positions[:-1])
        log.debug("%s pattern at '%s' -> %s", anchor, node.name, op)
    out = []
    for i, n in enumerate(nodes):
        if i not in drop:
            got = replace.get(i, n)
            out.extend(got if isinstance(got, list) else [got])
    return out


def _match_rsqrt(index: _Index, sqrt):
    """("Rsqrt", x, y, nodes of the pattern, {}) for a Sqrt whose only reader takes its reciprocal."""
    inv = index.only_reader(sqrt.output[0])
    if inv is None:
        return None
    if inv.op_type == "Reciprocal" or (inv.op_type == "Div" and list(inv.input[1:]) == [sqrt.output[0]]
                                       and index.scalar(inv.input[0]) == 1.0):
        return "Rsqrt", sqrt.input[0], inv.output[0], [sqrt, inv], {}
    return None


def _match_hard_sigmoid(index: _Index, clip):
    """("HardSigmoid" or "HardSwish", x, y, nodes, attributes) for a Clip(0, 6) inside relu6(x + 3) / 6
    (Keras's hard_sigmoid through tf2onnx), and x * that (Keras's hard_swish)."""
    add = index.producer.get(clip.input[0])
    bounds = [index.scalar(i) if i else None for i in (list(clip.input[1:]) + ["", ""])[:2]]  # min, max
    if add is None or add.op_type != "Add" or bounds != [0.0, 6.0] or index.only_reader(add.output[0]) is not clip:
        return None
    x = next((i for i in add.input if index.scalar(i) is None), None)
    scale = index.only_reader(clip.output[0])
    if x is not None and scale is not None and scale.op_type == "Mul" and index.other(scale, clip.output[0]) == x:
        # PaddlePaddle: (x * relu6(x + 3)) / 6 or * (1/6)
        last = index.only_reader(scale.output[0])
        if _is(index, last, "Mul", scale.output[0], 1 / 6) or (
                _is(index, last, "Div", scale.output[0], 6.0) and last.input[0] == scale.output[0]):
            return "HardSwish", x, last.output[0], [add, clip, scale, last], {}
    if x is None or not _is(index, add, "Add", x, 3.0) or not (
            _is(index, scale, "Mul", clip.output[0], 1 / 6) or
            (_is(index, scale, "Div", clip.output[0], 6.0) and scale.input[0] == clip.output[0])):
        return None
    times_x = index.only_reader(scale.output[0])
    if times_x is not None and times_x.op_type == "Mul" and index.other(times_x, scale.output[0]) == x:
        return "HardSwish", x, times_x.output[0], [add, clip, scale, times_x], {}
    return "HardSigmoid", x, scale.output[0], [add, clip, scale], {"alpha": 1 / 6, "beta": 0.5}


def _match_hard_swish_of_hard_sigmoid(index: _Index, hs):
    """x * HardSigmoid(x; alpha 1/6, beta 1/2) is HardSwish."""
    attrs = {a.name: helper.get_attribute_value(a) for a in hs.attribute}
    times_x = index.only_reader(hs.output[0])
    if abs(attrs.get("alpha", 0.2) - 1 / 6) > 1e-4 or abs(attrs.get("beta", 0.5) - 0.5) > 1e-4 or \
            times_x is None or times_x.op_type != "Mul" or index.other(times_x, hs.output[0]) != hs.input[0]:
        return None
    return "HardSwish", hs.input[0], times_x.output[0], [hs, times_x], {}


def _axes(index: _Index, node, rank: int | None) -> list[int] | None:
    """The sorted non-negative axes of a ReduceMean with keepdims (None when unknown or not kept)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if not attrs.get("keepdims", 1) or rank is None:
        return None
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1:
        c = index.consts.get(node.input[1])
        axes = None if c is None else np.asarray(c).reshape(-1).tolist()
    return None if axes is None else sorted(int(a) % rank for a in axes)


def _match_layer_norm(index: _Index, mean):
    """("LayerNormalization", [x, scale, bias], y, nodes, attrs) for a decomposed LayerNorm that starts
    at the ReduceMean ``mean`` of x over its last axes (see the module docstring for the forms)."""
    x = mean.input[0]
    shape = getattr(index.infos.get(x), "shape", None)
    rank = None if shape is None else len(shape)
    axes = _axes(index, mean, rank)
    if not axes or axes != list(range(axes[0], rank)):
        return None
    sub = index.only_reader(mean.output[0])
    if sub is None or sub.op_type != "Sub" or list(sub.input) != [x, mean.output[0]]:
        return None
    d = sub.output[0]
    readers = index.readers.get(d, [])
    if len(readers) != 2 or d in index.outputs:
        return None
    sq = next((r for r in readers if (r.op_type == "Pow" and r.input[0] == d and index.scalar(r.input[1]) == 2.0)
               or (r.op_type == "Mul" and list(r.input) == [d, d])), None)
    norm = next((r for r in readers if r is not sq), None)
    var = index.only_reader(sq.output[0]) if sq is not None else None
    if var is None or var.op_type != "ReduceMean" or _axes(index, var, rank) != axes:
        return None
    add = index.only_reader(var.output[0])
    eps = index.scalar(index.other(add, var.output[0]) or "") if add is not None and add.op_type == "Add" else None
    if eps is None or not 0 <= eps < 1e-2:
        return None
    chain = [mean, sub, sq, var, add]
    root = index.only_reader(add.output[0])
    inv = root  # the node giving 1/sqrt(v) that the normalising Mul reads (or sqrt(v) for a Div)
    if root is not None and root.op_type == "Sqrt":
        nxt = index.only_reader(root.output[0])
        if nxt is not None and (nxt.op_type == "Reciprocal" or (nxt.op_type == "Div" and nxt is not norm and
                                                                 index.scalar(nxt.input[0]) == 1.0)):
            inv, chain = nxt, chain + [root]
    elif root is None or root.op_type != "Pow" or index.scalar(root.input[1]) != -0.5:
        return None
    if inv.op_type == "Sqrt":  # d / sqrt(v)
        ok = norm.op_type == "Div" and list(norm.input) == [d, inv.output[0]]
    else:  # d * 1/sqrt(v)
        ok = norm.op_type == "Mul" and index.other(norm, d) == inv.output[0]
    if not ok or index.only_reader(inv.output[0]) is not norm:
        return None
    chain += [inv, norm]
    y, scale, bias = _affine_tail(index, norm.output[0], chain)
    params = _layer_norm_params(index, scale, bias, tuple(shape[axes[0]:]), y)
    if params is None:
        return None
    return "LayerNormalization", [x, *params], y, chain, {"axis": axes[0], "epsilon": float(eps)}


def _affine_tail(index: _Index, y: str, chain: list):
    """(output, gamma or None, beta or None) of the constant Mul [then Add] after a normalisation."""
    scale = bias = None
    gamma = index.only_reader(y)
    if gamma is not None and gamma.op_type == "Mul" and index.consts.get(index.other(gamma, y) or "") is not None:
        scale, y = index.other(gamma, y), gamma.output[0]
        chain.append(gamma)
        beta = index.only_reader(y)
        if beta is not None and beta.op_type == "Add" and index.consts.get(index.other(beta, y) or "") is not None:
            bias, y = index.other(beta, y), beta.output[0]
            chain.append(beta)
    return y, scale, bias


def _layer_norm_params(index: _Index, scale, bias, norm_shape: tuple, y: str) -> list[str] | None:
    """New constants holding the LayerNorm's scale and bias over the normalised shape (None when a given
    scale/shift is not per normalised element: then it is not a LayerNorm's)."""
    params = []
    for name, fill in ((scale, 1.0), (bias, 0.0)):
        value = np.full(norm_shape, fill, np.float32) if name is None else np.asarray(index.consts[name], np.float32)
        if value.size == 1:
            value = np.full(norm_shape, float(value.reshape(-1)[0]), np.float32)
        elif value.size != int(np.prod(norm_shape)) or value.shape[-len(norm_shape):] != norm_shape:
            return None
        new = f"{y}/layernorm_{'scale' if fill else 'bias'}"
        index.consts[new] = np.ascontiguousarray(value.reshape(norm_shape))
        params.append(new)
    return params


def _match_div_sqrt(index: _Index, sqrt):
    """a / sqrt(b) -> a * Rsqrt(b): two nodes with int8 kernels instead of a float-only DIV."""
    div = index.only_reader(sqrt.output[0])
    if div is None or div.op_type != "Div" or list(div.input[1:]) != [sqrt.output[0]] or \
            index.scalar(div.input[0]) is not None:
        return None
    r = f"{sqrt.output[0]}/rsqrt"
    if sqrt.output[0] in index.infos:
        index.infos[r] = index.infos[sqrt.output[0]]
    made = [helper.make_node("Rsqrt", [sqrt.input[0]], [r], name=sqrt.name or r),
            helper.make_node("Mul", [div.input[0], r], [div.output[0]], name=div.name or div.output[0])]
    return made, None, None, [sqrt, div], None


def _match_tile_upsampling(index: _Index, tile):
    """Reshape (.., H, 1, W, 1 ..) -> Tile (.., s, .., t ..) -> Reshape (.., H*s, W*t ..): a nearest upsampling
    by integer factors (Keras UpSampling2D saved by TF as repeats) -> one Resize, NCHW or NHWC (between
    Transposes, which the layout planner removes)."""
    first, reps = index.producer.get(tile.input[0]), index.consts.get(tile.input[1])
    last = index.only_reader(tile.output[0])
    if first is None or first.op_type != "Reshape" or reps is None or last is None or last.op_type != "Reshape" \
            or index.only_reader(tile.input[0]) is not tile:
        return None
    x, y = first.input[0], last.output[0]
    src, mid = getattr(index.infos.get(x), "shape", None), getattr(index.infos.get(tile.input[0]), "shape", None)
    dst, reps = getattr(index.infos.get(y), "shape", None), [int(r) for r in np.asarray(reps).reshape(-1)]
    if src is None or mid is None or dst is None or len(src) != 4 or len(mid) != 6:
        return None
    for hw, c_last in (((2, 3), False), ((1, 2), True)):  # NCHW, NHWC
        h, w = hw
        want_mid = list(src[:h + 1]) + [1, src[w], 1] + ([src[3]] if c_last else [])
        s_h, s_w = reps[h + 1], reps[h + 3]
        want_reps = [1] * 6
        want_reps[h + 1], want_reps[h + 3] = s_h, s_w
        out = list(src)
        out[h], out[w] = src[h] * s_h, src[w] * s_w
        if list(mid) == want_mid and reps == want_reps and list(dst) == out:
            break
    else:
        return None
    scales = f"{y}/upsample_scales"
    index.consts[scales] = np.array([1, 1, s_h, s_w], np.float32)
    resize = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    name = tile.name or y
    if not c_last:
        return [helper.make_node("Resize", [x, "", scales], [y], name=name, **resize)], None, None, \
            [first, tile, last], None
    elem = index.infos[x].elem_type
    xt, yt = f"{x}/as_nchw", f"{y}/nchw"
    index.infos[xt] = TensorInfo((src[0], src[3], src[1], src[2]), elem)
    index.infos[yt] = TensorInfo((out[0], out[3], out[1], out[2]), elem)
    made = [helper.make_node("Transpose", [x], [xt], name=f"{name}/to_nchw", perm=[0, 3, 1, 2]),
            helper.make_node("Resize", [xt, "", scales], [yt], name=name, **resize),
            helper.make_node("Transpose", [yt], [y], name=f"{name}/to_nhwc", perm=[0, 2, 3, 1])]
    return made, None, None, [first, tile, last], None


def fuse_patterns(nodes: list, consts: dict, outputs, infos: dict | None = None) -> list:
    """Every multi-node pattern above replaced by the IR-op node(s) it stands for. ``infos``: tensor ->
    TensorInfo from shape inference (the patterns that depend on a rank read it; new tensors are added)."""
    for anchor, match in (("ReduceMean", _match_layer_norm), ("Erf", _match_gelu), ("Tanh", _match_tanh_gelu),
                          ("Sqrt", _match_rsqrt), ("Sqrt", _match_div_sqrt), ("Clip", _match_hard_sigmoid),
                          ("HardSigmoid", _match_hard_swish_of_hard_sigmoid), ("Tile", _match_tile_upsampling)):
        nodes = _fuse(nodes, consts, outputs, anchor, match, {} if infos is None else infos)
    return nodes
