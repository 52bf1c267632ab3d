"""Test helper: build an ir.Graph from a compact spec (shapes of activations are inferred by torch)."""
from __future__ import annotations

import numpy as np

from edgepack.ir import Graph, Node, Tensor, verify
from edgepack.ir.torch_exec import infer_shapes


def make_graph(inputs: dict, nodes: list, consts: dict | None = None, outputs: list | None = None) -> Graph:
    """inputs: name -> shape; nodes: (op, [inputs], output or [outputs], attrs[, node name]);
    consts: name -> array. Outputs default to the last node's first output."""
    g = Graph("test")
    for name, shape in inputs.items():
        g.add_tensor(Tensor(name, tuple(shape)))
    for name, data in (consts or {}).items():
        data = np.asarray(data)
        g.add_tensor(Tensor(name, tuple(data.shape), str(data.dtype), data))
    for idx, spec in enumerate(nodes):
        op, ins, outs, attrs = spec[:4]
        outs = [outs] if isinstance(outs, str) else list(outs)
        for o in outs:
            g.add_tensor(Tensor(o, (0,)))
        g.nodes.append(Node(spec[4] if len(spec) > 4 else f"{op.lower()}_{idx}", op, list(ins), outs, dict(attrs)))
    g.inputs = list(inputs)
    g.outputs = list(outputs) if outputs else [g.nodes[-1].outputs[0]]
    infer_shapes(g)
    verify(g)
    return g


def rand(*shape, seed=0, scale=1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
