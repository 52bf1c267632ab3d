"""Run (and train) an ir.Graph in torch: calibration, fake quantization, fine-tuning, shape inference.

torch is an optional dependency, imported here only; ``edgepack.ir`` itself never imports this module.
Every op follows the normalised attributes documented at the top of ``ir/ops.py`` (NCHW, ONNX semantics).
"""
from __future__ import annotations

import logging
import re
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .graph import Graph, GraphError, Node
from .ops import OPS
from .fake_quant import fake_quant_activation, fake_quant_tflite  # noqa: F401  (public here too)
from .precision import PRECISION_ATTR, simulated_params
from .torch_ops_math import MATH_IMPLS

log = logging.getLogger(__name__)

Observer = Callable[[str, torch.Tensor], None]
_FLOAT = ("float16", "float32", "float64", "bfloat16")


# ---- op implementations: fn(node, inputs) -> tensor ---------------------------------------------------
def _pad4(x, pads, value=0.0):
    """Apply [top, left, bottom, right] padding; returns x unchanged when all zero."""
    t, l, b, r = (int(p) for p in pads)
    return x if not (t or l or b or r) else F.pad(x, (l, r, t, b), value=value)


def _conv(n: Node, xs):
    x, w = xs[0], xs[1]
    bias = xs[2] if len(xs) > 2 else None
    pads = list(n.attrs.get("pads", [0, 0, 0, 0]))
    if pads[0] == pads[2] and pads[1] == pads[3]:
        padding = (int(pads[0]), int(pads[1]))
    else:  # asymmetric ("SAME" with even kernels): torch can only pad symmetrically
        x, padding = _pad4(x, pads), (0, 0)
    return F.conv2d(x, w, bias, tuple(n.attrs.get("strides", (1, 1))), padding,
                    tuple(n.attrs.get("dilations", (1, 1))), int(n.attrs.get("group", 1)))


def _maxpool(n: Node, xs):
    k, s = tuple(n.attrs["kernel_shape"]), tuple(n.attrs.get("strides", (1, 1)))
    x = _pad4(xs[0], n.attrs.get("pads", [0, 0, 0, 0]), value=float("-inf"))
    return F.max_pool2d(x, k, s, 0, ceil_mode=bool(n.attrs.get("ceil_mode", 0)))


def _avgpool(n: Node, xs):
    x = xs[0]
    k, s = tuple(n.attrs["kernel_shape"]), tuple(n.attrs.get("strides", (1, 1)))
    pads, ceil = list(n.attrs.get("pads", [0, 0, 0, 0])), bool(n.attrs.get("ceil_mode", 0))
    if not any(pads):
        return F.avg_pool2d(x, k, s, 0, ceil_mode=ceil)
    # Sum over windows, then divide by the number of counted cells: exact for asymmetric pads and
    # ceil_mode (cells past the padded end never count, as in onnxruntime and torch).
    total = F.avg_pool2d(_pad4(x, pads), k, s, 0, ceil_mode=ceil, divisor_override=1)
    ones = x.new_ones((1, 1) + tuple(x.shape[2:]))
    mask = _pad4(ones, pads, value=1.0 if n.attrs.get("count_include_pad", 0) else 0.0)
    count = F.avg_pool2d(mask, k, s, 0, ceil_mode=ceil, divisor_override=1)
    return total / count


def _source_coords(mode: str, out_size: int, in_size: int) -> np.ndarray:
    """ONNX Resize: output pixel index -> input coordinate (float64)."""
    x = np.arange(out_size, dtype=np.float64)
    scale = out_size / in_size
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(x)
    if mode == "align_corners":
        return x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise GraphError(f"Resize coordinate_transformation_mode '{mode}' is not supported by torch_exec "
                     "(allowed: half_pixel, pytorch_half_pixel, align_corners, asymmetric, "
                     "tf_half_pixel_for_nn)")


_NEAREST = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
            "floor": np.floor, "ceil": np.ceil}


def _resize_axis(x, axis: int, out_size: int, n: Node):
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    cmode = n.attrs.get("coordinate_transformation_mode", "half_pixel")
    coords = _source_coords(cmode, out_size, in_size)
    mode = n.attrs.get("mode", "nearest")
    if mode == "nearest":
        nmode = n.attrs.get("nearest_mode", "round_prefer_floor")
        if nmode not in _NEAREST:
            raise GraphError(f"Resize nearest_mode '{nmode}' at node '{n.name}' is not supported "
                             f"(allowed: {', '.join(_NEAREST)})")
        idx = np.clip(_NEAREST[nmode](coords), 0, in_size - 1).astype(np.int64)
        return x.index_select(axis, torch.from_numpy(idx).to(x.device))
    if mode == "linear":  # separable linear interpolation with edge clamping, as ONNX does
        c = np.clip(coords, 0, in_size - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, in_size - 1)
        shape = [1] * x.dim()
        shape[axis] = out_size
        frac = torch.from_numpy((c - lo).astype(np.float32)).to(x.device).reshape(shape)
        a = x.index_select(axis, torch.from_numpy(lo).to(x.device))
        b = x.index_select(axis, torch.from_numpy(hi).to(x.device))
        return a + (b - a) * frac
    raise GraphError(f"Resize mode '{mode}' at node '{n.name}' is not supported (allowed: nearest, linear)")


def _resize(n: Node, xs):
    h, w = (int(v) for v in n.attrs["size"])
    return _resize_axis(_resize_axis(xs[0], 2, h, n), 3, w, n)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def _pad(n: Node, xs):
    x, pads = xs[0], [int(p) for p in n.attrs["pads"]]
    mode = n.attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise GraphError(f"Pad mode '{mode}' at node '{n.name}' is not supported (allowed: constant, reflect, edge)")
    rank = x.dim()
    begins, ends = pads[:rank], pads[rank:]
    padded = [d for d in range(rank) if begins[d] or ends[d]]
    first = padded[0] if padded else rank
    torch_pads: list[int] = []
    for d in reversed(range(first, rank)):  # torch lists the last dimension first
        torch_pads += [begins[d], ends[d]]
    if not torch_pads:
        return x
    if mode == "constant":
        return F.pad(x, tuple(torch_pads), mode="constant", value=float(n.attrs.get("value", 0.0)))
    if rank - first > 3 or first == 0:
        raise GraphError(f"Pad mode '{mode}' at node '{n.name}' can pad at most the last 3 dimensions "
                         "and not the batch dimension")
    return F.pad(x, tuple(torch_pads), mode=_PAD_MODES[mode])


def _reshape(n: Node, xs):
    x, shape = xs[0], [int(d) for d in n.attrs["shape"]]
    size = int(np.prod(shape))
    if size != x.numel() and shape:  # static shapes carry the export batch: follow the batch actually run
        same_rows = int(np.prod(shape[1:])) * x.shape[0] == x.numel()  # else the batch is folded into rows
        shape[0] = x.shape[0] if same_rows else shape[0] * (x.numel() // max(size, 1))  # ((N*T, D): 3-D Linear)
    return x.reshape(shape)


def _reduce_mean(n: Node, xs):
    axes = n.attrs.get("axes")
    dims = tuple(int(a) for a in axes) if axes is not None else tuple(range(xs[0].dim()))
    return xs[0].mean(dim=dims, keepdim=bool(n.attrs.get("keepdims", 1)))


def _clip(n: Node, xs):
    lo, hi = n.attrs.get("min"), n.attrs.get("max")
    lo = None if lo is None or np.isneginf(lo) else float(lo)
    hi = None if hi is None or np.isposinf(hi) else float(hi)
    return xs[0] if lo is None and hi is None else torch.clamp(xs[0], lo, hi)


def _batchnorm(n: Node, xs):
    x, gamma, beta, mean, var = xs
    return F.batch_norm(x, mean, var, gamma, beta, training=False, eps=float(n.attrs.get("epsilon", 1e-5)))


def _concat(n, xs):
    """A batch-1 constant (ViT's class token) joins a batch of samples: it is the same for each sample."""
    axis = int(n.attrs.get("axis", 1))
    batch = max(x.shape[0] for x in xs)
    if axis % xs[0].dim() != 0 and batch > 1:
        xs = [x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 else x for x in xs]
    return torch.cat(list(xs), dim=axis)


OP_IMPLS: dict[str, Callable] = {
    "Conv": _conv,
    "Gemm": lambda n, xs: F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None),
    "MatMul": lambda n, xs: torch.matmul(xs[0], xs[1]),
    "Add": lambda n, xs: xs[0] + xs[1],
    "Sub": lambda n, xs: xs[0] - xs[1],
    "Mul": lambda n, xs: xs[0] * xs[1],
    "Div": lambda n, xs: xs[0] / xs[1],
    "Concat": _concat,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": lambda n, xs: xs[0].mean(dim=tuple(range(2, xs[0].dim())), keepdim=True),
    "ReduceMean": _reduce_mean,
    "Relu": lambda n, xs: F.relu(xs[0]),
    "Clip": _clip,
    "PRelu": lambda n, xs: torch.where(xs[0] >= 0, xs[0], xs[0] * xs[1]),
    "LeakyRelu": lambda n, xs: F.leaky_relu(xs[0], float(n.attrs.get("alpha", 0.01))),
    "Sigmoid": lambda n, xs: torch.sigmoid(xs[0]),
    "Tanh": lambda n, xs: torch.tanh(xs[0]),
    "HardSigmoid": lambda n, xs: torch.clamp(float(n.attrs.get("alpha", 0.2)) * xs[0]
                                             + float(n.attrs.get("beta", 0.5)), 0.0, 1.0),
    "HardSwish": lambda n, xs: F.hardswish(xs[0]),
    "Softmax": lambda n, xs: torch.softmax(xs[0], dim=int(n.attrs.get("axis", -1))),
    "Reshape": _reshape,
    "Transpose": lambda n, xs: xs[0].permute(*[int(p) for p in n.attrs["perm"]]),
    "Pad": _pad,
    "Resize": _resize,
    "Identity": lambda n, xs: xs[0],
    "Dropout": lambda n, xs: xs[0],
    "BatchNormalization": _batchnorm,
    **MATH_IMPLS,  # transposed conv, layer norm, GELU, math, slices: torch_ops_math.py
}

_ACTIVATIONS = {None: None, "Relu": F.relu, "Relu6": lambda x: torch.clamp(x, 0.0, 6.0)}


# ---- the module ----------------------------------------------------------------------------------------
def _safe_attr(name: str, taken: set[str]) -> str:
    base = "t_" + re.sub(r"\W", "_", name)
    attr, i = base, 1
    while attr in taken:
        attr, i = f"{base}_{i}", i + 1
    taken.add(attr)
    return attr


class GraphModule(torch.nn.Module):
    """An ir.Graph as an nn.Module. Float constants in weight positions are nn.Parameters (trainable);
    other constants are buffers. ``tensor_of[attr]`` / ``attr_of[tensor]`` map module attribute names
    to graph tensor names. ``forward`` returns one tensor for a one-output graph, else a tuple."""

    def __init__(self, graph: Graph, fake_quant: bool = False):
        super().__init__()
        missing = sorted({n.op for n in graph.nodes} - set(OP_IMPLS))
        if missing:
            raise GraphError(f"torch_exec cannot run ops {missing}")
        self.nodes = [Node(n.name, n.op, list(n.inputs), list(n.outputs), dict(n.attrs)) for n in graph.nodes]
        self.input_names, self.output_names = list(graph.inputs), list(graph.outputs)
        self.input_dtypes = [graph.tensors[i].dtype for i in graph.inputs]
        self.fake_quant = fake_quant
        self.observer: Observer | None = None
        weight_names = {n.inputs[p] for n in graph.nodes for p in OPS[n.op].weights
                        if p < len(n.inputs) and n.inputs[p]}
        self.attr_of: dict[str, str] = {}
        self.tensor_of: dict[str, str] = {}
        taken: set[str] = set()
        used = {i for n in graph.nodes for i in n.inputs if i} | set(graph.outputs)
        for name in sorted(used):
            t = graph.tensors.get(name)
            if t is None or not t.is_const:
                continue
            attr = _safe_attr(name, taken)
            value = torch.from_numpy(np.array(t.data, copy=True))
            if t.dtype in _FLOAT:
                value = value.float()
            if name in weight_names and t.dtype in _FLOAT:
                self.register_parameter(attr, torch.nn.Parameter(value))
            else:
                self.register_buffer(attr, value)
            self.attr_of[name], self.tensor_of[attr] = attr, name
        self.refresh_quant(graph)
        self._last_use = self._liveness()
        log.debug("graph '%s' in torch: %d nodes, %d parameters, %d buffers", graph.name, len(self.nodes),
                  len(self._parameters), len(self._buffers))

    def refresh_quant(self, graph: Graph) -> None:
        """Re-read Tensor.quant from the graph (after calibration set it)."""
        self.quant = {k: t.quant for k, t in graph.tensors.items() if t.quant is not None}
        self.quant_stored, self.quant_read = simulated_params(graph)  # int16 / float layers (ir/precision.py)

    def _liveness(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for idx, n in enumerate(self.nodes):
            for i in n.inputs:
                last[i] = idx
        return last

    def tensor_name(self, param_name: str) -> str:
        """Graph tensor name of a name from ``named_parameters()`` / ``named_buffers()``."""
        return self.tensor_of[param_name.rsplit(".", 1)[-1]]

    def _const(self, name: str, raw: bool = False) -> torch.Tensor:
        value = getattr(self, self.attr_of[name])
        qp = self.quant.get(name) if self.fake_quant and not raw else None
        return fake_quant_tflite(value, qp) if qp is not None and value.is_floating_point() else value

    def _produced(self, name: str, value: torch.Tensor, env: dict, observe: Observer | None) -> None:
        qp = None
        if self.fake_quant:
            qp = self.quant_stored[name] if name in self.quant_stored else self.quant.get(name)
        if qp is not None and value.is_floating_point():
            value = fake_quant_activation(value, qp)
        env[name] = value
        if observe is not None:
            observe(name, value)

    def node_value(self, n: Node, values: Mapping[str, torch.Tensor], activation: bool = True) -> torch.Tensor:
        """One node's output from its input activations ``values`` (constants from the module, fake-quantized
        when ``fake_quant``), before the output's own quantization; ``activation`` False: before its fused
        activation too (see ``apply_activation``). Lets calibration score one op at a time."""
        in_float = n.attrs.get(PRECISION_ATTR) == "float"  # a float layer reads float weights
        xs = [values[i] if i in values else self._const(i, raw=in_float) for i in n.inputs if i]
        if self.fake_quant and self.quant_read:  # read at this node's precision (a QUANTIZE in the file)
            reads = [self.quant_read.get((n.name, i)) for i in n.inputs if i]
            xs = [x if qp is None else fake_quant_activation(x, qp) for x, qp in zip(xs, reads)]
        y = OP_IMPLS[n.op](n, xs)
        return apply_activation(n, y) if activation else y

    def run_dict(self, inputs: Sequence | Mapping, keep: str | Iterable[str] | None = None,
                 observe: Observer | None = None) -> dict[str, torch.Tensor]:
        """Run the graph; return the outputs (plus every activation if keep="all", or the named ones)."""
        observe = observe if observe is not None else self.observer
        keep_all = keep == "all"
        wanted = set(self.output_names) | (set() if keep is None or keep_all else {keep} if isinstance(keep, str)
                                           else set(keep))
        env: dict[str, torch.Tensor] = {}
        kept: dict[str, torch.Tensor] = {}
        for name, value, dtype in zip(self.input_names, self._ordered_inputs(inputs), self.input_dtypes):
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(np.asarray(value))
            self._produced(name, value.float() if dtype in _FLOAT else value, env, observe)
        for idx, n in enumerate(self.nodes):
            self._run_node(n, env, observe)
            for i in set(n.inputs):  # free activations nobody reads any more
                if self._last_use.get(i) == idx and i in env:
                    if keep_all or i in wanted:
                        kept[i] = env[i]
                    del env[i]
        kept.update({k: v for k, v in env.items() if keep_all or k in wanted})
        missing = sorted(wanted - set(kept))
        if missing:
            raise GraphError(f"cannot keep {missing}: not activation tensors of the graph")
        return kept

    def _ordered_inputs(self, inputs: Sequence | Mapping) -> list:
        if not isinstance(inputs, Mapping) and len(inputs) == 1 and isinstance(getattr(inputs[0], "arrays", None), Mapping):
            inputs = inputs[0].arrays  # [an InputBatch]: the samples of every input, by name
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(self.input_names))
            absent = [k for k in self.input_names if k not in inputs]
            if unknown or absent:
                raise GraphError(f"inputs {unknown or absent} do not match the graph inputs {self.input_names}")
            inputs = [inputs[k] for k in self.input_names]
        if len(inputs) != len(self.input_names):
            raise GraphError(f"graph takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        return list(inputs)

    def _run_node(self, n, env: dict, observe) -> None:
        y = self.node_value(n, env)
        self._produced(n.outputs[0], y, env, observe)
        for extra in n.outputs[1:]:  # e.g. Dropout's mask: all-true at inference
            if extra:
                self._produced(extra, torch.ones_like(y, dtype=torch.bool), env, None)

    def forward(self, *inputs, observe: Observer | None = None):
        out = self.run_dict(list(inputs), observe=observe)
        values = tuple(out[o] for o in self.output_names)
        return values[0] if len(values) == 1 else values


def apply_activation(n: Node, y: torch.Tensor) -> torch.Tensor:
    """The node's fused activation (Relu/Relu6) applied to its raw output ``y``."""
    act = _ACTIVATIONS.get(n.attrs.get("activation"))
    return act(y) if act is not None else y


def to_module(graph: Graph, fake_quant: bool = False) -> GraphModule:
    return GraphModule(graph, fake_quant=fake_quant)


def write_back(module: GraphModule, graph: Graph) -> None:
    """Copy the module's (possibly trained) parameters into the graph's constant tensors."""
    for attr, param in module.named_parameters(recurse=False):
        t = graph.tensor(module.tensor_of[attr])
        data = param.detach().cpu().numpy().astype(t.dtype)
        t.data, t.shape = data, tuple(data.shape)


def run(graph: Graph, inputs: Sequence | Mapping, keep: str | Iterable[str] | None = None,
        fake_quant: bool = False, observe: Observer | None = None) -> dict[str, np.ndarray]:
    """Run the graph on numpy inputs (list in graph-input order, or name -> array); numpy out."""
    module = to_module(graph, fake_quant=fake_quant).eval()
    with torch.no_grad():
        out = module.run_dict(inputs, keep=keep, observe=observe)
    return {k: v.cpu().numpy() for k, v in out.items()}


def infer_shapes(graph: Graph) -> Graph:
    """Run the graph on zeros and write the actual shape of every activation tensor (in place)."""
    zeros = [np.zeros(graph.tensors[i].shape, dtype=graph.tensors[i].dtype) for i in graph.inputs]
    for name, value in run(graph, zeros, keep="all").items():
        t = graph.tensors.get(name)
        if t is not None and not t.is_const:
            t.shape = tuple(int(d) for d in value.shape)
    return graph
