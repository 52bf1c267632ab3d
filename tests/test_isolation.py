"""TFLite Micro and LiteRT run in a child process (edgepack/targets/isolated.py): a file that crashes
a runtime, a run that stalls, or one that runs out of memory ends in one line naming the runtime, the
signal and the file, and edgepack itself goes on (the next run works)."""
from __future__ import annotations

import subprocess
import sys

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tflite_models import calibrated, pools_and_pads

from edgepack.api import validate_artifacts
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets import isolated
from edgepack.targets.runtimes import RuntimeFailure
from edgepack.targets.tflite_file import read_tflite


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good int8 .tflite, one whose AVERAGE_POOL_2D operator points at the MIRROR_PAD operator code
    (its structure is sound; TFLite Micro dereferences a null pointer on it), and samples."""
    folder = tmp_path_factory.mktemp("isolation")
    _, g, _, samples = calibrated(pools_and_pads)
    good = to_tflite(g, int8=True)
    info = read_tflite(good)
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(good, 0))
    names = {k: v for v, k in vars(schema.BuiltinOperator).items() if not v.startswith("_")}
    mirror = next(i for i, c in enumerate(m.operatorCodes) if names[max(c.builtinCode, c.deprecatedBuiltinCode)]
                  == "MIRROR_PAD")
    pool = next(o.index for o in info.ops if o.op == "AVERAGE_POOL_2D")
    m.subgraphs[0].operators[pool].opcodeIndex = mirror
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    paths = {"good": folder / "good.tflite", "crash": folder / "crash.tflite", "x": folder / "x.npy"}
    paths["good"].write_bytes(good)
    paths["crash"].write_bytes(bytes(b.Output()))
    np.save(paths["x"], np.concatenate([s[g.inputs[0]] for s in samples[:8]]))
    return paths


def test_a_runtime_crash_is_one_line_naming_runtime_signal_and_file(files):
    with pytest.raises(isolated.RuntimeCrash) as err:
        validate_artifacts([files["crash"]], files["x"], target="stm32l4r5")
    message = str(err.value)
    assert err.value.signal == "SIGSEGV" and err.value.exit_code == 2
    assert message.startswith(f"{files['crash']}: TFLite Micro crashed (SIGSEGV)") and "\n" not in message
    # this process is alive, and the next run gets a new child
    report = validate_artifacts([files["good"]], files["x"], target="stm32l4r5")
    assert report.validation["good.tflite@tflm"]["samples"] == 8


def test_the_cli_exits_2_with_one_line_on_a_crash(files):
    p = subprocess.run([sys.executable, "-m", "edgepack.cli", "validate", str(files["crash"]), "--data",
                        str(files["x"])], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "TFLite Micro crashed (SIGSEGV)" in lines[0] and "crash.tflite" in lines[0]


def test_a_stalled_run_is_stopped_and_named(files, monkeypatch):
    import os
    import signal

    isolated.run_tflite(files["good"].read_bytes(), "tflm", np.load(files["x"]))  # the child is up
    os.kill(isolated._WORKERS["native"].proc.pid, signal.SIGSTOP)  # it never answers now, however fast the machine
    monkeypatch.setenv("EDGEPACK_RUNTIME_TIMEOUT", "1")
    with pytest.raises(isolated.RuntimeCrash, match=r"good\.tflite: LiteRT \(reference kernels\) did not finish"
                                                    r" \(nothing for 1 s: a hang, stopped\)") as err:
        isolated.run_tflite(files["good"].read_bytes(), "litert-ref", np.load(files["x"]), where=str(files["good"]))
    assert err.value.signal == "timeout"
    assert isolated._WORKERS and not isolated._WORKERS["native"].alive()  # the child was killed
    monkeypatch.delenv("EDGEPACK_RUNTIME_TIMEOUT")
    outs, raw = isolated.run_tflite(files["good"].read_bytes(), "tflm", np.load(files["x"]))
    assert outs.shape[0] == 8 and raw.dtype == np.int8


def test_the_child_runs_under_a_memory_limit(monkeypatch):
    """A conv whose output needs 256 MB: refused in one line under a 400 MB address space, run under
    the default limit. edgepack itself never held those bytes."""
    from tflite_helpers import GraphBuilder

    gb = GraphBuilder(seed=1)
    x = gb.input("x", (1, 3, 512, 512))
    data = to_tflite(gb.build(gb.conv(x, 256, 1)), int8=False)
    sample = np.zeros((1, 3, 512, 512), np.float32)
    isolated.shutdown()  # the limit is set when the child starts
    monkeypatch.setenv("EDGEPACK_RUNTIME_MEMORY", str(400 << 20))
    try:
        # where the limit bites (allocating the tensors, or the samples) varies: both say so in one line
        with pytest.raises(RuntimeFailure, match=r"^big\.tflite: LiteRT (cannot allocate the model's tensors|"
                                                 r"\(reference kernels\) ran out of memory \(limit 400 MiB\))"):
            isolated.run_tflite(data, "litert-ref", sample, where="big.tflite")
    finally:
        isolated.shutdown()
    monkeypatch.delenv("EDGEPACK_RUNTIME_MEMORY")
    outs, _ = isolated.run_tflite(data, "litert-ref", sample)
    assert outs.size == 256 * 512 * 512


def test_runs_in_the_child_give_what_the_runtimes_give_here(files):
    """The child is a transport, not a change: same integers as running LiteRT's reference kernels here."""
    from edgepack.targets.runtime_jobs import run_tflite

    data, x = files["good"].read_bytes(), np.load(files["x"])
    for runtime in ("tflm", "litert-ref"):
        (a, ra), (b, rb) = isolated.run_tflite(data, runtime, x), run_tflite(data, runtime, x)
        assert np.array_equal(ra, rb) and np.array_equal(a, b)
