"""Small PyTorch architectures covering the op families edgepack must handle.

Each builder returns (model in eval mode, input shape). Weights are random but fixed by seed;
BatchNorm statistics are randomised so that folding is really exercised.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo_extra


def randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


def cbr(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


class PlainCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(cbr(1, 8), cbr(8, 16, s=2), cbr(16, 32, s=2), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, classes))

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = cbr(cin, cout, s=stride)
        self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return F.relu(self.c2(self.c1(x)) + self.skip(x))


class ResNetTiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(1, 16)
        self.blocks = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand, act=nn.ReLU6, se=False):
        super().__init__()
        mid = cin * expand
        layers = [cbr(cin, mid, 1, act=act), cbr(mid, mid, 3, stride, groups=mid, act=act)]
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(c // r, 4), 1)
        self.fc2 = nn.Conv2d(max(c // r, 4), c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class MobileNetV2Tiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(1, 16, s=1, act=nn.ReLU6)
        self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 2), InvertedResidual(16, 24, 2, 3),
                                    InvertedResidual(24, 24, 1, 3))
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(x.mean((2, 3)))


class MobileNetV3Tiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(1, 16, s=2, act=nn.Hardswish)
        self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 2, nn.Hardswish, se=True),
                                    InvertedResidual(16, 24, 2, 3, nn.Hardswish, se=True))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(24, 32), nn.Hardswish(), nn.Linear(32, classes))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1))


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.s = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.s(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


class SqueezeNetTiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 8, 16), Fire(32, 8, 16))
        self.classifier = nn.Sequential(nn.Conv2d(32, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                        nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


class GapHead(nn.Module):
    """Conv features, global average pool, Linear head, softmax probabilities."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(cbr(1, 12), nn.AvgPool2d(2), cbr(12, 24))
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return torch.softmax(self.fc(x), dim=1)


class Decoder(nn.Module):
    """Encoder-decoder producing an image: strided conv down, nearest and bilinear upsampling."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(cbr(1, 8, s=2), cbr(8, 16, s=2))
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.mid = cbr(16, 8)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.out = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.out(self.up2(self.mid(self.up1(self.down(x))))))


class MLP(nn.Module):
    def __init__(self, inp=64, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inp, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh(),
                                 nn.Linear(32, classes))

    def forward(self, x):
        return self.net(x)


def fc_heavy(classes: int = 10) -> nn.Module:
    """An FC-heavy classifier for flattened 8x8 digits, input (1, 64): 64 -> 256 -> 256 -> 10 (84k weights,
    enough that weights, not the file's tables, make up the bytes). Not in the zoo's list: the compression
    tests (test_sparsity_low_rank.py) train it with ``trained_on_digits("fc_heavy", ...)``."""
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes))


_EXTRA = {"fc_heavy": (fc_heavy, (1, 64))}  # built and trained like zoo models, not run by the zoo-wide tests

_ZOO = {
    "plain_cnn": (PlainCNN, (1, 1, 16, 16)),
    "resnet": (ResNetTiny, (1, 1, 16, 16)),
    "mobilenet_v2": (MobileNetV2Tiny, (1, 1, 16, 16)),
    "mobilenet_v3": (MobileNetV3Tiny, (1, 1, 16, 16)),
    "squeezenet": (SqueezeNetTiny, (1, 1, 16, 16)),
    "gap_head": (GapHead, (1, 1, 16, 16)),
    "decoder": (Decoder, (1, 1, 16, 16)),
    "mlp": (MLP, (1, 64)),
    **zoo_extra.MODELS,
}
ZOO_NAMES = sorted(_ZOO)
# The 4-D image CNNs: their .tflite must hold no TRANSPOSE at all (shufflenet's channel shuffle is a
# transpose of the model itself, so it is checked separately).
CONV_NAMES = [n for n in ZOO_NAMES if len(_ZOO[n][1]) == 4 and n != "shufflenet"]
# Models using a TFLite builtin that TFLite Micro has no kernel for (-> the builtin): LiteRT only.
LITERT_ONLY = {"transformer": "GELU"}


def build(name: str, seed: int = 0):
    cls, shape = _ZOO[name] if name in _ZOO else _EXTRA[name]
    torch.manual_seed(seed)
    return randomise_bn(cls()), shape


def trained_on_digits(name: str, digits, seed: int = 0):
    """The zoo model `name` trained for 8 epochs on 8x8 digits (digits_split(8)); `seed` sets the initial
    weights and the batch order."""
    from edgepack.demo import train_classifier

    model, shape = build(name, seed)
    x = digits[0].reshape(len(digits[0]), -1) if len(shape) == 2 else digits[0]  # (1, 64): flattened 8x8
    return train_classifier(model, x, digits[1], epochs=8, lr=5e-3, seed=seed)


def digits_like(shape, n: int):
    """scikit-learn digits (the demo's training split) shaped for a zoo input: images resized to (H, W),
    flattened 8x8 for (1, 64), rows as channels and columns stretched over time for (1, C, T)."""
    from edgepack.demo import digits_split

    x = digits_split()[0][:n]
    if len(shape) == 2:
        return x.reshape(n, -1)
    size = tuple(shape[-2:]) if len(shape) == 4 else (shape[1], shape[2])
    x = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=False).numpy()
    return x if len(shape) == 4 else x[:, 0]


_LOADED = {}


def loaded(name: str):
    """The IR graph of a zoo model (after edgepack's passes), built once per test session.
    Callers that modify it must copy it first."""
    if name not in _LOADED:
        import edgepack

        model, shape = build(name)
        _LOADED[name] = edgepack.load(model, input_shape=shape)
    return _LOADED[name]
