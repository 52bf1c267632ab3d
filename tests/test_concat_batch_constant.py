"""A batch-1 constant joined to the activations (ViT's class token: Concat([cls, patches], axis=1)):
calibration runs batches of samples, and the constant is the same for each of them."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from int8_runs import calibrated, run_int8

N = helper.make_node


def test_class_token_concat_calibrates_on_a_batch():
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 8)).astype(np.float32) * 0.3,
             "cls": rng.standard_normal((1, 1, 8)).astype(np.float32)}
    nodes = [N("MatMul", ["x", "w"], ["h"]), N("Concat", ["cls", "h"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    xs = rng.standard_normal((16, 4, 8)).astype(np.float32)
    want = np.concatenate([OnnxRuntime(model).run(x[None])[0] for x in xs])
    got = run_int8(calibrated(edgepack.load(model), xs), xs)
    for runtime, y in got.items():
        assert y.shape == (16, 5, 8) and sqnr_db(want, y) > 30, f"{runtime}: {sqnr_db(want, y):.1f} dB"
