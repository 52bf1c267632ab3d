"""The export's fix stage: --qat-epochs runs fake-quant distillation of the int8 graph (weights retrained
through int8 rounding, activation ranges kept), and both int8 artifacts are written from its result."""
import numpy as np
import pytest

import edgepack
from edgepack.cli import main
from edgepack.errors import ConfigError

from test_layer_settings import OutlierNet


def _int8_sqnr(report):
    return report.validation["int8_tflite@litert-ref"]["sqnr_db"]


def test_qat_epochs_retrain_the_int8_model_and_do_not_make_it_worse(tmp_path):
    rng = np.random.default_rng(0)
    calib = rng.random((256, 1, 8, 8), np.float32)
    calib[0] = 1.0  # an outlier that leaves conv1 coarsely quantized: room for QAT to adapt the weights
    val = rng.random((64, 1, 8, 8), np.float32)
    # minmax without bias correction: the starting point this test was made for (auto already fixes conv1)
    common = dict(calib=calib, val=val, input_shape=(1, 1, 8, 8), finetune_lr=3e-4, calibration="minmax",
                  bias_correction="off")
    plain = edgepack.export(OutlierNet().eval(), out=tmp_path / "plain", **common)
    qat = edgepack.export(OutlierNet().eval(), out=tmp_path / "qat", qat_epochs=8, **common)
    history = qat.calibration["qat"]
    assert history["epochs_run"] >= 1 and history["best_epoch"] >= 1  # trained weights were kept
    for name in ("model.int8.tflite", "model.int8.onnx"):
        assert (tmp_path / "qat" / name).read_bytes() != (tmp_path / "plain" / name).read_bytes()
    assert (tmp_path / "qat" / "model.float.onnx").read_bytes() == (tmp_path / "plain" / "model.float.onnx").read_bytes()
    assert _int8_sqnr(qat) >= _int8_sqnr(plain)
    # one quantization, two artifacts: after QAT too, ONNX and TFLite agree
    assert qat.validation["int8_onnx@onnxruntime-ref"]["sqnr_db"] == pytest.approx(_int8_sqnr(qat), abs=0.5)


def test_qat_without_calibration_data_is_refused(tmp_path, capsys):
    import torch

    torch.onnx.export(OutlierNet().eval(), (torch.zeros(1, 1, 8, 8),), str(tmp_path / "m.onnx"), dynamo=False,
                      opset_version=17)
    with pytest.raises(ConfigError, match="qat-epochs needs calibration data"):
        edgepack.export(tmp_path / "m.onnx", out=tmp_path / "o", qat_epochs=2)
    code = main(["export", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "o"), "--qat-epochs", "-1"])
    assert code == 2 and "qat_epochs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
