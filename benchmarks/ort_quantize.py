"""The onnxruntime side of bench_quantize.py: ORT's quantize_static as a contender, sessions, top-1
accuracy and interleaved batch-1 latency of ONNX files, and the op types ORT's optimizer really runs."""
from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np

from common import interleaved, median, quiet

# edgepack calibration method -> the ORT CalibrationMethod it is compared with (ORT has no MSE calibrator).
METHODS = {"minmax": "MinMax", "percentile": "Percentile", "mse": "Distribution", "entropy": "Entropy"}
# Op types after ORT's optimizer that do MACs in float, and in int8.
FLOAT_MACS = {"Conv", "FusedConv", "NhwcFusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
INT8_MACS = {"QLinearConv", "NhwcQLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def session(path, threads: int = 0, level=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = level or ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def reference_session(path, threads: int = 0):
    """A QDQ file as the ONNX spec computes it: no QDQ fusion into onnxruntime's U8S8 kernels, which saturate
    on x86 CPUs without VNNI (edgepack/targets/cpu.py); scores the quantization, not this CPU's kernels."""
    import onnxruntime as ort

    return session(path, threads, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)


def onnx_accuracy(path, x, y) -> float:
    """Top-1 on held-out digits, one sample per call (the files have batch 1)."""
    sess = session(path)
    name = sess.get_inputs()[0].name
    preds = [int(np.argmax(sess.run(None, {name: s[None]})[0])) for s in x]
    return float(np.mean(np.asarray(preds) == y))


def optimized_op_counts(path) -> dict:
    """Op types in ORT's own optimized graph (ORT_ENABLE_EXTENDED): what its CPU kernels really run."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(path) + ".opt.onnx"
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    return {"float_conv_gemm": sum(ops[o] for o in FLOAT_MACS), "int8_conv_gemm": sum(ops[o] for o in INT8_MACS),
            "quantize": ops["QuantizeLinear"], "dequantize": ops["DequantizeLinear"], "ops": dict(sorted(ops.items()))}


def ort_quantizer(pre_path, out_path, x_calib, method: str, percentile: float):
    """A callable running ORT's quantize_static on the pre-processed float model, as its docs recommend:
    QDQ, per-channel int8 weights, uint8 activations, the same calibration samples one at a time."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self, name):
            self.samples = iter(x_calib[i:i + 1] for i in range(len(x_calib)))
            self.name = name

        def get_next(self):
            sample = next(self.samples, None)
            return None if sample is None else {self.name: sample}

    name = session(pre_path).get_inputs()[0].name
    # ORT's percentile calibrator is symmetric by default; edgepack's is not, so match it (and its percentile).
    extra = {"CalibPercentile": percentile, "CalibTensorRangeSymmetric": False}

    def run():
        with quiet():
            quantize_static(str(pre_path), str(out_path), Reader(name), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, METHODS[method]), extra_options=extra)
    return run


def latency(paths: dict[str, Path], sample: np.ndarray, threads: int, rounds: int) -> dict[str, float]:
    """Median seconds of one batch-1 inference; the files take turns in blocks of ~20 ms, round by round,
    and every call is timed on its own so a preempted call does not drag a whole block."""
    sessions = {k: session(p, threads) for k, p in paths.items()}
    feeds = {k: {s.get_inputs()[0].name: sample} for k, s in sessions.items()}
    for k, s in sessions.items():  # warm up
        for _ in range(20):
            s.run(None, feeds[k])
    t0 = time.perf_counter()
    for _ in range(20):
        sessions["float"].run(None, feeds["float"])
    block = max(5, int(0.02 / ((time.perf_counter() - t0) / 20)))
    calls = {k: [] for k in sessions}

    def runner(k):
        def run():
            sess, feed, out = sessions[k], feeds[k], calls[k]
            for _ in range(block):
                t = time.perf_counter()
                sess.run(None, feed)
                out.append(time.perf_counter() - t)
        return run
    interleaved({k: runner(k) for k in sessions}, rounds)
    return {k: median(v) for k, v in calls.items()}
