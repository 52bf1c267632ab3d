"""Folded ONNX nodes -> ir.Graph, one op rule per ONNX op (rules live in onnx_ops.py, the Builder they
write with in onnx_builder.py), then the last clean-up: MatMul/Gemm followed by an Add of a constant vector becomes one
Gemm with a bias, and constants nobody reads are dropped.
"""
from __future__ import annotations

import logging

from onnx import helper

from .. import ir
from ..errors import ShapeError, UnsupportedOpError, UnsupportedOpsError
from ..ir.passes import PassResult, graph_pass, run_one
from .lift_1d import lift_1d
from .onnx_fold import DEFAULT_DOMAINS, FoldedModel
from .onnx_builder import Builder
from .onnx_ops import RULES
from .onnx_patterns import fuse_patterns

log = logging.getLogger(__name__)


def build_graph(folded: FoldedModel, inputs: list[str], outputs: list[str], opset: int,
                path: str | None) -> ir.Graph:

    b = Builder(folded, opset, path)
    g = b.graph
    onnx_nodes = fuse_patterns(list(folded.model.graph.node), folded.consts, outputs, folded.infos)
    b.used = {i for n in onnx_nodes for i in n.input} | set(outputs)
    for name in inputs:
        b._ensure_tensor(name)
    g.inputs = list(inputs)
    missing: dict[str, list[str]] = {}  # op -> nodes edgepack cannot take
    details: dict[str, str] = {}
    for i, node in enumerate(onnx_nodes):
        op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
        b.current = b.node_name(node.name or f"{node.op_type}_{i}")
        rule = RULES.get(op)
        if rule is None:
            missing.setdefault(op, []).append(b.current)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        try:
            rule(b, node, attrs)
        except UnsupportedOpError as exc:  # a table op in a form edgepack cannot take: keep looking
            missing.setdefault(exc.op, []).append(b.current)
            details[b.current] = str(exc)
        except ShapeError:  # a shape lost behind an op already missing: that op is the error to show
            if not missing:
                raise
    if missing:  # every op the model needs, in one error (not one per run)
        raise UnsupportedOpsError(missing, ir.OPS.keys(), details=details)
    b.current = ""
    for name in outputs:
        b._ensure_tensor(name)
    g.outputs = list(outputs)
    for normalisation in ONNX_NORMALIZATION:
        run_one(g, normalisation)
    return g


# ---- MatMul + Add -> Gemm with bias ----------------------------------------------------------
def _single_use(g: ir.Graph, tensor: str, consumer: ir.Node) -> bool:
    return tensor not in g.outputs and g.consumers(tensor) == [consumer]


@graph_pass
def fuse_bias_add(g: ir.Graph) -> PassResult:
    """Gemm(no bias) [-> Reshape] -> Add(constant vector of the Gemm's width) becomes Gemm(bias)."""
    changed = False
    for add in [n for n in g.nodes if n.op == "Add"]:
        consts = [i for i in add.inputs if g.tensors[i].is_const]
        if len(consts) != 1:
            continue
        c_name = consts[0]
        act = add.inputs[1] if add.inputs[0] == c_name else add.inputs[0]
        chain_end = g.producer(act)
        gemm = chain_end
        if gemm is not None and gemm.op == "Reshape" and _single_use(g, gemm.inputs[0], gemm):
            gemm = g.producer(gemm.inputs[0])
        if gemm is None or gemm.op != "Gemm" or len(gemm.inputs) != 2 or gemm.activation:
            continue
        if not _single_use(g, act, add) or g.tensors[add.outputs[0]].shape != g.tensors[act].shape:
            continue
        width = g.tensors[gemm.inputs[1]].shape[0]
        c = g.tensors[c_name].data
        if c.size != width or (c.ndim and c.shape[-1] != width) or g.tensors[act].shape[-1] != width:
            continue
        bias = c_name if c.shape == (width,) else g.add_const(f"{c_name}_vector", c.reshape(width))
        gemm.inputs.append(bias)
        g.nodes.remove(add)
        del g.tensors[act]
        chain_end.outputs = [add.outputs[0]]
        log.debug("folded Add '%s' into Gemm '%s' as its bias", add.name, gemm.name)
        changed = True
    return PassResult(g, changed)


@graph_pass
def remove_unused(g: ir.Graph) -> PassResult:
    """Drop tensors and nodes nothing reads (the rules leave some behind)."""
    before = (len(g.nodes), len(g.tensors))
    g.remove_unused()
    return PassResult(g, (len(g.nodes), len(g.tensors)) != before)


# What every ONNX-built graph goes through, in order (edgepack.pipeline lists it with the rest).
ONNX_NORMALIZATION = [fuse_bias_add, lift_1d, remove_unused]
