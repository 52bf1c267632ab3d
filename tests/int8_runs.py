"""Helpers for the op-coverage tests: run a graph's float and int8 artifacts on LiteRT, TFLite Micro and
onnxruntime on NCHW samples and give back NCHW outputs, so a test asserts on SQNR against a reference."""
from __future__ import annotations

import numpy as np

from edgepack.calibration import calibrate_graph, load_samples
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.io_mapping import dequantize_output, quantize_input, to_file_layout
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite


def _from_file(y: np.ndarray, want_shape) -> np.ndarray:
    if y.shape == tuple(want_shape) and len(want_shape) != 4:
        return y
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y.reshape(want_shape)


def calibrated(graph, xs: np.ndarray):
    return calibrate_graph(graph, load_samples(xs, (1, *xs.shape[1:])), "minmax")[0]


def run_float(graph, xs: np.ndarray) -> dict[str, np.ndarray]:
    """Float .tflite on LiteRT and float .onnx on onnxruntime."""
    data = to_tflite(graph, int8=False)
    info = read_tflite(data)
    shape = info.tensors[info.inputs[0]].shape
    lite, ort = LiteRT(data), OnnxRuntime(to_onnx(graph).SerializeToString())
    out_shape = graph.tensors[graph.outputs[0]].shape
    return {"litert": np.concatenate([_from_file(lite.run(to_file_layout(x[None], shape))[0], out_shape)
                                      for x in xs]),
            "onnxruntime": np.concatenate([ort.run(x[None])[0] for x in xs])}


def run_int8(qgraph, xs: np.ndarray, tflm: bool = True) -> dict[str, np.ndarray]:
    """int8 .tflite on LiteRT (reference kernels) and TFLite Micro, QDQ .onnx on onnxruntime, dequantized."""
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    out_shape = qgraph.tensors[qgraph.outputs[0]].shape
    runtimes = {"litert": LiteRT(data, reference=True)}
    if tflm:
        runtimes["tflm"] = TFLM(data)
    qdq = OnnxRuntime(to_onnx_qdq(qgraph).SerializeToString(), reference=True)  # the file, not MLAS (cpu.py)
    got = {k: [] for k in [*runtimes, "onnxruntime"]}
    for x in xs:
        q = quantize_input(to_file_layout(x[None], tin.shape), np.int8, tin.scale[0], tin.zero_point[0])
        for name, rt in runtimes.items():
            y = dequantize_output(rt.run(q)[0], tout.scale[0], tout.zero_point[0])
            got[name].append(_from_file(y, out_shape))
        got["onnxruntime"].append(qdq.run(x[None])[0])
    return {k: np.concatenate(v) for k, v in got.items()}
