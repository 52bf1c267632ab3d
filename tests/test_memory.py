"""TFLM memory: our replay of AllocateTensors against the tflite_micro wheel's own figures.

The estimate must never be below the smallest arena in which TFLM allocates the model, and within 5 %
of it; its head (activation plan) and tail (persistent data) must equal what TFLM's
print_allocations reports. The offline plan must shrink TFLM's arena without changing a single
output value."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from ai_edge_litert import schema_py_generated as tfl

import edgepack
import zoo
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.errors import ModelLoadError
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.exporter.tflite_builder import BuiltinOp, Options, TfliteBuilder
from edgepack.ir.quant import QuantParams
from edgepack.targets.memory import (estimate_memory, greedy_plan, lower_bound, measure_arena,
                                     read_offline_plan)
from edgepack.targets.offline_plan import add_offline_plan
from edgepack.targets.runtimes import TFLM, RuntimeFailure, _captured_stderr
from edgepack.targets.tflite_file import read_tflite

_MODELS = {}


def int8_tflite(model, shape, io="int8"):
    """Export as the zoo acceptance test does: load, calibrate on 16 digits-like samples, int8 .tflite."""
    x = zoo.digits_like(shape, 16)
    graph = edgepack.load(model.eval(), input_shape=shape)
    qgraph, _ = calibrate_graph(graph, load_samples(x, shape), "minmax")
    return to_tflite(qgraph, int8=True, io=io)


def zoo_model(name, io="int8"):
    if (name, io) not in _MODELS:
        model, shape = zoo.build(name)
        _MODELS[name, io] = int8_tflite(model, shape, io)
    return _MODELS[name, io]


def tflm_head_and_tail(model: bytes) -> tuple[int, int]:
    rt = TFLM(model)
    with _captured_stderr() as text:
        rt.interp.print_allocations()
    found = dict(re.findall(r"Arena allocation (head|tail) (\d+) bytes", text.getvalue()))
    return int(found["head"]), int(found["tail"])


def assert_close_above(model: bytes) -> tuple:
    est, measured = estimate_memory(model), measure_arena(model)
    assert est.arena_bytes >= measured, f"estimate {est.arena_bytes} below TFLM's {measured}"
    assert est.arena_bytes <= 1.05 * measured, f"estimate {est.arena_bytes} over 5 % above TFLM's {measured}"
    return est, measured


@pytest.mark.parametrize("name", [n for n in zoo.ZOO_NAMES if n not in zoo.LITERT_ONLY])  # TFLM can't run those
def test_zoo_estimate_is_never_below_tflm_and_within_5_percent(name):
    model = zoo_model(name)
    est, measured = assert_close_above(model)
    assert (est.planned_bytes, est.persistent_bytes) == tflm_head_and_tail(model)  # the exact replay
    assert est.lower_bound_bytes <= est.planned_bytes < est.arena_bytes
    assert est.flash_bytes == len(model) and 0 < est.weights_bytes < est.flash_bytes
    assert est.arena_bytes % 16 == 0 and not est.unmodelled_ops


@pytest.mark.parametrize("name", ["plain_cnn", "mlp", "decoder"])
def test_float_io_models_with_quantize_and_dequantize_edges(name):
    model = zoo_model(name, io="float")
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(read_tflite(model).op_counts())
    est, _ = assert_close_above(model)
    assert (est.planned_bytes, est.persistent_bytes) == tflm_head_and_tail(model)


@pytest.mark.parametrize("io", ["int8", "float"])
def test_wide_mlp(io):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    est, _ = assert_close_above(int8_tflite(mlp, (1, 64), io))
    # the peak is the middle layer's 512-byte input and output; the float input (256 B) and its int8
    # copy are gone by then
    assert est.lower_bound_bytes == 1024


def test_larger_input_mobilenet_the_plan_dominates():
    model, _ = zoo.build("mobilenet_v2")
    est, measured = assert_close_above(int8_tflite(model, (1, 1, 48, 48)))
    assert est.arena_bytes - measured < 64 and est.planned_bytes > 0.75 * est.arena_bytes


# ---- one op at a time, built by hand --------------------------------------------------------------
Q = QuantParams((0.05,), (0,))


def _op(b: TfliteBuilder, kind: str, x: int, i: int) -> int:
    shape = b.shape(x)
    y = b.add_tensor(f"y{i}", shape, "int8", Q)
    c = shape[-1]
    if kind in ("RELU", "RELU6", "TANH", "HARD_SWISH"):
        b.add_op(getattr(BuiltinOp, kind), [x], [y])
    elif kind == "LOGISTIC":
        y = b.add_tensor(f"s{i}", shape, "int8", QuantParams((1 / 256,), (-128,)))
        b.add_op(BuiltinOp.LOGISTIC, [x], [y])
    elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w_shape = (c, 1, 1, c) if kind == "CONV_2D" else (1, 3, 3, c)
        axis = 0 if kind == "CONV_2D" else 3
        w = b.add_tensor(f"w{i}", w_shape, "int8", QuantParams((0.01,) * c, (0,) * c, axis=axis), axis,
                         data=np.ones(w_shape, np.int8))
        bias = b.add_tensor(f"b{i}", (c,), "int32", QuantParams((5e-4,) * c, (0,) * c, "int32", axis=0),
                            data=np.zeros(c, np.int32))
        if kind == "CONV_2D":
            b.add_op(BuiltinOp.CONV_2D, [x, w, bias], [y], Options.Conv2DOptions,
                     tfl.Conv2DOptionsT(padding=0, strideW=1, strideH=1, dilationWFactor=1, dilationHFactor=1))
        else:
            b.add_op(BuiltinOp.DEPTHWISE_CONV_2D, [x, w, bias], [y], Options.DepthwiseConv2DOptions,
                     tfl.DepthwiseConv2DOptionsT(padding=0, strideW=1, strideH=1, depthMultiplier=1,
                                                 dilationWFactor=1, dilationHFactor=1))
    elif kind == "FULLY_CONNECTED":
        n = int(np.prod(shape))
        y = b.add_tensor(f"f{i}", (1, 16), "int8", Q)
        w = b.add_tensor(f"w{i}", (16, n), "int8", QuantParams((0.01,), (0,)), data=np.ones((16, n), np.int8))
        bias = b.add_tensor(f"b{i}", (16,), "int32", QuantParams((5e-4,), (0,), "int32"),
                            data=np.zeros(16, np.int32))
        b.add_op(BuiltinOp.FULLY_CONNECTED, [x, w, bias], [y], Options.FullyConnectedOptions,
                 tfl.FullyConnectedOptionsT())
    elif kind in ("ADD", "MUL"):
        b.add_op(getattr(BuiltinOp, kind), [x, x], [y], getattr(Options, kind.title() + "Options"),
                 getattr(tfl, kind.title() + "OptionsT")())
    elif kind == "CONCATENATION":
        y = b.add_tensor(f"c{i}", shape[:-1] + (2 * c,), "int8", Q)
        b.add_op(BuiltinOp.CONCATENATION, [x, x], [y], Options.ConcatenationOptions,
                 tfl.ConcatenationOptionsT(axis=3))
    elif kind in ("PAD", "MIRROR_PAD"):
        y = b.add_tensor(f"p{i}", (1, shape[1] + 2, shape[2] + 2, c), "int8", Q)
        pads = b.add_int32(f"pads{i}", [[0, 0], [1, 1], [1, 1], [0, 0]])
        b.add_op(getattr(BuiltinOp, kind), [x, pads], [y],
                 *((Options.PadOptions, tfl.PadOptionsT()) if kind == "PAD"
                   else (Options.MirrorPadOptions, tfl.MirrorPadOptionsT(mode=0))))
    elif kind == "MEAN":
        y = b.add_tensor(f"m{i}", shape[:-1] + (1,), "int8", QuantParams((0.04,), (0,)))
        b.add_op(BuiltinOp.MEAN, [x, b.add_int32(f"axis{i}", [3])], [y], Options.ReducerOptions,
                 tfl.ReducerOptionsT(keepDims=True))
    elif kind in ("BATCH_MATMUL", "BATCH_MATMUL_ADJ_X"):
        b.add_op(BuiltinOp.BATCH_MATMUL, [x, x], [y], Options.BatchMatMulOptions,
                 tfl.BatchMatMulOptionsT(adjX=kind.endswith("X"), adjY=not kind.endswith("X")))
    elif kind == "RESHAPE":
        b.add_op(BuiltinOp.RESHAPE, [x, b.add_int32(f"shape{i}", list(shape))], [y], Options.ReshapeOptions,
                 tfl.ReshapeOptionsT(newShape=list(shape)))
    elif kind == "AVERAGE_POOL_2D":
        b.add_op(BuiltinOp.AVERAGE_POOL_2D, [x], [y], Options.Pool2DOptions,
                 tfl.Pool2DOptionsT(padding=0, strideW=1, strideH=1, filterWidth=1, filterHeight=1))
    return y


def op_chain(kind: str, copies: int) -> bytes:
    b = TfliteBuilder()
    x = first = b.add_tensor("x", (1, 6, 6) if kind.startswith("BATCH") else (1, 4, 4, 8), "int8", Q)
    for i in range(copies):
        x = _op(b, kind, x, i)
    return b.finish([first], [x], ["x"], ["y"])


KINDS = ["RELU", "RELU6", "TANH", "LOGISTIC", "HARD_SWISH", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
         "ADD", "MUL", "CONCATENATION", "PAD", "MIRROR_PAD", "MEAN", "BATCH_MATMUL", "BATCH_MATMUL_ADJ_X",
         "RESHAPE", "AVERAGE_POOL_2D"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kernel_alone_and_chained(kind):
    for copies in (1, 3):
        model = op_chain(kind, copies)
        est, _ = assert_close_above(model)
        assert est.persistent_bytes == tflm_head_and_tail(model)[1]  # every tail allocation accounted for


def test_two_inputs_two_outputs():
    b = TfliteBuilder()
    a, c, y1, y2, y3 = (b.add_tensor(n, (1, 8, 8, 16), "int8", Q) for n in ("a", "c", "y1", "y2", "y3"))
    b.add_op(BuiltinOp.ADD, [a, c], [y1], Options.AddOptions, tfl.AddOptionsT())
    b.add_op(BuiltinOp.MUL, [y1, a], [y2], Options.MulOptions, tfl.MulOptionsT())
    b.add_op(BuiltinOp.RELU, [y2], [y3])
    model = b.finish([a, c], [y1, y3], ["a", "c"], ["y1", "y3"])
    est, _ = assert_close_above(model)
    assert est.lower_bound_bytes == 3 * 1024  # a, y1 (a graph output lives to the end) and y2 or y3


# ---- the planner and the lower bound --------------------------------------------------------------
def test_greedy_plan_places_equal_sizes_last_added_first():
    """TFLM fills its sort array from the back: among equal sizes the later buffer is placed first."""
    buffers = [(32, 0, 1), (32, 1, 2), (16, 2, 3)]
    offsets, arena = greedy_plan(buffers)
    assert offsets == [32, 0, 32] and arena == 64
    offsets, arena = greedy_plan(buffers, fixed=[0, 32, None])  # an offline plan is kept as given
    assert offsets[:2] == [0, 32] and offsets[2] == 0 and arena == 64


def test_lower_bound_counts_tensors_alive_together():
    model = op_chain("RELU", 3)  # x -> y0 -> y1 -> y2, 128 bytes each: two alive at every step
    assert lower_bound(read_tflite(model)) == 256
    assert estimate_memory(model).planned_bytes == 256


def test_path_and_parsed_model_give_the_same_estimate(tmp_path):
    model = zoo_model("gap_head")
    (tmp_path / "m.tflite").write_bytes(model)
    same = {estimate_memory(m).arena_bytes for m in (model, tmp_path / "m.tflite", read_tflite(model))}
    assert len(same) == 1
    # without the file's bytes BATCH_MATMUL's flags are unknown: both operands counted as transposed
    bmm = op_chain("BATCH_MATMUL", 1)
    assert estimate_memory(read_tflite(bmm)).arena_bytes > estimate_memory(bmm).arena_bytes


# ---- asking TFLM ----------------------------------------------------------------------------------
def test_measure_arena_survives_a_crashing_kernel():
    """TFLM's MEAN kernel segfaults in too small an arena: the probe runs in a child process."""
    model = op_chain("MEAN", 1)
    measured = measure_arena(model)
    assert TFLM(model, arena_size=measured).arena_used() <= measured + 16
    assert estimate_memory(model).arena_bytes >= measured


def test_measure_arena_reports_what_is_not_a_size_problem():
    b = TfliteBuilder()
    x, y = b.add_tensor("x", (1, 4), "int8", Q), b.add_tensor("y", (1, 4), "int8", Q)
    b.add_op(BuiltinOp.CUSTOM, [x], [y])
    b._opcodes[0].customCode = "NoSuchOp"
    model = b.finish([x], [y], ["x"], ["y"])
    with pytest.raises(RuntimeFailure, match="registration"):
        measure_arena(model)
    assert estimate_memory(model).unmodelled_ops == ["CUSTOM"]
    with pytest.raises(ModelLoadError):
        measure_arena(b"not a model")


# ---- offline plan ---------------------------------------------------------------------------------
def test_offline_plan_shrinks_the_resnet_arena_to_the_lower_bound():
    model = zoo_model("resnet")
    planned = add_offline_plan(model)
    before, after = measure_arena(model), measure_arena(planned)
    est = estimate_memory(planned)
    assert est.planned_bytes == est.lower_bound_bytes < estimate_memory(model).planned_bytes
    assert after == before - (estimate_memory(model).planned_bytes - est.planned_bytes)
    assert read_offline_plan(planned) == est.offsets and read_offline_plan(model) is None
    assert est.arena_bytes >= after and est.arena_bytes <= 1.05 * after
    info = read_tflite(model)
    x = np.random.default_rng(0).integers(-128, 128, info.tensors[info.inputs[0]].shape).astype(np.int8)
    assert np.array_equal(TFLM(model).run(x)[0], TFLM(planned).run(x)[0])


def test_offline_plan_leaves_a_model_alone_when_tflm_is_already_optimal():
    model = zoo_model("mobilenet_v2")
    assert add_offline_plan(model) == model


def test_export_with_an_offline_arena_plan_needs_less_tflm_arena(tmp_path):
    """`--arena-plan offline` writes the plan into the exported .tflite: TFLM runs it in a smaller arena
    (the planner's lower bound on the zoo resnet) with the same outputs."""
    import edgepack
    import zoo

    model, shape = zoo.build("resnet")
    x = zoo.digits_like(shape, 16)
    reports = {plan: edgepack.export(model, calib=x, out=tmp_path / plan, input_shape=shape, arena_plan=plan,
                                     calibration="minmax", bias_correction="off", lint=False)
               for plan in ("runtime", "offline")}
    runtime, offline = (reports[p].memory for p in ("runtime", "offline"))
    assert offline.arena_measured_tflm < runtime.arena_measured_tflm
    assert offline.arena_lower_bound <= offline.arena_measured_tflm
    files = {p: (tmp_path / p / "model.int8.tflite").read_bytes() for p in reports}
    assert read_offline_plan(files["offline"]) is not None and read_offline_plan(files["runtime"]) is None
    info = read_tflite(files["runtime"])
    q = np.random.default_rng(0).integers(-128, 128, info.tensors[info.inputs[0]].shape).astype(np.int8)
    assert np.array_equal(TFLM(files["runtime"]).run(q)[0], TFLM(files["offline"]).run(q)[0])
