"""Cross-layer equalisation: exact in float, evens out per-channel weight ranges, and makes per-tensor int8
weights work on a model whose channels are badly scaled."""
from __future__ import annotations

import numpy as np
import pytest

import zoo
from edgepack.calibration.calibrate import collect_ranges
from edgepack.calibration.lint import lint_graph
from edgepack.calibration.quantize import QuantRules, quantize_graph
from edgepack.exporter.passes.equalize import equalize, find_pairs
from edgepack.ir import verify
from edgepack.ir.torch_exec import run
from edgepack.targets.metrics import sqnr_db
from ir_build import make_graph, rand

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
PER_TENSOR = QuantRules(per_channel_conv=False)


def assert_same_outputs(g, new, x):
    before, after = run(g, [x]), run(new, [x])
    for name in g.outputs:
        scale = float(np.abs(before[name]).max())
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=1e-5 * scale)


def spread(g, name) -> float:
    w = g.const(name)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return float(amax.max() / amax.min())


def badly_scaled():
    """conv1 -> relu -> conv2 -> relu -> conv3, conv1's output channels scaled over 3 decades and conv2
    compensating: the float function is ordinary, the weight ranges are not."""
    scale = np.logspace(-2, 1, 8)
    np.random.default_rng(0).shuffle(scale)
    w1 = rand(8, 3, 3, 3, seed=1) * scale[:, None, None, None]
    w2 = rand(6, 8, 3, 3, seed=3) / scale[None, :, None, None]
    consts = {"w1": w1.astype(np.float32), "b1": (rand(8, seed=2) * scale * 0.1).astype(np.float32),
              "w2": w2.astype(np.float32), "b2": rand(6, seed=4), "w3": rand(4, 6, 1, 1, seed=5)}
    return make_graph({"x": (1, 3, 8, 8)},
                      [("Conv", ["x", "w1", "b1"], "a", dict(CONV, activation="Relu"), "conv1"),
                       ("Conv", ["a", "w2", "b2"], "b", dict(CONV, activation="Relu"), "conv2"),
                       ("Conv", ["b", "w3"], "y", dict(CONV, pads=[0, 0, 0, 0]), "conv3")], consts)


def fake_quant_sqnr(g, x, rules) -> float:
    ranges, _ = collect_ranges(g, [x])
    q = quantize_graph(g, ranges, rules)
    return sqnr_db(run(g, [x])["y"], run(q, [x], fake_quant=True)["y"])


def test_equalisation_is_exact_and_rescues_per_tensor_int8():
    g, x = badly_scaled(), rand(256, 3, 8, 8, seed=9)
    new, changed = equalize(g.copy())
    verify(new)
    assert changed and find_pairs(g) == [("conv1", "conv2"), ("conv2", "conv3")]
    assert_same_outputs(g, new, x)
    assert spread(g, "w1") > 1000 and spread(new, "w1") < 2  # measured: 1268 -> 1.45
    before, after = fake_quant_sqnr(g, x, PER_TENSOR), fake_quant_sqnr(new, x, PER_TENSOR)
    assert before < 5 and after > before + 25  # measured: 1.5 dB -> 33.4 dB
    # activations are per-tensor even with per-channel weights: conv1's output gains as much
    assert fake_quant_sqnr(new, x, QuantRules()) > fake_quant_sqnr(g, x, QuantRules()) + 25
    # the lint's warning about this layer is gone afterwards
    assert [f.node for f in lint_graph(g, per_channel_conv=False) if f.rule == "weight-channel-spread"] == ["conv1"]
    assert not [f for f in lint_graph(new, per_channel_conv=False) if f.rule == "weight-channel-spread"]


def test_chains_converge_to_equal_ranges_on_both_sides():
    new, _ = equalize(badly_scaled())
    for first, second in (("w1", "w2"), ("w2", "w3")):
        r1 = np.abs(new.const(first).reshape(new.const(first).shape[0], -1)).max(axis=1)
        r2 = np.abs(new.const(second)).max(axis=(0, 2, 3))
        np.testing.assert_allclose(r1, r2, rtol=2e-3)
    again, changed = equalize(new)
    assert not changed or max(spread(again, n) / spread(new, n) for n in ("w1", "w2")) < 1.01


@pytest.mark.parametrize("name, pairs", [("plain_cnn", 3), ("resnet", 2), ("gap_head", 2), ("mlp", 1)])
def test_zoo_models_keep_their_outputs(name, pairs):
    g = zoo.loaded(name)
    assert len(find_pairs(g)) == pairs  # gap_head/plain_cnn: the last Conv pairs with the Gemm via pool+flatten
    new, changed = equalize(g.copy())
    verify(new)
    assert changed
    assert_same_outputs(g, new, rand(16, *g.tensors[g.inputs[0]].shape[1:], seed=1))


def test_clipping_activations_and_shared_outputs_are_left_alone():
    consts = {"w1": rand(4, 2, 3, 3, seed=1) * np.float32([1e-3, 1, 1, 1]).reshape(4, 1, 1, 1),
              "w2": rand(3, 4, 3, 3, seed=2)}
    relu6 = make_graph({"x": (1, 2, 6, 6)}, [("Conv", ["x", "w1"], "a", dict(CONV, activation="Relu6")),
                                             ("Conv", ["a", "w2"], "y", CONV)], consts)
    clip = make_graph({"x": (1, 2, 6, 6)}, [("Conv", ["x", "w1"], "c", CONV),
                                            ("Clip", ["c"], "a", dict(min=0.0, max=4.0)),
                                            ("Conv", ["a", "w2"], "y", CONV)], consts)
    branch = make_graph({"x": (1, 2, 6, 6)}, [("Conv", ["x", "w1"], "a", dict(CONV, activation="Relu")),
                                              ("Conv", ["a", "w2"], "b", CONV), ("Relu", ["a"], "r", {})],
                        consts, outputs=["b", "r"])
    for g in (relu6, clip, branch):
        new, changed = equalize(g.copy())
        assert not changed and find_pairs(g) == []
        np.testing.assert_array_equal(new.const("w1"), g.const("w1"))


@pytest.mark.parametrize("group1, group2", [(1, 8), (8, 1), (1, 2)])
def test_depthwise_and_grouped_layers_on_either_side(group1, group2):
    cin = 8 if group1 == 8 else 3
    w1 = rand(8, cin // group1, 3, 3, seed=1) * np.logspace(-2, 1, 8, dtype=np.float32).reshape(8, 1, 1, 1)
    w2 = rand(8, 8 // group2, 3, 3, seed=2)
    g = make_graph({"x": (1, cin, 6, 6)},
                   [("Conv", ["x", "w1", "b1"], "a", dict(CONV, group=group1, activation="Relu"), "first"),
                    ("MaxPool", ["a"], "p", dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])),
                    ("Conv", ["p", "w2"], "y", dict(CONV, group=group2), "second")],
                   {"w1": w1, "b1": rand(8, seed=3), "w2": w2})
    new, changed = equalize(g.copy())
    assert changed and find_pairs(g) == [("first", "second")]
    assert_same_outputs(g, new, rand(8, cin, 6, 6, seed=4))
    assert spread(new, "w1") < spread(g, "w1") / 10


def test_tied_weights_are_copied_before_rescaling():
    w = rand(4, 4, 3, 3, seed=1) * np.float32([1e-2, 1, 1, 10]).reshape(4, 1, 1, 1)
    g = make_graph({"x": (1, 4, 6, 6)},
                   [("Conv", ["x", "w"], "a", dict(CONV, activation="Relu"), "first"),
                    ("Conv", ["a", "w2"], "b", CONV, "second"), ("Conv", ["x", "w"], "c", CONV, "tied"),
                    ("Add", ["b", "c"], "y", {})], {"w": w, "w2": rand(4, 4, 3, 3, seed=2)})
    new, changed = equalize(g.copy())
    assert changed and new.node("tied").inputs[1] == "w" and new.node("first").inputs[1] != "w"
    np.testing.assert_array_equal(new.const("w"), w)
    assert_same_outputs(g, new, rand(4, 4, 6, 6, seed=3))


def test_export_equalize_flag_keeps_the_float_model_exact(tmp_path):
    import onnxruntime as ort

    import edgepack
    import zoo

    model, shape = zoo.build("plain_cnn")
    x = np.random.default_rng(0).random((20, *shape[1:]), np.float32)
    plain = edgepack.export(model, calib=x, out=tmp_path / "a", input_shape=shape, validate=False)
    eq = edgepack.export(model, calib=x, out=tmp_path / "b", input_shape=shape, validate=False, equalize=True)
    outs = []
    for rep in (plain, eq):
        sess = ort.InferenceSession(rep.artifacts["float_onnx"]["path"], providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: x[:1]})[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    a = open(plain.artifacts["float_onnx"]["path"], "rb").read()
    b = open(eq.artifacts["float_onnx"]["path"], "rb").read()
    check = eq.calibration["rewrites"][0]  # kept only when int8 does not get worse on the calibration data
    assert check["rewrite"] == "equalize" and (a != b) == check["kept"]
    assert check["kept"] == (check["sqnr_with_db"] >= check["sqnr_without_db"])
