"""The TFLite emitter end to end: torch zoo models through the frontend and passes, float on LiteRT vs
torch, int8 without TRANSPOSE on LiteRT reference kernels vs TFLite Micro."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_helpers import calibrate, op_names, run_litert, run_tflm, tflm

from edgepack.exporter.emit_tflite import to_tflite
from edgepack.exporter.layout import build_layout


@pytest.mark.parametrize("zoo_name", ["mobilenet_v3", "resnet", "squeezenet", "decoder"])
def test_zoo_models_export_without_transpose_and_run_on_tflm(zoo_name):
    import torch
    import zoo

    import edgepack
    from edgepack.ir import torch_exec

    model, shape = zoo.build(zoo_name)
    g = edgepack.load(model, input_shape=shape)
    xs = np.random.default_rng(0).standard_normal((16, *shape[1:])).astype(np.float32)
    calibrate(g, [{g.inputs[0]: x[None]} for x in xs],
              run=lambda graph, feeds: torch_exec.run(graph, feeds, keep="all"))
    plan = build_layout(g)
    with torch.no_grad():
        want = model(torch.from_numpy(xs[:4])).numpy()
    f32 = to_tflite(g, int8=False)
    runs = [run_litert(f32, [plan.to_stored(g.inputs[0], x[None])])[0] for x in xs[:4]]
    got = np.concatenate([plan.from_stored(g.outputs[0], r) for r in runs])
    assert np.abs(got - want).max() <= 1e-4 * float(want.max() - want.min())
    i8 = to_tflite(g, int8=True)
    assert "TRANSPOSE" not in op_names(i8)
    qin, qout = g.tensors[g.inputs[0]].quant, g.tensors[g.outputs[0]].quant
    micro = tflm(i8)
    for x, w in zip(xs[:4], want):
        feeds = [plan.to_stored(g.inputs[0], qin.quantize(x[None]))]
        ref, mcu = run_litert(i8, feeds)[0], run_tflm(micro, feeds)[0]
        limit = 1 if "FULLY_CONNECTED" in op_names(i8) else 0
        assert np.abs(ref.astype(np.int32) - mcu).max() <= limit
        err = np.abs(qout.dequantize(plan.from_stored(g.outputs[0], ref))[0] - w)
        assert err.max() <= 6 * qout.scale[0]
