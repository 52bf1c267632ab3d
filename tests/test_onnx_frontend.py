"""ONNX frontend, whole models: node names kept or generated, local functions inlined, dynamic dims
filled, path / bytes inputs, and real torch.onnx exporter output round-tripped ONNX -> IR -> ONNX with
the same numbers. Single ops are in test_onnx_frontend_layers.py and test_onnx_frontend_ops.py."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_roundtrip import make_model, roundtrip, run

from edgepack.exporter.emit_onnx import to_onnx
from edgepack.frontends import load_onnx


# ---- whole-model behaviour -----------------------------------------------------------------
def test_names_are_kept_and_generated():
    nodes = [helper.make_node("Relu", ["x"], ["act"]), helper.make_node("Sigmoid", ["act"], ["out"], name="dup"),
             helper.make_node("Tanh", ["out"], ["out2"], name="dup")]
    m = make_model(nodes, {"x": (1, 4)}, ["out2"])
    g = load_onnx(m)
    assert [n.name for n in g.nodes] == ["Relu_0", "dup", "dup_1"]
    assert g.inputs == ["x"] and g.outputs == ["out2"] and set(g.tensors) == {"x", "act", "out", "out2"}


def test_local_functions_are_inlined():
    fn = helper.make_function("local", "Swishish", ["a"], ["b"],
                              [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["a", "s"], ["b"])],
                              [helper.make_opsetid("", 17)])
    m = make_model([helper.make_node("Swishish", ["x"], ["y"], domain="local")], {"x": (2, 3)}, ["y"],
                   functions=[fn])
    g = roundtrip(m)
    assert g.op_counts() == {"Mul": 1, "Sigmoid": 1}


def test_input_shapes_fill_dynamic_dims():
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ("N", 3, "H", "W")}, ["y"])
    g = roundtrip(m, input_shapes={"x": (2, 3, 5, 7)})
    assert g.tensors["y"].shape == (2, 3, 5, 7)


def test_path_and_bytes_inputs(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3)}, ["y"])
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    for src in (path, str(path), m.SerializeToString()):
        assert load_onnx(src).op_counts() == {"Relu": 1}


# ---- real exporter output --------------------------------------------------------------------
@pytest.mark.parametrize("dynamo, opset", [(True, 18), (False, 13)])
def test_torch_cnn_export_round_trip(tmp_path, dynamo, opset):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.Hardswish(),
                nn.MaxPool2d(2), nn.Conv2d(8, 12, 1), nn.LeakyReLU(0.1))
            self.head = nn.Linear(12 * 2 * 2, 10)

        def forward(self, x):
            y = self.features(x)
            y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
            y = nn.functional.avg_pool2d(y, 2)
            return torch.softmax(self.head(y.flatten(1)), dim=-1)

    torch.manual_seed(0)
    model = SmallCNN().eval()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path), dynamo=dynamo, opset_version=opset,
                      input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}})
    g = roundtrip(onnx.load(str(path)), batch_size=2)
    assert g.inputs == ["image"] and g.outputs == ["probs"] and g.tensors["probs"].shape == (2, 10)
    counts = g.op_counts()
    assert counts["Conv"] == 3 and counts["Gemm"] == 1 and counts["Softmax"] == 1
    assert not {"Shape", "Gather", "Constant"} & set(counts)
    with torch.no_grad():
        x = torch.randn(2, 1, 8, 8)
        want = model(x).numpy()
    got = run(to_onnx(g), {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
