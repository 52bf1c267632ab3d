"""The elementwise ops decomposed graphs leave behind (Sqrt, Exp, Log, Neg, Abs, Pow with a constant
exponent, Min, Max) and Slice / Split / Gather on constant indices: each read into the IR (node counts),
float equal to onnxruntime on LiteRT and edgepack's float .onnx, int8 above 30 dB (vs the source model on
onnxruntime) on LiteRT, the QDQ .onnx and TFLite Micro where it has the int8 kernel (bit-exact with
LiteRT's reference kernels there)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack.frontends import load_onnx
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from int8_runs import calibrated, run_float, run_int8

SHAPE = (1, 4, 6, 6)
N = helper.make_node


def _model(nodes, inits):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _positive(op_nodes, inits=None):
    """|x| + 0.5 feeding ``op_nodes`` (which read 'p'): the domain of Sqrt, Log, Pow, 1/sqrt."""
    return ([N("Abs", ["x"], ["a"]), N("Add", ["a", "half"], ["p"])] + op_nodes,
            {"half": np.float32(0.5), **(inits or {})}, {"Abs": 1, "Add": 1})


# name -> (nodes, constants, IR op counts, TFLite Micro runs it in int8)
def _cases():
    sqrt, log = _positive([N("Sqrt", ["p"], ["y"])]), _positive([N("Log", ["p"], ["y"])])
    pow15 = _positive([N("Pow", ["p", "e"], ["y"])], {"e": np.float32(1.5)})
    pow_half = _positive([N("Pow", ["p", "e"], ["y"])], {"e": np.float32(0.5)})
    pow_rsqrt = _positive([N("Pow", ["p", "e"], ["y"])], {"e": np.float32(-0.5)})
    return {
        "Sqrt": (*sqrt[:2], {**sqrt[2], "Sqrt": 1}, False),
        "Log": (*log[:2], {**log[2], "Log": 1}, False),
        "Exp": ([N("Exp", ["x"], ["y"])], {}, {"Exp": 1}, False),
        "Neg": ([N("Neg", ["x"], ["y"])], {}, {"Neg": 1}, True),
        "Abs": ([N("Abs", ["x"], ["y"])], {}, {"Abs": 1}, True),
        "Pow(1.5)": (*pow15[:2], {**pow15[2], "Pow": 1}, False),
        "Pow(0.5) as Sqrt": (*pow_half[:2], {**pow_half[2], "Sqrt": 1}, False),
        "Pow(-0.5) as Rsqrt": (*pow_rsqrt[:2], {**pow_rsqrt[2], "Rsqrt": 1}, True),
        "Pow(2) as Mul": ([N("Pow", ["x", "e"], ["y"])], {"e": np.float32(2)}, {"Mul": 1}, True),
        "Pow(3) as Mul": ([N("Pow", ["x", "e"], ["y"])], {"e": np.float32(3)}, {"Mul": 2}, True),
        "Max of three": ([N("Relu", ["x"], ["r"]), N("Max", ["x", "r", "c"], ["y"])], {"c": np.float32(-0.5)},
                         {"Relu": 1, "Max": 2}, True),
        "Min": ([N("Relu", ["x"], ["r"]), N("Min", ["x", "r"], ["y"])], {}, {"Relu": 1, "Min": 1}, True),
        "Slice": ([N("Slice", ["x", "s", "e", "ax"], ["y"])],
                  {"s": np.array([1, 2], np.int64), "e": np.array([3, 100], np.int64),
                   "ax": np.array([1, 3], np.int64)}, {"Slice": 1}, True),
        "Split (q, k, v style)": ([N("Split", ["x", "sp"], ["p", "q", "r"], axis=1), N("Add", ["p", "r"], ["y"])],
                                  {"sp": np.array([1, 1, 2], np.int64)}, {"Slice": 2, "Add": 1}, True),
        "Gather of a list": ([N("Gather", ["x", "i"], ["y"], axis=1)], {"i": np.array([3, 0], np.int64)},
                             {"Slice": 2, "Concat": 1}, True),
        "Gather of one index": ([N("Gather", ["x", "i"], ["y"], axis=3)], {"i": np.array(-1, np.int64)},
                                {"Slice": 1, "Reshape": 1}, True),
        "Gather of a range": ([N("Gather", ["x", "i"], ["y"], axis=2)], {"i": np.array([2, 3, 4], np.int64)},
                              {"Slice": 1}, True),
    }


CASES = _cases()


def _xs(n, seed):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    nodes, inits, counts, on_tflm = CASES[request.param]
    model = _model(nodes, inits)
    graph = load_onnx(model)
    reference = OnnxRuntime(model.SerializeToString())
    return request.param, graph, reference, counts, on_tflm


def test_read_as_the_ir_ops(case):
    name, graph, _, counts, _ = case
    assert graph.op_counts() == counts, name


def test_float_matches_onnxruntime(case):
    name, graph, reference, _, _ = case
    xs = _xs(4, 1)
    want = np.concatenate([reference.run(x[None])[0] for x in xs])
    for runtime, got in run_float(graph, xs).items():
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{name} on {runtime}")


def test_int8_close_to_float(case):
    name, graph, reference, _, on_tflm = case
    xs = _xs(32, 2)
    want = np.concatenate([reference.run(x[None])[0] for x in xs])
    got = run_int8(calibrated(graph, xs), xs, tflm=on_tflm)
    if on_tflm:
        np.testing.assert_array_equal(got["tflm"], got["litert"])
    for runtime, y in got.items():
        assert sqnr_db(want, y) > 30, f"{name} on {runtime}: {sqnr_db(want, y):.1f} dB"
