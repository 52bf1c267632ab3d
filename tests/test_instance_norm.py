"""InstanceNormalization (torch GroupNorm with a group per channel, e.g. Wav2Vec2's feature encoder) on 3-D
and 4-D tensors: lowered to a LayerNormalization over the flattened spatial axes plus the per-channel scale
and bias. Float equal to onnxruntime; int8 close to it on LiteRT and TFLite Micro."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from int8_runs import calibrated, run_float, run_int8

N = helper.make_node


def _model(shape) -> bytes:
    rng = np.random.default_rng(0)
    c = shape[1]
    w = rng.standard_normal((c, c) + (3,) * (len(shape) - 2)).astype(np.float32) * 0.3
    inits = {"w": w, "scale": rng.uniform(0.5, 1.5, c).astype(np.float32),
             "bias": rng.normal(0, 0.2, c).astype(np.float32)}
    nodes = [N("Conv", ["x", "w"], ["c"], pads=[1, 1] * (len(shape) - 2)),
             N("InstanceNormalization", ["c", "scale", "bias"], ["n"], epsilon=1e-5), N("Relu", ["n"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("shape", [(1, 4, 16), (1, 3, 5, 6)])
def test_instance_norm_matches_onnxruntime(shape):
    model = _model(shape)
    graph = edgepack.load(model)
    assert "InstanceNormalization" not in graph.op_counts()
    xs = np.random.default_rng(1).standard_normal((16, *shape[1:])).astype(np.float32)
    want = np.concatenate([OnnxRuntime(model).run(x[None])[0] for x in xs])
    for runtime, got in run_float(graph, xs[:4]).items():
        np.testing.assert_allclose(got, want[:4], rtol=1e-4, atol=1e-4, err_msg=runtime)
    got = run_int8(calibrated(graph, xs), xs)
    for runtime, y in got.items():
        assert sqnr_db(want, y) > 25, f"{runtime}: {sqnr_db(want, y):.1f} dB"
