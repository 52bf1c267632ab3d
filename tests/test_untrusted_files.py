"""Files that would run code when loaded: by default the payload never runs (its marker file never
appears), edgepack exits 2 with one line naming the opt-in flag; with the flag it loads as before,
which is how these tests prove each payload is real."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import untrusted_payloads as up

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "edgepack.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=cwd)


def assert_refused(proc, *says):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("edgepack: error: "), proc.stderr[-2000:]
    assert all(s in lines[0] for s in says), lines[0]


def tiny_onnx(path: Path) -> Path:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).astype(np.float32).ravel())
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["out"])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# ---- torch.export .pt2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", sorted(up.PT2_PAYLOADS))
def test_pt2_payload_never_runs_by_default_and_runs_with_trust_pickle(tmp_path, payload):
    marker = tmp_path / "MARKER"
    path = up.PT2_PAYLOADS[payload](tmp_path, marker)
    assert not marker.exists()
    assert_refused(run_cli("inspect", path), "--trust-pickle", str(path))
    assert not marker.exists()
    run_cli("inspect", path, "--trust-pickle")  # torch.export.load as before: the payload runs
    assert marker.exists(), f"the {payload} payload is not real"


def test_pt2_payload_refused_by_export_lint_and_validate_reference(tmp_path):
    marker = tmp_path / "MARKER"
    path = up.pt2_sample_inputs(tmp_path, marker)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((4, 1, 4), np.float32))
    onnx_model = tiny_onnx(tmp_path / "tiny.onnx")
    for args in (["export", path, "--calib", x, "--out", tmp_path / "out"], ["lint", path],
                 ["validate", onnx_model, "--data", x, "--reference", path]):
        assert_refused(run_cli(*args), "--trust-pickle")
        assert not marker.exists(), args[0]
    assert not (tmp_path / "out").exists()


def test_plain_pt2_still_loads(tmp_path):
    """A plain torch.export.save (static and dynamic batch) passes the check and exports."""
    from edgepack.frontends.torch_archive_check import pt2_problem

    for dynamic in (False, True):
        assert pt2_problem(up.tiny_pt2(tmp_path / f"plain{dynamic}.pt2", dynamic=dynamic)) is None
    proc = run_cli("inspect", tmp_path / "plainFalse.pt2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"Gemm"' in proc.stdout or '"MatMul"' in proc.stdout


# ---- TorchScript and pickled .pt ---------------------------------------------------------------------------
@pytest.mark.parametrize("payload", ["torchscript_save_at_load", "torchscript_file_in_forward",
                                     "pickled_module"])
def test_pt_payload_never_runs_by_default_and_runs_with_trust_pickle(tmp_path, payload):
    marker = tmp_path / "MARKER"
    path = up.TORCH_PT_PAYLOADS[payload](tmp_path, marker)
    marker.unlink(missing_ok=True)  # scripting does not run it; be sure
    assert_refused(run_cli("inspect", path, "--input-shape", "1,4"), "--trust-pickle")
    assert not marker.exists()
    run_cli("inspect", path, "--input-shape", "1,4", "--trust-pickle")
    assert marker.exists(), f"the {payload} payload is not real"


def test_torchscript_pickles_are_read_by_torch_restricted_unpickler(tmp_path):
    """A TorchScript data.pkl naming exec: torch.jit.load's unpickler resolves no Python global, so it
    never runs, not even with --trust-pickle; the payload itself is real (pickle.loads runs it)."""
    marker = tmp_path / "MARKER"
    path = up.torchscript_pickled_global(tmp_path, marker)
    assert_refused(run_cli("inspect", path, "--input-shape", "1,4"))
    run_cli("inspect", path, "--input-shape", "1,4", "--trust-pickle")
    assert not marker.exists()
    with zipfile.ZipFile(path) as z:
        pickle.loads(z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))
    assert marker.exists()


def test_file_ops_list_covers_every_torch_op_with_a_file_argument():
    import torch

    from edgepack.frontends.torch_archive_check import FILE_OPS

    touching = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas()
                if any(a.name == "filename" for a in s.arguments) or s.name.startswith("debugprims::")}
    assert touching and touching <= FILE_OPS


# ---- Keras ----------------------------------------------------------------------------------------------------
def _keras_lambda(path: Path, marker: Path) -> Path:
    import keras

    fn = eval(f"lambda x: x * 0.5 if {up.touch_python(marker)} is None else x")  # noqa: S307 - the payload
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(fn), keras.layers.Dense(2)])
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model ran it once
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_never_runs_by_default_and_runs_with_trust_code(tmp_path, suffix):
    marker = tmp_path / "MARKER"
    path = _keras_lambda(tmp_path / f"m{suffix}", marker)
    assert_refused(run_cli("inspect", path), "--trust-code")
    assert not marker.exists()
    run_cli("inspect", path, "--trust-code")
    assert marker.exists()


def _saved_model_writing_a_file(folder: Path, marker: Path) -> Path:
    """A TF2 SavedModel whose resource initializer (run by tf.saved_model.load) writes a file."""
    import tensorflow as tf

    class Resource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="r")

        def _initialize(self):
            tf.io.write_file(str(marker), "x")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    class Module(tf.Module):
        def __init__(self):
            self.r = Resource()
            self.w = tf.Variable(tf.ones([4, 2]))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w)}

    module = Module()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    marker.unlink(missing_ok=True)
    return folder


def test_saved_model_initializer_never_runs_by_default_and_runs_with_trust_code(tmp_path):
    marker = tmp_path / "MARKER"
    folder = _saved_model_writing_a_file(tmp_path / "saved", marker)
    assert_refused(run_cli("inspect", folder), "--trust-code", "WriteFile")
    assert not marker.exists()
    run_cli("inspect", folder, "--trust-code")
    assert marker.exists()


# ---- data, ONNX, images, TOML -----------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [up.npy_object_array, up.npz_object_array], ids=["npy", "npz"])
def test_pickled_sample_data_never_runs(tmp_path, build):
    marker = tmp_path / "MARKER"
    data = build(tmp_path, marker)
    assert_refused(run_cli("lint", tiny_onnx(tmp_path / "tiny.onnx"), "--calib", data), str(data))
    assert not marker.exists()
    loaded = np.load(data, allow_pickle=True)  # the payload is real
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded["x"]
    assert marker.exists()


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname"], ids=["parent", "absolute"])
def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(np.ones(12, np.float32).tobytes())
    path = tiny_onnx(folder / "m.onnx")
    proto = onnx.load(path)
    w = proto.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    onnx.save(proto, path)
    assert_refused(run_cli("inspect", path), str(path))


def test_image_decoders_other_than_png_jpeg_bmp_are_never_used(tmp_path):
    """An EPS file named .png: PIL would hand it to Ghostscript (a program run on the file)."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n")
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"])], "image",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 4, 4])])
    model = tmp_path / "image.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    assert_refused(run_cli("lint", model, "--calib", folder), "a.png", "cannot identify image file")  # not EPS


def test_toml_files_hold_values_never_code(tmp_path):
    marker = tmp_path / "MARKER"
    code = up.touch_python(marker).replace('"', "'")
    config = tmp_path / "config.toml"
    config.write_text(f'calibration = "{code}"\n')
    target = tmp_path / "target.toml"
    target.write_text(f'name = "t"\nkind = "{code}"\n')
    model = tiny_onnx(tmp_path / "tiny.onnx")
    for args in (["--config", config], ["--target", target]):
        assert_refused(run_cli("export", model, "--out", tmp_path / "out", "--no-validate", *args))
    assert not marker.exists()
