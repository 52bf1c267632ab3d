"""The Keras models of bench_accuracy.py, each trained briefly (seeded) on scikit-learn digits shaped for it.

- ``mobilenet_dead``: keras.applications MobileNet alpha 0.25 at 96x96x3, then made to have dead channels
  as trained MobileNets do: some pointwise convs get output channels with weights 1e-30 whose BatchNorm
  leaves a constant 0.3 (the folded bias);
- ``fc_autoencoder``: 10 Dense layers 64-128-96-64-32-16-32-64-96-128-64 (ReLU between), reconstructing;
- ``resnet8``: the CIFAR-style ResNet-8 of MLPerf Tiny (32x32x3, three residual stages 16/32/64);
- ``ds_cnn``: the DS-CNN of MLPerf Tiny keyword spotting (49x10x1, 10x4 stride-2 conv, 4 separable blocks);
- ``digits_cnn``: a small CNN on the 8x8 digits themselves.
"""
from __future__ import annotations

import numpy as np

DEAD_LAYERS = ("conv_pw_3", "conv_pw_6", "conv_pw_9", "conv_pw_12")  # pointwise convs given dead channels
DEAD_CHANNELS = (0, 3, 5, 11)
DEAD_BIAS = 0.3
AE_DIMS = [64, 128, 96, 64, 32, 16, 32, 64, 96, 128, 64]


def _layers():
    import keras

    return keras, keras.layers


def mobilenet_dead():
    keras, _ = _layers()
    return keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=10,
                                        classifier_activation=None)


def kill_channels(model) -> int:
    """Dead output channels in DEAD_LAYERS: kernel 1e-30, BatchNorm (gamma 1, mean 0, var 1, beta 0.3) so
    the folded conv has weights ~1e-30 and bias 0.3. Returns how many channels were made dead."""
    n = 0
    for name in DEAD_LAYERS:
        conv, bn = model.get_layer(name), model.get_layer(name + "_bn")
        (kernel,) = conv.get_weights()
        gamma, beta, mean, var = bn.get_weights()
        for c in DEAD_CHANNELS:
            kernel[..., c] = 1e-30
            gamma[c], beta[c], mean[c], var[c] = 1.0, DEAD_BIAS, 0.0, 1.0
            n += 1
        conv.set_weights([kernel])
        bn.set_weights([gamma, beta, mean, var])
    return n


def fc_autoencoder():
    keras, L = _layers()
    inp = keras.Input((64,), batch_size=1)
    h = inp
    for i in range(10):
        h = L.Dense(AE_DIMS[i + 1], activation="relu" if i < 9 else None)(h)
    return keras.Model(inp, h)


def _conv_bn(h, filters, kernel, stride=1, relu=True):
    _, L = _layers()
    h = L.BatchNormalization()(L.Conv2D(filters, kernel, strides=stride, padding="same")(h))
    return L.ReLU()(h) if relu else h


def resnet8(classes: int = 10):
    keras, L = _layers()
    inp = keras.Input((32, 32, 3), batch_size=1)
    h = _conv_bn(inp, 16, 3)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _conv_bn(_conv_bn(h, filters, 3, stride), filters, 3, relu=False)
        skip = h if stride == 1 else L.Conv2D(filters, 1, strides=stride)(h)
        h = L.ReLU()(L.Add()([y, skip]))
    h = L.Flatten()(L.AveragePooling2D(8)(h))
    return keras.Model(inp, L.Dense(classes)(h))


def ds_cnn(classes: int = 10, filters: int = 64):
    keras, L = _layers()
    inp = keras.Input((49, 10, 1), batch_size=1)
    h = _conv_bn(inp, filters, (10, 4), 2)
    for _ in range(4):
        h = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(h)))
        h = _conv_bn(h, filters, 1)
    h = L.Flatten()(L.AveragePooling2D((25, 5))(h))
    return keras.Model(inp, L.Dense(classes)(h))


def digits_cnn(classes: int = 10):
    keras, L = _layers()
    inp = keras.Input((8, 8, 1), batch_size=1)
    h = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    return keras.Model(inp, L.Dense(classes)(L.Flatten()(h)))


def _resize(x: np.ndarray, hw: tuple[int, int], channels: int) -> np.ndarray:
    """NCHW digits -> NHWC float32 of size ``hw`` with ``channels`` copies of the grey channel."""
    import torch
    import torch.nn.functional as F

    y = F.interpolate(torch.from_numpy(x), size=hw, mode="bilinear", align_corners=False).numpy()
    return np.ascontiguousarray(np.repeat(y.transpose(0, 2, 3, 1), channels, axis=3), np.float32)


# name -> (builder, input (h, w, c) or None for the flat autoencoder, epochs, classifier)
MODELS = {
    "mobilenet_dead": (mobilenet_dead, (96, 96, 3), 2, True),
    "fc_autoencoder": (fc_autoencoder, None, 60, False),
    "resnet8": (resnet8, (32, 32, 3), 3, True),
    "ds_cnn": (ds_cnn, (49, 10, 1), 3, True),
    "digits_cnn": (digits_cnn, (8, 8, 1), 15, True),
}


def data(name: str):
    """(x_train, y_train, x_test, y_test) in the model's own layout (NHWC, or (N, 64))."""
    from edgepack.demo import digits_split

    x_tr, y_tr, x_te, y_te = digits_split(size=8)
    shape = MODELS[name][1]
    if shape is None:
        return x_tr.reshape(-1, 64), y_tr, x_te.reshape(-1, 64), y_te
    return _resize(x_tr, shape[:2], shape[2]), y_tr, _resize(x_te, shape[:2], shape[2]), y_te


def trained(name: str):
    """(keras model, x_train, y_train, x_test, y_test, dead channels made): seeded Adam, batch 64."""
    import keras

    build, _, epochs, classifier = MODELS[name]
    x_tr, y_tr, x_te, y_te = data(name)
    keras.utils.set_random_seed(0)
    model = build()
    for layer in model.layers:  # a few hundred steps: the default momentum 0.99 leaves the moving stats unsettled
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if classifier else "mse"
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss)
    model.fit(x_tr, y_tr if classifier else x_tr, batch_size=64, epochs=epochs, verbose=0)
    dead = kill_channels(model) if name == "mobilenet_dead" else 0
    return model, x_tr, y_tr, x_te, y_te, dead
