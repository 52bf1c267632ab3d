"""The files of the bad-input corpus: ``build_workspace(root)`` writes each once (a tiny valid ONNX model
and its data, then broken, non-regular and absurd variants). The cases that use them are in bad_inputs.py."""
from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

BAD_NAME = os.fsdecode(b"bad\xff")  # what a non-UTF-8 file name looks like in sys.argv


# ---- the workspace --------------------------------------------------------------------------

def _tiny_onnx(path: Path, w_fill=None, op="Conv", opset=17, dims=(1, 1, 8, 8)) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 1, 3, 3)) * 0.3).astype(np.float32)
    if w_fill is not None:
        w[0, 0, 0, 0] = w_fill
    fc = (rng.standard_normal((3, 4 * 6 * 6)) * 0.1).astype(np.float32)
    first = (helper.make_node("Conv", ["input", "w"], ["c"], name="conv") if op == "Conv"
             else helper.make_node(op, ["input"], ["c0"], name="odd"))
    nodes = [first] if op == "Conv" else [first, helper.make_node("Conv", ["c0", "w"], ["c"], name="conv")]
    nodes += [helper.make_node("Relu", ["c"], ["r"], name="relu"),
              helper.make_node("Flatten", ["r"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "fc"], ["out"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _png(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (a decompression bomb when large) with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _npy_with_header(path: Path, header: str, body: bytes = b"") -> None:
    header = header.ljust(117) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body)


_PROFILE = Path(__file__).resolve().parents[1] / "edgepack" / "targets" / "profiles" / "stm32l4r5.toml"

# target profile variants: (file stem, line to replace or None to append, replacement)
TARGETS = {
    "clock_nan": ("clock_mhz = 120", "clock_mhz = nan"),
    "clock_inf": ("clock_mhz = 120", "clock_mhz = inf"),
    "clock_neg": ("clock_mhz = 120", "clock_mhz = -120"),
    "clock_zero": ("clock_mhz = 120", "clock_mhz = 0"),
    "clock_absurd": ("clock_mhz = 120", "clock_mhz = 1e300"),
    "clock_text": ("clock_mhz = 120", 'clock_mhz = "fast"'),
    "ram_zero": ("ram_bytes = 655360", "ram_bytes = 0"),
    "ram_neg": ("ram_bytes = 655360", "ram_bytes = -1"),
    "ram_float": ("ram_bytes = 655360", "ram_bytes = nan"),
    "flash_text": ("flash_bytes = 2097152", 'flash_bytes = "2MB"'),
    "threads_zero": ("threads = 1", "threads = 0"),
    "kind_bad": ('kind = "mcu"', 'kind = "toaster"'),
    "runtime_bad": ('runtime = "tflm"', 'runtime = "tensorrt"'),
    "kind_missing": ('kind = "mcu"', ""),
    "unknown_key": ("threads = 1", "threads = 1\nvoltage = 3.3"),
    "dtypes_bad": ('dtypes = ["int8", "int16"]', 'dtypes = ["int4"]'),
    "ops_string": ("supported_ops = [", 'supported_ops = "CONV_2D"\nunused = ['),
    "cost_missing": ("[cost]", "[nocost]"),
    "cost_nan": ("[cost]", None),  # a coefficient set to nan, see build_workspace
    "cost_inf": ("[cost]", None),
    "cost_neg": ("[cost]", None),
    "syntax": ("kind = \"mcu\"", "kind = = \"mcu\""),
}

# export --config variants: the TOML text
CONFIGS = {
    "prune_text": 'prune = "half"',
    "prune_big": "prune = 1.5",
    "prune_nan": "prune = nan",
    "percentile_text": 'percentile = "high"',
    "percentile_150": "percentile = 150",
    "percentile_nan": "percentile = nan",
    "calib_limit_text": 'calib_limit = "ten"',
    "calib_limit_neg": "calib_limit = -1",
    "calib_limit_float": "calib_limit = 2.5",
    "input_shape_int": "input_shape = 5",
    "input_shape_huge": "input_shape = [1, 99999999999, 8, 8]",
    "mean_text": 'mean = "abc"',
    "mean_nan": "mean = [nan]",
    "std_zero": "std = [0.0]",
    "std_inf": "std = [inf]",
    "std_table": "std = {a = 1}",
    "force_text": 'force = "yes"',
    "validate_int": "validate = 3",
    "target_int": "target = 5",
    "calibration_int": "calibration = 7",
    "round_to_float": "round_to = 2.5",
    "round_to_zero": "round_to = 0",
    "exporter_list": "exporter = []",
    "io_int": "io = 1",
    "lint_text": 'lint = "no"',
    "val_limit_zero": "val_limit = 0",
    "finetune_lr_nan": "finetune_lr = nan",
    "finetune_lr_neg": "finetune_lr = -1.0",
    "finetune_epochs_float": "finetune_epochs = 1.5",
    "opset_text": 'opset = "x"',
    "opset_old": "opset = 3",
    "separable_int": "separable = 5",
    "prune_importance_int": "prune_importance = 3",
    "trust_pickle_text": 'trust_pickle = "yes"',
    "onnx_activations_int": "onnx_activations = 8",
    "unknown_key": "colour = 'blue'",
    "syntax": "prune = = 0.5",
    "nested_table": "[layers]\nconv = 1",
}


def build_workspace(ws: Path) -> None:
    ws.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # models
    _tiny_onnx(ws / "tiny.onnx")
    _tiny_onnx(ws / "nan.onnx", float("nan"))
    _tiny_onnx(ws / "inf.onnx", float("inf"))
    _tiny_onnx(ws / "absurd.onnx", 1e30)
    _tiny_onnx(ws / "unsupported.onnx", op="Det", dims=(1, 1, 8, 8))
    _tiny_onnx(ws / "opset9.onnx", opset=9)
    _tiny_onnx(ws / "dynamic.onnx", dims=(1, 1, "h", 8))
    shutil.copy(ws / "tiny.onnx", ws / f"{BAD_NAME}.onnx")
    data = (ws / "tiny.onnx").read_bytes()
    (ws / "cut.onnx").write_bytes(data[: len(data) // 2])
    (ws / "random.onnx").write_bytes(rng.bytes(4096))
    (ws / "random.pt2").write_bytes(rng.bytes(4096))
    for name in ("text.onnx", "text.pt", "text.pt2", "text.keras", "text.h5", "text.tflite", "notes.txt",
                 "text.npy", "text.npz", "text.json"):
        (ws / name).write_text("this is not what the name says\n")
    for name in ("empty.onnx", "empty.pt", "empty.h5", "empty.tflite", "empty.npy", "empty.npz"):
        (ws / name).write_bytes(b"")
    (ws / "dir.onnx").mkdir(exist_ok=True)
    (ws / "emptydir").mkdir(exist_ok=True)
    (ws / "afile").write_text("a file where a folder is expected\n")
    # torch files: TorchScript, a pickled whole module, a state_dict
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 3)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 1, 8, 8)), str(ws / "ts.pt"))
    torch.save(net, str(ws / "pickled.pt"))
    torch.save(net.state_dict(), str(ws / "state.pt"))
    # a float .tflite written by edgepack, and a cut copy
    from edgepack.api import load
    from edgepack.exporter.emit_tflite import to_tflite

    flat = to_tflite(load(ws / "tiny.onnx"), int8=False)
    (ws / "float.tflite").write_bytes(flat)
    (ws / "cut.tflite").write_bytes(flat[: len(flat) // 3])
    # sample data and labels
    x = rng.random((16, 1, 8, 8)).astype(np.float32)
    np.save(ws / "calib.npy", x)
    shutil.copy(ws / "calib.npy", ws / f"{BAD_NAME}.npy")
    np.save(ws / "labels.npy", np.arange(16) % 3)
    for name, value in (("nan", np.nan), ("inf", np.inf), ("huge", 3e38), ("big", 1e30)):
        y = x.copy()
        y[3, 0, 2, 2] = value
        np.save(ws / f"{name}.npy", y)
    np.save(ws / "wrongshape.npy", rng.random((16, 3, 8, 8)).astype(np.float32))
    np.save(ws / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(ws / "strings.npy", np.array(["a", "b"]))
    np.save(ws / "complex.npy", x.astype(np.complex64))
    np.save(ws / "zero_samples.npy", np.zeros((0, 1, 8, 8), np.float32))
    np.save(ws / "scalar.npy", np.float32(1.0))
    _npy_with_header(ws / "corrupt_header.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (16, 1, 8")
    _npy_with_header(ws / "claims_huge.npy", "{'descr': '<f4', 'fortran_order': False, "
                                             "'shape': (1000000000000, 1, 8, 8), }", b"\0" * 256)
    raw = (ws / "calib.npy").read_bytes()
    (ws / "truncated.npy").write_bytes(raw[: len(raw) // 2])
    (ws / "corrupt.npz").write_bytes(b"PK\x03\x04" + rng.bytes(200))
    np.savez(ws / "several.npz", a=x, b=x)
    np.savez(ws / "nan.npz", x=np.load(ws / "nan.npy"))
    (ws / "data.csv").write_text("1,2,3\n")
    for folder in ("textpng", "bombs", "bombwarn", "mixed", "nanfolder", "fifofolder"):
        (ws / folder).mkdir(exist_ok=True)
    (ws / "textpng" / "a.png").write_text("not a png\n")
    _png(ws / "bomb.png", 100_000, 100_000)
    _png(ws / "bombs" / "a.png", 100_000, 100_000)
    _png(ws / "bombwarn" / "a.png", 10_000, 10_000)
    np.save(ws / "mixed" / "a.npy", x[0])
    np.save(ws / "mixed" / "b.npy", rng.random((3, 8, 8)).astype(np.float32))
    np.save(ws / "nanfolder" / "a.npy", np.load(ws / "nan.npy")[3])
    os.mkfifo(ws / "fifofolder" / "a.npy")
    np.save(ws / "labels_short.npy", np.arange(5))
    np.save(ws / "labels_float.npy", np.full(16, 0.5))
    np.save(ws / "labels_2d.npy", np.zeros((16, 2, 2)))
    (ws / "labels_words.txt").write_text("cat\ndog\n")
    (ws / "labels.csv").write_text("0,1\n")
    (ws / "labels_bad_utf8.txt").write_bytes(b"\xff\xfe0\n1\n")
    # calibration.json variants
    (ws / "cal_format.json").write_text('{"format": "other", "tensors": {}}')
    (ws / "cal_mismatch.json").write_text('{"format": "edgepack-calibration/1", "tensors": '
                                          '{"zz": {"range": [0, 1]}}}')
    (ws / "cal_nan.json").write_text('{"format": "edgepack-calibration/1", "tensors": {'
                                     + ", ".join(f'"{t}": {{"range": [0, NaN]}}' for t in
                                                 ("input", "r", "out", "f")) + "}}")
    # non-regular files: FIFOs and devices behind ordinary names
    for name in ("fifo.onnx", "fifo.pt", "fifo.npy", "fifo.toml", "fifo.tflite", "fifo.txt", "fifo.json"):
        os.mkfifo(ws / name)
    for name, target in (("zero.onnx", "/dev/zero"), ("zero.npy", "/dev/zero"), ("zero.toml", "/dev/zero"),
                         ("zero.tflite", "/dev/zero"), ("zero.txt", "/dev/zero"), ("null.onnx", "/dev/null"),
                         ("null.npy", "/dev/null")):
        os.symlink(target, ws / name)
    # target profiles and config files
    base = _PROFILE.read_text()
    for stem, (old, new) in TARGETS.items():
        if new is None:
            value = {"cost_nan": "nan", "cost_inf": "inf", "cost_neg": "-5.0"}[stem]
            text = base.replace("cycles_per_mac = ", f"cycles_per_mac = {value} # ", 1)
        else:
            text = base.replace(old, new, 1)
        assert text != base, stem
        (ws / f"target_{stem}.toml").write_text(text)
    (ws / "target_bad_utf8.toml").write_bytes(b"kind = \"\xff\"\n")
    for stem, text in CONFIGS.items():
        (ws / f"config_{stem}.toml").write_text(text + "\n")
    (ws / "config_bad_utf8.toml").write_bytes(b"target = \"\xff\"\n")
