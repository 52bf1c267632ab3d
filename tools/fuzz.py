"""`make fuzz`: many structure-mutated .tflite files through `edgepack validate`, and mutated .onnx files
through `edgepack.load`, counting how each run ends: exit 0, exit 2 (an EdgepackError), exit 1 (an
internal error: a bug), a death of the edgepack process (a signal) or a hang.

    .venv/bin/python tools/fuzz.py --cases 2000                 # this checkout
    .venv/bin/python tools/fuzz.py --cases 500 --edgepack /other/checkout --json out.json

The cases run in a worker process that the driver restarts when it dies, so a death is counted
against its case and the run goes on. Every ``--cli-every``-th .tflite case goes through the CLI
itself (its exit code and whether stderr is one line). Cases are rebuilt from (seed file, case
number) by tests/fuzz_cases.py: `--only N` replays one. Exit status 1 when any run died, hung or
ended in an internal error.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def serve(workdir: Path) -> None:
    """Worker: read "case kind seed samples" lines, answer one JSON line per case ("start" first)."""
    sys.path.insert(0, str(TESTS))
    import fuzz_cases

    for line in sys.stdin:
        case, kind, seed, samples = line.split("\t")
        case, seed, samples = int(case), Path(seed), Path(samples.strip())
        make = fuzz_cases.tflite_case if kind == "tflite" else fuzz_cases.onnx_case
        data, what = make(seed.read_bytes(), case)
        path = workdir / f"case{case}{''.join(seed.suffixes[-1:])}"
        path.write_bytes(data)
        print(json.dumps({"start": case, "mutation": what}), flush=True)
        try:
            code, message = (fuzz_cases.run_validate(path, samples, reference=fuzz_cases.reference_for(seed))
                             if kind == "tflite" else fuzz_cases.run_load(path))
        except Exception as exc:  # an internal error (the CLI would exit 1)
            code, message = 1, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        print(json.dumps({"case": case, "code": code, "message": message[:300]}), flush=True)


class Driver:
    def __init__(self, edgepack: Path, timeout: float, workdir: Path):
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(edgepack), str(TESTS)]),
                        EDGEPACK_RUNTIME_TIMEOUT=str(max(5.0, timeout / 4)), TF_CPP_MIN_LOG_LEVEL="3")
        self.timeout, self.workdir, self.proc, self.pending = timeout, workdir, None, b""

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.workdir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env, text=True,
                                     start_new_session=True)
        self.pending = b""

    def _line(self, deadline: float):
        """The worker's next line (a dict), "hang" after the deadline, None when it died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return "hang"
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def _stop(self, kill: bool):
        if self.proc is None:
            return None
        if kill:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stdin.close()
        code = self.proc.wait()
        self.proc = None
        return code

    def run(self, case: int, kind: str, seed: Path, samples: Path) -> dict:
        if self.proc is None:
            self._start()
        self.proc.stdin.write(f"{case}\t{kind}\t{seed}\t{samples}\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        started = self._line(deadline)
        answer = self._line(deadline) if isinstance(started, dict) else started
        mutation = started.get("mutation", "?") if isinstance(started, dict) else "?"
        if answer == "hang":
            self._stop(kill=True)
            return {"case": case, "outcome": "hang", "mutation": mutation}
        if answer is None:  # the edgepack process died
            code = self._stop(kill=False)
            name = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
            return {"case": case, "outcome": f"death {name}", "mutation": mutation}
        return {"case": case, "outcome": f"exit {answer['code']}", "mutation": mutation, "message": answer["message"]}

    def close(self):
        self._stop(kill=False)


def run_cli(edgepack: Path, case: int, seed: Path, samples: Path, workdir: Path, timeout: float) -> dict:
    """One case through `edgepack validate` itself."""
    sys.path.insert(0, str(TESTS))
    import fuzz_cases

    data, what = fuzz_cases.tflite_case(seed.read_bytes(), case)
    path = workdir / f"cli{case}.tflite"
    path.write_bytes(data)
    env = dict(os.environ, PYTHONPATH=str(edgepack), EDGEPACK_RUNTIME_TIMEOUT=str(max(5.0, timeout / 4)))
    reference = fuzz_cases.reference_for(seed)
    cmd = [sys.executable, "-c", "import sys; from edgepack.cli import main; sys.exit(main())", "validate",
           str(path), "--data", str(samples), "--limit", str(fuzz_cases.SAMPLES),
           *(["--reference", str(reference)] if reference else [])]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"case": case, "outcome": "hang", "mutation": what, "cli": True}
    code = p.returncode
    outcome = f"death {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    return {"case": case, "outcome": outcome, "mutation": what, "cli": True, "stderr_lines": len(lines),
            "message": lines[-1][:300] if lines else ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--kind", choices=["tflite", "onnx", "both"], default="both")
    ap.add_argument("--onnx-share", type=float, default=0.25, help="share of the cases that are .onnx (with both)")
    ap.add_argument("--cli-every", type=int, default=25, help="every N-th .tflite case through the CLI (0: none)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    ap.add_argument("--edgepack", type=Path, default=REPO, help="checkout whose edgepack is fuzzed")
    ap.add_argument("--seeds", type=Path, help="folder of seed files (default: written by this checkout)")
    ap.add_argument("--only", type=int, help="replay this one case")
    ap.add_argument("--json", type=Path, help="write every case's outcome here")
    args = ap.parse_args(argv)
    if args.serve:
        serve(Path(args.serve))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seeds_dir = args.seeds or tmp / "seeds"
        if args.seeds is None:
            sys.path[:0] = [str(REPO), str(TESTS)]
            import fuzz_cases

            fuzz_cases.write_seeds(seeds_dir)
        seeds = {k: sorted(seeds_dir.glob(f"*.{k}")) for k in ("tflite", "onnx")}
        driver = Driver(args.edgepack.resolve(), args.timeout, tmp)
        results, t0 = [], time.monotonic()
        cases = [args.only] if args.only is not None else range(args.start, args.start + args.cases)
        for case in cases:
            kind = args.kind if args.kind != "both" else ("onnx" if (case * 0.618) % 1 < args.onnx_share else "tflite")
            seed = seeds[kind][case % len(seeds[kind])]
            samples = Path(f"{seed}.npy")
            if kind == "tflite" and args.cli_every and case % args.cli_every == 0:
                r = run_cli(args.edgepack.resolve(), case, seed, samples, tmp, args.timeout)
            else:
                r = driver.run(case, kind, seed, samples)
            r.update(kind=kind, seed=seed.name)
            results.append(r)
            if args.only is not None or r["outcome"] not in ("exit 0", "exit 2"):
                print(json.dumps(r), flush=True)
        driver.close()
    summary = {"cases": len(results), "seconds": round(time.monotonic() - t0, 1), "edgepack": str(args.edgepack)}
    for kind in ("tflite", "onnx"):
        got = [r for r in results if r["kind"] == kind]
        if got:
            summary[kind] = dict(sorted(collections.Counter(r["outcome"] for r in got).items()))
    cli = [r for r in results if r.get("cli")]
    if cli:
        summary["cli"] = dict(sorted(collections.Counter(r["outcome"] for r in cli).items()))
        summary["cli_stderr_over_one_line"] = sum(1 for r in cli if r.get("stderr_lines", 0) > 1)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": results}, indent=1) + "\n")
    bad = [r for r in results if r["outcome"] not in ("exit 0", "exit 2")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
