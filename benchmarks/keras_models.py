"""The Keras models of bench_tflite_converter.py: twins of PyTorch Sequentials (same weights, NHWC) and a
MobileNet-style CNN built, trained and kept in Keras only."""
from __future__ import annotations

import numpy as np


def _flat_modules(model):
    import torch.nn as nn

    for m in model.children():
        if isinstance(m, nn.Sequential):
            yield from _flat_modules(m)
        else:
            yield m


def keras_twin(model, size: int):
    """The Keras (NHWC) model computing what the PyTorch Sequential ``model`` computes, same weights."""
    import keras
    import torch.nn as nn

    L = keras.layers
    inp = keras.Input((size, size, 1), batch_size=1)
    h, chw, pending = inp, (1, size, size), []
    for m in _flat_modules(model):
        if isinstance(m, nn.Conv2d):
            (k, _), (s, _), (p, _) = m.kernel_size, m.stride, m.padding
            n = chw[1]
            out = (n + 2 * p - k) // s + 1
            if s == 1 and 2 * p == k - 1:
                padding = "same"
            else:  # PyTorch pads both sides; pad only what the kernel reads, then a VALID conv
                after = max(0, (out - 1) * s + k - n - p)
                h = L.ZeroPadding2D(((p, after), (p, after)))(h)
                padding = "valid"
            w = m.weight.detach().numpy()
            if m.groups == 1:
                layer = L.Conv2D(m.out_channels, k, strides=s, padding=padding, use_bias=m.bias is not None)
                kernel = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            elif m.groups == m.in_channels == m.out_channels:
                layer = L.DepthwiseConv2D(k, strides=s, padding=padding, use_bias=m.bias is not None)
                kernel = w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            else:
                raise ValueError(f"no Keras twin for a grouped conv with groups={m.groups}")
            h = layer(h)
            pending.append((layer, [kernel] + ([m.bias.detach().numpy()] if m.bias is not None else [])))
            chw = (m.out_channels, out, out)
        elif isinstance(m, nn.BatchNorm2d):
            layer = L.BatchNormalization(epsilon=m.eps, momentum=1 - m.momentum)
            h = layer(h)
            pending.append((layer, [m.weight.detach().numpy(), m.bias.detach().numpy(),
                                    m.running_mean.numpy(), m.running_var.numpy()]))
        elif isinstance(m, nn.ReLU):
            h = L.ReLU()(h)
        elif isinstance(m, nn.MaxPool2d):
            h = L.MaxPooling2D(m.kernel_size, strides=m.stride)(h)
            chw = (chw[0], chw[1] // m.stride, chw[2] // m.stride)
        elif isinstance(m, nn.Flatten):
            h = L.Flatten()(h)
        elif isinstance(m, nn.Linear):
            layer = L.Dense(m.out_features)
            h = layer(h)
            c, hh, ww = chw
            # PyTorch flattens (C, H, W), Keras (H, W, C): permute the rows of the dense kernel.
            w = m.weight.detach().numpy().reshape(m.out_features, c, hh, ww).transpose(2, 3, 1, 0)
            pending.append((layer, [w.reshape(hh * ww * c, m.out_features), m.bias.detach().numpy()]))
        else:
            raise ValueError(f"no Keras twin for {type(m).__name__}")
    twin = keras.Model(inp, h)
    for layer, weights in pending:
        layer.set_weights(weights)
    return twin


def mobilenet_keras(size: int = 32, classes: int = 10):
    """A MobileNetV2-flavoured Keras CNN: stride-2 SAME convs (asymmetric padding, which PyTorch has no
    twin for), depthwise-separable blocks with ReLU6, residual Adds, global average pooling, Dense."""
    import keras

    L = keras.layers

    def bn_relu6(h):
        return L.ReLU(6.0)(L.BatchNormalization(momentum=0.9)(h))

    def block(h, cin: int, cout: int, stride: int):
        y = bn_relu6(L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(h))
        y = L.BatchNormalization(momentum=0.9)(L.Conv2D(cout, 1, use_bias=False)(y))
        return L.Add()([h, y]) if stride == 1 and cin == cout else L.ReLU(6.0)(y)

    inp = keras.Input((size, size, 1), batch_size=1)
    h = bn_relu6(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp))
    h = block(block(block(h, 16, 16, 1), 16, 32, 2), 32, 32, 1)
    return keras.Model(inp, L.Dense(classes)(L.GlobalAveragePooling2D()(h)))


def train_keras(model, x_nhwc: np.ndarray, y: np.ndarray, epochs: int, lr: float):
    """Adam on cross-entropy of the logits, batch 64, fixed seed (so every run trains the same model)."""
    import keras

    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_nhwc, y, batch_size=64, epochs=epochs, verbose=0)
    return model
