"""Shape inference and constant folding on an ONNX ModelProto.

Constant nodes, Shape/Size of statically shaped tensors, and any node whose inputs are all constant
are evaluated (onnx's reference evaluator) and replaced by constants. This is what removes the
Shape -> Gather -> Concat -> Reshape subgraphs exporters write. Inference and folding alternate
until nothing changes, so every tensor left ends up with a static shape.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

log = logging.getLogger(__name__)

MAX_ROUNDS = 8
DEFAULT_DOMAINS = ("", "ai.onnx")
# Folding these would freeze one random draw into the model.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                    "Multinomial", "Bernoulli"}


@dataclass
class TensorInfo:
    shape: tuple[int, ...] | None  # None when any dim (or the rank) is unknown
    elem_type: int  # onnx.TensorProto data type, 0 when unknown


@dataclass
class FoldedModel:
    model: onnx.ModelProto  # nodes left after folding (initializers not kept up to date)
    consts: dict[str, np.ndarray]  # every constant: initializers plus folded values
    infos: dict[str, TensorInfo]  # inferred shape and type of every activation


def fold_constants(model: onnx.ModelProto) -> FoldedModel:
    """Alternate shape inference and folding until the graph stops changing."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    opsets = {o.domain: o.version for o in model.opset_import}
    for _ in range(MAX_ROUNDS):
        model = _infer(model)
        infos = tensor_infos(model)
        nodes, changed = _fold_once(list(model.graph.node), consts, infos, opsets)
        if not changed:
            return FoldedModel(model, consts, infos)
        model = _rebuild(model, nodes, consts)
    model = _infer(model)
    return FoldedModel(model, consts, tensor_infos(model))


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False,
                                                 data_prop=True)
    except Exception as exc:  # inference is best effort; missing shapes are reported later
        log.debug("shape inference failed: %s", exc)
        return model


def tensor_infos(model: onnx.ModelProto) -> dict[str, TensorInfo]:
    infos: dict[str, TensorInfo] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            shape = None if None in dims else tuple(int(d) for d in dims)
        old = infos.get(vi.name)
        if old is None or (old.shape is None and shape is not None):
            infos[vi.name] = TensorInfo(shape, tt.elem_type or (old.elem_type if old else 0))
    return infos


def _foldable(node: onnx.NodeProto, consts: dict) -> bool:
    if node.domain not in DEFAULT_DOMAINS or node.op_type in NONDETERMINISTIC:
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False
    present = [i for i in node.input if i]
    return bool(present) and all(i in consts for i in present)


def _fold_once(nodes, consts, infos, opsets) -> tuple[list[onnx.NodeProto], bool]:
    kept, changed = [], False
    for node in nodes:
        values = None
        if node.domain in DEFAULT_DOMAINS and node.op_type == "Constant":
            values = _evaluate(node, consts, opsets)
        elif node.domain in DEFAULT_DOMAINS and node.op_type in ("Shape", "Size"):
            values = _static_shape_of(node, consts, infos)
        elif _foldable(node, consts):
            values = _evaluate(node, consts, opsets)
        if values is None:
            kept.append(node)
            continue
        for name, value in zip(node.output, values):
            if name:
                consts[name] = value
        changed = True
    return kept, changed


def _static_shape_of(node, consts, infos) -> list[np.ndarray] | None:
    src = node.input[0]
    shape = consts[src].shape if src in consts else getattr(infos.get(src), "shape", None)
    if shape is None:
        return None
    if node.op_type == "Size":
        return [np.array(int(np.prod(shape)), dtype=np.int64)]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [np.array(shape[start:end], dtype=np.int64)]  # python slicing clamps as ONNX does


def _evaluate(node, consts, opsets) -> list[np.ndarray] | None:
    try:
        feeds = {i: consts[i] for i in node.input if i}
        outs = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
    except Exception as exc:  # leave the node in place; it is reported later if unsupported
        log.debug("could not fold node '%s' (%s): %s", node.name, node.op_type, exc)
        return None
    return [np.asarray(o) for o in outs]


def _rebuild(model: onnx.ModelProto, nodes, consts) -> onnx.ModelProto:
    """Same model with the given nodes; initializers are the constants still read by a node."""
    needed = {i for n in nodes for i in n.input if i in consts}
    needed |= {o.name for o in model.graph.output if o.name in consts}
    have = {t.name for t in model.graph.initializer}
    inits = [t for t in model.graph.initializer if t.name in needed]
    inits += [numpy_helper.from_array(consts[n], n) for n in sorted(needed - have)]
    new = onnx.ModelProto()
    new.CopyFrom(model)
    g = new.graph
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]  # stale after folding; inference rebuilds it
    return new
