"""The public API is what DESIGN.md promises: a test pins the names, so removing one is a decision."""
import numpy as np

import edgepack
from ir_build import make_graph, rand


def test_the_public_names_are_pinned():
    assert sorted(edgepack.__all__) == sorted([
        "export", "load", "validate", "lint", "inspect", "list_targets", "load_target", "Target",
        "ExportConfig", "Report", "EdgepackError", "__version__"])
    for name in edgepack.__all__:
        assert getattr(edgepack, name) is not None


def test_targets_and_inspect_answer_from_python(tmp_path):
    names = {p.name for p in edgepack.list_targets()}
    assert "stm32l4r5" in names and len(names) >= 7
    assert edgepack.load_target("stm32l4r5").kind == "mcu"
    g = make_graph({"x": (1, 2, 4, 4)}, [("Conv", ["x", "w"], "y", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1],
                                                      "dilations": [1, 1], "group": 1})],
                   {"w": rand(3, 2, 3, 3)})
    from edgepack.exporter.emit_onnx import to_onnx

    path = tmp_path / "m.onnx"
    path.write_bytes(to_onnx(g).SerializeToString())
    summary = edgepack.inspect(path)
    assert [row["op"] for row in summary["nodes"]] == ["Conv"]
    assert summary["totals"]["macs"] == 3 * 2 * 9 * 16
    assert np.isfinite(summary["totals"]["params"])
