"""Keras LSTM / GRU / SimpleRNN layers as tf2onnx can convert them: with unroll=False, Keras 3 runs the
time steps in a tf.while_loop that tf2onnx writes as an ONNX Loop (which edgepack, like the int8 runtimes,
cannot take); with unroll=True the same layer is a static chain of MatMul, Sigmoid, Tanh, Mul and Add per
step, which converts and quantizes like any other graph. The copy has the same weights and outputs."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _rnn_config(cfg: dict) -> bool:
    """Set unroll on an RNN layer config (or the layers a Bidirectional wraps); True when it changed."""
    changed = False
    if "unroll" in cfg and not cfg["unroll"]:
        cfg["unroll"] = True
        changed = True
    for key in ("layer", "backward_layer"):  # Bidirectional
        inner = cfg.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            changed |= _rnn_config(inner["config"])
    return changed


def _needs_unroll(keras, layer) -> bool:
    rnn = (keras.layers.RNN, keras.layers.Bidirectional)
    return isinstance(layer, rnn) and _rnn_config(_copied(layer.get_config()))


def _copied(cfg: dict) -> dict:
    """A copy of a layer config deep enough for _rnn_config to edit."""
    return {k: (dict(v, config=dict(v["config"])) if isinstance(v, dict) and "config" in v else v)
            for k, v in cfg.items()}


def unroll_recurrent(keras, model):
    """``model`` with every recurrent layer unrolled (a clone with the same weights), or ``model`` itself
    when none needs it or the model cannot be cloned (a subclassed model: the Loop error then names it)."""
    if not any(_needs_unroll(keras, layer) for layer in model.layers):
        return model

    def clone(layer):
        cfg = _copied(layer.get_config())
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) and _rnn_config(cfg):
            return layer.__class__.from_config(cfg)
        return layer.__class__.from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 -- keras raises many types; the original then converts as it is
        log.info("recurrent layers left rolled (%s: %s)", type(exc).__name__, exc)
        return model
    log.info("recurrent layers unrolled over their time steps for conversion")
    return copy
