"""Fuzzing in the suite (fixed cases, tests/fuzz_cases.py): structure-mutated .tflite files through the
`edgepack validate` path and mutated .onnx files through edgepack.load. Each case ends in success or
an EdgepackError with one line, within a deadline; none kills this process (TFLite Micro and LiteRT
run in a child: a case that crashes them here would end the test session). `make fuzz` runs many more.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections import Counter

import fuzz_cases
import pytest

TFLITE_CASES = 400
ONNX_CASES = 200
CLI_CASES = 4
DEADLINE_S = 60  # per case: a hang, not a slow machine


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_seeds")
    return sorted(fuzz_cases.write_seeds(folder).values())


@pytest.fixture(autouse=True)
def short_stall(monkeypatch):
    monkeypatch.setenv("EDGEPACK_RUNTIME_TIMEOUT", "20")


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    def expire(*_):
        raise Hang

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(kind: str, seeds, cases: int, tmp_path) -> Counter:
    pool = [s for s in seeds if s.suffix == (".tflite" if kind == "tflite" else ".onnx")]
    outcomes, bad = Counter(), []
    for case in range(cases):
        seed = pool[case % len(pool)]
        data, what = (fuzz_cases.tflite_case if kind == "tflite" else fuzz_cases.onnx_case)(seed.read_bytes(), case)
        path = tmp_path / f"case{case}{seed.suffix}"
        path.write_bytes(data)
        try:
            with deadline(DEADLINE_S):
                code, message = (fuzz_cases.run_validate(path, f"{seed}.npy", reference=fuzz_cases.reference_for(seed))
                                 if kind == "tflite"
                                 else fuzz_cases.run_load(path))
        except Hang:
            code, message = "hang", ""
        except Exception as exc:  # an internal error: the CLI would exit 1
            code, message = 1, f"{type(exc).__name__}: {exc}"
        outcomes[code] += 1
        if code not in (0, 2) or "\n" in message:
            bad.append(f"case {case} ({seed.name}, {what}): {code} {message[:200]}")
    assert not bad, f"{len(bad)} of {cases} cases:\n" + "\n".join(bad)
    return outcomes


def test_mutated_tflite_files_end_in_success_or_one_line_errors(seeds, tmp_path):
    outcomes = _run("tflite", seeds, TFLITE_CASES, tmp_path)
    # the mutations reach both ends: files refused, and files that still run on every runtime
    assert outcomes[2] >= TFLITE_CASES // 2 and outcomes[0] >= TFLITE_CASES // 20, outcomes


def test_mutated_onnx_files_end_in_success_or_one_line_errors(seeds, tmp_path):
    outcomes = _run("onnx", seeds, ONNX_CASES, tmp_path)
    assert outcomes[2] >= ONNX_CASES // 2 and outcomes[0] >= 1, outcomes


def test_mutated_tflite_files_through_the_cli_exit_0_or_2_with_one_line(seeds, tmp_path):
    pool = [s for s in seeds if s.suffix == ".tflite"]
    codes = []
    for case in range(CLI_CASES):
        seed = pool[case % len(pool)]
        data, what = fuzz_cases.tflite_case(seed.read_bytes(), 10_000 + case)
        path = tmp_path / f"cli{case}.tflite"
        path.write_bytes(data)
        reference = fuzz_cases.reference_for(seed)
        flags = ["--limit", str(fuzz_cases.SAMPLES), *(["--reference", str(reference)] if reference else [])]
        p = subprocess.run([sys.executable, "-m", "edgepack.cli", "validate", str(path), "--data", f"{seed}.npy",
                            *flags], capture_output=True, text=True, timeout=300)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode in (0, 2), f"{what}: exit {p.returncode}: {p.stderr[-500:]}"
        if p.returncode == 2:
            assert len(lines) == 1 and lines[0].startswith("edgepack: error: "), f"{what}: {p.stderr[-500:]}"
        codes.append(p.returncode)
    assert 2 in codes
