"""Keras models for the Keras frontend tests, and a PyTorch twin computing the very same function.

The twin uses only stride-1 'same' convolutions and pooling for downsampling: PyTorch's stride-2
padding=1 pads top/left where TensorFlow's 'same' pads bottom/right, so strided convs would not be
the same function.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

L = keras.layers
BN_EPS = 1e-5  # PyTorch's default; Keras's is 1e-3


def _randomise_bn(model: keras.Model, seed: int = 1) -> keras.Model:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                               rng.uniform(0.5, 1.5, c)])
    return model


def keras_cnn(channels: int = 1, size: int = 8, classes: int = 10, seed: int = 0) -> keras.Model:
    """Conv2D+BN+ReLU, DepthwiseConv2D+BN+ReLU, pointwise Conv2D+BN, Add residual, MaxPool, Conv2D,
    GlobalAveragePooling2D, Dense. NHWC input (size, size, channels)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, channels), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.ReLU()(L.BatchNormalization(epsilon=BN_EPS, name="stem_bn")(x))
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = L.ReLU()(L.BatchNormalization(epsilon=BN_EPS, name="dw_bn")(y))
    y = L.Conv2D(8, 1, use_bias=False, name="pw")(y)
    y = L.BatchNormalization(epsilon=BN_EPS, name="pw_bn")(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(classes, name="logits")(x)
    return _randomise_bn(keras.Model(inp, out, name="keras_cnn"), seed + 1)


class TorchTwin(nn.Module):
    """keras_cnn in PyTorch (NCHW)."""

    def __init__(self, channels: int = 1, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(channels, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.dw_bn = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 8, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.logits = nn.Linear(16, classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        y = self.pw_bn(self.pw(F.relu(self.dw_bn(self.dw(x)))))
        x = F.max_pool2d(F.relu(x + y), 2)
        x = F.relu(self.conv2(x))
        return self.logits(F.adaptive_avg_pool2d(x, 1).flatten(1))


def torch_twin(seed: int = 0, channels: int = 1) -> TorchTwin:
    from zoo import randomise_bn

    torch.manual_seed(seed)
    return randomise_bn(TorchTwin(channels), seed + 1)


def copy_torch_to_keras(twin: TorchTwin, model: keras.Model) -> keras.Model:
    """Give ``model`` (keras_cnn) the weights of ``twin``: OIHW -> HWIO, depthwise (C,1,kh,kw) ->
    (kh,kw,C,1), Linear (out,in) -> Dense (in,out), BatchNorm statistics as they are."""
    sd = {k: v.detach().numpy() for k, v in twin.state_dict().items()}
    for name in ("stem", "pw"):
        model.get_layer(name).set_weights([sd[f"{name}.weight"].transpose(2, 3, 1, 0)])
    model.get_layer("dw").set_weights([sd["dw.weight"].transpose(2, 3, 0, 1)])
    model.get_layer("conv2").set_weights([sd["conv2.weight"].transpose(2, 3, 1, 0), sd["conv2.bias"]])
    model.get_layer("logits").set_weights([sd["logits.weight"].T, sd["logits.bias"]])
    for name in ("stem_bn", "dw_bn", "pw_bn"):
        model.get_layer(name).set_weights([sd[f"{name}.weight"], sd[f"{name}.bias"],
                                           sd[f"{name}.running_mean"], sd[f"{name}.running_var"]])
    return model


class Scale(L.Layer):
    """A custom layer: Keras safe mode cannot load it without its class."""

    def __init__(self, factor: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def with_lambda(size: int = 8) -> keras.Model:
    """A small CNN with a Lambda layer holding a Python lambda."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.Lambda(lambda t: t * 0.5, name="halve")(x)
    return keras.Model(inp, L.Dense(3)(L.Flatten()(x)))


def with_custom_layer(size: int = 8) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1))
    x = Scale(0.5, name="scale")(L.Conv2D(4, 3, padding="same", name="conv")(inp))
    return keras.Model(inp, L.Dense(3)(L.Flatten()(x)))


def layer_case(name: str) -> keras.Model:
    """Small models around one Keras layer family whose tf2onnx form needs care (16x16x3 input)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    if name == "rescaling":  # elementwise ops between the input and tf2onnx's NHWC->NCHW transpose
        x = L.Conv2D(8, 3)(L.Rescaling(1 / 255.0, offset=-0.5)(inp))
        out = L.Dense(4)(L.GlobalAveragePooling2D()(x))
    elif name == "normalization":  # per-channel constants the traced function captures
        x = L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 4.0])(inp)
        out = L.Dense(4)(L.Flatten()(L.Conv2D(4, 3, strides=2)(x)))
    elif name == "upsampling":  # Keras 3 repeats pixels with Tile chains unless traced as a resize
        x = L.Conv2D(4, 3, strides=2, padding="same")(inp)
        x = L.UpSampling2D(interpolation="nearest")(x)
        x = L.UpSampling2D(interpolation="bilinear")(L.Conv2D(4, 3, strides=2, padding="same")(x))
        out = L.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    elif name == "separable_concat":
        a = L.SeparableConv2D(8, 3, padding="same", activation="relu")(inp)
        b = L.Conv2D(8, 1, activation="relu6")(inp)
        x = L.AveragePooling2D(2)(L.Concatenate()([a, b]))
        out = L.Dense(10, activation="softmax")(L.Flatten()(L.Dropout(0.2)(x)))
    elif name == "hard_activations":  # relu6(x + 3) / 6 in tf2onnx's Add, Clip, Mul form
        x = L.Activation("hard_swish")(L.Conv2D(8, 3, padding="same")(inp))
        x = L.Activation("hard_sigmoid")(L.DepthwiseConv2D(3, padding="same")(x))
        out = L.Dense(4)(L.GlobalAveragePooling2D()(x))
    else:
        raise KeyError(name)
    return keras.Model(inp, out, name=name)


LAYER_CASES = ["rescaling", "normalization", "upsampling", "separable_concat", "hard_activations"]
