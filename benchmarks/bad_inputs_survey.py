"""Run the bad-input corpus (tests/bad_inputs.py) through the CLI in subprocesses and count the outcomes.

    python benchmarks/bad_inputs_survey.py [--pythonpath DIR] [--jobs 2]

DIR holds the `edgepack` package to survey (default: this checkout), e.g. an old copy to count how many
cases were exit 1 / traceback / hang / accepted before a change. Each case gets 60 s (demo: 200 s).
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def classify(case, ws: Path, root: Path, pythonpath: str) -> tuple[str, str]:
    from test_bad_inputs import _prepare, snapshot

    out = root / case.id / "out"
    out.parent.mkdir(parents=True)
    _prepare(case, out)
    before = snapshot(out), snapshot(ws)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    try:
        proc = subprocess.run([sys.executable, "-m", "edgepack.cli", *case.args(ws, out)], capture_output=True,
                              env=env, timeout=200 if case.argv.startswith("demo") else 60, cwd=out.parent)
    except subprocess.TimeoutExpired:
        return "hang (timeout)", ""
    err = proc.stderr.decode("utf-8", "replace")
    lines = err.splitlines()
    changed = (snapshot(out), snapshot(ws)) != before
    if proc.returncode < 0:
        kind = f"killed by signal {-proc.returncode}"
    elif "Traceback" in err:
        kind = f"traceback (exit {proc.returncode})"
    elif proc.returncode == 0:
        kind = "accepted (exit 0)"
    elif proc.returncode == 1:
        kind = "internal error (exit 1)"
    elif proc.returncode != 2:
        kind = f"exit {proc.returncode}"
    elif len(lines) != 1 or not lines[0].startswith("edgepack: error: ") or "\x1b[" in err:
        kind = "exit 2 but noisy stderr"
    elif changed:
        kind = "exit 2 but --out changed"
    else:
        kind = "ok"
    return kind, (lines[-1] if lines else "")[:160]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pythonpath", default=str(REPO))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from bad_inputs import CASES, build_workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws, root = Path(tmp) / "ws", Path(tmp) / "runs"
        build_workspace(ws)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda c: classify(c, ws, root, args.pythonpath), CASES))
    counts = collections.Counter(kind for kind, _ in results)
    for case, (kind, line) in zip(CASES, results):
        print(f"{kind:28s} {case.id:40s} {line}")
    print()
    for kind, n in counts.most_common():
        print(f"{n:4d} {kind}")
    print(f"{len(CASES):4d} cases")


if __name__ == "__main__":
    main()
