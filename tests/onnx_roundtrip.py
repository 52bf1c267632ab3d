"""ONNX frontend test helpers (test_onnx_frontend*.py): build a checked ONNX model, run it on
onnxruntime, and round-trip it ONNX -> IR -> ONNX checking the emitted model computes the same numbers."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgepack import ir
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.frontends import load_onnx

RNG_SEED = 0


def make_model(nodes, inputs: dict, outputs, inits: dict | None = None, opset: int = 17,
               functions=()) -> onnx.ModelProto:
    """A checked model; ``outputs`` is a list of names (shapes left for inference)."""
    vis = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v)) for k, v in inputs.items()]
    outs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "test", vis, outs, initializer=tensors)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(f.domain, 1) for f in functions]
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions),
                              ir_version=helper.find_min_ir_version_for(opsets[:1]))
    model = onnx.shape_inference.infer_shapes(model)  # fills the output types
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def feeds_for(graph: ir.Graph, seed: int = RNG_SEED) -> dict:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(graph.tensors[n].shape).astype(np.float32) for n in graph.inputs}


def roundtrip(model, input_shapes=None, batch_size=1, opset=17) -> ir.Graph:
    """Load, emit, and check the emitted model computes what the original does."""
    graph = load_onnx(model, input_shapes=input_shapes, batch_size=batch_size)
    ir.verify(graph)
    emitted = to_onnx(graph, opset=opset)
    feeds = feeds_for(graph)
    want, got = run(model, feeds), run(emitted, feeds)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        tol = 1e-5 * float(np.ptp(w)) + 1e-7
        np.testing.assert_allclose(g, w, rtol=0, atol=tol)
    return graph


def rand(*shape, seed=RNG_SEED, scale=1.0):
    return (np.random.default_rng(seed + len(shape)).standard_normal(shape) * scale).astype(np.float32)


def only(graph: ir.Graph, op: str) -> ir.Node:
    nodes = [n for n in graph.nodes if n.op == op]
    assert len(nodes) == 1, graph.op_counts()
    return nodes[0]
