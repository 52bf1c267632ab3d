"""Per-node summary of a graph: output shape, parameters and multiply-accumulates (MACs)."""
from __future__ import annotations

import numpy as np

from .graph import Graph, Node


def _is_float_const(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name) if name else None
    return t is not None and t.is_const and t.dtype.startswith(("float", "bfloat"))


def node_params(graph: Graph, node: Node) -> int:
    """Elements of the constant float inputs of the node."""
    return sum(graph.tensors[i].size for i in node.inputs if _is_float_const(graph, i))


def node_macs(graph: Graph, node: Node) -> int:
    """Conv: N*Cout*Hout*Wout*(Cin/group)*kh*kw; ConvTranspose: N*Cin*Hin*Win*(Cout/group)*kh*kw;
    Gemm: N*in*out; MatMul: output elements * inner dim."""
    out_shape = graph.tensors[node.outputs[0]].shape
    if node.op == "Conv":
        w = graph.tensors[node.inputs[1]].shape  # (Cout, Cin/group, kh, kw) for any group
        return int(np.prod(out_shape, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if node.op == "ConvTranspose":  # every input element meets (Cout/group)*kh*kw weights
        w = graph.tensors[node.inputs[1]].shape  # (Cin, Cout/group, kh, kw)
        x = graph.tensors[node.inputs[0]].shape
        return int(np.prod(x, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if node.op == "Gemm":
        w_out, w_in = graph.tensors[node.inputs[1]].shape
        return int(out_shape[0]) * int(w_in) * int(w_out)
    if node.op == "MatMul":
        inner = graph.tensors[node.inputs[0]].shape[-1]
        return int(np.prod(out_shape, dtype=np.int64)) * int(inner)
    return 0


def summarize(graph: Graph) -> dict:
    """{"inputs", "outputs": {name: shape}, "nodes": [row per node], "totals": {params, macs, nodes,
    op_counts}}; a row is
    {name, op, output_shape, params, macs, activation}. Total params count each constant once."""
    rows = [{"name": n.name, "op": n.op, "output_shape": tuple(graph.tensors[n.outputs[0]].shape),
             "params": node_params(graph, n), "macs": node_macs(graph, n), "activation": n.activation}
            for n in graph.nodes]
    used = {i for n in graph.nodes for i in n.inputs if _is_float_const(graph, i)}
    totals = {"params": sum(graph.tensors[i].size for i in used), "macs": sum(r["macs"] for r in rows),
              "nodes": len(rows), "op_counts": graph.op_counts()}
    shapes = {k: {n: list(graph.tensors[n].shape) for n in names}
              for k, names in (("inputs", graph.inputs), ("outputs", graph.outputs))}
    return {**shapes, "nodes": rows, "totals": totals}
