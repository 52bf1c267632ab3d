"""The bad-input corpus (tests/bad_inputs.py): every case exits 2 with exactly one stderr line starting
`edgepack: error:` (no traceback, no ANSI codes, no library noise) and leaves --out as it was.

Most cases run in this process through cli.main with fd-level capture (native noise included); the ones
that could hang or crash the process on a regression (FIFOs, devices, demo) run in a subprocess.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs import CASES, Case, build_workspace
from edgepack.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("bad_inputs")
    build_workspace(ws)
    return ws


def snapshot(path: Path):
    """What a folder holds (names, kinds, bytes of regular files), without opening FIFOs or devices."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return {p.name: snapshot(p) for p in sorted(path.iterdir())}
    if stat.S_ISREG(st.st_mode):
        return path.read_bytes()
    return stat.S_IFMT(st.st_mode)


def _prepare(case: Case, out: Path) -> None:
    if case.out == "held":
        out.mkdir()
        (out / "keep.txt").write_text("the user's own file\n")
        (out / "model.float.onnx").write_bytes(b"an older artifact")
    elif case.out == "held-demo":
        (out / "export").mkdir(parents=True)
        (out / "export" / "report.json").write_text("{}\n")


def run_case(case: Case, ws: Path, out: Path, capfd) -> tuple[int, str, str]:
    args = case.args(ws, out)
    if case.sub:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *args], capture_output=True, env=env,
                              timeout=120, cwd=out.parent)
        return (proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refuses a flag this way (one line, exit 2)
        code = exc.code
    captured = capfd.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_out_unchanged(case, workspace, tmp_path, capfd):
    out = tmp_path / "out"
    _prepare(case, out)
    before = snapshot(out), snapshot(workspace)
    code, stdout, stderr = run_case(case, workspace, out, capfd)
    lines = stderr.splitlines()
    assert code == 2, (code, stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("edgepack: error: "), stderr[-2000:]
    assert "\x1b[" not in stderr + stdout, "ANSI codes when not writing to a terminal"
    assert "internal error" not in stderr
    for needle in case.says:
        assert needle in lines[0], (needle, lines[0])
    after = snapshot(out), snapshot(workspace)
    assert after == before, "--out (or an input) changed"


def test_corpus_is_large_and_ids_unique():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def test_raw_byte_samples_get_a_note_and_scaled_ones_do_not(workspace, tmp_path):
    import numpy as np

    from edgepack import export

    x = np.load(workspace / "calib.npy")
    raw = export(workspace / "tiny.onnx", calib=np.round(x * 255), out=tmp_path / "raw", validate=False)
    assert any("raw 0-255" in n and "--mean/--std" in n for n in raw.notes), raw.notes
    scaled = export(workspace / "tiny.onnx", calib=x, out=tmp_path / "scaled", validate=False)
    assert not any("raw 0-255" in n for n in scaled.notes)
    normalised = export(workspace / "tiny.onnx", calib=np.round(x * 255), out=tmp_path / "norm", validate=False,
                        mean=(127.5,), std=(127.5,))
    assert not any("raw 0-255" in n for n in normalised.notes)
