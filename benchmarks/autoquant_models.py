"""Project-built models shaped like the rows of issue 14's table that the zoo lacks, each trained briefly
(seeded, one thread) on data made from scikit-learn digits or drawn procedurally:

- ``ctc_recognizer``: a text-line recognizer without BiLSTM: conv stem over a line of 4 digits (8x32),
  the width as 16 time steps, one self-attention encoder block, per-step logits over blank + 10 digits,
  trained with CTC loss (the issue's CTC text recognizer);
- ``seg_sigmoid``: a small encoder-decoder whose head is a 1x1 conv and a sigmoid probability map, trained
  with per-pixel BCE to mark the ink of a digit (the issue's text detector / segmentation head);
- ``fc_autoencoder``: the zoo's fully connected auto-encoder (64-32-8-32-64) trained to reconstruct
  flattened digits (the zoo's copy stays random);
- ``faces_cnn``: a Keras-style expression CNN (conv-BN-ReLU blocks, max pools, global average pool, dense)
  on 32x32 procedurally drawn faces whose mouth, brows and eyes differ by one of 7 expressions, with random
  position, size, lighting and noise (the issue's facial-expression CNN; no face data set is downloaded).

``build(name)`` -> (model, input shape, calibration samples, held-out samples, training seconds).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("ctc_recognizer", "seg_sigmoid", "faces_cnn", "fc_autoencoder")
STEPS = 150
CALIB, HELD_OUT = 300, 500


def _cbr(cin, cout, k=3, s=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class CtcRecognizer(nn.Module):
    """(1, 1, 8, 32) text line -> (1, 16, 11) per-step logits (blank first)."""

    def __init__(self, d=32, classes=11):
        from zoo_extra import EncoderBlock

        super().__init__()
        self.stem = nn.Sequential(_cbr(1, 16), _cbr(16, d, 3, 2), nn.Conv2d(d, d, (4, 1)))  # 8x32 -> 1x16
        self.pos = nn.Parameter(torch.randn(1, 16, d) * 0.1)
        self.block = EncoderBlock(d, 2 * d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        h = self.stem(x).flatten(2).transpose(1, 2)  # (1, T, d)
        return self.head(self.block(h + self.pos))


class SegSigmoid(nn.Module):
    """(1, 1, 16, 16) image -> (1, 1, 16, 16) probability map."""

    def __init__(self):
        super().__init__()
        self.enc1, self.enc2 = _cbr(1, 8), _cbr(8, 16, 3, 2)
        self.mid = _cbr(16, 16)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = _cbr(16, 8)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        d = self.dec(torch.cat([self.up(self.mid(self.enc2(e1))), e1], 1))
        return torch.sigmoid(self.head(d))


class FacesCnn(nn.Module):
    """(1, 1, 32, 32) face -> (1, 7) expression logits."""

    def __init__(self, classes=7):
        super().__init__()
        self.features = nn.Sequential(_cbr(1, 8), _cbr(8, 16), nn.MaxPool2d(2), _cbr(16, 32), nn.MaxPool2d(2),
                                      _cbr(32, 32), nn.MaxPool2d(2), _cbr(32, 48))
        self.fc = nn.Linear(48, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def _digits():
    from edgepack.demo import digits_split

    xtr, ytr, xte, yte = digits_split()
    return np.concatenate([xtr, xte]), np.concatenate([ytr, yte])


def text_lines(n: int, rng):
    """(n, 1, 8, 32) lines of 4 random digits side by side, (n, 4) labels 1..10 (0 is CTC's blank)."""
    x, y = _digits()
    pick = rng.integers(0, len(x), (n, 4))
    lines = np.concatenate([x[pick[:, i]] for i in range(4)], axis=-1)
    return lines.astype(np.float32), y[pick] + 1


def seg_images(n: int):
    x, _ = _digits()
    x = F.interpolate(torch.from_numpy(x[:n]), size=(16, 16), mode="bilinear", align_corners=False).numpy()
    return x, (x > 0.4).astype(np.float32)


def faces(n: int, rng, size: int = 32):
    """(n, 1, size, size) drawn faces, (n,) expression 0..6: the mouth's curve and opening, the brows' slope
    and the eyes' size follow the expression; position, scale, lighting and noise vary."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    mouth_curve = np.array([0.0, 0.12, -0.12, 0.0, 0.06, -0.05, 0.1])
    mouth_open = np.array([0.0, 0.02, 0.0, 0.06, 0.0, 0.02, 0.04])
    brow_slope = np.array([0.0, 0.0, 0.3, -0.4, 0.4, -0.3, 0.1])
    eye = np.array([0.04, 0.035, 0.03, 0.06, 0.045, 0.03, 0.05])
    labels = rng.integers(0, 7, n)
    out = np.empty((n, 1, size, size), np.float32)
    for i, c in enumerate(labels):
        cx, cy, s = 0.5 + rng.normal(0, 0.04), 0.5 + rng.normal(0, 0.04), rng.uniform(0.8, 1.1)
        u, v = (xx - cx) / s, (yy - cy) / s
        img = np.where(u**2 / 0.12 + v**2 / 0.18 < 1, 0.7, 0.15)  # face on background
        for side in (-1, 1):
            img -= 0.6 * (((u - side * 0.14) ** 2 + (v + 0.08) ** 2) < eye[c] ** 2)
            brow = v + 0.17 + side * brow_slope[c] * (u - side * 0.14)
            img -= 0.4 * ((np.abs(brow) < 0.015) & (np.abs(u - side * 0.14) < 0.08))
        curve = v - 0.2 - mouth_curve[c] * (u / 0.15) ** 2
        img -= 0.6 * ((np.abs(curve) < 0.015 + mouth_open[c]) & (np.abs(u) < 0.15))
        img = img * rng.uniform(0.6, 1.3) + rng.uniform(-0.1, 0.1) * (xx - 0.5) + rng.normal(0, 0.05, img.shape)
        out[i, 0] = img
    return out, labels


def _train(model, x, loss_of, seed: int, steps: int = STEPS, lr: float = 5e-3):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        loss_of(model, idx).backward()
        opt.step()
    return model.eval()


def build(name: str, seed: int = 0):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n_train = 1500
    if name == "ctc_recognizer":
        x, y = text_lines(n_train + CALIB + HELD_OUT, rng)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        ctc = nn.CTCLoss(blank=0)

        def loss_of(m, idx):
            logp = m(xt[idx]).log_softmax(-1).transpose(0, 1)  # (T, N, C)
            return ctc(logp, yt[idx], torch.full((len(idx),), 16), torch.full((len(idx),), 4))

        model, shape = CtcRecognizer(), (1, 1, 8, 32)
    elif name == "seg_sigmoid":
        x, mask = seg_images(n_train + CALIB + HELD_OUT)
        n_train = len(x) - CALIB - HELD_OUT  # the digits are 1797: fewer to train on
        xt, mt = torch.from_numpy(x), torch.from_numpy(mask)

        def loss_of(m, idx):
            return F.binary_cross_entropy(m(xt[idx]), mt[idx])

        model, shape = SegSigmoid(), (1, 1, 16, 16)
    elif name == "faces_cnn":
        x, y = faces(n_train + CALIB + HELD_OUT, rng)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def loss_of(m, idx):
            return F.cross_entropy(m(xt[idx]), yt[idx])

        model, shape = FacesCnn(), (1, 1, 32, 32)
    elif name == "fc_autoencoder":
        from zoo_extra import AutoEncoder

        x = _digits()[0].reshape(-1, 64)
        n_train = len(x) - CALIB - HELD_OUT
        xt = torch.from_numpy(x)

        def loss_of(m, idx):
            return F.mse_loss(m(xt[idx]), xt[idx])

        model, shape = AutoEncoder(), (1, 64)
    else:
        raise KeyError(name)
    xt = xt[:n_train]
    model = _train(model, xt, loss_of, seed)
    cal, held = x[n_train:n_train + CALIB], x[n_train + CALIB:n_train + CALIB + HELD_OUT]
    return model, shape, cal, held, time.perf_counter() - t0
