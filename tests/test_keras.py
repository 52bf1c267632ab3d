"""Keras frontend: Keras 3 models (.keras, .h5, SavedModel, in memory) -> tf2onnx -> IR, safe loading,
legacy Keras 2 .h5 repair, NHWC graphs exported without TRANSPOSE, and a PyTorch twin giving the same
TFLite ops."""
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import h5py  # noqa: E402
import keras  # noqa: E402
import torch  # noqa: E402

import edgepack  # noqa: E402
import keras_zoo  # noqa: E402
from edgepack.calibration import calibrate_graph, load_samples  # noqa: E402
from edgepack.demo import digits_split  # noqa: E402
from edgepack.errors import ModelLoadError, ShapeError  # noqa: E402
from edgepack.exporter.emit_onnx import to_onnx  # noqa: E402
from edgepack.exporter.emit_tflite import to_tflite  # noqa: E402
from edgepack.exporter.passes import run_passes  # noqa: E402
from edgepack.frontends.keras import load_keras  # noqa: E402
from edgepack.frontends.keras_legacy import keras_accepts, repair_config  # noqa: E402
from edgepack.targets.io_mapping import dequantize_output, quantize_input, to_file_layout  # noqa: E402
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime  # noqa: E402
from edgepack.targets.tflite_file import read_tflite  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def nhwc_digits():
    x = digits_split()[0]
    return x.transpose(0, 2, 3, 1)[:96]  # Keras models take NHWC


def digits_with_channels(x, channels):
    return np.repeat(x, channels, axis=-1) * np.linspace(1.0, 0.5, channels, dtype=np.float32)


def float_onnx_outputs(graph, x):
    ort = OnnxRuntime(to_onnx(graph).SerializeToString())
    return np.concatenate([ort.run(s[None])[0] for s in x])


def assert_matches_keras(graph, model, x):
    want = model.predict(x, verbose=0)
    got = float_onnx_outputs(graph, x)
    assert np.max(np.abs(got - want)) <= 1e-4 * float(np.ptp(want))


def int8_tflite(graph, samples):
    qgraph, _ = calibrate_graph(graph, load_samples(samples, graph.tensors[graph.inputs[0]].shape), "minmax")
    return to_tflite(qgraph, int8=True)


def run_int8(runtime, model: bytes, x):
    info = read_tflite(model)
    inp, out = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    q = [runtime.run(quantize_input(to_file_layout(s[None], inp.shape), np.int8, inp.scale[0],
                                    inp.zero_point[0]))[0] for s in x]
    return np.stack(q).astype(int), [dequantize_output(v, out.scale[0], out.zero_point[0]) for v in q]


# ---- (1) a Keras CNN: float ONNX == keras predict, int8 TFLite without TRANSPOSE on TFLM ----------------
@pytest.mark.parametrize("channels", [1, 3])
def test_keras_cnn_float_matches_and_int8_has_no_transpose_and_runs_on_tflm(nhwc_digits, channels):
    # One channel: tf2onnx writes the input NHWC->NCHW transpose as a Reshape; three: as a Transpose.
    x = digits_with_channels(nhwc_digits, channels)
    model = keras_zoo.keras_cnn(channels=channels)
    graph = run_passes(load_keras(model))
    assert graph.tensors[graph.inputs[0]].shape == (1, 8, 8, channels)  # NHWC, as the user's data
    assert_matches_keras(graph, model, x[:32])
    assert "TRANSPOSE" not in read_tflite(to_tflite(graph, int8=False)).op_counts()

    tfl = int8_tflite(graph, x[:64])
    assert "TRANSPOSE" not in read_tflite(tfl).op_counts()
    q_tflm, deq = run_int8(TFLM(tfl), tfl, x[64:])
    q_ref, _ = run_int8(LiteRT(tfl, reference=True), tfl, x[64:])
    assert np.max(np.abs(q_tflm - q_ref)) <= 1  # TFLM's FULLY_CONNECTED may round once more
    want = model.predict(x[64:], verbose=0)
    got = np.concatenate(deq).reshape(want.shape)
    assert np.sum(got * want) / np.linalg.norm(got) / np.linalg.norm(want) >= 0.999  # cosine
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95


def test_batchnorm_after_depthwise_and_one_channel_input_reshape_are_normalised():
    """tf2onnx leaves a BN after DepthwiseConv2D as Mul + Add and a 1-channel input transpose as a
    Reshape; the frontend turns them back into a BatchNormalization and a Transpose."""
    graph = load_keras(keras_zoo.keras_cnn(channels=1))
    first = graph.consumers(graph.inputs[0])
    assert [n.op for n in first] == ["Transpose"] and first[0].attrs["perm"] == [0, 3, 1, 2]
    folded = run_passes(graph).op_counts()
    assert "Mul" not in folded and "BatchNormalization" not in folded
    assert folded["Conv"] == 4 and folded["Add"] == 1  # stem, dw, pw, conv2; the residual add


def test_a_tf2onnx_onnx_file_is_tidied_like_a_keras_model(tmp_path, nhwc_digits):
    """A Keras model converted to .onnx with tf2onnx by the user and loaded as ONNX gets the same graph as
    the Keras model itself: no input TRANSPOSE left in the 1-channel .tflite."""
    from edgepack.frontends.keras import _model_to_onnx
    from edgepack.frontends.tf_quiet import import_tf

    model = keras_zoo.keras_cnn(channels=1)
    path = tmp_path / "cnn.onnx"
    path.write_bytes(_model_to_onnx(import_tf()[0], model, None, 13, None))
    graph = edgepack.load(path)
    assert graph.op_counts() == run_passes(load_keras(model)).op_counts()
    assert "TRANSPOSE" not in read_tflite(int8_tflite(graph, nhwc_digits[:32])).op_counts()


@pytest.mark.parametrize("name", keras_zoo.LAYER_CASES)
def test_common_keras_layers_match_keras_and_export_without_transpose(name):
    model = keras_zoo.layer_case(name)
    x = np.random.default_rng(0).random((40, 16, 16, 3), dtype=np.float32)
    graph = run_passes(load_keras(model))
    assert_matches_keras(graph, model, x[:8])
    ops = read_tflite(int8_tflite(graph, x[:32])).op_counts()
    assert "TRANSPOSE" not in ops, ops
    if name == "upsampling":
        assert ops["RESIZE_NEAREST_NEIGHBOR"] == 1 and ops["RESIZE_BILINEAR"] == 1
    if name == "hard_activations":  # one node each, not Add/Clip/Mul chains requantized at every step
        assert {k: graph.op_counts().get(k) for k in ("HardSwish", "HardSigmoid", "Clip", "Mul", "Add")} == {
            "HardSwish": 1, "HardSigmoid": None, "Clip": None, "Mul": 1, "Add": None}
        # TFLite has no HARD_SIGMOID builtin: its scale, bias and RELU6 go into the depthwise conv, x/6 stays
        assert ops["HARD_SWISH"] == 1 and ops["MUL"] == 1 and "ADD" not in ops


# ---- (2) a Keras CNN and its PyTorch twin give the same TFLite op sequence --------------------------------
def test_keras_cnn_and_its_pytorch_twin_give_the_same_tflite_ops(tmp_path):
    x = digits_split()[0][:96]  # NCHW for PyTorch
    twin = keras_zoo.torch_twin()
    model = keras_zoo.copy_torch_to_keras(twin, keras_zoo.keras_cnn())
    with torch.no_grad():
        torch_out = twin(torch.from_numpy(x)).numpy()
    keras_out = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    assert np.max(np.abs(torch_out - keras_out)) <= 1e-5 * float(np.ptp(torch_out))  # the same function

    reports = {
        "keras": edgepack.export(model, calib=x[:64].transpose(0, 2, 3, 1), out=tmp_path / "keras", validate=False),
        "torch": edgepack.export(twin, calib=x[:64], out=tmp_path / "torch", input_shape=(1, 1, 8, 8),
                                 validate=False),
    }
    files = {k: Path(r.artifacts["int8_tflite"]["path"]).read_bytes() for k, r in reports.items()}
    ops = {k: [op.op for op in read_tflite(f).ops] for k, f in files.items()}
    assert ops["keras"] == ops["torch"]
    # the global average pool: AVERAGE_POOL_2D or MEAN, whichever the measured int8 error picks (pool_form.py)
    pool = {"average_pool": "AVERAGE_POOL_2D", "mean": "MEAN"}[reports["torch"].calibration["global_pool"][0]["form"]]
    assert ops["keras"] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MAX_POOL_2D", "CONV_2D",
                            pool, "FULLY_CONNECTED"]  # no RESHAPE: FULLY_CONNECTED flattens, MEAN drops H, W
    # Same function, same calibration samples: the int8 files compute (nearly) the same numbers.
    test = x[64:]
    q_keras, _ = run_int8(LiteRT(files["keras"], reference=True), files["keras"], test.transpose(0, 2, 3, 1))
    q_torch, _ = run_int8(LiteRT(files["torch"], reference=True), files["torch"], test)
    assert np.mean(np.abs(q_keras - q_torch) <= 1) >= 0.99


# ---- (3) code in the file: one clear line, unless the user allows it ----------------------------------------
@pytest.mark.parametrize("build, says, allow", [
    ("with_lambda", ["'halve'", "Lambda", "trust_code=True", "--trust-code"], {"trust_code": True}),
    ("with_custom_layer", ["'scale'", "custom_objects={'Scale'"], {"custom_objects": {"Scale": keras_zoo.Scale}}),
], ids=["lambda", "custom_layer"])
def test_code_in_the_file_is_one_clear_error_unless_allowed(tmp_path, nhwc_digits, build, says, allow):
    model = getattr(keras_zoo, build)()
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"model{suffix}"
        model.save(path)
        with pytest.raises(ModelLoadError) as err:
            load_keras(path)
        text = str(err.value)
        assert len(text.splitlines()) == 1 and all(s in text for s in says), text
        assert_matches_keras(load_keras(path, **allow), model, nhwc_digits[:16])


# ---- (4) Keras 2 .h5 files Keras 3 refuses are repaired ----------------------------------------------------
def _as_keras2_h5(src: Path, dst: Path) -> None:
    """Write what Keras 2 wrote: DepthwiseConv2D configs with `groups: 1`."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "DepthwiseConv2D":
                layer["config"]["groups"] = 1
        f.attrs["model_config"] = json.dumps(config)


def test_legacy_h5_with_depthwise_groups_is_repaired(tmp_path, nhwc_digits, caplog):
    model = keras_zoo.keras_cnn()
    model.save(tmp_path / "k3.h5")
    legacy = tmp_path / "legacy.h5"
    _as_keras2_h5(tmp_path / "k3.h5", legacy)
    before = legacy.read_bytes()
    with pytest.raises(Exception, match="groups"):
        keras.saving.load_model(legacy, compile=False)  # Keras 3 alone refuses it
    with caplog.at_level("WARNING", logger="edgepack.frontends.keras"):
        graph = load_keras(legacy)
    assert any("dropped 'groups' from DepthwiseConv2D (1 layer: dw)" in r.message for r in caplog.records)
    assert_matches_keras(run_passes(graph), model, nhwc_digits[:32])
    assert legacy.read_bytes() == before  # repaired in memory, the user's file untouched


def test_repair_config_drops_only_harmless_keras2_keys():
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1, "kernel_initializer": "x"}},
        {"class_name": "Conv2DTranspose", "config": {"name": "up", "groups": 4}},  # changes the maths: kept
        {"class_name": "BatchNormalization", "config": {"name": "bn", "fused": True, "renorm": False,
                                                        "dtype": {"class_name": "Policy",
                                                                  "config": {"name": "mixed_float16"}}}},
        {"class_name": "Sequential", "config": {"layers": [
            {"class_name": "SeparableConv2D", "config": {"name": "sep", "groups": 1}}]}}]}}
    repairs = repair_config(config)
    layers = config["config"]["layers"]
    assert layers[0]["config"] == {"name": "dw"}
    assert layers[1]["config"]["groups"] == 4
    assert layers[2]["config"] == {"name": "bn", "dtype": "float32"}
    assert layers[3]["config"]["layers"][0]["config"] == {"name": "sep"}
    assert len(repairs) == 6 and any("'groups' from DepthwiseConv2D (1 layer: dw)" in r for r in repairs)
    assert repair_config(config) == []  # nothing left to repair
    # With the installed Keras: only what it no longer takes goes.
    again = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "renorm": False}}]}}
    repair_config(again, keras_accepts(keras))
    bn_takes_renorm = "renorm" in inspect.signature(keras.layers.BatchNormalization.__init__).parameters
    assert "groups" not in again["config"]["layers"][0]["config"]
    assert ("renorm" in again["config"]["layers"][1]["config"]) == bn_takes_renorm


# ---- (5) .keras, .h5, SavedModel and in-memory models all load to the same graph ---------------------------
def test_keras_h5_savedmodel_and_in_memory_models_give_the_same_graph(tmp_path, nhwc_digits):
    model = keras_zoo.keras_cnn()
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    model.export(tmp_path / "saved", verbose=False)
    sources = {"in memory": model, ".keras": tmp_path / "m.keras", ".h5": tmp_path / "m.h5",
               "SavedModel": tmp_path / "saved", ".keras as str": str(tmp_path / "m.keras")}
    want = model.predict(nhwc_digits[:16], verbose=0)
    counts = {}
    for what, source in sources.items():
        graph = run_passes(load_keras(source))
        counts[what] = graph.op_counts()
        got = float_onnx_outputs(graph, nhwc_digits[:16])
        assert np.max(np.abs(got - want)) <= 1e-4 * float(np.ptp(want)), what
    assert all(c == counts["in memory"] for c in counts.values()), counts


def test_output_names_and_order_follow_the_model():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inp)
    logits = keras.layers.Dense(3, name="zeta")(keras.layers.Flatten()(x))
    pooled = keras.layers.GlobalAveragePooling2D(name="alpha")(x)
    graph = load_keras(keras.Model(inp, [logits, pooled]))
    assert graph.outputs == ["zeta", "alpha"] and graph.inputs == ["input"]
    assert [graph.tensors[o].shape for o in graph.outputs] == [(1, 3), (1, 4)]


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="file not found"):
        load_keras(tmp_path / "missing.keras")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelLoadError, match="saved_model.pb"):
        load_keras(tmp_path / "folder")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ModelLoadError, match="junk.h5: not a Keras model file"):
        load_keras(tmp_path / "junk.h5")
    keras_zoo.keras_cnn().save(tmp_path / "m.keras")
    with pytest.raises(ShapeError, match=r"does not fit the Keras model input \(\?, 8, 8, 1\)"):
        load_keras(tmp_path / "m.keras", input_shape=(1, 8, 8, 3))
    flexible = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ShapeError, match="--input-shape"):
        load_keras(flexible)
    assert load_keras(flexible, input_shape=(1, 6, 6, 1)).tensors["input"].shape == (1, 6, 6, 1)


# ---- (6) the example --------------------------------------------------------------------------------------
def test_keras_to_mcu_example(tmp_path):
    out = tmp_path / "keras_to_mcu"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "keras_to_mcu.py"), "--out", str(out), "--epochs", "5"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["fits"] and report["target"] == "stm32l4r5"
    assert report["inputs"] == {"input": [1, 8, 8, 1]}  # the Keras model's NHWC input
    tflm = report["validation"]["int8_tflite@tflm"]
    assert tflm["reference_accuracy"] >= 0.9 and tflm["accuracy"] >= tflm["reference_accuracy"] - 0.02
    assert "TRANSPOSE" not in read_tflite(out / "model.int8.tflite").op_counts()
    assert "fits stm32l4r5" in proc.stdout
