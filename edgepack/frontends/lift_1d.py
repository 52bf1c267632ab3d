"""Keep 1-D models in 2-D: remove the Reshapes between consecutive 1-D layers.

The ONNX rules write every 1-D Conv / pool as its 2-D form on (N, C, 1, T) between a Reshape to 4-D
("unsqueeze") and one back to 3-D ("squeeze"). Here each squeeze is moved past the per-element ops
that follow it (activations, BatchNormalization, Add/Mul/... with a constant or with another squeezed
tensor), a squeeze followed by an unsqueeze cancels out, and a mean over time becomes a
GlobalAveragePool. A Conv1d -> BatchNorm1d -> ReLU -> Conv1d chain is then Conv -> BN -> Relu -> Conv
on 4-D tensors: BatchNorm folds, Relu fuses, and the TFLite file needs no layout transposes inside.
"""
from __future__ import annotations

import logging

import numpy as np

from .. import ir
from ..ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)

UNARY = tuple(op for op in ir.OPS if ir.per_element(op))  # Relu, Clip, ..., BatchNormalization, Identity
BINARY = ir.ops_where(broadcast=True)  # Add, Sub, Mul, Div, ...: constants are lifted too


def _shape(g: ir.Graph, name: str) -> tuple[int, ...]:
    return tuple(g.tensors[name].shape)


def _is_squeeze(g: ir.Graph, n: ir.Node) -> bool:
    if n.op != "Reshape":
        return False
    a, b = _shape(g, n.inputs[0]), _shape(g, n.outputs[0])
    return len(a) == 4 and len(b) == 3 and a[2] == 1 and (a[0], a[1], a[3]) == b


def _squeezed_source(g: ir.Graph, name: str) -> str | None:
    """The 4-D tensor a 3-D activation was squeezed from, if it was."""
    p = g.producer(name)
    return p.inputs[0] if p is not None and _is_squeeze(g, p) else None


def _const_4d(g: ir.Graph, name: str) -> str:
    """A constant broadcast against (N, C, T), reshaped to broadcast against (N, C, 1, T)."""
    c = g.tensors[name].data
    c3 = c.reshape((1,) * (3 - c.ndim) + c.shape)
    return g.add_const(f"{name}_2d", np.ascontiguousarray(c3[:, :, None, :]))


def _insert_after(g: ir.Graph, anchor: ir.Node, node: ir.Node) -> None:
    g.nodes.insert(g.nodes.index(anchor) + 1, node)


def _lift_node(g: ir.Graph, m: ir.Node, x3: str, x4: str) -> bool:
    """Make ``m`` (a reader of the squeezed ``x3``) compute in 4-D; its 3-D output name is kept,
    written by a new squeeze after it."""
    if m.op in UNARY and m.inputs[0] == x3 and all(g.tensors[i].is_const for i in m.inputs[1:] if i):
        new_inputs = [x4] + m.inputs[1:]
    elif m.op in BINARY:
        new_inputs = []
        for i in m.inputs:
            src = x4 if i == x3 else _squeezed_source(g, i)
            if g.tensors[i].is_const:
                src = _const_4d(g, i) if g.tensors[i].data.ndim <= 3 else None
            if src is None or (not g.tensors[src].is_const and _shape(g, src)[2] != 1):
                return False
            new_inputs.append(src)
    else:
        return False
    y3 = m.outputs[0]
    n, c, t = _shape(g, y3)
    y4 = g.unique_name(f"{y3}_2d")
    g.add_tensor(ir.Tensor(y4, (n, c, 1, t), g.tensors[y3].dtype))
    m.inputs, m.outputs = new_inputs, [y4] + m.outputs[1:]
    _insert_after(g, m, ir.Node(g.unique_name(f"{m.name}/to_1d"), "Reshape", [y4], [y3],
                                {"shape": [n, c, t]}))
    return True


def _lift_mean(g: ir.Graph, m: ir.Node, x3: str, x4: str) -> bool:
    """ReduceMean over time of a squeezed tensor -> GlobalAveragePool (+ Reshape to its shape)."""
    if m.op != "ReduceMean" or m.inputs[0] != x3 or [int(a) for a in m.attrs.get("axes", [])] != [2]:
        return False
    n, c = _shape(g, x3)[:2]
    pooled = g.unique_name(f"{m.outputs[0]}_2d")
    g.add_tensor(ir.Tensor(pooled, (n, c, 1, 1), g.tensors[m.outputs[0]].dtype))
    y = m.outputs[0]
    m.op, m.inputs, m.outputs, m.attrs = "GlobalAveragePool", [x4], [pooled], {}
    _insert_after(g, m, ir.Node(g.unique_name(f"{m.name}/squeeze"), "Reshape", [pooled], [y],
                                {"shape": list(_shape(g, y))}))
    return True


def _step(g: ir.Graph) -> bool:
    for r in [n for n in g.nodes if _is_squeeze(g, n)]:
        x4, x3 = r.inputs[0], r.outputs[0]
        if x3 in g.outputs:
            continue
        for m in g.consumers(x3):
            if m.op == "Reshape" and _shape(g, m.outputs[0]) == _shape(g, x4):
                g.replace_uses(m.outputs[0], x4)  # squeeze then unsqueeze: nothing at all
                g.nodes.remove(m)
                return True
            if _lift_node(g, m, x3, x4) or _lift_mean(g, m, x3, x4):
                return True
    return False


@graph_pass
def lift_1d(g: ir.Graph) -> PassResult:
    """Rewrite in place."""
    changed = False
    while _step(g):
        changed = True
    if changed:
        g.remove_unused()
        log.debug("1-D layers kept in 2-D form: %s", g.op_counts())
    return PassResult(g, changed)
