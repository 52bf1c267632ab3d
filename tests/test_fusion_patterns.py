"""Decomposed ops as exporters write them (paddle2onnx's LayerNorm, GELU's erf and tanh forms,
PaddlePaddle's hard-swish spellings, Softplus, x / sqrt(v)), each built as a small ONNX graph: read as
the fused IR op (node counts), float equal to onnxruntime, int8 output SQNR above FLOOR_DB on LiteRT, the
QDQ .onnx and TFLite Micro where it has the kernels (bit-exact with LiteRT's reference kernels there)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.ir import torch_exec
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from int8_runs import calibrated, run_float, run_int8

FLOOR_DB = 30  # int8 vs float on every runtime; measured 33-48 dB on these graphs
N = helper.make_node
HIDDEN = 16
SEQ_SHAPE = (1, 6, HIDDEN)  # (batch, tokens, hidden): the LayerNorm cases
MAP_SHAPE = (1, 4, 6, 6)  # the activation cases


def _model(nodes, inits, shape):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _layer_norm(square: str, root: str, affine: bool):
    """x -> LayerNorm over the last axis, decomposed; ``square``: Pow | Mul; ``root``: Sqrt+Div (paddle2onnx)
    | Reciprocal (1/sqrt + Mul) | Pow-0.5 (v^-0.5 + Mul)."""
    rng = np.random.default_rng(0)
    inits = {"two": np.float32(2), "eps": np.float32(1e-5), "minus_half": np.float32(-0.5),
             "gamma": (1 + 0.3 * rng.standard_normal(HIDDEN)).astype(np.float32),
             "beta": (0.2 * rng.standard_normal(HIDDEN)).astype(np.float32)}
    nodes = [N("ReduceMean", ["x"], ["mean"], axes=[-1], name="p2o.ReduceMean.0"),
             N("Sub", ["x", "mean"], ["d"], name="p2o.Sub.0"),
             N("Pow", ["d", "two"], ["sq"], name="p2o.Pow.0") if square == "Pow" else N("Mul", ["d", "d"], ["sq"]),
             N("ReduceMean", ["sq"], ["var"], axes=[-1], name="p2o.ReduceMean.1"),
             N("Add", ["var", "eps"], ["ve"], name="p2o.Add.0")]
    if root == "Sqrt+Div":
        nodes += [N("Sqrt", ["ve"], ["std"]), N("Div", ["d", "std"], ["n"])]
    elif root == "Reciprocal":
        nodes += [N("Sqrt", ["ve"], ["std"]), N("Reciprocal", ["std"], ["inv"]), N("Mul", ["d", "inv"], ["n"])]
    else:
        nodes += [N("Pow", ["ve", "minus_half"], ["inv"]), N("Mul", ["inv", "d"], ["n"])]
    nodes += [N("Mul", ["n", "gamma"], ["g"]), N("Add", ["g", "beta"], ["y"])] if affine else \
        [N("Identity", ["n"], ["y"])]
    return nodes, inits, SEQ_SHAPE, {"LayerNormalization": 1, **({} if affine else {"Identity": 1})}, True


def _hard_swish(spelling: str):
    inits = {"three": np.float32(3), "zero": np.float32(0), "six": np.float32(6), "sixth": np.float32(1 / 6)}
    head = [N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "six"], ["r6"])]
    body = {"paddle (x * relu6) / 6": [N("Mul", ["x", "r6"], ["m"]), N("Div", ["m", "six"], ["y"])],
            "paddle (x * relu6) * 1/6": [N("Mul", ["r6", "x"], ["m"]), N("Mul", ["m", "sixth"], ["y"])],
            "keras x * (relu6 / 6)": [N("Div", ["r6", "six"], ["h"]), N("Mul", ["x", "h"], ["y"])]}
    if spelling == "x * HardSigmoid(1/6, 1/2)":
        return ([N("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5), N("Mul", ["h", "x"], ["y"])], {},
                MAP_SHAPE, {"HardSwish": 1}, True)
    return head + body[spelling], inits, MAP_SHAPE, {"HardSwish": 1}, True


def _gelu(form: str):
    c = {"half": np.float32(0.5), "one": np.float32(1), "sqrt2": np.float32(np.sqrt(2)),
         "k": np.float32(np.sqrt(2 / np.pi)), "cubic": np.float32(0.044715), "three": np.float32(3)}
    if form == "erf":
        f = [N("Div", ["x", "sqrt2"], ["s"]), N("Erf", ["s"], ["f"])]
    else:
        cube = [N("Pow", ["x", "three"], ["x3"])] if form == "tanh, Pow" else \
            [N("Mul", ["x", "x"], ["x2"]), N("Mul", ["x2", "x"], ["x3"])]
        f = cube + [N("Mul", ["cubic", "x3"], ["c3"]), N("Add", ["x", "c3"], ["inner"]),
                    N("Mul", ["inner", "k"], ["s"]), N("Tanh", ["s"], ["f"])]
    tail = [N("Add", ["f", "one"], ["f1"]), N("Mul", ["x", "f1"], ["xf"]), N("Mul", ["xf", "half"], ["y"])]
    return f + tail, c, MAP_SHAPE, {"Gelu": 1}, False  # TFLite Micro has no GELU kernel


CASES = {
    **{f"LayerNorm {sq}, {root}{'' if affine else ', no affine'}": _layer_norm(sq, root, affine)
       for sq, root, affine in [("Pow", "Sqrt+Div", True), ("Mul", "Sqrt+Div", True), ("Mul", "Reciprocal", True),
                                ("Pow", "Pow-0.5", True), ("Pow", "Sqrt+Div", False)]},
    **{f"HardSwish {s}": _hard_swish(s) for s in ["paddle (x * relu6) / 6", "paddle (x * relu6) * 1/6",
                                                  "keras x * (relu6 / 6)", "x * HardSigmoid(1/6, 1/2)"]},
    **{f"GELU {form}": _gelu(form) for form in ["erf", "tanh, Pow", "tanh, Mul"]},
    "Softplus": ([N("Softplus", ["x"], ["y"])], {}, MAP_SHAPE,
                 {"Abs": 1, "Neg": 1, "Exp": 1, "Add": 2, "Log": 1, "Relu": 1}, False),
    "Swish x * sigmoid(x) (no fused op: two int8 kernels)": (
        [N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["y"])], {}, MAP_SHAPE, {"Sigmoid": 1, "Mul": 1}, True),
    "a / sqrt(b) as a * Rsqrt(b)": (
        [N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["b"]), N("Sqrt", ["b"], ["r"]), N("Div", ["x", "r"], ["y"])],
        {"one": np.float32(1)}, MAP_SHAPE, {"Abs": 1, "Add": 1, "Rsqrt": 1, "Mul": 1}, True),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    nodes, inits, shape, counts, on_tflm = CASES[request.param]
    model = _model(nodes, inits, shape)
    xs = np.random.default_rng(1).standard_normal((32, *shape[1:])).astype(np.float32) * 2
    want = np.concatenate([OnnxRuntime(model.SerializeToString()).run(x[None])[0] for x in xs])
    return request.param, model, xs, want, counts, on_tflm


def test_loads_as_the_fused_op(case):
    name, model, xs, want, counts, _ = case
    raw = edgepack.load(model, optimize=False)
    assert raw.op_counts() == counts, name
    got = np.concatenate([torch_exec.run(raw, [x[None]])[raw.outputs[0]] for x in xs[:4]])
    np.testing.assert_allclose(got, want[:4], rtol=1e-4, atol=1e-4)


def test_float_artifacts_match_onnxruntime(case):
    name, model, xs, want, _, _ = case
    for runtime, got in run_float(edgepack.load(model), xs[:4]).items():
        np.testing.assert_allclose(got, want[:4], rtol=1e-4, atol=1e-4, err_msg=f"{name} on {runtime}")


def test_int8_output_sqnr_above_the_floor(case):
    name, model, xs, want, _, on_tflm = case
    got = run_int8(calibrated(edgepack.load(model), xs), xs, tflm=on_tflm)
    if on_tflm:
        np.testing.assert_array_equal(got["tflm"], got["litert"])
    for runtime, y in got.items():
        assert sqnr_db(want, y) > FLOOR_DB, f"{name} on {runtime}: {sqnr_db(want, y):.1f} dB"
