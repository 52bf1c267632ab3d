"""ir.summary: params and MACs per node, against numbers computed by hand."""
from __future__ import annotations

from edgepack.ir.summary import summarize
from ir_build import make_graph, rand


def _net():
    consts = {"w1": rand(8, 3, 3, 3), "b1": rand(8), "dw": rand(8, 1, 3, 3), "fw": rand(10, 8), "fb": rand(10),
              "m": rand(10, 4)}
    nodes = [("Conv", ["x", "w1", "b1"], "c1", dict(strides=[2, 2], pads=[1, 1, 1, 1], dilations=[1, 1],
                                                    group=1, activation="Relu6"), "conv"),
             ("Conv", ["c1", "dw"], "c2", dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=8),
              "depthwise"),
             ("Relu", ["c2"], "r", {}, "relu"),
             ("GlobalAveragePool", ["r"], "p", {}, "gap"),
             ("Reshape", ["p"], "q", dict(shape=[2, 8]), "flatten"),
             ("Gemm", ["q", "fw", "fb"], "f", {}, "fc"),
             ("MatMul", ["f", "m"], "y", {}, "proj")]
    return make_graph({"x": (2, 3, 8, 8)}, nodes, consts)


def test_summary_rows_match_hand_computed_numbers():
    s = summarize(_net())
    rows = {r["name"]: r for r in s["nodes"]}
    # conv: N*Cout*Hout*Wout*(Cin/group)*kh*kw = 2*8*4*4*3*3*3; params 8*3*3*3 + 8
    assert rows["conv"] == {"name": "conv", "op": "Conv", "output_shape": (2, 8, 4, 4), "params": 224,
                            "macs": 6912, "activation": "Relu6"}
    # depthwise: Cin/group = 1 -> 2*8*4*4*1*3*3; params 8*1*3*3
    assert (rows["depthwise"]["macs"], rows["depthwise"]["params"]) == (2304, 72)
    assert rows["depthwise"]["activation"] is None
    assert (rows["fc"]["macs"], rows["fc"]["params"]) == (2 * 8 * 10, 90)
    assert (rows["proj"]["macs"], rows["proj"]["params"]) == (2 * 4 * 10, 40)  # constant operand counts
    for name in ("relu", "gap", "flatten"):
        assert (rows[name]["macs"], rows[name]["params"]) == (0, 0)
    assert rows["flatten"]["output_shape"] == (2, 8)
    assert s["totals"] == {"params": 224 + 72 + 90 + 40, "macs": 6912 + 2304 + 160 + 80, "nodes": 7,
                           "op_counts": {"Conv": 2, "GlobalAveragePool": 1, "Gemm": 1, "MatMul": 1,
                                         "Relu": 1, "Reshape": 1}}


def test_shared_constant_counts_once_in_totals():
    g = make_graph({"x": (1, 4)}, [("Add", ["x", "k"], "a", {}), ("Mul", ["a", "k"], "y", {})], {"k": rand(1, 4)})
    s = summarize(g)
    assert [r["params"] for r in s["nodes"]] == [4, 4] and s["totals"]["params"] == 4
    assert s["totals"]["macs"] == 0
