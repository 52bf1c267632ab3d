"""ONNX frontend errors: each is an EdgepackError subclass with one line that says what, where and
what is allowed."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack.errors import EdgepackError, ModelLoadError, ShapeError, UnsupportedOpError
from edgepack.frontends import load_onnx


def make_model(nodes, inputs, outputs, inits=None, opset=17, dtype=TensorProto.FLOAT):
    vis = [helper.make_tensor_value_info(k, dtype, list(v)) for k, v in inputs.items()]
    outs = [helper.make_tensor_value_info(k, dtype, None) for k in outputs]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "errors", vis, outs, initializer=tensors)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    return onnx.shape_inference.infer_shapes(model)


def relu_model(shape=(1, 3, 4, 4)):
    return make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": shape}, ["y"])


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and isinstance(err.value, EdgepackError)
    return text


def test_missing_path(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError) as err:
        load_onnx(path)
    assert one_line(err) == f"{path}: file not found" and err.value.path == str(path)


def test_truncated_file(tmp_path):
    w = np.random.default_rng(0).standard_normal((16, 3, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": (1, 3, 8, 8)}, ["y"], {"w": w})
    data = model.SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as err:
        load_onnx(path)
    assert one_line(err).startswith(f"{path}: not a valid ONNX model")


@pytest.mark.parametrize("text", ["hello, I am not a model\n", "x" * 1000, ""])
def test_text_file_named_onnx(tmp_path, text):
    path = tmp_path / "model.onnx"
    path.write_text(text)
    with pytest.raises(ModelLoadError) as err:
        load_onnx(path)
    assert one_line(err).startswith(f"{path}: not a valid ONNX model")


def test_garbage_bytes():
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_onnx(b"\x00\xff\x13garbage")


def test_checker_failure():
    model = relu_model()
    model.graph.node[0].input[0] = "undefined_tensor"
    with pytest.raises(ModelLoadError) as err:
        load_onnx(model)
    assert "not a valid ONNX model" in one_line(err) and "undefined_tensor" in str(err.value)


@pytest.mark.parametrize("opset", [9, 22])
def test_opset_outside_range(opset):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3)}, ["y"], opset=opset)
    with pytest.raises(ModelLoadError) as err:
        load_onnx(model)
    assert f"opset {opset}" in one_line(err) and "11..21" in str(err.value)


@pytest.mark.parametrize("op, inputs, attrs", [
    ("Einsum", ["x", "x"], {"equation": "bchw,bchw->bc"}),
    ("GridSample", ["x", "grid"], {}),
])
def test_op_outside_the_table(op, inputs, attrs):
    inits = {"grid": np.zeros((1, 4, 4, 2), np.float32)} if op == "GridSample" else {}
    node = helper.make_node(op, inputs, ["y"], name="decoder/grid", **attrs)
    model = make_model([helper.make_node("Relu", ["x0"], ["x"]), node], {"x0": (1, 3, 4, 4)}, ["y"], inits,
                       opset=17)
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(model)
    text = one_line(err)
    assert f"unsupported op '{op}' at node 'decoder/grid'" in text
    assert "Conv" in err.value.supported and "Conv, " in text and op not in err.value.supported


def test_unsupported_variant_softmax_opset11_inner_axis():
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")], {"x": (1, 3, 4, 4)},
                       ["y"], opset=11)
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(model)
    assert "Softmax" in one_line(err) and "'sm'" in str(err.value) and "last axis" in str(err.value)


def test_unsupported_variant_conv3d():
    w = np.ones((2, 3, 3, 3, 3), np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c1")], {"x": (1, 3, 8, 8, 8)}, ["y"],
                       {"w": w})
    with pytest.raises(UnsupportedOpError, match=r"Conv at node 'c1': 3-D convolution; only 1-D and 2-D"):
        load_onnx(model)


def test_non_float_input():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3)}, ["y"], dtype=TensorProto.INT32)
    with pytest.raises(ModelLoadError, match=r"input 'x' is int32; edgepack handles float32"):
        load_onnx(model)


def test_dynamic_non_batch_dim_without_input_shapes():
    model = relu_model(("N", 3, "H", "W"))
    with pytest.raises(ShapeError) as err:
        load_onnx(model)
    text = one_line(err)
    assert "'x'" in text and "(?, 3, ?, ?)" in text and "--input-shape" in text


def test_dynamic_batch_becomes_batch_size():
    graph = load_onnx(relu_model(("N", 3, 4, 4)), batch_size=5)
    assert graph.tensors["x"].shape == (5, 3, 4, 4) and graph.tensors["y"].shape == (5, 3, 4, 4)


@pytest.mark.parametrize("given", [(1, 3, 4), (1, 4, 8, 8), (1, 3, 0, 8)])
def test_input_shapes_that_disagree(given):
    with pytest.raises(ShapeError) as err:
        load_onnx(relu_model(("N", 3, "H", "W")), input_shapes={"x": given})
    text = one_line(err)
    assert "(?, 3, ?, ?)" in text and str(tuple(given)) in text


def test_input_shapes_unknown_name():
    with pytest.raises(ShapeError) as err:
        load_onnx(relu_model(), input_shapes={"image": (1, 3, 4, 4)})
    assert "'image'" in one_line(err) and "model inputs: x" in str(err.value)


def test_wrong_model_argument_type():
    with pytest.raises(ModelLoadError, match="expected a path, bytes or onnx.ModelProto"):
        load_onnx(42)
