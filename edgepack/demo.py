"""`edgepack demo`: train a small CNN on scikit-learn's bundled digits, save it as TorchScript,
and run edgepack on it. Needs the demo extra (torch, scikit-learn)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import EdgepackError

log = logging.getLogger(__name__)


def digits_split(size: int = 8, test_fraction: float = 0.2, seed: int = 0):
    """(x_train, y_train, x_test, y_test): digits as float32 NCHW in [0, 1], optionally upsampled."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EdgepackError("the demo needs scikit-learn: pip install 'edgepack[demo]'") from None
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    if size != 8:
        x = upsample(x, size)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def upsample(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of NCHW images to size x size (for larger model inputs)."""
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear",
                         align_corners=False).numpy()


def train_classifier(model, x, y, epochs: int = 15, lr: float = 3e-3, batch: int = 64, seed: int = 0):
    """Plain Adam + cross-entropy training on in-memory arrays; returns the model in eval mode.
    Runs on one thread: the same seed gives the same weights whatever the core count or load (and these
    small models train no slower on one thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(len(xs))
            for i in range(0, len(xs), batch):
                idx = perm[i:i + batch]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
                loss.backward()
                opt.step()
            log.info("epoch %d loss %.4f", epoch + 1, loss.item())
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).reshape(len(labels), -1).argmax(1) == labels).mean())


def digits_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10))


DEMO_FILES = ("digits_cnn.pt", "calib.npy", "test_x.npy", "test_y.npy", "export")


def run_demo(out, force: bool = False, target: str = "stm32l4r5", echo=lambda *a: None, progress=None):
    """Train, save, export for a microcontroller, validate on held-out digits, write the report.
    ``echo`` is how the CLI shows progress (the library never prints). Like ``export``, everything is
    built in a staging folder (locked and checked before training) and moved into ``out`` at the end."""
    import torch

    from .api import export, load
    from .artifacts import staged_output
    from .ir.summary import summarize

    with staged_output(out, DEMO_FILES, force=force) as stage:
        x_train, y_train, x_test, y_test = digits_split()
        echo(f"training a small CNN on scikit-learn digits ({len(x_train)} train / {len(x_test)} test images)")
        torch.manual_seed(0)
        model = train_classifier(digits_cnn(), x_train, y_train)
        with torch.no_grad():
            acc = accuracy(model(torch.from_numpy(x_test)).numpy(), y_test)
        echo(f"float accuracy of the PyTorch model on held-out digits: {acc:.1%}")
        work = stage.dir
        model_path = work / "digits_cnn.pt"
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 8, 8)), str(model_path))
        np.save(work / "calib.npy", x_train[:300])
        np.save(work / "test_x.npy", x_test)
        np.save(work / "test_y.npy", y_test)
        summary = summarize(load(model_path, input_shape=(1, 1, 8, 8)))
        echo(f"exporting for {target}: calibrating on 300 training images, validating on the held-out ones")
        report = export(model_path, calib=work / "calib.npy", out=work / "export", val=work / "test_x.npy",
                        val_labels=work / "test_y.npy", input_shape=(1, 1, 8, 8), target=target,
                        progress=progress)
        report.relocate(work, Path(out))  # the demo's folder moves too: name the files where they will be
        report.save(work / "export" / "report.json")
        report.save_html(work / "export" / "report.html")
    return summary, report
