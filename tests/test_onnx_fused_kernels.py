"""A QDQ .onnx is validated twice on onnxruntime: with its fused integer kernels (what this CPU gives) and
as the ONNX spec computes the file (the yardstick); where they part, the report says why. On x86 CPUs
without VNNI, onnxruntime's U8S8 kernels saturate their int16 pair sums (onnxruntime issue 16105)."""
import torch

from test_transformer_ops import SHAPE, _attention, _xs
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.targets.cpu import ort_u8s8_saturates
from edgepack.targets.validate import FUSED_WARN_DB, validate


def test_qdq_onnx_is_run_fused_and_as_the_file_says_and_a_gap_is_explained(tmp_path):
    model, graph = _attention()  # q, k, v Gemms with wide weights: saturates U8S8 pair sums without VNNI
    qgraph, _ = calibrate_graph(graph, load_samples(_xs(64, 1), SHAPE), "minmax")
    path = tmp_path / "m.int8.onnx"
    path.write_bytes(to_onnx_qdq(qgraph).SerializeToString())
    xs = _xs(40, 2)
    want = model(torch.from_numpy(xs)).detach().numpy()
    res = validate({"int8_onnx": str(path)}, xs, reference=want)
    ref, fused = res["int8_onnx@onnxruntime-ref"], res["int8_onnx@onnxruntime"]
    assert ref["sqnr_db"] > 25  # the file's own arithmetic is close to float
    gap = fused["vs_onnxruntime_reference"]
    if ort_u8s8_saturates():  # this CPU: the fused kernels lose accuracy, and the report says why
        assert gap["sqnr_db"] < FUSED_WARN_DB and "VNNI" in gap["why"]
        assert fused["sqnr_db"] < ref["sqnr_db"] - 5
    else:  # VNNI x86 or ARM: the fused kernels compute what the file says
        assert (gap["sqnr_db"] is None or gap["sqnr_db"] >= FUSED_WARN_DB) and "why" not in gap
        assert abs(fused["sqnr_db"] - ref["sqnr_db"]) < 1


def test_a_float_onnx_runs_once():
    from edgepack.targets.validate import runtimes_for

    assert runtimes_for("m.float.onnx", "tflm", quantized=False) == ["onnxruntime"]
    assert runtimes_for("m.int8.onnx", "tflm") == ["onnxruntime", "onnxruntime-ref"]
