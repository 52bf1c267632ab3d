"""Old SavedModels through TensorFlow's v1 loader: when TF2's ``tf.saved_model.load`` cannot revive the
folder's objects (e.g. ``'_UserObject' object has no attribute 'add_slot'``: slot variables of a Keras 2 /
tf.compat.v1 optimizer), ``tf.compat.v1.saved_model.load`` in a session still restores the graph and its
variables. The serving signature's tensors are then frozen into constants, the functions inlined (grappler),
and tf2onnx converts the frozen GraphDef.

The folder has passed saved_model_check before either loader runs (keras._refuse_graph_code): the v1 loader
runs the same graph (restore op, init ops) the check read.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import EdgepackError, ModelLoadError
from .tf_quiet import quiet

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"


def saved_model_v1_to_onnx(tf, path: Path, input_shape, opset: int, tf2_reason: str, *, signature, reason) -> bytes:
    """ONNX bytes of the folder's serving signature, loaded by the v1 loader; ModelLoadError naming both
    loaders' reasons when this fails too. ``signature(shapes, names)``: TensorSpecs of the inputs (keras.py's
    batch-1 rule and ``input_shape``); ``reason(exc)``: the line of a TensorFlow error that says why."""
    try:
        with quiet():
            frozen, inputs, outputs, rename, shapes = _freeze(tf, path)
    except EdgepackError:
        raise
    except Exception as exc:  # TensorFlow raises many types on what it cannot read
        raise ModelLoadError(f"TensorFlow cannot load this SavedModel: {tf2_reason} (TF2 loader); "
                             f"{reason(exc)} (v1 loader)", str(path)) from None
    specs = signature(shapes, [rename[i] for i in inputs])
    try:
        import tf2onnx

        with quiet(), tf.Graph().as_default():
            proto, _ = tf2onnx.convert.from_graph_def(
                frozen, name="saved_model", input_names=inputs, output_names=outputs, opset=opset,
                shape_override={i: list(s.shape) for i, s in zip(inputs, specs)}, tensors_to_rename=rename)
    except Exception as exc:  # tf2onnx raises many types
        raise ModelLoadError(f"tf2onnx could not convert the frozen SavedModel graph: {reason(exc)}",
                             str(path)) from None
    log.info("SavedModel %s loaded with the v1 loader (TF2's failed: %s)", path, tf2_reason)
    return proto.SerializeToString()


def _freeze(tf, path: Path):
    """(frozen and inlined GraphDef, input tensor names, output tensor names, {tensor: signature key},
    input shapes with None for unknown dims)."""
    from tf2onnx import tf_loader

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], str(path))
        if SIGNATURE not in meta.signature_def:
            raise ModelLoadError(f"SavedModel has no '{SIGNATURE}' signature (found: "
                                 f"{', '.join(meta.signature_def) or 'none'})", str(path))
        sig = meta.signature_def[SIGNATURE]
        keys_in, keys_out = sorted(sig.inputs), sorted(sig.outputs)
        inputs = [sig.inputs[k].name for k in keys_in]
        outputs = [sig.outputs[k].name for k in keys_out]
        shapes = [None if sig.inputs[k].tensor_shape.unknown_rank else
                  tuple(d.size if d.size >= 0 else None for d in sig.inputs[k].tensor_shape.dim) for k in keys_in]
        rename = {**{sig.inputs[k].name: k for k in keys_in}, **{sig.outputs[k].name: k for k in keys_out}}
        frozen = tf_loader.freeze_session(sess, input_names=inputs, output_names=outputs)
    with tf.Graph().as_default():
        frozen = tf_loader.tf_optimize(inputs, outputs, frozen)
    return frozen, inputs, outputs, rename, shapes
