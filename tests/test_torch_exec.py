"""ir.torch_exec: every op against torch or onnxruntime, parameters, write-back, observers, fake quant."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from edgepack.ir import OPS, GraphError, QuantParams
from edgepack.ir.quant import quantize_array
from edgepack.ir.torch_exec import infer_shapes, run, to_module, write_back
from ir_build import make_graph, rand


def ort_node(op, x, attrs=None, inits=(), opset=17):
    """Run one ONNX node on onnxruntime: input X, then the given initializers in order."""
    names = ["X"] + [f"c{i}" for i in range(len(inits))]
    node = helper.make_node(op, names, ["Y"], **(attrs or {}))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names[1:], inits)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]


def run1(op, x, attrs, consts=None, const_inputs=()):
    g = make_graph({"x": x.shape}, [(op, ["x", *const_inputs], "y", attrs)], consts)
    return run(g, [x])["y"]


# ---- geometry ops against torch and onnxruntime --------------------------------------------------------
@pytest.mark.parametrize("group,stride,dil,bias", [(1, 1, 1, True), (2, 2, 1, False), (6, 1, 2, True)])
def test_conv_matches_nn_conv2d(group, stride, dil, bias):
    conv = torch.nn.Conv2d(6, 12 if group != 6 else 6, 3, stride, 1, dil, group, bias=bias)
    x = rand(2, 6, 9, 9, seed=1)
    consts = {"w": conv.weight.detach().numpy()}
    if bias:
        consts["b"] = conv.bias.detach().numpy()
    attrs = dict(strides=[stride] * 2, pads=[1, 1, 1, 1], dilations=[dil] * 2, group=group)
    y = run1("Conv", x, attrs, consts, ["w", "b"] if bias else ["w"])
    np.testing.assert_allclose(y, conv(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("pads", [[0, 0, 1, 1], [1, 0, 2, 1], [2, 1, 0, 0]])
def test_conv_asymmetric_pads_match_onnxruntime(pads):
    x, w, b = rand(1, 4, 8, 7), rand(6, 2, 3, 3, seed=2), rand(6, seed=3)
    attrs = dict(strides=[2, 2], pads=pads, dilations=[1, 1], group=2)
    y = run1("Conv", x, attrs, {"w": w, "b": b}, ["w", "b"])
    ref = ort_node("Conv", x, dict(strides=[2, 2], pads=pads, group=2, kernel_shape=[3, 3]), [w, b])
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


POOL_CASES = [  # kernel, stride, pads, ceil_mode, count_include_pad
    ([3, 3], [2, 2], [0, 0, 0, 0], 1, 0),
    ([3, 3], [2, 2], [1, 1, 1, 1], 1, 0),
    ([3, 3], [2, 2], [1, 1, 1, 1], 1, 1),
    ([2, 2], [2, 2], [0, 0, 1, 1], 0, 0),
    ([3, 2], [2, 1], [1, 0, 0, 1], 1, 1),
]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("k,s,pads,ceil,cip", POOL_CASES)
def test_pooling_matches_onnxruntime(op, k, s, pads, ceil, cip):
    x = rand(2, 3, 8, 7, seed=4)
    attrs = dict(kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil)
    if op == "AveragePool":
        attrs["count_include_pad"] = cip
    y = run1(op, x, attrs)
    ref = ort_node(op, x, attrs, opset=19)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


RESIZE_CASES = [  # mode, coordinate_transformation_mode, nearest_mode, size
    ("nearest", "asymmetric", "floor", [10, 14]),
    ("nearest", "half_pixel", "round_prefer_floor", [3, 5]),  # 6 -> 3 rows: every coordinate is a tie
    ("nearest", "asymmetric", "round_prefer_floor", [12, 14]),
    ("nearest", "asymmetric", "round_prefer_ceil", [12, 14]),
    ("nearest", "align_corners", "round_prefer_ceil", [9, 13]),
    ("nearest", "pytorch_half_pixel", "ceil", [3, 4]),
    ("linear", "half_pixel", None, [11, 14]),
    ("linear", "align_corners", None, [9, 3]),
    ("linear", "asymmetric", None, [12, 12]),
    ("linear", "pytorch_half_pixel", None, [1, 15]),
]


@pytest.mark.parametrize("mode,ctm,nearest,size", RESIZE_CASES)
def test_resize_matches_onnxruntime(mode, ctm, nearest, size):
    x = rand(1, 2, 6, 7, seed=5)
    attrs = dict(mode=mode, size=size, coordinate_transformation_mode=ctm)
    onnx_attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
    if nearest:
        attrs["nearest_mode"] = onnx_attrs["nearest_mode"] = nearest
    y = run1("Resize", x, attrs)
    sizes = np.array([1, 2, *size], np.int64)
    model_inputs = [np.zeros(0, np.float32), np.zeros(0, np.float32), sizes]  # roi, scales, sizes
    ref = ort_node("Resize", x, onnx_attrs, model_inputs, opset=13)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_resize_matches_torch_interpolate():
    x = rand(1, 3, 5, 6, seed=6)
    t = torch.from_numpy(x)
    cases = [(dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
              F.interpolate(t, size=(10, 12), mode="nearest")),
             (dict(mode="linear", coordinate_transformation_mode="half_pixel"),
              F.interpolate(t, size=(10, 12), mode="bilinear", align_corners=False)),
             (dict(mode="linear", coordinate_transformation_mode="align_corners"),
              F.interpolate(t, size=(10, 12), mode="bilinear", align_corners=True))]
    for attrs, ref in cases:
        np.testing.assert_allclose(run1("Resize", x, dict(attrs, size=[10, 12])), ref.numpy(), atol=1e-5)


def test_resize_unsupported_mode_is_a_clear_error():
    g = make_graph({"x": (1, 1, 4, 4)}, [("Identity", ["x"], "y", {})])
    g.nodes[0].op, g.nodes[0].attrs = "Resize", dict(mode="linear", size=[8, 8],
                                                     coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(GraphError, match="tf_crop_and_resize"):
        run(g, [np.zeros((1, 1, 4, 4), np.float32)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_matches_onnxruntime(mode):
    x = rand(1, 2, 5, 6, seed=7)
    pads = [0, 0, 1, 2, 0, 0, 2, 3]
    y = run1("Pad", x, dict(pads=pads, mode=mode, value=1.5))
    inits = [np.array(pads, np.int64)] + ([np.array(1.5, np.float32)] if mode == "constant" else [])
    np.testing.assert_allclose(y, ort_node("Pad", x, dict(mode=mode), inits), atol=1e-6)


# ---- every op in the table runs and agrees with a numpy reference ------------------------------------
X = rand(2, 4, 6, 6, seed=8)
W44 = rand(4, 4, seed=9)
BN = [np.abs(rand(4, seed=s)) + 0.5 for s in range(10, 14)]


def _sm(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


OP_CASES = {  # op -> (attrs, extra inputs as consts, numpy reference of X)
    "Conv": (dict(strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1), [W44.reshape(4, 4, 1, 1)],
             lambda x: np.einsum("nchw,oc->nohw", x, W44)),
    "Gemm": ({}, [W44, BN[0]], lambda x: x[:, :, 0, 0] @ W44.T + BN[0]),
    "MatMul": ({}, [rand(6, 3, seed=14)], lambda x: x @ rand(6, 3, seed=14)),
    "Add": ({}, [BN[0].reshape(1, 4, 1, 1)], lambda x: x + BN[0].reshape(1, 4, 1, 1)),
    "Sub": ({}, [BN[0].reshape(1, 4, 1, 1)], lambda x: x - BN[0].reshape(1, 4, 1, 1)),
    "Mul": ({}, [BN[0].reshape(1, 4, 1, 1)], lambda x: x * BN[0].reshape(1, 4, 1, 1)),
    "Div": ({}, [BN[0].reshape(1, 4, 1, 1)], lambda x: x / BN[0].reshape(1, 4, 1, 1)),
    "Concat": (dict(axis=1), [X[:, :2]], lambda x: np.concatenate([x, X[:, :2]], 1)),
    "MaxPool": (dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0] * 4, ceil_mode=0), [],
                lambda x: x.reshape(2, 4, 3, 2, 3, 2).max(axis=(3, 5))),
    "AveragePool": (dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0] * 4, ceil_mode=0,
                         count_include_pad=0), [], lambda x: x.reshape(2, 4, 3, 2, 3, 2).mean(axis=(3, 5))),
    "GlobalAveragePool": ({}, [], lambda x: x.mean(axis=(2, 3), keepdims=True)),
    "ReduceMean": (dict(axes=[2, 3], keepdims=0), [], lambda x: x.mean(axis=(2, 3))),
    "Relu": ({}, [], lambda x: np.maximum(x, 0)),
    "Clip": (dict(min=-0.5, max=0.7), [], lambda x: np.clip(x, -0.5, 0.7)),
    "LeakyRelu": (dict(alpha=0.1), [], lambda x: np.where(x > 0, x, 0.1 * x)),
    "Sigmoid": ({}, [], lambda x: 1 / (1 + np.exp(-x))),
    "Tanh": ({}, [], np.tanh),
    "HardSigmoid": (dict(alpha=0.3, beta=0.4), [], lambda x: np.clip(0.3 * x + 0.4, 0, 1)),
    "HardSwish": ({}, [], lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
    "Softmax": (dict(axis=1), [], lambda x: _sm(x, 1)),
    "Reshape": (dict(shape=[2, 144]), [], lambda x: x.reshape(2, 144)),
    "Transpose": (dict(perm=[0, 2, 3, 1]), [], lambda x: x.transpose(0, 2, 3, 1)),
    "Pad": (dict(pads=[0, 0, 1, 0, 0, 0, 0, 2], mode="constant", value=0.0), [],
            lambda x: np.pad(x, [(0, 0), (0, 0), (1, 0), (0, 2)])),
    "Resize": (dict(mode="nearest", size=[12, 12], coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"), [], lambda x: x.repeat(2, axis=2).repeat(2, axis=3)),
    "Identity": ({}, [], lambda x: x),
    "Dropout": ({}, [], lambda x: x),
    "ConvTranspose": (dict(strides=[1, 1], pads=[0] * 4, dilations=[1, 1], group=1, output_padding=[0, 0]),
                      [W44.reshape(4, 4, 1, 1)], lambda x: np.einsum("nchw,co->nohw", x, W44)),
    "LayerNormalization": (dict(axis=3, epsilon=1e-5), [BN[0][:3].repeat(2), BN[1][:3].repeat(2)],
                           lambda x: (x - x.mean(3, keepdims=True)) / np.sqrt(x.var(3, keepdims=True) + 1e-5)
                           * BN[0][:3].repeat(2) + BN[1][:3].repeat(2)),
    "Gelu": (dict(approximate="none"), [], lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))),
    "Rsqrt": ({}, [], lambda x: np.where(x > 0, 1 / np.sqrt(np.abs(x)), np.nan)),  # nan where x <= 0
    "BatchNormalization": (dict(epsilon=1e-3), BN, lambda x: (x - BN[2].reshape(1, 4, 1, 1))
                           / np.sqrt(BN[3].reshape(1, 4, 1, 1) + 1e-3) * BN[0].reshape(1, 4, 1, 1)
                           + BN[1].reshape(1, 4, 1, 1)),
}


def _plain_case(op):
    """An op read and written as the ONNX op of its name (plain_onnx): onnxruntime running that op on the
    same inputs is the reference; each further input is a per-channel constant of mixed sign."""
    extras = [BN[0].reshape(4, 1, 1) - 1.0] * (OPS[op].max_inputs - 1)
    return {}, extras, lambda x: ort_node(op, x, inits=extras)


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_in_the_table_runs(op):
    assert op in OP_CASES or OPS[op].plain_onnx, f"add a case for {op} to OP_CASES"
    attrs, extras, ref = OP_CASES[op] if op in OP_CASES else _plain_case(op)
    x = X[:, :, :1, :1].copy() if op == "Gemm" else X
    shape_in = (2, 4) if op == "Gemm" else X.shape
    x = x.reshape(shape_in)
    consts = {f"c{i}": v for i, v in enumerate(extras)}
    y = run1(op, x, attrs, consts, list(consts))
    np.testing.assert_allclose(y, ref(X), rtol=1e-5, atol=1e-5)


def test_fused_activation_attribute_is_applied():
    x = rand(1, 2, 3, 3, seed=15, scale=10)
    w = np.ones((2, 1, 1, 1), np.float32)
    attrs = dict(strides=[1, 1], pads=[0] * 4, dilations=[1, 1], group=2)
    assert np.array_equal(run1("Conv", x, dict(attrs, activation="Relu6"), {"w": w}, ["w"]), np.clip(x, 0, 6))
    assert np.array_equal(run1("Add", x, dict(activation="Relu"), {"z": np.zeros(1, np.float32)}, ["z"]),
                          np.maximum(x, 0))


# ---- module mechanics ----------------------------------------------------------------------------------
def _small_net():
    consts = {"conv.1/weight:0": rand(3, 2, 3, 3, seed=16), "conv.1/bias": rand(3, seed=17),
              "shift": rand(1, 3, 1, 1, seed=18), "fc.w": rand(5, 3, seed=19)}
    nodes = [("Conv", ["x", "conv.1/weight:0", "conv.1/bias"], "c",
              dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1, activation="Relu")),
             ("Add", ["c", "shift"], "a", {}),
             ("GlobalAveragePool", ["a"], "p", {}),
             ("Reshape", ["p"], "r", dict(shape=[1, 3])),
             ("Gemm", ["r", "fc.w"], "y", {})]
    return make_graph({"x": (1, 2, 5, 5)}, nodes, consts)


def test_weights_are_parameters_other_constants_buffers_and_names_map_back():
    g = _small_net()
    m = to_module(g)
    params = {m.tensor_name(k) for k, _ in m.named_parameters()}
    buffers = {m.tensor_name(k) for k, _ in m.named_buffers()}
    assert params == {"conv.1/weight:0", "conv.1/bias", "fc.w"}
    assert buffers == {"shift"}


def test_write_back_copies_trained_values():
    g = _small_net()
    m = to_module(g)
    with torch.no_grad():
        for _, p in m.named_parameters():
            p.mul_(2.0)
    write_back(m, g)
    assert np.allclose(g.const("fc.w"), 2 * rand(5, 3, seed=19))
    x = rand(1, 2, 5, 5, seed=20)
    np.testing.assert_allclose(run(g, [x])["y"], m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_keep_observe_dict_inputs_and_batch():
    g = _small_net()
    x = rand(4, 2, 5, 5, seed=21)  # batch 4 through a graph exported with batch 1
    seen = []
    out = run(g, {"x": x}, keep="all", observe=lambda name, t: seen.append((name, tuple(t.shape))))
    assert [s[0] for s in seen] == ["x", "c", "a", "p", "r", "y"]
    assert set(out) == {"x", "c", "a", "p", "r", "y"} and out["y"].shape == (4, 5)
    assert set(run(g, [x], keep=["a"])) == {"a", "y"}
    assert np.allclose(out["c"], np.maximum(out["c"], 0))
    with pytest.raises(GraphError):
        run(g, {"nope": x})


def test_infer_shapes_rewrites_activation_shapes():
    g = _small_net()
    g.tensors["c"].shape, g.tensors["y"].shape = (9, 9), (1,)
    infer_shapes(g)
    assert g.tensors["c"].shape == (1, 3, 5, 5) and g.tensors["y"].shape == (1, 5)


# ---- fake quantization ---------------------------------------------------------------------------------
def test_fake_quant_activation_lands_on_the_grid():
    g = make_graph({"x": (1, 6)}, [("Identity", ["x"], "y", {})])
    g.tensors["x"].quant = QuantParams.per_tensor(0.1, -3)
    x = np.array([[0.04, 0.26, 0.91, -20.0, 20.0, -12.49]], np.float32)
    y = run(g, [x], fake_quant=True)["y"]
    # q = round(x / 0.1) - 3 clipped to [-128, 127]; real = 0.1 * (q + 3)
    np.testing.assert_allclose(y, [[0.0, 0.3, 0.9, -12.5, 13.0, -12.5]], atol=1e-6)
    np.testing.assert_allclose(run(g, [x])["y"], x)  # off by default


def test_fake_quant_weights_per_channel_round_half_away_and_bias_int32():
    w = np.array([0.25, -0.25, 0.75, 0.1, 0.3, -0.6], np.float32).reshape(2, 3, 1, 1)
    b = np.array([0.013, -0.027], np.float32)
    g = make_graph({"x": (1, 3, 1, 1)}, [("Conv", ["x", "w", "b"], "y",
                                          dict(strides=[1, 1], pads=[0] * 4, dilations=[1, 1], group=1))],
                   {"w": w, "b": b})
    wq, bq = QuantParams.per_channel([0.5, 0.2], axis=0), QuantParams.per_channel([0.01, 0.004], 0, "int32")
    g.tensors["w"].quant, g.tensors["b"].quant = wq, bq
    x = np.array([1.0, 10.0, 100.0], np.float32).reshape(1, 3, 1, 1)
    y = run(g, [x], fake_quant=True)["y"].ravel()
    w_dq, b_dq = wq.dequantize(quantize_array(w, wq)), bq.dequantize(quantize_array(b, bq))
    assert w_dq.ravel()[:3].tolist() == [0.5, -0.5, 1.0]  # ties go away from zero, as in TFLite
    np.testing.assert_allclose(y, w_dq[:, :, 0, 0] @ x.ravel() + b_dq, rtol=1e-6)


def test_fake_quant_trains_with_straight_through_gradients():
    g = _small_net()
    for name in ("x", "c", "a", "p", "r", "y"):
        g.tensors[name].quant = QuantParams.per_tensor(0.05, 0)
    g.tensors["conv.1/weight:0"].quant = QuantParams.per_channel([0.02, 0.02, 0.02], axis=0)
    m = to_module(g, fake_quant=True).train()
    x = torch.from_numpy(rand(2, 2, 5, 5, seed=22)).requires_grad_()
    m(x).square().sum().backward()
    grads = {m.tensor_name(k): p.grad for k, p in m.named_parameters()}
    assert all(gr is not None and gr.abs().sum() > 0 for gr in grads.values())
    assert x.grad is not None and x.grad.abs().sum() > 0
