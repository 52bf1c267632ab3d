"""int8 ONNX: the float ONNX of the same graph with QuantizeLinear/DequantizeLinear inserted from the
very QuantParams that go into the .tflite file.

- weights and biases: stored as int8 / int32 initializers followed by DequantizeLinear (per-axis for
  per-channel params), so the file is about 4x smaller than float;
- activations: a QuantizeLinear/DequantizeLinear pair after the producer. The producer's output is
  renamed ``<name>/float`` and the DequantizeLinear writes ``<name>``, so consumers and graph outputs
  keep reading the tensor names the user knows.
- ``activations="uint8"`` stores activations as uint8 with zero-point + 128 and the same scale: the same
  real values as TFLite's int8 tensor, but onnxruntime's x86 kernels are much faster with U8S8.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir import Graph, QuantParams
from ..ir.precision import mixed, node_precision, stored_precision, tensor_params
from ..ir.quant import check_bias_fits, quantize_array
from .emit_onnx import to_onnx

QDQ_MIN_OPSET = 13  # per-axis DequantizeLinear
INT16_DOMAIN = "com.microsoft"  # onnxruntime's Q/DQ take int16 there (ai.onnx only from opset 21)


def _params(name: str, qp: QuantParams, shift_uint8: bool):
    """(scale initializer, zero-point initializer) for a QuantParams."""
    scale = np.asarray(qp.scale, np.float32)
    zp = np.asarray(qp.zero_point, np.int64)
    if qp.dtype in ("int32", "int16"):
        zp_arr = zp.astype(qp.dtype)
    elif shift_uint8:
        zp_arr = (zp + 128).astype(np.uint8)
    else:
        zp_arr = zp.astype(np.int8)
    if qp.axis is None:
        scale, zp_arr = scale.reshape(()), zp_arr.reshape(())
    return (numpy_helper.from_array(scale, f"{name}/scale"),
            numpy_helper.from_array(zp_arr, f"{name}/zero_point"))


def to_onnx_qdq(graph: Graph, opset: int = 17, activations: str = "uint8") -> onnx.ModelProto:
    """QDQ model of a graph whose tensors carry QuantParams (see calibration.quantize)."""
    if activations not in ("int8", "uint8"):
        raise ValueError("activations must be 'int8' or 'uint8'")
    model = to_onnx(graph, opset=max(opset, QDQ_MIN_OPSET))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, new_inits = [], []

    # Constants: integer initializer + DequantizeLinear writing the original name.
    for name, tensor in sorted(graph.tensors.items()):
        if not tensor.is_const or tensor.quant is None or name not in inits:
            continue
        qp = tensor.quant
        if qp.dtype == "int32":
            check_bias_fits(name, tensor.data, qp)
        q = quantize_array(tensor.data, qp)
        g.initializer.remove(inits[name])
        s, z = _params(name, qp, shift_uint8=False)
        new_inits += [numpy_helper.from_array(q, f"{name}/quantized"), s, z]
        axis = {"axis": qp.axis} if qp.axis is not None else {}
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}/quantized", s.name, z.name],
                                          [name], name=f"{name}/dequantize", **axis))

    # Activations: rename the producer's output, then Q -> DQ back to the original name.
    producers = {o: n for n in g.node for o in n.output}
    graph_inputs = {i.name for i in g.input}
    for name in graph.activations():
        qp = graph.tensors[name].quant
        stored = stored_precision(graph, name)
        if qp is None or stored == "float":  # a float layer's output stays float
            continue
        qp = tensor_params(graph, name, stored)
        shift = activations == "uint8" and qp.dtype == "int8"
        s, z = _params(name, qp, shift_uint8=shift)
        new_inits += [s, z]
        if name in graph_inputs:
            src, dst = name, f"{name}/dequantized"
            for n in g.node:
                for k, i in enumerate(n.input):
                    if i == name:
                        n.input[k] = dst
        else:
            src, dst = f"{name}/float", name
            prod = producers[name]
            prod.output[list(prod.output).index(name)] = src
        new_nodes += _qdq(src, dst, name, s.name, z.name, qp)

    if mixed(graph):
        _precision_boundaries(graph, g, new_inits, new_nodes, activations == "uint8")
        model.opset_import.append(helper.make_opsetid(INT16_DOMAIN, 1))
    g.initializer.extend(new_inits)
    nodes = list(g.node) + new_nodes
    del g.node[:]
    g.node.extend(_toposort(nodes, graph_inputs | {t.name for t in g.initializer}))
    onnx.checker.check_model(model)
    return model


def _qdq(src: str, dst: str, name: str, scale: str, zero_point: str, qp: QuantParams) -> list:
    """QuantizeLinear -> DequantizeLinear from ``src`` to ``dst`` (int16 ones in onnxruntime's domain)."""
    domain = {"domain": INT16_DOMAIN} if qp.dtype == "int16" else {}
    return [helper.make_node("QuantizeLinear", [src, scale, zero_point], [f"{name}/quantized"],
                             name=f"{name}/quantize", **domain),
            helper.make_node("DequantizeLinear", [f"{name}/quantized", scale, zero_point], [dst],
                             name=f"{name}/dequantize", **domain)]


def _precision_boundaries(graph: Graph, g, new_inits: list, new_nodes: list, shift_uint8: bool) -> None:
    """Per-layer precision (ir/precision.py): a node reading a tensor stored at another precision reads it
    through a Q/DQ pair at its own (as the .tflite's QUANTIZE at the boundary); float nodes read the
    dequantized value as it is; a model output of an int16 / float layer is int8 at the edge. Appends to
    ``new_inits`` and ``new_nodes``."""
    made = set()
    for node in graph.nodes:
        want = node_precision(node)
        if want == "float":
            continue
        for i in dict.fromkeys(node.inputs):
            if not i or graph.tensors[i].is_const or stored_precision(graph, i) == want:
                continue
            copy = f"{i}/{want}"
            if copy not in made:
                made.add(copy)
                qp = tensor_params(graph, i, want)
                s, z = _params(copy, qp, shift_uint8=shift_uint8 and qp.dtype == "int8")
                new_inits += [s, z]
                new_nodes += _qdq(i, copy, copy, s.name, z.name, qp)
            for n in g.node:  # the ONNX nodes written for this IR node
                if n.name == node.name or n.name.startswith(f"{node.name}/"):
                    n.input[:] = [copy if x == i else x for x in n.input]
    for o in graph.outputs:  # int8 at the model's edge, as the .tflite's output
        have = stored_precision(graph, o)
        if have == "int8" or graph.tensors[o].quant is None:
            continue
        inner = f"{o}/{have}"
        for n in list(g.node) + new_nodes:
            n.input[:] = [inner if x == o else x for x in n.input]
            n.output[:] = [inner if x == o else x for x in n.output]
        s, z = _params(f"{o}/output", graph.tensors[o].quant, shift_uint8=shift_uint8)
        new_inits += [s, z]
        new_nodes += _qdq(inner, o, f"{o}/output", s.name, z.name, graph.tensors[o].quant)


def _toposort(nodes, available: set[str]):
    ready, ordered, pending = set(available) | {""}, [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"QDQ graph has an unresolved input at node {rest[0].name}")
        pending = rest
    return ordered

