"""ONNX LSTM and GRU unrolled into IR ops (frontends/onnx_recurrent.py): every form (directions, layouts,
initial states, GRU's linear_before_reset, each of the outputs Y / Y_h / Y_c) equal in float to onnxruntime
on the source model, on LiteRT and on edgepack's float .onnx; the forms the unrolling does not take refused
with one line. The int8 tests (trained models, Keras) are in test_recurrent_int8.py."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack.errors import UnsupportedOpError
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.frontends import load_onnx
from edgepack.targets.runtimes import LiteRT, OnnxRuntime

T, N, I, H = 5, 2, 3, 4


def _model(op: str, direction="forward", output=0, layout=0, init=False, steps=T, **attrs):
    """One LSTM / GRU node with seeded random weights (and biases), returning output ``output``."""
    rng = np.random.default_rng(7)
    gates, dirs = (4 if op == "LSTM" else 3), (2 if direction == "bidirectional" else 1)
    x_shape = [steps, N, I] if layout == 0 else [N, steps, I]
    inits = {"W": rng.normal(0, 0.6, (dirs, gates * H, I)), "R": rng.normal(0, 0.6, (dirs, gates * H, H)),
             "B": rng.normal(0, 0.3, (dirs, 2 * gates * H))}
    ins = ["x", "W", "R", "B", "", ""]
    if init:  # constant non-zero initial states
        state = [dirs, N, H] if layout == 0 else [N, dirs, H]
        inits["h0"] = rng.normal(0, 0.5, state)
        ins[5] = "h0"
        if op == "LSTM":
            inits["c0"] = rng.normal(0, 0.5, state)
            ins.append("c0")
    outs = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    if layout:
        attrs["layout"] = 1
    node = helper.make_node(op, ins, outs, hidden_size=H, direction=direction, **attrs)
    graph = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(outs[output], TensorProto.FLOAT, _out_shape(output, layout, dirs, steps))],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _out_shape(output: int, layout: int, dirs: int, steps: int) -> list[int]:
    if output == 0:
        return [steps, dirs, N, H] if layout == 0 else [N, steps, dirs, H]
    return [dirs, N, H] if layout == 0 else [N, dirs, H]


FORMS = {
    "LSTM forward Y": dict(op="LSTM"),
    "LSTM forward Y, 23 steps (TFLM: Concat in chunks of 10)": dict(op="LSTM", steps=23),
    "LSTM reverse Y_h": dict(op="LSTM", direction="reverse", output=1),
    "LSTM bidirectional Y_c, initial states": dict(op="LSTM", direction="bidirectional", output=2, init=True),
    "LSTM layout 1 bidirectional Y": dict(op="LSTM", direction="bidirectional", layout=1),
    "LSTM layout 1 Y_h, initial states": dict(op="LSTM", layout=1, output=1, init=True),
    "GRU forward Y (linear_before_reset 0)": dict(op="GRU"),
    "GRU reverse Y_h (linear_before_reset 1)": dict(op="GRU", direction="reverse", output=1, linear_before_reset=1),
    "GRU bidirectional Y, initial state, linear_before_reset 1": dict(
        op="GRU", direction="bidirectional", init=True, linear_before_reset=1),
    "GRU layout 1 Y, initial state": dict(op="GRU", layout=1, init=True),
}


def _reference(form: dict, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the source model; for layout 1 (which onnxruntime does not run) on its layout-0 twin
    (the same weights, the states and the data transposed)."""
    if not form.get("layout"):
        return OnnxRuntime(_model(**form).SerializeToString()).run(x)[0]
    twin = _model(**{**form, "layout": 0})
    for init in twin.graph.initializer:
        if init.name in ("h0", "c0"):  # drawn as (N, D, H) for layout 1
            value = numpy_helper.to_array(_model(**form).graph.initializer[[i.name for i in twin.graph.initializer]
                                                                          .index(init.name)])
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value.transpose(1, 0, 2)), init.name))
    y = OnnxRuntime(twin.SerializeToString()).run(np.ascontiguousarray(x.transpose(1, 0, 2)))[0]
    return y.transpose(2, 0, 1, 3) if y.ndim == 4 else y.transpose(1, 0, 2)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_unrolled_recurrent_layer_equals_onnxruntime_in_float(form):
    model = _model(**FORMS[form])
    steps = FORMS[form].get("steps", T)
    shape = (steps, N, I) if not FORMS[form].get("layout") else (N, steps, I)
    x = np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)
    want = _reference(FORMS[form], x)
    graph = load_onnx(model)
    ops = {n.op for n in graph.nodes}
    assert ops <= {"Gemm", "Sigmoid", "Tanh", "Mul", "Add", "Sub", "Slice", "Reshape", "Concat"}, ops
    tanhs = sum(n.op == "Tanh" for n in graph.nodes)  # one tanh per step (GRU), two (LSTM), per direction
    dirs = 2 if FORMS[form].get("direction") == "bidirectional" else 1
    unused_last_tanh = dirs if FORMS[form].get("output") == 2 else 0  # Y_c alone: no tanh(c_T) is needed
    assert tanhs == steps * dirs * (2 if FORMS[form]["op"] == "LSTM" else 1) - unused_last_tanh
    assert max((len(n.inputs) for n in graph.nodes if n.op == "Concat"), default=0) <= 10  # TFLite Micro's kMaxInputNum
    lite = LiteRT(to_tflite(graph, int8=False)).run(x)[0]
    if lite.ndim == 4:  # a 4-D output (Y) is NHWC in the .tflite, as every 4-D tensor
        lite = lite.transpose(0, 3, 1, 2)
    ort = OnnxRuntime(to_onnx(graph).SerializeToString()).run(x)[0]
    for runtime, got in (("litert", lite), ("onnxruntime", ort)):
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=runtime)


@pytest.mark.parametrize("attrs, words", [
    (dict(clip=3.0), "clip"),
    (dict(input_forget=1), "input_forget"),
    (dict(activations=["Sigmoid", "Relu", "Tanh"]), "activations"),
])
def test_forms_not_unrolled_are_refused_in_one_line(attrs, words):
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(_model("LSTM", **attrs))
    msg = str(err.value)
    assert "LSTM" in msg and words in msg and "\n" not in msg


def test_peepholes_and_partial_sequence_lengths_are_refused():
    model = _model("LSTM")
    node = model.graph.node[0]
    del node.input[4:]
    node.input.extend(["", "", "", "P"])  # no sequence_lens and initial states; peepholes at input 7
    model.graph.initializer.append(numpy_helper.from_array(np.ones((1, 3 * H), np.float32), "P"))
    with pytest.raises(UnsupportedOpError, match="peephole"):
        load_onnx(model)
    model = _model("GRU")
    model.graph.node[0].input[4] = "lens"
    model.graph.initializer.append(numpy_helper.from_array(np.array([T, T - 1], np.int32), "lens"))
    with pytest.raises(UnsupportedOpError, match="sequence_lens"):
        load_onnx(model)
