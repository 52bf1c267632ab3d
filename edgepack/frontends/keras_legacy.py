"""Keras 2 .h5 files that Keras 3 refuses as they are: repair their model config and load them.

Keras 2 wrote some layer arguments that Keras 3 no longer accepts, although they never changed what
the layer computes (``groups: 1`` on DepthwiseConv2D, the unused ``kernel_*`` arguments depthwise
layers inherited from Conv2D, BatchNormalization's ``fused``, mixed-precision ``Policy`` dtypes...).
``repair_config`` drops or rewrites exactly those, only when the value is a no-op, and says what it
did; ``load_repaired_h5`` loads the repaired model from an in-memory copy (the user's file is never
touched). An argument that does change the computation (``groups: 4``) is left alone, so Keras's own
error is what the user sees.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
_SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
_TRANSPOSED = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
_UNUSED_KERNEL_ARGS = ("kernel_initializer", "kernel_regularizer", "kernel_constraint")


def _always(value) -> bool:
    return True


def _is_one(value) -> bool:
    return value == 1


def _is_off(value) -> bool:
    return value in (None, False)


# (layer classes, argument, when dropping it is a no-op). Keras 2 wrote these; Keras 3 rejects them.
DROPPABLE = [
    (_DEPTHWISE + _SEPARABLE + _TRANSPOSED, "groups", _is_one),
    # Keras 2 depthwise layers inherited these from Conv2D and never used them (depthwise_* are used)
    *[(_DEPTHWISE + _SEPARABLE, key, _always) for key in _UNUSED_KERNEL_ARGS],
    (("BatchNormalization",), "fused", _always),                 # an implementation choice of TF
    (("BatchNormalization",), "renorm", _is_off),
    (("BatchNormalization",), "renorm_clipping", _is_off),
    (("BatchNormalization",), "virtual_batch_size", _is_off),
    (("BatchNormalization",), "adjustment", _is_off),
]


def _is_layer(item) -> bool:
    return isinstance(item, dict) and isinstance(item.get("class_name"), str) \
        and isinstance(item.get("config"), dict)


def model_layers(config):
    """The model and its layers (nested models and wrapped layers included), not their initializers,
    regularizers or dtype policies."""
    if _is_layer(config):
        yield config
    yield from _sublayers(config)


def _sublayers(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "layers" and isinstance(item, list):
                yield from (layer for layer in item if _is_layer(layer))
            elif key in ("layer", "forward_layer", "backward_layer") and _is_layer(item):
                yield item
            yield from _sublayers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _sublayers(item)


def keras_accepts(keras):
    """accepts(class name, argument) -> whether this Keras's layer class takes that argument by name."""
    import inspect

    def accepts(cls: str, key: str) -> bool:
        layer = getattr(keras.layers, cls, None)
        try:
            return layer is not None and key in inspect.signature(layer.__init__).parameters
        except (TypeError, ValueError):
            return False
    return accepts


def repair_config(config: dict, accepts=None) -> list[str]:
    """Edit a Keras 2 model config in place so that Keras 3 accepts it; return what was repaired.
    ``accepts(class, argument)`` keeps the arguments the installed Keras still takes."""
    repaired: dict[str, set[str]] = {}
    for layer in model_layers(config):
        cls, cfg = layer["class_name"], layer["config"]
        name = cfg.get("name", cls)
        for classes, key, harmless in DROPPABLE:
            if cls in classes and key in cfg and harmless(cfg[key]) and not (accepts and accepts(cls, key)):
                del cfg[key]
                repaired.setdefault(f"dropped '{key}' from {cls}", set()).add(name)
        dtype = cfg.get("dtype")
        if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
            # Keras 2 mixed-precision policy: the weights are float32; export computes in float32.
            policy = str(dtype.get("config", {}).get("name", "float32"))
            cfg["dtype"] = "float32" if policy.startswith("mixed_") else policy
            repaired.setdefault(f"replaced the Keras 2 dtype Policy '{policy}' by '{cfg['dtype']}'",
                                set()).add(name)
    return [f"{what} ({len(names)} layer{'s' if len(names) > 1 else ''}: "
            f"{', '.join(sorted(names)[:4])}{', ...' if len(names) > 4 else ''})"
            for what, names in sorted(repaired.items())]


def read_h5_config(path: Path) -> dict | None:
    """The model config JSON stored in a Keras .h5 file, or None for a weights-only file."""
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))


def load_repaired_h5(path: Path, custom_objects, safe_mode: bool):
    """(model, repairs) for a Keras 2 .h5 whose config needs repairs; (None, []) when none applies."""
    import h5py
    import keras

    config = read_h5_config(path)
    if config is None:
        return None, []
    repairs = repair_config(config, keras_accepts(keras))
    if not repairs:
        return None, []
    # The loader Keras's own load_model uses for .h5 files; it takes an open h5py.File.
    from keras.src.legacy.saving.legacy_h5_format import load_model_from_hdf5

    buffer = io.BytesIO(Path(path).read_bytes())
    with h5py.File(buffer, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
        model = load_model_from_hdf5(f, custom_objects=custom_objects, compile=False, safe_mode=safe_mode)
    return model, repairs
