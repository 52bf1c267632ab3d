"""Test helper: run an int8 graph's .tflite on LiteRT's reference kernels and on TFLite Micro, and its QDQ
.onnx on onnxruntime, sample by sample; TFLM must stay within 1 LSB of the reference on every sample."""
from __future__ import annotations

import numpy as np

from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.io_mapping import dequantize_output, quantize_input, to_file_layout
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite


def int8_outputs(qgraph, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dequantized .tflite outputs on LiteRT's reference kernels, QDQ .onnx outputs on onnxruntime)."""
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    ref, micro = LiteRT(data, reference=True), TFLM(data)
    qdq = OnnxRuntime(to_onnx_qdq(qgraph).SerializeToString(), reference=True)  # the file, not MLAS (cpu.py)
    got, got_onnx = [], []
    for x in xs:
        q = quantize_input(to_file_layout(x[None], tin.shape), np.int8, tin.scale[0], tin.zero_point[0])
        a, b = ref.run(q)[0].astype(int), micro.run(q)[0].astype(int)
        assert np.max(np.abs(a - b)) <= 1  # TFLM's int8 FULLY_CONNECTED rounds twice (see test_tflite_zoo)
        got.append(dequantize_output(a, tout.scale[0], tout.zero_point[0]))
        got_onnx.append(qdq.run(x[None])[0])
    return np.concatenate(got), np.concatenate(got_onnx)
