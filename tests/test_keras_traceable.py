"""Keras layers tf2onnx cannot take as Keras 3 traces them (keras_trace.py): a grouped Conv2D (run by Keras in
an XLA function tf2onnx leaves as a StatefulPartitionedCall) and exact GELU (TF writes Erfc, which ONNX
lacks), as in ConvNeXt. Both load, compute what Keras does in float, and stay close in int8 (LiteRT, QDQ .onnx)."""
from __future__ import annotations

import numpy as np

import edgepack
from edgepack.targets.metrics import sqnr_db
from int8_runs import calibrated, run_float, run_int8


def test_grouped_conv_and_exact_gelu_convert():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.Conv2D(8, 3, groups=2, padding="same"),
                              keras.layers.Activation("gelu"), keras.layers.Conv2D(4, 1, groups=4),
                              keras.layers.GlobalAveragePooling2D()])
    xs = np.random.default_rng(0).standard_normal((16, 6, 6, 4)).astype(np.float32)
    want = model.predict(xs, verbose=0)
    graph = edgepack.load(model)
    ops = graph.op_counts()
    assert ops.get("Gelu") == 1 and "Erf" not in ops and ops.get("Conv", 0) >= 2, ops
    for runtime, got in run_float(graph, xs[:4]).items():
        np.testing.assert_allclose(got, want[:4], rtol=1e-4, atol=1e-4, err_msg=runtime)
    got = run_int8(calibrated(graph, xs), xs, tflm=False)  # TFLite Micro has no GELU kernel
    for runtime, y in got.items():
        assert sqnr_db(want, y) > 25, f"{runtime}: {sqnr_db(want, y):.1f} dB"
