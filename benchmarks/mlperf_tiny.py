"""The MLPerf Tiny reference networks, rebuilt in PyTorch (inference structure only, untrained).

They follow the Keras reference models of github.com/mlcommons/tiny (benchmark/training/*/keras_model.py)
layer by layer, so that their MAC and parameter counts match the published ones:

- ``resnet8()``: image classification (IC), input 1x3x32x32, ~77.7K parameters, ~12.5M MACs
- ``ds_cnn()``: keyword spotting (KWS), input 1x1x49x10, ~22.6K parameters, ~2.66M MACs
- ``fc_autoencoder()``: anomaly detection (AD), input 1x640, ~264K MACs
- ``mobilenet_v1()``: visual wake words (VWW), MobileNetV1 alpha 0.25 at 96x96 (~7.5M MACs)

``NETWORKS`` maps a benchmark name to ``(builder, input_shape)``; the shapes are NCHW with batch 1.
Parameter counts are those of the deployed graph (BatchNorm folded into the convolutions).
"""
from __future__ import annotations

from torch import nn


def _conv_bn(cin: int, cout: int, kernel, stride=1, padding=0, groups: int = 1, relu: bool = True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class _ResidualStage(nn.Module):
    """conv3x3(stride)-BN-ReLU, conv3x3-BN, plus the skip (1x1 strided conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride, 1), _conv_bn(cout, cout, 3, 1, 1, relu=False))
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.skip(x))


def resnet8(num_classes: int = 10) -> nn.Module:
    """ResNet-8 of MLPerf Tiny IC: conv 16, three residual stages of 16/32/64 filters, avgpool, FC."""
    return nn.Sequential(
        _conv_bn(3, 16, 3, 1, 1),
        _ResidualStage(16, 16, 1), _ResidualStage(16, 32, 2), _ResidualStage(32, 64, 2),
        nn.AvgPool2d(8), nn.Flatten(), nn.Linear(64, num_classes), nn.Softmax(dim=1))


def ds_cnn(num_classes: int = 12, filters: int = 64) -> nn.Module:
    """DS-CNN of MLPerf Tiny KWS: 10x4 stride-2 conv, 4 x (depthwise 3x3 + pointwise), avgpool, FC.

    The Keras model pads "same" (4 rows above, 5 below); symmetric (5, 1) padding gives the same 25x5
    output and the same MACs."""
    blocks = []
    for _ in range(4):
        blocks += [_conv_bn(filters, filters, 3, 1, 1, groups=filters), _conv_bn(filters, filters, 1)]
    return nn.Sequential(
        _conv_bn(1, filters, (10, 4), 2, (5, 1)), *blocks,
        nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(filters, num_classes), nn.Softmax(dim=1))


def fc_autoencoder(inputs: int = 640, hidden: int = 128, bottleneck: int = 8) -> nn.Module:
    """FC auto-encoder of MLPerf Tiny AD: 640-128-128-128-128-8-128-128-128-128-640, BN+ReLU between."""
    sizes = [inputs, hidden, hidden, hidden, hidden, bottleneck, hidden, hidden, hidden, hidden]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, inputs))


def mobilenet_v1(alpha: float = 0.25, num_classes: int = 2, in_channels: int = 3) -> nn.Module:
    """MobileNetV1 (width ``alpha``) as in MLPerf Tiny VWW: 3x3 stride-2 conv, 13 depthwise-separable
    blocks, global average pool, FC (2 classes: person / no person). ``in_channels=1`` is TFLM's
    person_detect model (grayscale)."""
    def ch(c: int) -> int:
        return max(8, int(c * alpha))

    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    layers, cin = [_conv_bn(in_channels, ch(32), 3, 2, 1)], ch(32)
    for cout, stride in plan:
        layers += [_conv_bn(cin, cin, 3, stride, 1, groups=cin), _conv_bn(cin, ch(cout), 1)]
        cin = ch(cout)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes),
                         nn.Softmax(dim=1))


NETWORKS = {
    "ic": (resnet8, (1, 3, 32, 32)),
    "kws": (ds_cnn, (1, 1, 49, 10)),
    "ad": (fc_autoencoder, (1, 640)),
    "vww": (mobilenet_v1, (1, 3, 96, 96)),
}

# Published MLPerf Tiny inference latencies (ms, TFLM + CMSIS-NN int8): every one the MCU cost models are
# fitted on (benchmarks/fit_latency.py), and each also predicted with itself left out (leave-one-out).
PUBLISHED_MS = {
    "stm32l4r5": {"ic": 704.2, "kws": 181.9, "ad": 10.1, "vww": 603.0},  # NUCLEO-L4R5ZI, Cortex-M4 @ 120 MHz
    "ra6m4": {"ic": 246.2, "kws": 50.6, "ad": 4.6, "vww": 195.0},  # EK-RA6M4, Cortex-M33 @ 200 MHz
    "ra8d1": {"ic": 8.478, "kws": 3.465, "ad": 0.5307, "vww": 13.393},  # EK-RA8D1, Cortex-M85 @ 480 MHz
}
SOURCES = {
    "stm32l4r5": "MLPerf Tiny closed results, NUCLEO-L4R5ZI with TFLM + CMSIS-NN (figures as carried since the "
                 "first fit; VWW was its held-out check until 2026-12)",
    "ra6m4": "MLPerf Tiny closed results, EK-RA6M4 with TFLM + CMSIS-NN (as above)",
    "ra8d1": "MLPerf Tiny v1.2 closed, Renesas EK-RA8D1 (results/EK-RA8D1/<ic|kws|ad|vww>/performance/"
             "results.txt): 1000 / median throughput 117.948, 288.611, 1884.138, 74.665 inf./s",
}


def build(name: str):
    """``(model in eval mode, input_shape)`` for a benchmark name of ``NETWORKS``."""
    builder, shape = NETWORKS[name]
    return builder().eval(), shape
