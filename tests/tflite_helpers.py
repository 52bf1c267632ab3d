"""Helpers for the TFLite emitter tests: build IR graphs by hand, run an independent float
reference (torch.nn.functional), calibrate min/max QuantParams, and run .tflite bytes on
LiteRT (reference kernels or XNNPACK) and TFLite Micro."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgepack.ir import OPS, Graph, Node, Tensor, verify
from edgepack.ir.quant import QuantParams, params_from_range


# ---- building graphs ---------------------------------------------------------------------
class GraphBuilder:
    """``gb.node(op, inputs, **attrs)`` appends a node; output shapes come from the reference."""

    def __init__(self, name: str = "test", seed: int = 0):
        self.g = Graph(name)
        self.rng = np.random.default_rng(seed)

    def input(self, name: str, shape) -> str:
        self.g.add_tensor(Tensor(name, tuple(shape)))
        self.g.inputs.append(name)
        return name

    def const(self, name: str, data) -> str:
        data = np.asarray(data, np.float32)
        self.g.add_tensor(Tensor(name, tuple(data.shape), "float32", data))
        return name

    def weight(self, name: str, *shape, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        return self.const(name, self.rng.standard_normal(shape).astype(np.float32) * s)

    def node(self, op: str, inputs, out: str | None = None, **attrs) -> str:
        out = out or f"{op.lower()}_{len(self.g.nodes)}"
        node = Node(f"n{len(self.g.nodes)}_{op}", op, list(inputs), [out], attrs)
        feeds = {i: self._value(i) for i in node.inputs if i}
        y = run_node(node, feeds)
        self.g.add_tensor(Tensor(out, tuple(y.shape)))
        self.g.nodes.append(node)
        return out

    def conv(self, x: str, cout: int, k: int = 3, stride: int = 1, pads=None, group: int = 1,
             activation=None, bias: bool = True) -> str:
        cin = self.g.tensors[x].shape[1]
        i = len(self.g.nodes)
        ins = [x, self.weight(f"w{i}", cout, cin // group, k, k)]
        if bias:
            ins.append(self.const(f"b{i}", self.rng.standard_normal(cout).astype(np.float32) * 0.1))
        p = k // 2
        return self.node("Conv", ins, strides=[stride, stride], pads=list(pads or [p, p, p, p]),
                         dilations=[1, 1], group=group, activation=activation)

    def gemm(self, x: str, n_out: int, activation=None) -> str:
        n_in = self.g.tensors[x].shape[1]
        i = len(self.g.nodes)
        return self.node("Gemm", [x, self.weight(f"w{i}", n_out, n_in),
                                  self.const(f"b{i}", self.rng.standard_normal(n_out) * 0.1)],
                         activation=activation)

    def _value(self, name: str) -> np.ndarray:
        t = self.g.tensors[name]
        return t.data if t.is_const else np.zeros(t.shape, np.float32)

    def build(self, *outputs: str) -> Graph:
        self.g.outputs = list(outputs) or [self.g.nodes[-1].outputs[0]]
        verify(self.g)
        return self.g


# ---- float reference ---------------------------------------------------------------------
def _act(y, node):
    a = node.attrs.get("activation")
    return torch.relu(y) if a == "Relu" else torch.clamp(y, 0, 6) if a == "Relu6" else y


def run_node(node: Node, feeds: dict) -> np.ndarray:
    t = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in feeds.items()}
    ins = [t[i] for i in node.inputs if i]
    x, a, op = ins[0], node.attrs, node.op
    if op == "Conv":
        pt, pl, pb, pr = a["pads"]
        y = F.conv2d(F.pad(x, (pl, pr, pt, pb)), ins[1], ins[2] if len(ins) > 2 else None,
                     stride=a["strides"], dilation=a["dilations"], groups=a["group"])
        y = _act(y, node)
    elif op == "Gemm":
        y = _act(x @ ins[1].T + (ins[2] if len(ins) > 2 else 0), node)
    elif op == "MatMul":
        y = ins[0] @ ins[1]
    elif op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op]
        y = _act(f(ins[0], ins[1]), node)
    elif op == "Concat":
        y = torch.cat(ins, dim=a["axis"])
    elif op in ("MaxPool", "AveragePool"):
        pt, pl, pb, pr = a.get("pads", (0, 0, 0, 0))
        if op == "MaxPool":
            y = F.max_pool2d(F.pad(x, (pl, pr, pt, pb), value=-np.inf), a["kernel_shape"], a["strides"],
                             ceil_mode=bool(a.get("ceil_mode", 0)))
        elif a.get("count_include_pad", 0) or not any((pt, pl, pb, pr)):
            y = F.avg_pool2d(F.pad(x, (pl, pr, pt, pb)), a["kernel_shape"], a["strides"])
        else:
            y = F.avg_pool2d(x, a["kernel_shape"], a["strides"], padding=(pt, pl), count_include_pad=False)
    elif op == "GlobalAveragePool":
        y = x.mean(dim=(2, 3), keepdim=True)
    elif op == "ReduceMean":
        y = x.mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
    elif op == "Relu":
        y = torch.relu(x)
    elif op == "Clip":
        y = torch.clamp(x, a.get("min"), a.get("max"))
    elif op == "LeakyRelu":
        y = F.leaky_relu(x, a.get("alpha", 0.01))
    elif op == "Sigmoid":
        y = torch.sigmoid(x)
    elif op == "Tanh":
        y = torch.tanh(x)
    elif op == "HardSigmoid":
        y = torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1)
    elif op == "HardSwish":
        y = x * torch.clamp(x / 6 + 0.5, 0, 1)
    elif op == "Softmax":
        y = torch.softmax(x, dim=a.get("axis", -1))
    elif op == "Reshape":
        y = x.reshape(tuple(a["shape"]))
    elif op == "Transpose":
        y = x.permute(*a["perm"])
    elif op == "Pad":
        p, r = a["pads"], x.ndim
        torch_pads = [v for d in reversed(range(r)) for v in (p[d], p[d + r])]
        mode = a.get("mode", "constant")
        y = F.pad(x, torch_pads, value=a.get("value", 0.0)) if mode == "constant" else \
            F.pad(x, torch_pads[:4], mode=mode)  # torch reflects the last two dims only
    elif op == "Resize":
        cotm = a.get("coordinate_transformation_mode", "half_pixel")
        if a["mode"] == "nearest":
            y = F.interpolate(x, size=tuple(a["size"]),
                              mode="nearest" if cotm == "asymmetric" else "nearest-exact")
        else:
            y = F.interpolate(x, size=tuple(a["size"]), mode="bilinear",
                              align_corners=cotm == "align_corners")
    else:
        raise NotImplementedError(op)
    return y.numpy()


def run_reference(graph: Graph, feeds: dict) -> dict[str, np.ndarray]:
    """Every tensor of the graph (IR layout, float32) for one set of inputs."""
    values = {k: t.data for k, t in graph.tensors.items() if t.is_const}
    values.update({k: np.asarray(v, np.float32) for k, v in feeds.items()})
    for n in graph.nodes:
        values[n.outputs[0]] = run_node(n, {i: values[i] for i in n.inputs if i})
    return values


# ---- calibration (min/max, with TFLite's shared/fixed rules) -------------------------------
def calibrate(graph: Graph, samples: list[dict], run=None) -> None:
    """Min/max QuantParams on every activation; ``run(graph, feeds) -> {name: array}``."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for feeds in samples:
        for k, v in (run or run_reference)(graph, feeds).items():
            if graph.tensors[k].is_const:
                continue
            lo[k] = min(lo.get(k, np.inf), float(v.min()))
            hi[k] = max(hi.get(k, -np.inf), float(v.max()))
    parent = {k: k for k in lo}

    def find(k):
        while parent[k] != k:
            k = parent[k]
        return k

    for n in graph.nodes:
        if OPS[n.op].quant == "same_as_input":
            for i in n.inputs:
                if i in parent:
                    parent[find(i)] = find(n.outputs[0])
    groups: dict[str, list[str]] = {}
    for k in lo:
        groups.setdefault(find(k), []).append(k)
    for members in groups.values():
        qp = params_from_range(min(lo[m] for m in members), max(hi[m] for m in members))
        for m in members:
            graph.tensors[m].quant = qp
    for n in graph.nodes:
        if OPS[n.op].quant == "fixed":
            graph.tensors[n.outputs[0]].quant = QuantParams.per_tensor(*OPS[n.op].fixed)


# ---- runtimes --------------------------------------------------------------------------
def litert(model: bytes, kind: str = "ref", preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    resolver = {"ref": OpResolverType.BUILTIN_REF, "xnnpack": OpResolverType.AUTO}[kind]
    it = Interpreter(model_content=model, experimental_op_resolver_type=resolver,
                     experimental_preserve_all_tensors=preserve, num_threads=1)
    it.allocate_tensors()
    return it


def run_litert(model: bytes, inputs: list[np.ndarray], kind: str = "ref") -> list[np.ndarray]:
    it = litert(model, kind)
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def tflm(model: bytes):
    from tflite_micro.python.tflite_micro import runtime
    return runtime.Interpreter.from_bytes(model, arena_size=max(len(model) * 10, 4 << 20))


def run_tflm(interp, inputs: list[np.ndarray], n_outputs: int = 1) -> list[np.ndarray]:
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return [np.array(interp.get_output(i)) for i in range(n_outputs)]


def op_names(model: bytes) -> list[str]:
    """Builtin operator names of the file, in order."""
    from ai_edge_litert import schema_py_generated as tfl
    m = tfl.ModelT.InitFromPackedBuf(model, 0)
    names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    return [names[codes[op.opcodeIndex]] for op in m.subgraphs[0].operators]


def single_node_graph(g: Graph, node: Node) -> Graph:
    """A graph of one node of ``g`` (same tensors, same QuantParams), its activations as I/O."""
    sub = Graph(f"{g.name}_{node.name}")
    for name in node.inputs + node.outputs:
        if name:
            sub.tensors[name] = g.tensors[name]
    sub.nodes = [node]
    sub.inputs = list(dict.fromkeys(i for i in node.inputs if i and not g.tensors[i].is_const))
    sub.outputs = list(node.outputs)
    return sub


def stored_values(model: bytes, plan, g: Graph, feeds: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every activation the LiteRT reference run of ``model`` kept under its IR name, IR layout."""
    it = litert(model, "ref", preserve=True)
    for d, x in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], x)
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        t = g.tensors.get(d["name"])
        if t is not None and not t.is_const and tuple(d["shape"]) == tuple(
                t.shape[p] for p in plan.perms[d["name"]]):
            out[d["name"]] = plan.from_stored(d["name"], it.get_tensor(d["index"]))
    return out
