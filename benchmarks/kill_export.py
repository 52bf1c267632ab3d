"""Kill an export at many moments and race two exports into one --out: --out must always hold either what
it held before or one complete set, and the next run must succeed (edgepack/artifacts.py).

    .venv/bin/python benchmarks/kill_export.py            # 30 kills + 6 races, writes results/kill_export.*
    .venv/bin/python benchmarks/kill_export.py --kills 6 --races 2 --quick   # no results files

Each kill: model A exported with --force into an --out that is missing, holds model B's set, or holds B's
set plus a file of the user (so the set moves file by file); SIGKILL, SIGINT and SIGTERM in turn, half at
a random time since the start (fixed seed; up to 0.75 x the last full run's time), half at a moment
seen in the staging folder (it appears, the int8 .tflite is written, report.json is written, the commit
starts) plus 0-30 ms. After each: the state of --out, then a full run of model B that must succeed and
leave B's complete set, the user's file and no hidden leftovers. Each race: A and B started together into
one --out (with --force, or without into an empty one): --out must hold exactly A's or B's set, and a
refused run must say so in one line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RESULTS

SIGNALS = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM]
EVENTS = ["staging appears", "int8 tflite staged", "report.json staged", "commit starts"]
ARTIFACTS = ("model.float.onnx", "model.float.tflite", "model.int8.onnx", "model.int8.tflite", "calibration.json")


def make_inputs(work: Path) -> dict:
    import numpy as np
    import torch

    import zoo

    paths = {}
    for tag, seed in (("a", 0), ("b", 1)):
        net, shape = zoo.build("plain_cnn", seed=seed)
        paths[tag] = work / f"cnn_{tag}.onnx"
        torch.onnx.export(net, (torch.zeros(shape),), str(paths[tag]), dynamo=False, opset_version=17)
    np.save(work / "x.npy", np.random.default_rng(0).random((32, *shape[1:]), np.float32))
    np.save(work / "y.npy", np.arange(32) % 10)
    return paths


def command(model: Path, work: Path, out: Path, force: bool = True) -> list[str]:
    return [sys.executable, "-m", "edgepack.cli", "export", str(model), "--calib", str(work / "x.npy"),
            "--val-labels", str(work / "y.npy"), "--out", str(out)] + (["--force"] if force else [])


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def snapshot(folder: Path):
    if not folder.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def which_set(out: Path, refs: dict) -> str | None:
    """'a' or 'b' when --out holds exactly that model's complete set (artifacts byte-identical), else None."""
    snap = snapshot(out) or {}
    for tag, ref in refs.items():
        ours = {n for n in snap if n in set(ref) | {"report.json", "report.html"}}
        if ours == set(ref) and all(snap[n] == ref[n] for n in ARTIFACTS) \
                and json.loads(snap["report.json"])["model"] == f"cnn_{tag}":
            return tag
    return None


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.edgepack-"))


def phase(out: Path, refs: dict) -> str:
    """What the file system shows of the run (of model A) right now."""
    if which_set(out, refs["sets"]) == "a":
        return "published, exiting"
    if list(out.parent.glob(f".{out.name}.edgepack-commit-*")):
        return "moving file by file"
    stagings = list(out.parent.glob(f".{out.name}.edgepack-staging-*"))
    if not stagings:
        return "before staging"
    files = sorted(p.name for p in stagings[0].iterdir()) if stagings[0].exists() else []
    return f"staging with {len(files)} files"


def event_seen(out: Path, event: str) -> bool:
    stagings = list(out.parent.glob(f".{out.name}.edgepack-staging-*"))
    if event == "staging appears":
        return bool(stagings)
    if event == "int8 tflite staged":
        return any((s / "model.int8.tflite").exists() for s in stagings)
    if event == "report.json staged":
        return any((s / "report.json").exists() for s in stagings)
    if event == "commit starts":  # report.html is the last file written before the move
        return any((s / "report.html").exists() for s in stagings) or \
            bool(list(out.parent.glob(f".{out.name}.edgepack-commit-*")))
    raise ValueError(event)


def prepare(out: Path, state: str, work: Path, refs: dict) -> None:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    if state != "missing":
        out.mkdir()
        for name, data in refs["b_full"].items():
            (out / name).write_bytes(data)
        if state == "B's set + user file":
            (out / "notes.txt").write_text("the user's own notes\n")


def kill_once(i: int, rng: random.Random, work: Path, models: dict, refs: dict, duration: float) -> dict:
    out = work / "out"
    sig = SIGNALS[i % 3]
    state = ["missing", "B's set", "B's set + user file"][(i // 3) % 3]
    prepare(out, state, work, refs)
    before = snapshot(out)
    timed = i % 2 == 0
    delay = rng.uniform(0.0, 0.75 * duration) if timed else rng.uniform(0.0, 0.03)
    event = None if timed else EVENTS[(i // 2) % len(EVENTS)]
    start = time.monotonic()
    proc = subprocess.Popen(command(models["a"], work, out), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    if timed:
        while proc.poll() is None and time.monotonic() - start < delay:
            time.sleep(0.001)
    else:
        while proc.poll() is None and not event_seen(out, event):
            time.sleep(0.001)
        time.sleep(delay)
    seen = phase(out, refs)
    finished_before = proc.poll() is not None
    at = time.monotonic() - start
    if not finished_before:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    after = snapshot(out)
    outcome = "untouched" if after == before else ("complete A" if which_set(out, refs["sets"]) == "a"
                                                   else "BROKEN")
    stderr_lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    # the next run succeeds and leaves B's complete set (and the user's file); its time scales the next moment
    t0 = time.monotonic()
    nxt = subprocess.run(command(models["b"], work, out), env=env(), capture_output=True)
    took = time.monotonic() - t0
    next_ok = (nxt.returncode == 0 and which_set(out, refs["sets"]) == "b" and leftovers(out) == []
               and (state != "B's set + user file" or (out / "notes.txt").exists()))
    return {"i": i, "signal": signal.Signals(sig).name, "out_before": state,
            "moment": f"{at:.2f} s" + (f" (after '{event}' + {delay * 1000:.0f} ms)" if event else " (random)"),
            "seen_at_kill": seen, "finished_before_signal": finished_before, "exit": proc.returncode,
            "stderr_lines": len(stderr_lines), "traceback": "Traceback" in err.decode(errors="replace"),
            "outcome": outcome, "next_run_ok": next_ok, "next_run_seconds": round(took, 2)}


def race_once(i: int, work: Path, models: dict, refs: dict) -> dict:
    out = work / "race"
    force = i % 2 == 0
    prepare(out, "B's set" if force else "missing", work, refs)
    procs = {tag: subprocess.Popen(command(models[tag], work, out, force), env=env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE) for tag in ("a", "b")}
    results = {tag: (p.wait(timeout=300), p.stderr.read().decode(errors="replace").strip())
               for tag, p in procs.items()}
    held = which_set(out, refs["sets"])
    winners = [t for t, (rc, _) in results.items() if rc == 0]
    refused = {t: err for t, (rc, err) in results.items() if rc != 0}
    ok = (held is not None and held in winners
          and all(rc in (0, 2) for rc, _ in results.values())
          and all(len(err.splitlines()) == 1 for err in refused.values()) and leftovers(out) == [])
    return {"i": i, "force": force, "exits": {t: rc for t, (rc, _) in results.items()}, "holds": held,
            "refusals": sorted(refused.values()), "ok": ok}


def reference_sets(work: Path, models: dict) -> dict:
    sets, full = {}, None
    for tag in ("a", "b"):
        out = work / f"ref_{tag}"
        t0 = time.monotonic()
        subprocess.run(command(models[tag], work, out), env=env(), check=True, capture_output=True)
        duration = time.monotonic() - t0
        sets[tag] = snapshot(out)
        if tag == "b":
            full = sets[tag]
    return {"sets": sets, "b_full": full, "duration": duration}


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--races", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="no results files")
    args = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="edgepack-kill-") as tmp:
        work = Path(tmp)
        models = make_inputs(work)
        refs = reference_sets(work, models)
        duration = refs["duration"]
        print(f"one export takes {duration:.1f} s here; killing at {args.kills} moments")
        kills = []
        for i in range(args.kills):
            row = kill_once(i, rng, work, models, refs, duration)
            kills.append(row)
            duration = row["next_run_seconds"]  # the machine is shared: scale random moments by the last run
            print(f"{i:2d} {row['signal']:7s} {row['out_before']:19s} {row['moment']:42s} "
                  f"{row['seen_at_kill']:24s} exit {row['exit']:4d} -> {row['outcome']:10s} "
                  f"next run {'ok' if row['next_run_ok'] else 'FAILED'}", flush=True)
        races = []
        for i in range(args.races):
            row = race_once(i, work, models, refs)
            races.append(row)
            print(f"race {i} force={row['force']!s:5s} exits {row['exits']} holds {row['holds']} "
                  f"{'ok' if row['ok'] else 'FAILED'} {row['refusals']}", flush=True)
    killed = [k for k in kills if not k["finished_before_signal"] and k["seen_at_kill"] != "published, exiting"]
    summary = {"export_seconds": round(duration, 2), "kills": len(kills), "killed_mid_run": len(killed),
               "untouched": sum(k["outcome"] == "untouched" for k in kills),
               "complete_new_set": sum(k["outcome"] == "complete A" for k in kills),
               "broken": sum(k["outcome"] == "BROKEN" for k in kills),
               "tracebacks": sum(k["traceback"] for k in kills),
               "next_run_ok": sum(k["next_run_ok"] for k in kills),
               "races": len(races), "races_ok": sum(r["ok"] for r in races),
               "mixed_sets_in_races": sum(r["holds"] is None for r in races)}
    print(json.dumps(summary, indent=1))
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "kill_export.json").write_text(json.dumps({"summary": summary, "kills": kills, "races": races},
                                                             indent=1) + "\n")
        lines = ["# Kills and races of `edgepack export` into one --out", "",
                 "`python benchmarks/kill_export.py` (see its docstring).", "",
                 "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary.items()] + [
                 "", "| # | signal | --out before | moment | seen at the signal | exit | --out after | next run |",
                 "|---|---|---|---|---|---|---|---|"] + [
                 f"| {k['i']} | {k['signal']} | {k['out_before']} | {k['moment']} | {k['seen_at_kill']} | "
                 f"{k['exit']} | {k['outcome']} | {'ok' if k['next_run_ok'] else 'FAILED'} |" for k in kills] + [
                 "", "| race | --force | exits (A, B) | --out holds | refusal |", "|---|---|---|---|---|"] + [
                 f"| {r['i']} | {r['force']} | {r['exits']['a']}, {r['exits']['b']} | {r['holds']} | "
                 f"{'; '.join(r['refusals'])} |" for r in races]
        (RESULTS / "kill_export.md").write_text("\n".join(lines) + "\n")
    if summary["broken"] or summary["next_run_ok"] < len(kills) or summary["races_ok"] < len(races):
        sys.exit(1)


if __name__ == "__main__":
    main()
