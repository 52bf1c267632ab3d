"""IR -> float ONNX ModelProto.

Every IR tensor keeps its name: constants become initializers, activations are written by the node that
produces them (by the fused activation node when a node carries ``activation``). Writing is split so
the int8 QDQ emitter can reuse it:
- ``WRITERS[op](ctx, node, output)`` writes one IR op (without its fused activation) as NodeProtos;
- ``write_activation(ctx, node, src, dst)`` writes a fused Relu / Relu6;
- ``write_node`` combines both; ``EmitContext.rename`` lets a caller point inputs elsewhere (e.g. at
  DequantizeLinear outputs) and ``EmitContext.const`` adds helper initializers (shapes, clip bounds).
Output is deterministic: nodes in graph order, initializers sorted by name, no timestamps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import ir
from ..errors import ConfigError

OPSET_MIN, OPSET_MAX = 11, 21
PRODUCER = "edgepack"


@dataclass
class EmitContext:
    graph: ir.Graph
    opset: int
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)  # IR tensor name -> name the nodes read
    _taken: set[str] = field(default_factory=set)

    def __post_init__(self):
        self._taken |= set(self.graph.tensors) | {n.name for n in self.graph.nodes}

    def name(self, tensor: str) -> str:
        """ONNX name a node reads for an IR tensor."""
        return self.rename.get(tensor, tensor) if tensor else ""

    def inputs(self, node: ir.Node) -> list[str]:
        return [self.name(i) for i in node.inputs]

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._taken:
            name, i = f"{base}_{i}", i + 1
        self._taken.add(name)
        return name

    def const(self, base: str, value) -> str:
        """A helper initializer (not an IR tensor) under a fresh name."""
        name = self.unique(base)
        self.initializers[name] = numpy_helper.from_array(np.asarray(value), name)
        return name


Writer = Callable[[EmitContext, ir.Node, str], list[onnx.NodeProto]]


def _mk(op: str, ctx: EmitContext, node: ir.Node, inputs: list[str], output: str, **attrs):
    return [helper.make_node(op, inputs, [output], name=node.name, **attrs)]


def _plain(op: str) -> Writer:
    return lambda ctx, n, out: _mk(op, ctx, n, ctx.inputs(n), out)


def _with_attrs(op: str, *keys: str, cast=None) -> Writer:
    def write(ctx, n, out):
        attrs = {k: (cast(n.attrs[k]) if cast else n.attrs[k]) for k in keys}
        return _mk(op, ctx, n, ctx.inputs(n), out, **attrs)
    return write


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _conv(ctx, n, out):
    kernel = ctx.graph.tensors[n.inputs[1]].shape[2:]
    return _mk("Conv", ctx, n, ctx.inputs(n), out, kernel_shape=_ints(kernel),
               strides=_ints(n.attrs["strides"]), pads=_ints(n.attrs["pads"]),
               dilations=_ints(n.attrs["dilations"]), group=int(n.attrs["group"]))


def _conv_transpose(ctx, n, out):
    kernel = ctx.graph.tensors[n.inputs[1]].shape[2:]
    return _mk("ConvTranspose", ctx, n, ctx.inputs(n), out, kernel_shape=_ints(kernel),
               strides=_ints(n.attrs["strides"]), pads=_ints(n.attrs["pads"]),
               dilations=_ints(n.attrs["dilations"]), group=int(n.attrs["group"]),
               output_padding=_ints(n.attrs.get("output_padding", [0, 0])))


def _layer_norm(ctx, n, out):
    if ctx.opset < 17:
        raise ConfigError(f"LayerNormalization (node '{n.name}') needs ONNX opset >= 17, got {ctx.opset}",
                          key="opset", allowed=range(17, OPSET_MAX + 1))
    return _mk("LayerNormalization", ctx, n, ctx.inputs(n), out, axis=int(n.attrs["axis"]),
               epsilon=float(n.attrs.get("epsilon", 1e-5)))


def _gelu(ctx, n, out):
    approximate = n.attrs.get("approximate", "none")
    if ctx.opset >= 20:
        return _mk("Gelu", ctx, n, ctx.inputs(n), out, approximate=approximate)
    # Before opset 20: 0.5 x (1 + f) with f = erf(x / sqrt 2), or tanh(sqrt(2/pi) (x + 0.044715 x^3)).
    x = ctx.inputs(n)[0]

    def c(key, value):
        return ctx.const(f"{n.name}/{key}", np.float32(value))

    if approximate == "tanh":
        steps = [("Mul", [x, x], "@x2"), ("Mul", ["@x2", x], "@x3"), ("Mul", ["@x3", c("k3", 0.044715)], "@kx3"),
                 ("Add", [x, "@kx3"], "@poly"), ("Mul", ["@poly", c("k", np.sqrt(2 / np.pi))], "@arg"),
                 ("Tanh", ["@arg"], "@f")]
    else:
        steps = [("Div", [x, c("sqrt2", np.sqrt(2.0))], "@arg"), ("Erf", ["@arg"], "@f")]
    steps += [("Add", ["@f", c("one", 1.0)], "@one_plus"), ("Mul", [x, c("half", 0.5)], "@half_x"),
              ("Mul", ["@half_x", "@one_plus"], None)]
    names, nodes = {}, []
    for op, ins, key in steps:
        dst = out if key is None else ctx.unique(f"{out}/{key[1:]}")
        name = n.name if key is None else ctx.unique(f"{n.name}/{key[1:]}")
        nodes.append(helper.make_node(op, [names.get(i, i) for i in ins], [dst], name=name))
        names[key] = dst
    return nodes


def _rsqrt(ctx, n, out):
    root = ctx.unique(f"{out}/sqrt")
    return [helper.make_node("Sqrt", ctx.inputs(n), [root], name=ctx.unique(f"{n.name}/sqrt")),
            helper.make_node("Reciprocal", [root], [out], name=n.name)]


def _gemm(ctx, n, out):
    return _mk("Gemm", ctx, n, ctx.inputs(n), out, transB=1)


def _pool(op: str) -> Writer:
    def write(ctx, n, out):
        attrs = dict(kernel_shape=_ints(n.attrs["kernel_shape"]), strides=_ints(n.attrs["strides"]),
                     pads=_ints(n.attrs["pads"]), ceil_mode=int(n.attrs.get("ceil_mode", 0)))
        if op == "AveragePool":
            attrs["count_include_pad"] = int(n.attrs.get("count_include_pad", 0))
        return _mk(op, ctx, n, ctx.inputs(n), out, **attrs)
    return write


def _clip_inputs(ctx, base: str, lo: float, hi: float) -> list[str]:
    """Clip's optional min/max inputs; an infinite bound is left out."""
    names = ["" if math.isinf(lo) else ctx.const(f"{base}/min", np.float32(lo)),
             "" if math.isinf(hi) else ctx.const(f"{base}/max", np.float32(hi))]
    while names and not names[-1]:
        names.pop()
    return names


def _clip(ctx, n, out):
    return _mk("Clip", ctx, n, ctx.inputs(n) + _clip_inputs(ctx, n.name, n.attrs["min"], n.attrs["max"]),
               out)


def _softmax(ctx, n, out):
    axis = int(n.attrs["axis"])
    rank = len(ctx.graph.tensors[n.inputs[0]].shape)
    if ctx.opset < 13 and axis != rank - 1:
        raise ConfigError(f"Softmax over axis {axis} of a rank-{rank} tensor (node '{n.name}') needs "
                          f"ONNX opset >= 13, got {ctx.opset}", key="opset",
                          allowed=range(13, OPSET_MAX + 1))
    return _mk("Softmax", ctx, n, ctx.inputs(n), out, axis=axis)


def _hard_swish(ctx, n, out):
    if ctx.opset >= 14:
        return _mk("HardSwish", ctx, n, ctx.inputs(n), out)
    x = ctx.inputs(n)[0]  # HardSwish arrived in opset 14: x * HardSigmoid(x, 1/6, 1/2)
    gate = ctx.unique(f"{out}/gate")
    return [helper.make_node("HardSigmoid", [x], [gate], name=ctx.unique(f"{n.name}/gate"),
                             alpha=1.0 / 6.0, beta=0.5),
            helper.make_node("Mul", [x, gate], [out], name=n.name)]


def _reduce_mean(ctx, n, out):
    axes, keep = _ints(n.attrs["axes"]), int(n.attrs.get("keepdims", 1))
    if ctx.opset >= 18:
        return _mk("ReduceMean", ctx, n, ctx.inputs(n) + [ctx.const(f"{n.name}/axes", np.array(axes,
                   np.int64))], out, keepdims=keep)
    return _mk("ReduceMean", ctx, n, ctx.inputs(n), out, axes=axes, keepdims=keep)


def _reshape(ctx, n, out):
    shape = ctx.const(f"{n.name}/shape", np.array(_ints(n.attrs["shape"]), np.int64))
    return _mk("Reshape", ctx, n, ctx.inputs(n) + [shape], out)


def _pad(ctx, n, out):
    inputs = ctx.inputs(n) + [ctx.const(f"{n.name}/pads", np.array(_ints(n.attrs["pads"]), np.int64))]
    mode = n.attrs.get("mode", "constant")
    if mode == "constant":
        inputs.append(ctx.const(f"{n.name}/value", np.float32(n.attrs.get("value", 0.0))))
    return _mk("Pad", ctx, n, inputs, out, mode=mode)


def _resize(ctx, n, out):
    batch, channels = ctx.graph.tensors[n.inputs[0]].shape[:2]
    sizes = np.array([batch, channels, *_ints(n.attrs["size"])], np.int64)
    if ctx.opset >= 13:
        roi = scales = ""
    else:  # roi and scales are required (but may be empty) before opset 13
        roi = ctx.const(f"{n.name}/roi", np.zeros(0, np.float32))
        scales = ctx.const(f"{n.name}/scales", np.zeros(0, np.float32))
    inputs = ctx.inputs(n) + [roi, scales, ctx.const(f"{n.name}/sizes", sizes)]
    attrs = dict(mode=n.attrs["mode"],
                 coordinate_transformation_mode=n.attrs.get("coordinate_transformation_mode",
                                                            "half_pixel"))
    if n.attrs["mode"] == "nearest":
        attrs["nearest_mode"] = n.attrs.get("nearest_mode", "round_prefer_floor")
    return _mk("Resize", ctx, n, inputs, out, **attrs)


WRITERS: dict[str, Writer] = {
    **{op: _plain(op) for op in ir.ops_where(plain_onnx=True)},  # Add, Sub, Mul, Div, Relu, Sigmoid, ...
    **{op: _plain(op) for op in ("MatMul", "GlobalAveragePool", "Dropout")},
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "LayerNormalization": _layer_norm,
    "Gelu": _gelu,
    "Rsqrt": _rsqrt,
    "Gemm": _gemm,
    "Concat": _with_attrs("Concat", "axis", cast=int),
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AveragePool"),
    "ReduceMean": _reduce_mean,
    "Clip": _clip,
    "LeakyRelu": _with_attrs("LeakyRelu", "alpha", cast=float),
    "HardSigmoid": _with_attrs("HardSigmoid", "alpha", "beta", cast=float),
    "HardSwish": _hard_swish,
    "Softmax": _softmax,
    "Reshape": _reshape,
    "Transpose": lambda ctx, n, out: _mk("Transpose", ctx, n, ctx.inputs(n), out,
                                         perm=_ints(n.attrs["perm"])),
    "Pad": _pad,
    "Resize": _resize,
    "BatchNormalization": lambda ctx, n, out: _mk("BatchNormalization", ctx, n, ctx.inputs(n), out,
                                                  epsilon=float(n.attrs.get("epsilon", 1e-5))),
}


def write_activation(ctx: EmitContext, node: ir.Node, src: str, dst: str) -> list[onnx.NodeProto]:
    """The fused activation of ``node``: Relu, or Relu6 as Clip(0, 6)."""
    act = node.activation
    name = ctx.unique(f"{node.name}/{act.lower()}")
    if act == "Relu":
        return [helper.make_node("Relu", [src], [dst], name=name)]
    if act == "Relu6":
        return [helper.make_node("Clip", [src] + _clip_inputs(ctx, name, 0.0, 6.0), [dst], name=name)]
    raise ir.GraphError(f"node '{node.name}' has unknown fused activation '{act}'")


def write_node(ctx: EmitContext, node: ir.Node) -> list[onnx.NodeProto]:
    """One IR node (and its fused activation) as NodeProtos writing the node's output name."""
    writer = WRITERS.get(node.op)
    if writer is None:
        raise ir.GraphError(f"node '{node.name}': no ONNX writer for op '{node.op}'")
    out = node.outputs[0]
    if not node.activation:
        return writer(ctx, node, out)
    pre = ctx.unique(f"{out}/pre_activation")
    return writer(ctx, node, pre) + write_activation(ctx, node, pre, out)


def _value_info(t: ir.Tensor) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype))
    return helper.make_tensor_value_info(t.name, elem, list(t.shape))


def graph_constants(graph: ir.Graph) -> list[str]:
    """Names of the constant tensors the nodes read, sorted."""
    used = {i for n in graph.nodes for i in n.inputs if i} | set(graph.outputs)
    return sorted(k for k in used if graph.tensors[k].is_const)


def make_model(ctx: EmitContext, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """Wrap nodes and ``ctx.initializers`` into a checked model with the graph's inputs/outputs."""
    g = ctx.graph
    inits = [ctx.initializers[k] for k in sorted(ctx.initializers)]
    graph = helper.make_graph(nodes, g.name or "model", [_value_info(g.tensors[i]) for i in g.inputs],
                              [_value_info(g.tensors[o]) for o in g.outputs], initializer=inits)
    opsets = [helper.make_opsetid("", ctx.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model


def to_onnx(graph: ir.Graph, opset: int = 17) -> onnx.ModelProto:
    """Float ONNX model of ``graph`` (checked, deterministic). Never writes files."""
    if not OPSET_MIN <= int(opset) <= OPSET_MAX:
        raise ConfigError(f"ONNX opset {opset} is not supported", key="opset",
                          allowed=range(OPSET_MIN, OPSET_MAX + 1))
    ctx = EmitContext(graph, int(opset))
    for name in graph_constants(graph):
        data = graph.tensors[name].data
        if data.dtype == np.float64:  # the IR may hold float64 after a pass; the model is float32
            data = data.astype(np.float32)
        ctx.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(data), name)
    nodes = [p for n in graph.nodes for p in write_node(ctx, n)]
    return make_model(ctx, nodes)
