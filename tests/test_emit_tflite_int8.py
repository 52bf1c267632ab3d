"""The TFLite emitter's int8 files on real runtimes: LiteRT reference kernels vs TFLite Micro (bit-exact
for conv models), XNNPACK within 1 LSB per op, int8 vs float, float I/O, per-channel weights, and the
errors for missing or broken quantization parameters."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_helpers import (calibrate, litert, op_names, run_litert, run_reference, run_tflm, single_node_graph,
                            stored_values, tflm)
from tflite_models import (CONV_MODELS, FC_MODELS, calibrated, conv_stack, depthwise_residual, random_feeds,
                           squeeze_excite)

from edgepack.errors import EdgepackError
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.exporter.layout import build_layout
from edgepack.ir import QuantParams


# Module-scoped: each builder runs and is calibrated once per test file.
@pytest.fixture(scope="module", params=CONV_MODELS + FC_MODELS, ids=lambda f: f.__name__)
def model(request):
    return calibrated(request.param)


def _int8_runs(g, samples, data, kinds=("ref", "tflm")):
    plan = build_layout(g)
    qin = [g.tensors[k].quant for k in g.inputs]
    micro = tflm(data) if "tflm" in kinds else None
    results = []
    for s in samples:
        feeds = [plan.to_stored(k, q.quantize(s[k])) for k, q in zip(g.inputs, qin)]
        row = {}
        for kind in kinds:
            row[kind] = run_tflm(micro, feeds, len(g.outputs)) if kind == "tflm" else \
                run_litert(data, feeds, kind)
        results.append(row)
    return results


def test_int8_tflm_matches_litert_reference(model):
    name, g, _, samples = model
    data = to_tflite(g, int8=True)
    runs = _int8_runs(g, samples, data)
    diffs = [np.abs(r["ref"][i].astype(np.int32) - r["tflm"][i].astype(np.int32))
             for r in runs for i in range(len(g.outputs))]
    worst = max(int(d.max()) for d in diffs)
    equal = float(np.mean(np.concatenate([d.ravel() == 0 for d in diffs])))
    if name in [f.__name__ for f in CONV_MODELS]:
        assert worst == 0, f"{name}: TFLM differs from LiteRT reference by {worst} LSB"
    else:  # FULLY_CONNECTED: TFLM rounds twice, LiteRT reference once
        assert worst <= 1, f"{name}: {worst} LSB"
        print(f"{name}: {equal:.1%} of int8 outputs equal between TFLM and LiteRT reference")


def test_int8_close_to_float(model):
    name, g, _, samples = model
    data = to_tflite(g, int8=True)
    plan = build_layout(g)
    runs = _int8_runs(g, samples[:20], data, kinds=("ref",))
    for s, r in zip(samples[:20], runs):
        ref = run_reference(g, s)
        for i, o in enumerate(g.outputs):
            q = g.tensors[o].quant
            got = q.dequantize(plan.from_stored(o, r["ref"][i]))
            err = np.abs(got - ref[o])
            assert err.max() <= 8 * q.scale[0], f"{name}: max error {err.max() / q.scale[0]:.1f} steps"
            assert err.mean() <= 1.5 * q.scale[0], name


def test_int8_xnnpack_within_one_lsb_per_op(model):
    """XNNPACK runs the int8 file; fed the same int8 inputs, each op differs from the LiteRT
    reference kernel by at most 1 LSB (end to end, such differences compound with depth)."""
    name, g, _, samples = model
    data = to_tflite(g, int8=True)
    plan = build_layout(g)
    checked = 0
    for s in samples[:3]:
        feeds = [plan.to_stored(k, g.tensors[k].quant.quantize(s[k])) for k in g.inputs]
        assert run_litert(data, feeds, "xnnpack")[0].dtype == np.int8
        values = stored_values(data, plan, g, feeds)
        for node in g.nodes:
            if node.name in plan.vanished or any(
                    i not in values for i in node.inputs if i and not g.tensors[i].is_const):
                continue
            sub = single_node_graph(g, node)
            sub_data, sub_plan = to_tflite(sub, int8=True), build_layout(sub)
            sub_feeds = [sub_plan.to_stored(i, values[i]) for i in sub.inputs]
            ref = run_litert(sub_data, sub_feeds, "ref")[0]
            xnn = run_litert(sub_data, sub_feeds, "xnnpack")[0]
            assert np.abs(ref.astype(np.int32) - xnn).max() <= 1, f"{name}: {node.name} ({node.op})"
            checked += 1
    assert checked >= 3 * (len(g.nodes) - 2 * len(plan.vanished))  # nodes beside a vanished Transpose


def test_io_float_adds_one_quantize_and_one_dequantize(model):
    name, g, _, samples = model
    plain, wrapped = op_names(to_tflite(g, True)), op_names(to_tflite(g, True, io="float"))
    assert wrapped.count("QUANTIZE") - plain.count("QUANTIZE") == len(g.inputs)
    assert wrapped.count("DEQUANTIZE") - plain.count("DEQUANTIZE") == len(g.outputs)
    it = litert(to_tflite(g, True, io="float"))
    assert all(d["dtype"] == np.float32 for d in it.get_input_details() + it.get_output_details())
    plan = build_layout(g)
    s = samples[0]
    feeds = [plan.to_stored(k, s[k]) for k in g.inputs]
    got = run_litert(to_tflite(g, True, io="float"), feeds)
    mcu = run_tflm(tflm(to_tflite(g, True, io="float")), feeds, len(g.outputs))
    ref = run_reference(g, s)
    for o, y, m in zip(g.outputs, got, mcu):
        step = g.tensors[o].quant.scale[0]
        assert np.abs(plan.from_stored(o, y) - ref[o]).max() <= 8 * step
        assert np.abs(m - y).max() <= 1.01 * step  # TFLM runs QUANTIZE/DEQUANTIZE too


def test_int8_weights_are_per_channel_on_the_file_axis():
    g, _ = depthwise_residual()
    calibrate(g, random_feeds(g, 5))
    it = litert(to_tflite(g, int8=True))
    by_name = {d["name"]: d for d in it.get_tensor_details()}
    dw = next(n for n in g.nodes if n.op == "Conv" and n.attrs["group"] > 1)
    pw = next(n for n in g.nodes if n.op == "Conv" and n.attrs["group"] == 1)
    w_dw, w_pw = by_name[dw.inputs[1]], by_name[pw.inputs[1]]
    assert tuple(w_dw["shape"]) == (1, 3, 3, 8)  # 1HWO
    assert w_dw["quantization_parameters"]["quantized_dimension"] == 3
    assert tuple(w_pw["shape"])[0] == 8  # OHWI
    assert w_pw["quantization_parameters"]["quantized_dimension"] == 0
    assert len(w_dw["quantization_parameters"]["scales"]) == 8
    bias = by_name[dw.inputs[2]]
    assert bias["dtype"] == np.int32
    s_in = g.tensors[dw.inputs[0]].quant.scale[0]
    np.testing.assert_allclose(bias["quantization_parameters"]["scales"],
                               s_in * w_dw["quantization_parameters"]["scales"], rtol=1e-6)


# ---- quantization parameters ---------------------------------------------------------------
def test_int8_without_quant_params_raises():
    g, _ = conv_stack()
    with pytest.raises(EdgepackError, match="quantization parameters"):
        to_tflite(g, int8=True)


def test_broken_shared_and_fixed_params_raise():
    g, _ = depthwise_residual()
    calibrate(g, random_feeds(g, 5))
    pool = next(n for n in g.nodes if n.op == "MaxPool")
    g.tensors[pool.outputs[0]].quant = QuantParams.per_tensor(0.5, 3)
    with pytest.raises(EdgepackError, match="must keep its input's quantization"):
        to_tflite(g, int8=True)
    g, _ = squeeze_excite()
    calibrate(g, random_feeds(g, 5))
    sig = next(n for n in g.nodes if n.op == "Sigmoid")
    g.tensors[sig.outputs[0]].quant = QuantParams.per_tensor(1 / 255, -128)
    with pytest.raises(EdgepackError, match="TFLite requires"):
        to_tflite(g, int8=True)
