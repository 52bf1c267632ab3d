"""Per-layer rows name the layer of the source model that computes each tensor (issue 13 item 5)."""
import numpy as np
import pytest

from edgepack.api import export
from edgepack.frontends.keras_names import _replay
from edgepack.prove import layer_of


def test_layer_of_reads_the_module_path_or_keras_layer():
    assert layer_of("/features/features.0/Conv") == "features.0"
    assert layer_of("functional/conv2d/convolution") == "conv2d"
    assert layer_of("conv1") == "conv1"


def test_replay_explains_tensorflow_scopes_shifted_by_one():
    # each Keras 3 layer asks for its scope twice: 'activation' ends under 'activation_1'
    scopes = _replay(["functional", "conv2d", "activation", "conv2d_1", "activation_1"], 2)
    assert scopes["activation_1"] == "activation" and scopes["conv2d_1_2"] == "conv2d_1"
    assert scopes["activation_1_2"] == "activation_1" and scopes["functional_1"] == "functional"


def _rows(report):
    return {r["tensor"]: r for r in report.per_layer["layers"] if r["op"] != "INPUT"}


def test_pytorch_rows_name_the_module(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)).eval()
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    report = export(model, x, tmp_path / "out", example_input=torch.from_numpy(x[:1]))
    by_op = [(r["op"], r["layer"]) for r in _rows(report).values()]
    # the first conv's tensor is named after the fused ReLU ('/1/Relu'): the row names the conv, module 0
    assert by_op == [("CONV_2D", "0"), ("CONV_2D", "2"), ("RESHAPE", "3"), ("FULLY_CONNECTED", "4")]
    assert all("layer" in r for r in report.per_layer["worst"])


def test_keras_rows_name_the_layer_not_the_shifted_scope(tmp_path):
    from edgepack.frontends.tf_quiet import import_tf

    _, keras = import_tf()
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="conv2d")(inp)
    h = keras.layers.Activation("relu", name="activation")(h)
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv2d_1")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(5, name="dense")(h)
    h = keras.layers.Activation("softmax", name="activation_1")(h)
    x = np.random.default_rng(0).standard_normal((8, 8, 8, 3)).astype(np.float32)
    report = export(keras.Model(inp, h), x, tmp_path / "out")
    rows = list(_rows(report).values())
    # TF scoped the first conv's fused relu 'activation_1/Relu': the row says the conv that computes it
    assert "activation_1/" in rows[0]["tensor"]
    assert [(r["op"], r["layer"]) for r in rows] == [
        ("CONV_2D", "conv2d"), ("CONV_2D", "conv2d_1"), ("RESHAPE", "flatten"), ("FULLY_CONNECTED", "dense"),
        ("SOFTMAX", "activation_1")]


def test_validate_of_a_bare_file_leaves_the_names_out(tmp_path):
    from edgepack.prove import check_layers
    from edgepack.report import Report

    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    export(model, x, tmp_path / "out", example_input=torch.from_numpy(x[:1]), validate=False)
    report = Report(model="bare")
    check_layers(report, tmp_path / "out" / "model.int8.tflite", tmp_path / "out" / "model.float.tflite", x)
    assert report.per_layer["layers"] and all("layer" not in r for r in report.per_layer["layers"])
