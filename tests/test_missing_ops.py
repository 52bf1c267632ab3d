"""Every op a model needs and edgepack lacks, in one error and in `edgepack inspect --missing`: the op,
how many nodes use it and their names (not one op per run)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack.cli import main
from edgepack.errors import UnsupportedOpError, UnsupportedOpsError
from edgepack.frontends import load_onnx


def _model(nodes, inits=None):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _three_missing():
    """Two Erf, one Sin and a 3-D conv (a table op in a form edgepack refuses) between supported ops."""
    nodes = [helper.make_node("Erf", ["x"], ["a"], name="e1"), helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Erf", ["b"], ["c"], name="e2"), helper.make_node("Sin", ["c"], ["d"], name="s1"),
             helper.make_node("Reshape", ["d", "shape5"], ["d5"], name="to5d"),
             helper.make_node("Conv", ["d5", "w"], ["y"], name="conv3d")]
    return _model(nodes, {"shape5": np.array([1, 3, 4, 4, 1], np.int64),
                          "w": np.ones((2, 3, 1, 1, 1), np.float32)})


def test_one_error_names_every_missing_op_with_nodes_and_counts():
    with pytest.raises(UnsupportedOpsError) as err:
        load_onnx(_three_missing())
    assert err.value.missing == {"Erf": ["e1", "e2"], "Sin": ["s1"], "Conv": ["conv3d"]}
    text = str(err.value)
    assert "\n" not in text and text.startswith("unsupported ops at 4 nodes: 'Erf' x2 ('e1', 'e2'); 'Sin' x1")
    assert "3-D convolution" in err.value.details["conv3d"]
    assert isinstance(err.value, UnsupportedOpError) and (err.value.op, err.value.node) == ("Erf", "e1")


def test_a_single_missing_op_reads_as_before():
    with pytest.raises(UnsupportedOpError, match=r"^unsupported op 'Sin' at node 's1' \(edgepack supports: "):
        load_onnx(_model([helper.make_node("Sin", ["x"], ["y"], name="s1")]))


def test_inspect_missing_lists_one_line_per_op_and_exits_2(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(_three_missing().SerializeToString())
    assert main(["inspect", "--missing", str(path)]) == 2
    assert capsys.readouterr().out.splitlines() == ["Erf: 2 nodes: e1, e2", "Sin: 1 node: s1", "Conv: 1 node: conv3d"]
    assert main(["inspect", "--missing", "--json", str(path)]) == 2
    assert json.loads(capsys.readouterr().out)["missing"]["Erf"] == ["e1", "e2"]


def test_inspect_missing_exits_0_when_nothing_is_missing(tmp_path, capsys):
    path = tmp_path / "ok.onnx"
    path.write_bytes(_model([helper.make_node("Relu", ["x"], ["y"], name="r")]).SerializeToString())
    assert main(["inspect", "--missing", str(path)]) == 0
    assert capsys.readouterr().out.startswith("nothing missing: 1 nodes")
