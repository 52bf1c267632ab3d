"""Multi-node ONNX patterns that stand for one IR op, rewritten on the folded model before the per-node
rules run.

- GELU before opset 20 (what torch exports): ``x * 0.5 * (1 + erf(x / sqrt(2)))`` in any of the orders
  the exporters write (Div by sqrt(2) or Mul by 1/sqrt(2); the 0.5 applied first, last, or to the sum)
  becomes one ``Gelu`` node. An Erf outside this pattern stays unsupported and is named as such.
- 1/sqrt(x) (``Reciprocal(Sqrt(x))`` or ``Div(1, Sqrt(x))``: ONNX has no Rsqrt, and it is how edgepack's
  own float .onnx writes a lowered LayerNorm) becomes one ``Rsqrt`` node. A lone Sqrt stays unsupported.
- relu6(x + 3) / 6 (Keras's hard_sigmoid as tf2onnx writes it: Add, Clip, Mul or Div) becomes one
  ``HardSigmoid`` node, and x times it (Keras's hard_swish) one ``HardSwish``: one int8 kernel instead of
  three or four requantized steps.
"""
from __future__ import annotations

import logging

import numpy as np
from onnx import helper

log = logging.getLogger(__name__)

# Node types only these patterns make (ONNX itself has no such op); their rules read the fused node.
PATTERN_OPS = frozenset({"Rsqrt"})


class _Index:
    def __init__(self, nodes, consts, outputs):
        self.consts, self.outputs = consts, set(outputs)
        self.producer = {o: n for n in nodes for o in n.output}
        self.readers: dict[str, list] = {}
        for n in nodes:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)

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


def _match_erf_gelu(index: _Index, erf) -> tuple[str, str, list] | None:
    scaled = index.producer.get(erf.input[0])
    if scaled is None or scaled.op_type not in ("Div", "Mul") or len(scaled.input) != 2:
        return None
    x = next((i for i in scaled.input if index.scalar(i) is None), None)
    want = np.sqrt(2.0) if scaled.op_type == "Div" else 1.0 / np.sqrt(2.0)
    if x is None or (scaled.op_type == "Div" and scaled.input[0] != x) or not _is(index, scaled,
                                                                                scaled.op_type, x, want):
        return None
    add = index.only_reader(erf.output[0])
    if not _is(index, add, "Add", erf.output[0], 1.0) or index.only_reader(scaled.output[0]) is not erf:
        return None
    m1 = index.only_reader(add.output[0])
    if m1 is None or m1.op_type != "Mul":
        return None
    other = index.other(m1, add.output[0])
    if other == x:  # (x * (1 + erf)) * 0.5
        m2 = index.only_reader(m1.output[0])
        if _is(index, m2, "Mul", m1.output[0], 0.5):
            return x, m2.output[0], [scaled, erf, add, m1, m2]
    elif index.scalar(other or "") is not None:  # x * ((1 + erf) * 0.5)
        m2 = index.only_reader(m1.output[0])
        if _is(index, m1, "Mul", add.output[0], 0.5) and m2 is not None and m2.op_type == "Mul" \
                and index.other(m2, m1.output[0]) == x:
            return x, m2.output[0], [scaled, erf, add, m1, m2]
    else:  # (x * 0.5) * (1 + erf)
        half = index.producer.get(other)
        if _is(index, half, "Mul", x, 0.5) and index.only_reader(half.output[0]) is m1:
            return x, m1.output[0], [scaled, erf, add, half, m1]
    return None


def _fuse(nodes: list, consts: dict, outputs, anchor: str, match) -> list:
    """Return ``nodes`` with every pattern ``match`` finds around an ``anchor`` node replaced by the one
    node it stands for (at the place of the pattern's last node, so the order stays topological).
    ``match`` gives (op, x, y, nodes of the pattern, attributes) or None."""
    index = _Index(nodes, consts, outputs)
    replace: dict[int, object] = {}
    drop: set[int] = set()
    for node in [n for n in nodes if n.op_type == anchor and n.domain in ("", "ai.onnx")]:
        found = match(index, node)
        if found is None:
            continue
        op, x, y, pattern, attrs = found
        positions = sorted(i for i, n in enumerate(nodes) if any(n is p for p in pattern))
        replace[positions[-1]] = helper.make_node(op, [x], [y], name=node.name or y, **attrs)
        drop.update(positions[:-1])
        log.debug("%s pattern at '%s' -> %s", anchor, node.name, op)
    return [replace.get(i, n) for i, n in enumerate(nodes) if i not in drop]


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
    if x is None or not _is(index, add, "Add", x, 3.0) or not (
            _is(index, scale, "Mul", clip.output[0], 1 / 6) or
            (_is(index, scale, "Div", clip.output[0], 6.0) and scale.input[0] == clip.output[0])):
        return None
    times_x = index.only_reader(scale.output[0])
    if times_x is not None and times_x.op_type == "Mul" and index.other(times_x, scale.output[0]) == x:
        return "HardSwish", x, times_x.output[0], [add, clip, scale, times_x], {}
    return "HardSigmoid", x, scale.output[0], [add, clip, scale], {"alpha": 1 / 6, "beta": 0.5}


def fuse_patterns(nodes: list, consts: dict, outputs) -> list:
    """Every multi-node pattern above replaced by its one IR-op node."""
    for anchor, match in (("Erf", _match_gelu), ("Sqrt", _match_rsqrt), ("Clip", _match_hard_sigmoid)):
        nodes = _fuse(nodes, consts, outputs, anchor, match)
    return nodes
