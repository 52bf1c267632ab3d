"""Keras 3 layers traced in forms tf2onnx converts: patched only while the model is traced for tf2onnx.

- UpSampling2D(nearest) as one nearest resize instead of Keras 3's Tile + Reshape repeat chains.
- Grouped Conv (ConvNeXt's depthwise 7x7 is a Conv2D with groups=channels) as a plain TF convolution:
  Keras runs grouped convs in a ``tf.function(jit_compile=True)`` (TF's CPU kernel lacks them), which
  tf2onnx cannot inline and leaves as a ``StatefulPartitionedCall``. In a graph the TF Conv2D op takes the
  grouped kernel and tf2onnx writes an ONNX Conv with ``group``; nothing here is run on TF's CPU kernel.
- Exact GELU as 0.5 x (1 + erf(x / sqrt 2)): TF writes it with Erfc, which ONNX lacks and tf2onnx leaves
  as an invalid node; the Erf form is the one the ONNX frontend fuses into one Gelu.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def traceable_layers(tf):
    with _upsampling_as_resize(tf), _grouped_conv_without_xla(tf), _gelu_with_erf(tf):
        yield


@contextlib.contextmanager
def _patched(owner, name: str, replacement):
    original = getattr(owner, name)
    setattr(owner, name, replacement(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def _upsampling_as_resize(tf):
    """Same pixels as Keras' repeat (source pixel floor(i / factor)); tf2onnx makes one Resize
    (asymmetric, floor) of it, where the repeat's Tile + Reshape chains have no edgepack op."""
    import keras

    def make(original):
        def call(self, inputs):
            if self.interpolation != "nearest":
                return original(self, inputs)
            last = self.data_format == "channels_last"
            x = inputs if last else tf.transpose(inputs, (0, 2, 3, 1))
            size = (int(x.shape[1]) * self.size[0], int(x.shape[2]) * self.size[1])
            y = tf.raw_ops.ResizeNearestNeighbor(images=x, size=size, align_corners=False,
                                                 half_pixel_centers=False)
            return y if last else tf.transpose(y, (0, 3, 1, 2))
        return call

    return _patched(keras.layers.UpSampling2D, "call", make)


def _grouped_conv_without_xla(tf):
    import keras
    from keras.src.backend.tensorflow import nn as tf_nn

    def make(original):
        def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
            fmt = data_format or keras.config.image_data_format()
            rank = len(inputs.shape)
            channels = inputs.shape[-1] if fmt == "channels_last" else inputs.shape[1]
            if tf.executing_eagerly() or rank != 4 or channels == kernel.shape[-2]:
                return original(inputs, kernel, strides, padding, data_format, dilation_rate)
            return tf.nn.convolution(inputs, kernel, strides, padding.upper(),
                                     data_format="NHWC" if fmt == "channels_last" else "NCHW",
                                     dilations=dilation_rate)
        return conv

    return _patched(tf_nn, "conv", make)


def _gelu_with_erf(tf):
    from keras.src.backend.tensorflow import nn as tf_nn

    def make(original):
        def gelu(x, approximate=True):
            if approximate or tf.executing_eagerly():
                return original(x, approximate)
            x = tf.convert_to_tensor(x)
            return x * 0.5 * (1.0 + tf.math.erf(x / tf.cast(2.0 ** 0.5, x.dtype)))
        return gelu

    return _patched(tf_nn, "gelu", make)
