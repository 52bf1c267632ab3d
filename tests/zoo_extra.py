"""More small PyTorch architectures for the zoo (registered in zoo._ZOO): mobile CNNs, keyword spotting,
segmentation, 1-D audio, a transformer block, and a few classic shapes.

Each class is the smallest model that still has the architecture's defining structure.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def cbr(cin, cout, k=3, s=1, groups=1, act=nn.ReLU, pad=None):
    pad = k // 2 if pad is None else pad
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, pad, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


def separable(cin, cout, s=1, act=nn.ReLU6):
    """Depthwise 3x3 + pointwise 1x1, each with BatchNorm and activation (MobileNetV1's unit)."""
    return nn.Sequential(cbr(cin, cin, 3, s, groups=cin, act=act), cbr(cin, cout, 1, act=act))


class MobileNetV1Tiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(cbr(1, 8, act=nn.ReLU6), separable(8, 16), separable(16, 32, 2),
                                      separable(32, 32), separable(32, 64, 2))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class MBConv(nn.Module):
    """EfficientNet-lite block: expand 1x1 (skipped for expand=1), depthwise kxk, project 1x1; ReLU6,
    no squeeze-excite (the "lite" variant), residual when shapes allow."""

    def __init__(self, cin, cout, k, s, expand):
        super().__init__()
        mid = cin * expand
        layers = [cbr(cin, mid, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [cbr(mid, mid, k, s, groups=mid, act=nn.ReLU6),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetLiteTiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(1, 16, 3, 2, act=nn.ReLU6)
        self.blocks = nn.Sequential(MBConv(16, 16, 3, 1, 1), MBConv(16, 24, 5, 2, 4), MBConv(24, 24, 3, 1, 4))
        self.head = cbr(24, 64, 1, act=nn.ReLU6)
        self.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def channel_shuffle(x, groups: int):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2-style unit with both branches on the full input (its downsampling form), concat,
    channel shuffle."""

    def __init__(self, cin, cout, s):
        super().__init__()
        half = cout // 2
        self.a = nn.Sequential(nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                               cbr(cin, half, 1))
        self.b = nn.Sequential(cbr(cin, half, 1), nn.Conv2d(half, half, 3, s, 1, groups=half, bias=False),
                               nn.BatchNorm2d(half), cbr(half, half, 1))

    def forward(self, x):
        return channel_shuffle(torch.cat([self.a(x), self.b(x)], 1), 2)


class ShuffleNetTiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(1, 16)
        self.units = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1), ShuffleUnit(32, 64, 2))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


class DSCNN(nn.Module):
    """Keyword spotting DS-CNN (MLPerf Tiny KWS shape): 49x10 MFCC input, 10x4 stride-2 conv,
    depthwise-separable blocks, average pool, 12 classes."""

    def __init__(self, classes=12, c=24):
        super().__init__()
        self.stem = cbr(1, c, (10, 4), 2, pad=(5, 1))
        self.blocks = nn.Sequential(*[separable(c, c, act=nn.ReLU) for _ in range(3)])
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(F.avg_pool2d(x, x.shape[2:]).flatten(1))


class UNetTiny(nn.Module):
    """Two-level U-Net: ConvTranspose2d and bilinear Resize upsampling, concatenated skips,
    3-class per-pixel logits."""

    def __init__(self, classes=3):
        super().__init__()
        self.e1, self.e2, self.mid = cbr(1, 8), cbr(8, 16), cbr(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.d2 = cbr(32, 16)
        self.d1 = cbr(24, 8)
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(F.max_pool2d(e1, 2))
        d2 = self.d2(torch.cat([self.up2(self.mid(F.max_pool2d(e2, 2))), e2], 1))
        up1 = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(self.d1(torch.cat([up1, e1], 1)))


class AudioConv1d(nn.Module):
    """1-D convolutions over time on (1, channels, T) features, BatchNorm1d, MaxPool1d, mean over time."""

    def __init__(self, cin=8, classes=10):
        super().__init__()

        def block(a, b, k, s):
            return nn.Sequential(nn.Conv1d(a, b, k, s, k // 2, bias=False), nn.BatchNorm1d(b), nn.ReLU())

        self.features = nn.Sequential(block(cin, 16, 5, 1), nn.MaxPool1d(2), block(16, 24, 3, 2),
                                      block(24, 32, 3, 1))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(2))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block, one attention head."""

    def __init__(self, d=16, hidden=32):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.scale = d ** -0.5

    def forward(self, x):
        h = self.ln1(x)
        att = torch.softmax(self.q(h) @ self.k(h).transpose(-2, -1) * self.scale, dim=-1)
        x = x + self.proj(att @ self.v(h))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """Tokens (1, T, features) -> Linear embedding + learned positions -> encoder block -> LayerNorm ->
    mean over tokens -> classes."""

    def __init__(self, tokens=8, features=8, d=16, classes=10):
        super().__init__()
        self.embed = nn.Linear(features, d)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.1)
        self.block = EncoderBlock(d)
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, classes)

    def forward(self, x):
        x = self.ln(self.block(self.embed(x) + self.pos))
        return self.fc(x.mean(1))


class ActivationHeads(nn.Module):
    """LeakyReLU trunk; a Sigmoid gate head times a Tanh value head (GLU-like output)."""

    def __init__(self, classes=10):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 16, 3, 2, 1),
                                   nn.LeakyReLU(0.1))
        self.gate, self.value = nn.Linear(16, classes), nn.Linear(16, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.trunk(x), 1).flatten(1)
        return torch.sigmoid(self.gate(x)) * torch.tanh(self.value(x))


class LeNet(nn.Module):
    """LeNet-5 shape: Tanh activations and average pooling."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 2 * 2, 32), nn.Tanh(), nn.Linear(32, classes))

    def forward(self, x):
        return self.head(self.features(x))


class AutoEncoder(nn.Module):
    """Fully connected auto-encoder (MLPerf Tiny anomaly detection shape): 64 -> 8 -> 64."""

    def __init__(self, n=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 32),
                                 nn.ReLU(), nn.Linear(32, n))

    def forward(self, x):
        return self.net(x)


class DilatedCNN(nn.Module):
    """Growing receptive field through dilated 3x3 convolutions, residual over the dilated pair."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(1, 16)
        self.d2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU())
        self.d4 = nn.Conv2d(16, 16, 3, padding=4, dilation=4)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.d4(self.d2(x)))
        return self.fc(x.mean((2, 3)))


class DenseNetTiny(nn.Module):
    """Dense blocks (every layer reads the concat of all before it) and a transition layer."""

    def __init__(self, classes=10, growth=8):
        super().__init__()
        self.stem = cbr(1, 8)
        self.b1 = nn.ModuleList([cbr(8, growth), cbr(8 + growth, growth)])
        self.transition = nn.Sequential(cbr(8 + 2 * growth, 16, 1), nn.AvgPool2d(2))
        self.b2 = nn.ModuleList([cbr(16, growth), cbr(16 + growth, growth)])
        self.fc = nn.Linear(16 + 2 * growth, classes)

    @staticmethod
    def dense(x, layers):
        for layer in layers:
            x = torch.cat([x, layer(x)], 1)
        return x

    def forward(self, x):
        x = self.transition(self.dense(self.stem(x), self.b1))
        return self.fc(self.dense(x, self.b2).mean((2, 3)))


MODELS = {
    "mobilenet_v1": (MobileNetV1Tiny, (1, 1, 16, 16)),
    "efficientnet_lite": (EfficientNetLiteTiny, (1, 1, 16, 16)),
    "shufflenet": (ShuffleNetTiny, (1, 1, 16, 16)),
    "ds_cnn": (DSCNN, (1, 1, 49, 10)),
    "unet": (UNetTiny, (1, 1, 16, 16)),
    "audio_conv1d": (AudioConv1d, (1, 8, 32)),
    "transformer": (TinyTransformer, (1, 8, 8)),
    "act_heads": (ActivationHeads, (1, 1, 16, 16)),
    "lenet": (LeNet, (1, 1, 16, 16)),
    "autoencoder": (AutoEncoder, (1, 64)),
    "dilated_cnn": (DilatedCNN, (1, 1, 16, 16)),
    "densenet": (DenseNetTiny, (1, 1, 16, 16)),
}
