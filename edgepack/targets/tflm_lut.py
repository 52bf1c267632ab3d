"""TFLite Micro's compressed tensors: look-up-table (LUT) compression of int8 weights with few distinct
values (e.g. clustered ones), decoded at run time by DECODE operators.

The tflite-micro Python package ships the compressor (``tflite_micro...compression.compress``) and its
interpreter has the DECODE kernel. Measured on the package installed here: the LUT mode must follow the
tensor's quantization (per-channel scales -> one table per channel on the quantized axis, one scale -> one
table), else TFLM runs the file and computes garbage; so ``lut_compress`` picks the mode from the tensor.
The decoded weights live in the tensor arena: flash goes down, RAM goes up (both are reported).
"""
from __future__ import annotations

import importlib
import logging
import math

import numpy as np

log = logging.getLogger(__name__)

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
MAX_INDEX_BITS = 7  # the compressor takes 1-7 bit indices


def available() -> str | None:
    """None when the installed tflite-micro can write LUT-compressed files, else why not."""
    try:
        importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
    except Exception as exc:  # an old package has no compression module; it may lack yaml
        return f"the installed tflite-micro has no LUT compressor ({type(exc).__name__}: {exc})"
    return None


def _index_bits(values: np.ndarray, axis: int | None) -> int:
    slices = [values] if axis is None else list(np.moveaxis(values, axis, 0))
    distinct = max(np.unique(s).size for s in slices)
    return max(1, math.ceil(math.log2(distinct))) if distinct > 1 else 1


def lut_compress(model: bytes) -> tuple[bytes, list[dict]] | None:
    """(compressed .tflite, [{tensor, index_bits, mode}]) for the int8 weights that take at most 2**7
    values per table; None when no tensor qualifies or the compressor is missing."""
    if available() is not None:
        return None
    compress = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
    spec = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.spec")
    from ai_edge_litert import schema_py_generated as schema

    from .tflite_file import read_tflite

    info = read_tflite(model)
    fb = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    weights = {op.inputs[1] for op in info.ops if op.op in WEIGHT_OPS and len(op.inputs) > 1}
    specs, chosen = [], []
    for index in sorted(weights):
        t = info.tensors[index]
        buf = fb.buffers[fb.subgraphs[0].tensors[index].buffer]
        if t.dtype != "int8" or buf.data is None or not len(buf.data):
            continue
        values = np.asarray(buf.data, np.uint8).view(np.int8).reshape(t.shape)
        axis = t.quantized_dimension if len(t.scale) > 1 else None
        bits = _index_bits(values, axis)
        if bits > MAX_INDEX_BITS:
            continue
        mode = spec.PerTensor() if axis is None else spec.PerChannel(axis=axis)
        specs.append(spec.Tensor(subgraph=0, tensor=index,
                                 compression=[spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)]))
        chosen.append({"tensor": t.name, "index_bits": bits, "mode": "per_tensor" if axis is None
                       else f"per_channel(axis={axis})"})
    if not specs:
        return None
    return bytes(compress.compress(model, specs)), chosen
