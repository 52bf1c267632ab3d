"""Post-training int8 to QDQ ONNX: accuracy, int8 kernels in onnxruntime, size, the spec's rules."""
import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import edgepack
from edgepack.calibration import calibrate_graph, collect_ranges, load_samples
from edgepack.demo import accuracy
from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.ir import torch_exec

METHODS = ["minmax", "percentile", "mse", "entropy"]
# Most int8 accuracy may fall below float on the 359 held-out digits (was 0.01): measured -0.003 to +0.003
# (one digit) for mobilenet_v2 / resnet over 5 seeds, 4 methods and TFLM (threshold_spread.md); margin 0.012.
MAX_INT8_LOSS = 0.015


def _session(path_or_bytes):
    """The file's own QDQ arithmetic: onnxruntime without its QDQ fusions, whose U8S8 kernels saturate on x86
    CPUs without VNNI (targets/cpu.py); the fused result is reported beside it by validate."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def _ort_accuracy(path_or_bytes, x, y):
    sess = _session(path_or_bytes)
    name = sess.get_inputs()[0].name
    return accuracy(sess.run(None, {name: x})[0], y) if sess.get_inputs()[0].shape[0] != 1 else \
        accuracy(np.concatenate([sess.run(None, {name: s[None]})[0] for s in x]), y)


def export_digits_cnn(model, digits, method, out):
    return edgepack.export(model, calib=digits[0][:300], out=out, input_shape=(1, 1, 8, 8), calibration=method)


def float_and_int8_accuracy(report, digits):
    """Accuracy on the 359 held-out digits of the float and the int8 .onnx of an export (onnxruntime)."""
    _, _, x_te, y_te = digits
    return tuple(_ort_accuracy(report.artifacts[kind]["path"], x_te, y_te) for kind in ("float_onnx", "int8_onnx"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory, digits, trained):
    return {(name, method): export_digits_cnn(trained(name), digits, method,
                                              tmp_path_factory.mktemp(f"{name}_{method}"))
            for name in ("mobilenet_v2", "resnet") for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet"])
def test_int8_accuracy_within_one_point_of_float(exports, digits, name, method):
    float_acc, int8_acc = float_and_int8_accuracy(exports[name, method], digits)
    assert float_acc > 0.9
    assert int8_acc >= float_acc - MAX_INT8_LOSS, f"{name}/{method}: float {float_acc:.3f} int8 {int8_acc:.3f}"


def _optimized_ops(path) -> collections.Counter:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(path) + ".opt.onnx"
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet"])
def test_onnxruntime_runs_int8_kernels(exports, name):
    ops = _optimized_ops(exports[name, "minmax"].artifacts["int8_onnx"]["path"])
    float_ops = {"Conv", "Gemm", "MatMul", "Add", "Relu", "Clip"}
    assert not float_ops & set(ops), f"layers left in float: {ops}"
    assert ops["QLinearConv"] >= 5 and ops["QGemm"] == 1
    assert ops["DequantizeLinear"] <= 1 and ops["QuantizeLinear"] == 1  # only at the model's edges


def test_int8_file_at_most_0_3x_float_for_weight_heavy_model(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    calib = np.random.default_rng(0).random((50, 64), np.float32)
    rep = edgepack.export(model, calib=calib, out=tmp_path, input_shape=(1, 64))
    ratio = rep.artifacts["int8_onnx"]["bytes"] / rep.artifacts["float_onnx"]["bytes"]
    assert ratio <= 0.3, ratio


def test_calibration_memory_does_not_grow_with_samples(digits, trained):
    graph = edgepack.load(trained("resnet"), input_shape=(1, 1, 8, 8))
    x = np.tile(digits[0], (2, 1, 1, 1))[:2000]
    sizes = {}
    for n in (200, 2000):
        for method in ("minmax", "entropy"):
            _, observers = collect_ranges(graph, (x[i:i + 50] for i in range(0, n, 50)), method)
            sizes[n, method] = sum(o.state_nbytes() for o in observers.values())
    assert sizes[200, "minmax"] == sizes[2000, "minmax"]
    assert sizes[200, "entropy"] == sizes[2000, "entropy"]
    assert sizes[2000, "entropy"] < 2048 * 8 * 200  # a histogram per tensor, not activations


def test_calibration_file_reuse_gives_identical_int8_model(tmp_path, digits, trained):
    model = trained("resnet")
    first = edgepack.export(model, calib=digits[0][:100], out=tmp_path / "a", input_shape=(1, 1, 8, 8),
                            calibration="percentile")
    again = edgepack.export(model, out=tmp_path / "b", input_shape=(1, 1, 8, 8),
                            calibration_file=first.artifacts["calibration"]["path"])
    a = open(first.artifacts["int8_onnx"]["path"], "rb").read()
    b = open(again.artifacts["int8_onnx"]["path"], "rb").read()
    assert a == b


def _qparams(model: onnx.ModelProto):
    """tensor name -> (scale, zero_point) of every activation QuantizeLinear."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            name = n.input[0].removesuffix("/float")
            out[name] = (float(inits[n.input[1]]), int(inits[n.input[2]]))
    return out


def test_spec_rules_shared_fixed_and_bias(digits):
    import zoo
    model, _ = zoo.build("squeezenet")  # concat + ceil-mode max pool
    head = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    graph = edgepack.load(head, input_shape=(1, 1, 16, 16))
    samples = load_samples(np.random.default_rng(0).random((40, 1, 16, 16), np.float32), (1, 1, 16, 16))
    qgraph, _ = calibrate_graph(graph, samples, "minmax")
    qp = _qparams(to_onnx_qdq(qgraph, activations="int8"))
    for node in qgraph.nodes:
        if node.op in ("Concat", "MaxPool", "Reshape", "GlobalAveragePool"):
            for i in node.inputs:
                assert qp[i] == qp[node.outputs[0]], (node.name, i)
        if node.op == "Softmax":
            assert qp[node.outputs[0]] == (1 / 256, -128)
        if node.op == "Conv" and len(node.inputs) > 2:
            w, b = qgraph.tensors[node.inputs[1]].quant, qgraph.tensors[node.inputs[2]].quant
            s_in = qgraph.tensors[node.inputs[0]].quant.scale[0]
            assert b.dtype == "int32" and w.axis == 0
            np.testing.assert_allclose(b.scale, np.float32(np.asarray(w.scale) * s_in), rtol=1e-6)
    for scale, zp in qp.values():
        assert -128 <= zp <= 127 and scale > 0


def test_uint8_activations_are_the_int8_values_shifted(digits, trained):
    graph = edgepack.load(trained("resnet"), input_shape=(1, 1, 8, 8))
    qgraph, _ = calibrate_graph(graph, load_samples(digits[0][:100], (1, 1, 8, 8)), "minmax")
    s8, u8 = to_onnx_qdq(qgraph, activations="int8"), to_onnx_qdq(qgraph, activations="uint8")
    p8, pu = _qparams(s8), _qparams(u8)
    assert {k: (s, z + 128) for k, (s, z) in p8.items()} == pu
    x = digits[2][:50]
    outs = [_session(m.SerializeToString()) for m in (s8, u8)]
    a = np.concatenate([outs[0].run(None, {"input": s[None]})[0] for s in x])
    b = np.concatenate([outs[1].run(None, {"input": s[None]})[0] for s in x])
    out_scale = p8[qgraph.outputs[0]][0]
    assert np.max(np.abs(a - b)) <= out_scale * 1.01


def fake_quant_vs_onnxruntime(model, digits) -> dict:
    """Torch fake-quant simulation vs onnxruntime's int8 QDQ model on the held-out digits: top-1 agreement,
    accuracy gap, and whether the simulation is closer to the int8 outputs than float is."""
    graph = edgepack.load(model, input_shape=(1, 1, 8, 8))
    qgraph, _ = calibrate_graph(graph, load_samples(digits[0][:200], (1, 1, 8, 8)), "minmax")
    x_te, y_te = digits[2], digits[3]
    sim = torch_exec.run(qgraph, [x_te], fake_quant=True)[qgraph.outputs[0]]
    flt = torch_exec.run(qgraph, [x_te])[qgraph.outputs[0]]
    sess = _session(to_onnx_qdq(qgraph).SerializeToString())
    real = np.concatenate([sess.run(None, {"input": s[None]})[0] for s in x_te])
    return {"top1_agreement": float(np.mean(sim.argmax(1) == real.argmax(1))),
            "accuracy_gap": abs(accuracy(sim, y_te) - accuracy(real, y_te)),
            "sim_closer_than_float": bool(np.mean(np.abs(sim - real)) < np.mean(np.abs(flt - real)))}


def test_fake_quant_in_torch_matches_onnxruntime_int8(digits, trained):
    got = fake_quant_vs_onnxruntime(trained("mobilenet_v2"), digits)
    assert got["top1_agreement"] >= 0.98 and got["accuracy_gap"] <= 0.01, got  # 5 seeds: 1.000 and 0.000
    assert got["sim_closer_than_float"]
