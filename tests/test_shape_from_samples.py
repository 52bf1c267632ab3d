"""A model that leaves input dims open (dynamic height/width) exports when its calibration samples give the
full shape, and the report says where the shape came from; without samples the error names --input-shape."""
import numpy as np
import pytest
import torch

import edgepack
from edgepack.errors import ShapeError


@pytest.fixture()
def dynamic_onnx(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    return path


def test_open_dims_are_taken_from_the_calibration_samples(dynamic_onnx, tmp_path):
    calib = np.random.default_rng(0).random((16, 1, 12, 10), np.float32)
    report = edgepack.export(dynamic_onnx, calib=calib, out=tmp_path / "out", lint=False)
    assert report.inputs == {"x": [1, 1, 12, 10]}
    assert any("input shape 1x1x12x10 taken from the calibration samples" in n for n in report.notes)
    assert report.validation["int8_tflite@litert-ref"]["sqnr_db"] > 25


def test_without_samples_the_error_names_input_shape(dynamic_onnx, tmp_path):
    with pytest.raises(ShapeError, match="--input-shape"):
        edgepack.export(dynamic_onnx, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
