"""Transactional output: --out holds the previous set or the complete new one, never a mix, whatever fails,
whoever kills the run and whoever else writes there (edgepack/artifacts.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from edgepack.artifacts import EXPORT_FILES, staged_output
from edgepack.cli import main
from edgepack.errors import OutputBusyError, OutputExistsError

QUANTIZED = sorted(n for n in EXPORT_FILES.values() if n != "plan.json")  # the set of an int8 export


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(cnn.onnx, calibration .npy, labels .npy) of a small CNN."""
    folder = tmp_path_factory.mktemp("m")
    net, shape = zoo.build("plain_cnn")
    torch.onnx.export(net, (torch.zeros(shape),), str(folder / "cnn.onnx"), dynamo=False, opset_version=17)
    np.save(folder / "x.npy", np.random.default_rng(0).random((16, *shape[1:]), np.float32))
    np.save(folder / "y.npy", np.arange(16) % 10)
    return folder / "cnn.onnx", folder / "x.npy", folder / "y.npy"


def snapshot(folder: Path) -> dict:
    """name -> (bytes, mode) of everything in ``folder`` (None when it does not exist)."""
    if not folder.exists():
        return None
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(folder.iterdir())}


def hidden_litter(out: Path) -> list[str]:
    """What edgepack left beside --out (staging, lock, commit folders)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.edgepack-"))


def is_complete_set(out: Path) -> bool:
    """Every file the report names is there with the size it says, and nothing else of ours."""
    if not (out / "report.json").exists():
        return False
    report = json.loads((out / "report.json").read_text())
    named = {Path(a["path"]).name: a["bytes"] for a in report["artifacts"].values()}
    ours = {p.name for p in out.iterdir() if p.name in EXPORT_FILES.values()}
    html = {"report.html"} if report["validation"] else set()
    return (ours == set(named) | {"report.json"} | html
            and all((out / n).stat().st_size == size for n, size in named.items()))


def export(model, out, *extra):
    onnx_path, x, y = model
    return main(["export", str(onnx_path), "--calib", str(x), "--val-labels", str(y), "--out", str(out), *extra])


# -- a failure after calibration leaves --out as it was ------------------------------------------------

@pytest.mark.parametrize("previous", [False, True], ids=["empty_out", "previous_set"])
@pytest.mark.parametrize("bad", ["val_labels", "val"])
def test_bad_validation_input_after_calibration_leaves_out_unchanged(model, tmp_path, capsys, bad, previous):
    out = tmp_path / "o"
    if previous:
        assert export(model, out) == 0
        (out / "notes.txt").write_text("the user's own file\n")
    before = snapshot(out)
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 5, 5), np.float32))
    flag = ["--val-labels", str(tmp_path / "missing.npy")] if bad == "val_labels" else \
        ["--val", str(tmp_path / "wrong.npy")]
    capsys.readouterr()
    code = export(model, out, "--force", *flag)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert snapshot(out) == before  # byte-identical, same modes; missing stays missing
    assert hidden_litter(out) == []


# -- files follow the umask --------------------------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)],
                         ids=["umask022", "umask077"])
def test_files_follow_the_umask(model, tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        assert export(model, tmp_path / "o", "--no-validate") == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "o").iterdir()}
    assert modes == {n: file_mode for n in QUANTIZED if n != "report.html"}
    assert (tmp_path / "o").stat().st_mode & 0o777 == dir_mode


# -- the transaction itself, with plain files ----------------------------------------------------------

NAMES = ("a.bin", "report.json")


def write_set(stage, tag: str) -> None:
    for name in NAMES:
        stage.path(name).write_text(f"{tag}:{name}")


def test_stale_staging_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "o"
    stale = tmp_path / ".o.edgepack-staging-4194999"
    stale.mkdir()
    (stale / "a.bin").write_text("half")
    (tmp_path / ".o.edgepack-lock").write_text("4194999\n")  # a lock file nobody holds any more
    unrelated = tmp_path / ".other.edgepack-staging-1"  # another --out's: not ours to remove
    unrelated.mkdir()
    with staged_output(out, NAMES) as stage:
        write_set(stage, "new")
    assert not stale.exists() and unrelated.exists()
    assert hidden_litter(out) == [] and (out / "a.bin").read_text() == "new:a.bin"


def test_a_move_killed_half_way_is_finished_by_the_next_run(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("user")  # files of the user: the set moves file by file
    with staged_output(out, NAMES) as stage:
        write_set(stage, "old")
    # The state a kill leaves after the first file moved: a.bin new, report.json old, the rest pending.
    commit = tmp_path / ".o.edgepack-commit-4194999"
    commit.mkdir()
    (commit / ".edgepack-manifest").write_text(json.dumps({"new": list(NAMES), "ours": list(NAMES)}))
    (commit / "report.json").write_text("new:report.json")
    (out / "a.bin").write_text("new:a.bin")
    with pytest.raises(RuntimeError):
        with staged_output(out, NAMES, force=True):  # finishing the move happens on entry
            assert {n: (out / n).read_text() for n in NAMES} == {n: f"new:{n}" for n in NAMES}
            raise RuntimeError("this run stops here: its own (empty) set is discarded")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"mine.txt": "user"} | {n: f"new:{n}" for n in NAMES}
    assert hidden_litter(out) == []


@pytest.mark.parametrize("user_file", [False, True], ids=["only_ours", "with_user_file"])
def test_force_replaces_the_whole_previous_set_and_keeps_the_users_files(tmp_path, user_file):
    out = tmp_path / "o"
    with staged_output(out, NAMES + ("plan.json",)) as stage:
        write_set(stage, "old")
        stage.path("plan.json").write_text("old plan")
    if user_file:
        (out / "mine.txt").write_text("user")
    with staged_output(out, NAMES + ("plan.json",), force=True) as stage:
        write_set(stage, "new")  # no plan.json this time: the old one must not stay beside the new set
    expected = {n: f"new:{n}" for n in NAMES} | ({"mine.txt": "user"} if user_file else {})
    assert {p.name: p.read_text() for p in out.iterdir()} == expected
    assert hidden_litter(out) == []


def test_out_that_is_the_working_directory_stays_the_same_folder(tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    monkeypatch.chdir(out)
    inode = out.stat().st_ino
    for tag in ("old", "new"):
        with staged_output(".", NAMES, force=True) as stage:
            write_set(stage, tag)
    assert out.stat().st_ino == inode and Path(os.getcwd()).samefile(out)  # the shell is not left in a ghost
    assert {p.name: p.read_text() for p in out.iterdir()} == {n: f"new:{n}" for n in NAMES}
    assert hidden_litter(out) == []


def test_staging_goes_inside_out_when_its_parent_is_read_only(tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("user")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode))
    with staged_output(out, NAMES) as stage:
        assert stage.dir.parent == out and stage.dir.name.startswith(".edgepack-staging-")
        write_set(stage, "new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"mine.txt": "user"} | {n: f"new:{n}" for n in NAMES}
    assert hidden_litter(out) == []


def test_existing_output_is_refused_up_front_and_again_at_commit(tmp_path):
    out = tmp_path / "o"
    with staged_output(out, NAMES) as stage:
        write_set(stage, "first")
    with pytest.raises(OutputExistsError, match="already exists.*--force"):
        staged_output(out, NAMES).__enter__()
    other = tmp_path / "p"
    with pytest.raises(OutputExistsError, match="report.json already exists"):
        with staged_output(other, NAMES) as stage:
            write_set(stage, "mine")
            other.mkdir()
            (other / "report.json").write_text("appeared meanwhile")
    assert snapshot(other) == {"report.json": (b"appeared meanwhile", (other / "report.json").stat().st_mode)}
    assert hidden_litter(other) == [] and hidden_litter(out) == []


def test_an_exception_or_ctrl_c_inside_leaves_out_as_it_was(tmp_path):
    out = tmp_path / "o"
    with staged_output(out, NAMES) as stage:
        write_set(stage, "old")
    before = snapshot(out)
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out, NAMES, force=True) as stage:
            write_set(stage, "new")
            raise KeyboardInterrupt
    assert snapshot(out) == before and hidden_litter(out) == []


def test_a_failed_run_removes_the_folders_it_created_for_out(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_output(tmp_path / "a" / "b" / "o", NAMES):
            raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_one_line_error(tmp_path, capsys, model):
    (tmp_path / "f").write_text("x")
    code = export(model, tmp_path / "f")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is a file, not a folder" in err and len(err.splitlines()) == 1
    assert (tmp_path / "f").read_text() == "x"


# -- a second run into the same --out while the first works --------------------------------------------

def test_second_run_into_the_same_out_is_refused_while_the_first_holds_the_lock(model, tmp_path, capsys):
    out = tmp_path / "o"
    with staged_output(out, EXPORT_FILES.values()) as first:
        capsys.readouterr()
        code = export(model, out, "--force")
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1
        assert f"being written by another edgepack run (pid {os.getpid()})" in err
        first.path("report.json").write_text("{}")
    assert snapshot(out) == {"report.json": (b"{}", (out / "report.json").stat().st_mode)}
    with pytest.raises(OutputBusyError):  # the library raises the same error
        with staged_output(out, EXPORT_FILES.values(), force=True):
            staged_output(out, EXPORT_FILES.values(), force=True).__enter__()


def test_demo_refuses_an_existing_folder_before_training(tmp_path):
    from edgepack.demo import run_demo

    (tmp_path / "d" / "export").mkdir(parents=True)
    said = []
    with pytest.raises(OutputExistsError, match="export already exists"):
        run_demo(tmp_path / "d", echo=said.append)
    assert said == []  # nothing trained


# -- kills at named moments of a real export in a subprocess ----------------------------------------------

def _as_from_a_shell():
    """The export starts with the signal state a shell gives it: nothing blocked, SIGINT at its default (the
    pytest process can hand down a blocked or ignored SIGINT, and the export then never sees the Ctrl-C:
    seen twice in full-suite runs, never alone)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _staged(out: Path, name: str | None):
    """A predicate: the run's staging folder exists (and holds ``name``)."""
    def seen():
        return any((s / name).exists() if name else True for s in out.parent.glob(f".{out.name}.edgepack-staging-*"))
    return seen


@pytest.mark.parametrize("sig, moment", [(signal.SIGKILL, None), (signal.SIGINT, "model.int8.tflite"),
                                         (signal.SIGTERM, "report.json")],
                         ids=["kill9_at_start", "sigint_after_artifacts", "sigterm_at_report"])
def test_a_killed_export_leaves_out_untouched_and_the_next_run_succeeds(model, tmp_path, sig, moment):
    out = tmp_path / "o"
    assert export(model, out, "--no-validate") == 0
    before = snapshot(out)
    onnx_path, x, y = model
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    seen = _staged(out, moment)
    for _attempt in range(5):  # a starved poller on a loaded machine can miss the moment: the run then ends
        proc = subprocess.Popen([sys.executable, "-m", "edgepack.cli", "export", str(onnx_path), "--calib", str(x),
                                 "--val-labels", str(y), "--out", str(out), "--force"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_as_from_a_shell)
        while proc.poll() is None and not seen():
            time.sleep(0.002)
        if proc.poll() is None:
            break
        proc.communicate(timeout=120)  # finished before the moment was seen: a complete set, try again
        assert proc.returncode == 0 and is_complete_set(out)
        before = snapshot(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    # 130/143: edgepack caught it and cleaned up; -sig: it came while the interpreter was exiting
    assert proc.returncode in ({signal.SIGINT: 130, signal.SIGTERM: 143}.get(sig), -sig), (proc.returncode, err)
    assert snapshot(out) == before or is_complete_set(out)
    assert b"Traceback" not in err
    assert export(model, out, "--force", "--no-validate") == 0
    assert is_complete_set(out) and hidden_litter(out) == []
