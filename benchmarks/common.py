"""Small helpers shared by the benchmarks: paths, digits data, training, interleaved timing, results files.

These machines are noisy, so contenders are always timed in the same run, round by round, in a rotating
order, and compared by the ratio of their medians."""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
for _p in (REPO, REPO / "tests"):  # edgepack from the checkout, tests/zoo.py for the model builders
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits(size: int = 8):
    """(x_train, y_train, x_test, y_test) of scikit-learn digits, NCHW float32 in [0, 1]."""
    from edgepack.demo import digits_split

    return digits_split(size=size)


def train(model, x, y, epochs: int, lr: float):
    """Train ``model`` with edgepack's demo trainer (fixed seed); returns it in eval mode."""
    import torch

    from edgepack.demo import train_classifier

    torch.manual_seed(0)
    return train_classifier(model, x, y, epochs=epochs, lr=lr)


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int,
                warmup: int = 0) -> dict[str, list[float]]:
    """Wall seconds of each call, ``rounds`` times, the contenders alternating within each round
    (order rotated every round so none always runs first on a warm or cold machine)."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median(values) -> float:
    return float(statistics.median(values))


@contextlib.contextmanager
def quiet():
    """Swallow stdout of chatty third-party calls (onnxruntime's calibrators print)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def machine() -> dict:
    """What the numbers were measured on."""
    import numpy
    import onnxruntime
    import torch

    flags = ""
    cpu = platform.processor()
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), cpu)
        flags = next((l for l in info.splitlines() if l.startswith("flags")), "")
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "torch_threads": torch.get_num_threads(),
            "vnni": any(f in flags.split() for f in ("avx512_vnni", "avx_vnni")),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def md_table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """benchmarks/results/<stem>.json and .md, each written whole (tmp file, then rename)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    for path, text in zip(paths, (json.dumps(data, indent=2) + "\n", markdown)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


def digits_test_split_like(shape):
    """The 360 test-split digits shaped for a zoo input, as zoo.digits_like shapes the training split."""
    import torch
    import torch.nn.functional as F

    from edgepack.demo import digits_split

    x = digits_split()[2]
    if len(shape) == 2:
        return x.reshape(len(x), -1)
    size = tuple(shape[-2:]) if len(shape) == 4 else (shape[1], shape[2])
    x = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=False).numpy()
    return x if len(shape) == 4 else x[:, 0]
