"""Keras in: a .keras file, a .h5/.hdf5 file (Keras 2 files repaired when needed), a SavedModel folder,
or an in-memory keras.Model. Keras -> ONNX through tf2onnx (a tf.function of batch 1), then the ONNX
frontend, which is the only real parser.

The graph keeps the model's NHWC input (Keras users feed NHWC data); tf2onnx follows it with a
Transpose to NCHW that the TFLite layout planner cancels. keras_normalize.py tidies what tf2onnx
leaves so that Keras graphs look like the ones PyTorch gives.

Loading never runs code from the file unless asked: Keras ``safe_mode=True``; a Lambda or custom layer
needs ``custom_objects`` or ``trust_code=True``.
"""
from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import EdgepackError, ModelLoadError, ShapeError
from ..ir import Graph
from .keras_trace import traceable_layers
from .keras_unroll import unroll_recurrent
from .tf_quiet import import_tf as _tf
from .tf_quiet import quiet as _quiet

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
_NO_CLI = "the CLI cannot import your code, --trust-code only lets Keras run Lambda code stored in the file"


def is_keras_model(obj) -> bool:
    """True for an in-memory Keras model (Keras 3 or tf.keras), without importing TensorFlow."""
    return any(c.__module__.split(".")[0] in ("keras", "tf_keras") or
               c.__module__.startswith("tensorflow.python.keras") for c in type(obj).__mro__) \
        and hasattr(obj, "layers")


def is_saved_model_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "saved_model.pb").exists()


# ---- entry point ----------------------------------------------------------------------------
def load_keras(model, *, custom_objects: dict | None = None, trust_code: bool = False,
               input_shape=None, opset: int | None = DEFAULT_OPSET) -> Graph:
    """Convert a Keras model (path to .keras/.h5/.hdf5 or a SavedModel folder, or a keras.Model) to an
    IR graph via tf2onnx. ``input_shape``: the NHWC input shape (batch included or not) when the model
    leaves dims other than the batch unknown. ``trust_code`` lets Keras run Python code stored in the
    file (Lambda layers): only for files you trust."""
    from .onnx import load_onnx

    tf, keras = _tf()
    opset = int(opset or DEFAULT_OPSET)
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError("file not found", str(path))
        if path.is_dir():
            if not is_saved_model_dir(path):
                raise ModelLoadError("is a folder without saved_model.pb; Keras input is a .keras, .h5 or "
                                     ".hdf5 file, or a SavedModel folder", str(path))
            if not trust_code:
                _refuse_graph_code(path)
            onnx_bytes = _saved_model_to_onnx(tf, path, input_shape, opset)
        else:
            keras_model = _load_file(keras, path, custom_objects, trust_code)
            onnx_bytes = _model_to_onnx(tf, unroll_recurrent(keras, keras_model), input_shape, opset, str(path))
    elif is_keras_model(model):
        onnx_bytes = _model_to_onnx(tf, unroll_recurrent(keras, model), input_shape, opset, None)
    else:
        raise ModelLoadError(f"cannot load a {type(model).__name__} as Keras: pass a keras.Model or a path "
                             "to a .keras, .h5 or .hdf5 file or a SavedModel folder")
    return load_onnx(onnx_bytes)  # tf2onnx's output: load_onnx applies normalize_keras_graph


# ---- loading files --------------------------------------------------------------------------
def _load_file(keras, path: Path, custom_objects, trust_code: bool):
    from .keras_legacy import load_repaired_h5

    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelLoadError(f"unknown Keras file type '{suffix}' (supported: .keras, .h5, .hdf5, "
                             "SavedModel folder)", str(path))
    try:
        with _quiet():
            return keras.saving.load_model(path, custom_objects=custom_objects, compile=False,
                                           safe_mode=not trust_code)
    except Exception as exc:
        error = exc
    config = _read_config(path)
    if config is None:
        raise ModelLoadError("holds no model config (weights only?); save the whole model with "
                             "model.save('model.keras')", str(path)) from None
    problem = _code_problem(keras, config, custom_objects, trust_code)
    if problem:
        raise ModelLoadError(problem, str(path)) from None
    if suffix in (".h5", ".hdf5"):
        try:
            with _quiet():
                model, repairs = load_repaired_h5(path, custom_objects, not trust_code)
        except Exception as exc:
            raise ModelLoadError(f"Keras cannot load it, even after repairing its Keras 2 config: "
                                 f"{_keras_reason(exc)}", str(path)) from None
        if model is not None:
            for line in repairs:
                log.warning("%s: repaired a Keras 2 config for Keras 3: %s", path, line)
            return model
    raise ModelLoadError(f"Keras cannot load it: {_keras_reason(error)}", str(path)) from None


def _read_config(path: Path) -> dict | None:
    from .keras_legacy import read_h5_config

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        return read_h5_config(path)
    except Exception as exc:  # h5py/zip/json raise many types on a file that is not a Keras model
        raise ModelLoadError(f"not a Keras model file: {_reason(exc)}", str(path)) from None


def _code_problem(keras, config: dict, custom_objects, trust_code: bool) -> str | None:
    """The first layer that needs code safe mode will not run, as one sentence, or None."""
    from .keras_legacy import model_layers

    custom_objects = custom_objects or {}
    for layer in model_layers(config):
        cls, cfg = layer["class_name"], layer["config"]
        name = cfg.get("name", cls)
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            return (f"layer '{name}' is a TensorFlow call recorded by Keras 2 ({cls}), which Keras 3 cannot "
                    "load: save the model from Keras 2 as a SavedModel folder (model.save(dir)) and pass that")
        if cls == "Lambda":
            fn = cfg.get("function")
            if _is_bytecode(fn, cfg) and not trust_code:
                return (f"layer '{name}' (Lambda) holds Python code that Keras safe mode will not run: "
                        "if you trust this file pass trust_code=True (Python API) or --trust-code (CLI)")
            fn_name = _function_name(fn)
            if fn_name and not _known(keras, fn_name, None, custom_objects):
                return (f"layer '{name}' (Lambda) calls the Python function '{fn_name}', unknown to Keras: "
                        f"pass custom_objects={{'{fn_name}': {fn_name}}} (Python API; {_NO_CLI})")
        elif not _known(keras, cls, layer.get("registered_name"), custom_objects):
            return (f"layer '{name}' is of the custom class '{cls}', unknown to Keras: "
                    f"pass custom_objects={{'{cls}': {cls}}} (Python API; {_NO_CLI})")
    return None


def _is_bytecode(fn, cfg: dict) -> bool:
    if isinstance(fn, dict):
        return fn.get("class_name") == "__lambda__"
    return cfg.get("function_type") == "lambda" or isinstance(fn, (list, tuple))


def _function_name(fn) -> str | None:
    if isinstance(fn, dict) and fn.get("class_name") == "function":
        return str(fn.get("config"))
    return fn if isinstance(fn, str) else None


def _known(keras, cls: str, registered: str | None, custom_objects: dict) -> bool:
    if cls in custom_objects or (registered and registered in custom_objects):
        return True
    if cls in ("Functional", "Sequential", "Model") or hasattr(keras.layers, cls):
        return True
    return keras.saving.get_registered_object(registered or cls) is not None


def _keras_reason(exc: Exception) -> str:
    """Keras wraps the cause in long messages with whole configs: keep the sentence that says why."""
    text = " ".join(str(exc).split())
    for marker in ("Unrecognized keyword arguments", "Exception encountered: ", "Could not locate"):
        at = text.find(marker)
        if at >= 0:
            text = text[at:].removeprefix("Exception encountered: ")
            break
    return text[:300] + ("..." if len(text) > 300 else "") if text else type(exc).__name__


# ---- conversion to ONNX -----------------------------------------------------------------------
def _signature(tf, shapes, names, given, where):
    """Batch-1 TensorSpecs from the model's input shapes and the user's ``input_shape``."""
    if given is not None:
        if len(shapes) != 1:
            raise ShapeError(f"the model has {len(shapes)} inputs; --input-shape applies only to "
                             "single-input models")
        given = tuple(int(d) for d in given)
        model_shape = shapes[0]
        if model_shape is not None and len(given) == len(model_shape) - 1:
            given = (1,) + given
        fits = model_shape is None or (len(given) == len(model_shape) and all(
            d is None or d == g for d, g in zip(model_shape[1:], given[1:])))
        if not fits or any(g < 1 for g in given):
            raise ShapeError(f"input shape {given} does not fit the Keras model input "
                             f"{_fmt(model_shape)} (Keras inputs are NHWC, e.g. 1,32,32,3)")
        shapes = [given]
    specs = []
    for name, shape in zip(names, shapes):
        if shape is None or None in shape[1:]:
            known = "no known shape" if shape is None else f"shape {_fmt(shape)} with unknown dims"
            raise ShapeError(f"Keras input '{name}' has {known}; give its full NHWC shape, batch included, "
                             "with --input-shape (e.g. 1,32,32,3)"
                             + (f" [{where}]" if where else ""))
        specs.append(tf.TensorSpec((1,) + tuple(int(d) for d in shape[1:]), tf.float32, name=name))
    return specs


def _fmt(shape) -> str:
    return "(unknown)" if shape is None else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _io_names(prefix: str, n: int) -> list[str]:
    return [prefix] if n == 1 else [f"{prefix}_{i}" for i in range(n)]


def _model_inputs(model) -> list:
    try:
        return list(model.inputs or [])
    except (AttributeError, ValueError):  # subclassed or never-called models have no symbolic inputs
        return []


def _check_runs(model, specs, where) -> None:
    """Run the model once: builds a model never called, and reports a wrong shape as such."""
    xs = [np.zeros(s.shape, np.float32) for s in specs]
    try:
        with _quiet():
            model(xs if len(xs) > 1 else xs[0], training=False)
    except Exception as exc:
        shapes = ", ".join(_fmt(s.shape) for s in specs)
        raise ShapeError(f"the Keras model does not run on an input of shape {shapes}: {_reason(exc)} "
                         "(give its NHWC input shape, batch included, with --input-shape)"
                         + (f" [{where}]" if where else "")) from None


def _model_to_onnx(tf, model, input_shape, opset: int, where: str | None) -> bytes:
    inputs = _model_inputs(model)
    shapes = [tuple(t.shape) for t in inputs] if inputs else [None]
    specs = _signature(tf, shapes, _io_names("input", len(shapes)), input_shape, where)
    _check_runs(model, specs, where)
    out_names = [str(n) for n in (getattr(model, "output_names", None) or [])]
    order: list[str] = []  # output names in the model's order, known once traced

    @tf.function(input_signature=specs)
    def forward(*xs):
        ys = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        if isinstance(ys, dict):
            names, ys = [str(k) for k in ys], list(ys.values())
        else:
            ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
            names = out_names if len(set(out_names)) == len(ys) else _io_names("output", len(ys))
        order[:] = names
        return dict(zip(names, ys))

    with traceable_layers(tf):
        return _convert(tf, forward, specs, opset, where, order, model)


def _refuse_graph_code(path: Path) -> None:
    from .saved_model_check import saved_model_problem

    try:
        problem = saved_model_problem(path)
    except Exception as exc:  # protobuf raises DecodeError and others on a damaged saved_model.pb
        raise ModelLoadError(f"not a SavedModel: {_reason(exc)}", str(path)) from None
    if problem:
        raise ModelLoadError(f"holds {problem}, which TensorFlow would run on load; re-run with --trust-code "
                             "(Python: trust_code=True) if you trust it", str(path))


# SavedModel folder -> which TensorFlow loader read it (the report says so; see loader_note).
LOADED_WITH: dict[str, str] = {}


def loader_note(model) -> str | None:
    """How a SavedModel folder given as ``model`` was loaded, or None for anything else."""
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        return LOADED_WITH.get(str(Path(model).resolve()))
    return None


def _saved_model_to_onnx(tf, path: Path, input_shape, opset: int) -> bytes:
    """A SavedModel (e.g. keras 3 ``model.export``): convert its serving signature. TensorFlow
    restores the graph and weights (and runs initializers: see saved_model_check); no Python runs."""
    try:
        with _quiet():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # e.g. a Keras 2 optimizer's slot variables: TF1's loader skips what it cannot use
        from .saved_model_v1 import saved_model_v1_to_onnx

        reason = _reason(exc)
        onnx_bytes = saved_model_v1_to_onnx(
            tf, path, input_shape, opset, reason, reason=_reason,
            signature=lambda shapes, names: _signature(tf, shapes, names, input_shape, str(path)))
        LOADED_WITH[str(path.resolve())] = (f"loaded with TensorFlow's v1 SavedModel loader (session, frozen "
                                            f"graph): the TF2 loader failed: {reason}")
        return onnx_bytes
    LOADED_WITH[str(path.resolve())] = "loaded with TensorFlow's TF2 SavedModel loader"
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if "serving_default" not in signatures:
        raise ModelLoadError("SavedModel has no 'serving_default' signature (found: "
                             f"{', '.join(signatures) or 'none'}); export it with model.export(dir)", str(path))
    serve = signatures["serving_default"]
    keys = sorted(serve.structured_input_signature[1])
    shapes = [tuple(serve.structured_input_signature[1][k].shape) for k in keys]
    specs = _signature(tf, shapes, _io_names("input", len(keys)), input_shape, str(path))

    @tf.function(input_signature=specs)
    def forward(*xs):
        return serve(**dict(zip(keys, xs)))

    return _convert(tf, forward, specs, opset, str(path), [])


def _convert(tf, fn, specs, opset: int, where: str | None, order: list[str], model=None) -> bytes:
    """tf.function -> ONNX. What tf2onnx.convert.from_function does, except that only the real inputs
    are graph inputs: from_function also lists the constants the function captures (e.g. a
    Normalization layer's mean), which then arrive as inputs without values."""
    import tf2onnx

    try:
        with _quiet(), tf.device("/cpu:0"):
            concrete = fn.get_concrete_function(*specs)
            inputs = [t.name for t in concrete.inputs[:len(specs)]]
            outputs = [t.name for t in concrete.outputs]
            rename = {t: s.name for t, s in zip(inputs, specs)}
            if isinstance(concrete.structured_outputs, dict):
                rename.update({v.name: k for k, v in concrete.structured_outputs.items()})
            frozen = tf2onnx.tf_loader.from_function(concrete, inputs, outputs)
            proto, _ = tf2onnx.convert.from_graph_def(frozen, name="keras", input_names=inputs,
                                                      output_names=outputs, opset=opset,
                                                      tensors_to_rename=rename)
    except EdgepackError:
        raise
    except Exception as exc:  # tf2onnx and TF tracing raise many types
        raise ModelLoadError(f"tf2onnx could not convert the model: {_reason(exc)}", where) from None
    by_name = {o.name: o for o in proto.graph.output}
    if order and set(by_name) == set(order):  # tf2onnx sorts dict outputs by name: keep the model's order
        outputs = [by_name[n] for n in order]
        del proto.graph.output[:]
        proto.graph.output.extend(outputs)
    if model is not None:  # node names carry the Keras layer names, not TensorFlow's unique scopes
        from .keras_names import rename_nodes

        rename_nodes(proto, model)
    log.info("converted Keras model with tf2onnx (opset %d): %d ONNX nodes", opset, len(proto.graph.node))
    return proto.SerializeToString()


def _reason(exc: Exception) -> str:
    """The line of a TensorFlow/Keras error that says why (TF puts it last, after 'in user code:')."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    skip = ("Exception encountered", "Arguments received", "in user code", "File ", "\u2022")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(skip)]
    said = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    text = said[-1] if said else (lines[0] if lines else type(exc).__name__)
    return text[:300] + ("..." if len(text) > 300 else "")
