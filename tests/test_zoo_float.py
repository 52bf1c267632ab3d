"""Foundation acceptance: every zoo model goes torch -> IR -> ONNX and still computes the same function."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

import edgepack
import zoo
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.frontends.torch import load_torch
from edgepack.ir import torch_exec, verify


def _inputs(shape, n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


def _torch_out(model, xs):
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[None])).numpy() for x in xs])


def _ort_out(graph, xs):
    sess = ort.InferenceSession(to_onnx(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[None]})[0] for x in xs])


def _close(got, want, rel=1e-4):
    scale = float(np.max(want) - np.min(want)) or 1.0
    err = float(np.max(np.abs(got - want)))
    assert err <= rel * scale, f"max error {err:.3g} > {rel} x output range {scale:.3g}"


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_zoo_roundtrip_ort_and_torch_exec(name):
    model, shape = zoo.build(name)
    xs = _inputs(shape)
    want = _torch_out(model, xs)
    graph = edgepack.load(model, input_shape=shape)
    verify(graph)
    assert "BatchNormalization" not in graph.op_counts()
    _close(_ort_out(graph, xs), want)
    got = np.concatenate([torch_exec.run(graph, [x[None]])[graph.outputs[0]] for x in xs])
    _close(got, want)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", ["resnet", "mobilenet_v3", "decoder", "squeezenet"])
def test_both_torch_exporters_load(name, exporter):
    model, shape = zoo.build(name)
    xs = _inputs(shape, n=2)
    graph = load_torch(model, input_shape=shape, exporter=exporter)
    verify(graph)
    _close(_ort_out(graph, xs), _torch_out(model, xs))
