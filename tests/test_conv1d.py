"""1-D layers: normalised to 2-D ops on (N, C, 1, T), with the Reshapes between consecutive 1-D layers
removed (frontends/lift_1d.py), so BatchNorm folds, ReLU fuses and the .tflite holds no layout transposes
inside the network."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.frontends.onnx import load_onnx
from edgepack.ir import torch_exec
from edgepack.targets.io_mapping import quantize_input
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite

SHAPE = (1, 3, 24)


class Net1d(nn.Module):
    def __init__(self, head=True):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2, bias=False), nn.BatchNorm1d(8), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv1d(8, 8, 3, 2, 1, groups=8), nn.ReLU6(), nn.MaxPool1d(2),
                                nn.AvgPool1d(3, 1, 1))
        self.c3 = nn.Conv1d(8, 8, 3, padding=2, dilation=2)
        self.head = nn.Linear(8, 4) if head else None

    def forward(self, x):
        x = self.c2(self.c1(x))
        x = torch.relu(x + self.c3(x))  # a 1-D residual
        return self.head(x.mean(2)) if self.head is not None else x


def _model(head=True):
    torch.manual_seed(0)
    model = Net1d(head)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _xs(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)


@pytest.mark.parametrize("head", [True, False])
def test_1d_model_is_2d_inside_and_computes_the_same(head):
    model = _model(head)
    graph = edgepack.load(model, input_shape=SHAPE)
    ops = graph.op_counts()
    # Only the Reshape into 4-D at the input and the one out of it at the end remain.
    assert ops["Reshape"] == 2 and ops["Conv"] == 3 and "BatchNormalization" not in ops and "Relu" not in ops
    assert ops.get("GlobalAveragePool", 0) == int(head)  # x.mean(2) over time
    assert all(len(graph.tensors[n.outputs[0]].shape) == 4 for n in graph.nodes if n.op != "Reshape"
               and n.op != "Gemm")
    lite = LiteRT(to_tflite(graph, int8=False), reference=True)
    ort_ = OnnxRuntime(to_onnx(graph).SerializeToString())
    for x in _xs(3):
        want = model(torch.from_numpy(x[None])).detach().numpy()
        np.testing.assert_allclose(torch_exec.run(graph, [x[None]])[graph.outputs[0]], want, atol=1e-5)
        np.testing.assert_allclose(ort_.run(x[None])[0], want, atol=1e-5)
        np.testing.assert_allclose(lite.run(x[None])[0], want, atol=1e-5)  # (N, C, T) in and out, as the model


def test_int8_1d_model_has_one_layout_transpose_and_is_bit_exact_on_tflm():
    graph = edgepack.load(_model(head=False), input_shape=SHAPE)
    qgraph, _ = calibrate_graph(graph, load_samples(_xs(32, 1), SHAPE), "minmax")
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    # channel-first (N, C, T) data in and out: one TRANSPOSE to channel-last at the input, one back
    assert info.op_counts()["TRANSPOSE"] == 2
    tin = info.tensors[info.inputs[0]]
    ref, micro = LiteRT(data, reference=True), TFLM(data)
    for x in _xs(8, 2):
        q = quantize_input(x[None], np.int8, tin.scale[0], tin.zero_point[0])
        np.testing.assert_array_equal(ref.run(q)[0], micro.run(q)[0])


def _onnx_conv1d(attrs, group=1):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 6 // group, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs, group=group)
    pool = helper.make_node("GlobalAveragePool", ["y"], ["z"])
    graph = helper.make_graph([node, pool], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 11])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 6, 1])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("attrs, group", [(dict(auto_pad="SAME_UPPER", strides=[2]), 1),
                                          (dict(pads=[2, 0], dilations=[2]), 1), (dict(pads=[1, 1]), 6)])
def test_onnx_1d_conv_variants(attrs, group):
    proto = _onnx_conv1d(attrs, group)
    graph = load_onnx(proto)
    assert graph.op_counts() == {"Conv": 1, "GlobalAveragePool": 1, "Reshape": 2}
    x = np.random.default_rng(4).standard_normal((1, 6, 11)).astype(np.float32)
    want = OnnxRuntime(proto.SerializeToString()).run(x)[0]
    np.testing.assert_allclose(torch_exec.run(graph, [x])["z"], want, atol=1e-5)
    np.testing.assert_allclose(LiteRT(to_tflite(graph, int8=False), reference=True).run(x)[0], want, atol=1e-5)
