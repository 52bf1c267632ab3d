"""Expand to a constant shape (tf2onnx writes it for a Mul by a ones tensor, e.g. Keras' LayerNorm on a 1x1
feature map): Identity when nothing grows, else a Mul by ones. Float equal to onnxruntime; int8 close to
it on LiteRT and TFLite Micro (bit-exact with each other)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from int8_runs import calibrated, run_float, run_int8

N = helper.make_node


def _model(target) -> bytes:
    """Conv -> mean over channels (1, 1, 5, 5) -> Expand(target) -> Add to the conv output."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    nodes = [N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             N("ReduceMean", ["c"], ["m"], axes=[1], keepdims=1),
             N("Expand", ["m", "shape"], ["e"]), N("Add", ["c", "e"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(target, np.int64), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("target, mul", [([1, 4, 1, 1], 1), ([1, 1, 5], 0)])
def test_expand_matches_onnxruntime(target, mul):
    model = _model(target)
    graph = edgepack.load(model)
    assert "Expand" not in graph.op_counts() and graph.op_counts().get("Mul", 0) == mul
    xs = np.random.default_rng(1).standard_normal((16, 3, 5, 5)).astype(np.float32)
    want = np.concatenate([OnnxRuntime(model).run(x[None])[0] for x in xs])
    for runtime, got in run_float(graph, xs[:4]).items():
        np.testing.assert_allclose(got, want[:4], rtol=1e-5, atol=1e-5, err_msg=runtime)
    got = run_int8(calibrated(graph, xs), xs)
    np.testing.assert_array_equal(got["tflm"], got["litert"])
    for runtime, y in got.items():
        assert sqnr_db(want, y) > 30, f"{runtime}: {sqnr_db(want, y):.1f} dB"
