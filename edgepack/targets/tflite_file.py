"""Read a .tflite flatbuffer into plain data: operators, tensors with their quantization, sizes.

Used by `edgepack inspect model.tflite`, by validation (to map user data to the file's inputs) and by
the tests that compare the .tflite's scales with the ONNX twin's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError
from ..input_files import MAX_MODEL_BYTES, read_bytes

from .tflite_check import DTYPES, builtin_names, check_tflite  # noqa: F401  (DTYPES: read here by others)


@dataclass
class TfliteTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    data_bytes: int = 0  # constant data stored in the file (0 for activations)

    @property
    def is_const(self) -> bool:
        return self.data_bytes > 0


@dataclass
class TfliteOp:
    index: int
    op: str
    inputs: list[int]
    outputs: list[int]
    version: int = 1


@dataclass
class TfliteModel:
    size: int
    tensors: list[TfliteTensor]
    ops: list[TfliteOp]
    inputs: list[int]
    outputs: list[int]
    signatures: dict[str, dict] = field(default_factory=dict)

    def tensor(self, name: str) -> TfliteTensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.ops:
            counts[o.op] = counts.get(o.op, 0) + 1
        return dict(sorted(counts.items()))


def read_tflite(source) -> TfliteModel:
    """Parse a .tflite file (path or bytes). A file that is not a well-formed TFLite model (see
    tflite_check.py) -> ModelLoadError naming the field at fault."""

    where = str(source) if isinstance(source, (str, Path)) else None
    if where:
        if not Path(source).exists():
            raise ModelLoadError("file not found", where)
        data = read_bytes(source, ".tflite file", MAX_MODEL_BYTES, error=ModelLoadError)
    else:
        data = bytes(source)
    model = check_tflite(data, where)  # refuses what a runtime could not safely read, then unpacks it
    names = builtin_names()
    sub = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sub.tensors):
        q = t.quantization
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        nbytes = len(buf.data) if buf is not None and buf.data is not None else 0
        if buf is not None and getattr(buf, "size", 0):
            nbytes = int(buf.size)
        tensors.append(TfliteTensor(
            i, t.name.decode() if isinstance(t.name, bytes) else str(t.name),
            tuple(int(d) for d in (t.shape if t.shape is not None else [])), DTYPES.get(t.type, str(t.type)),
            tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else [])),
            tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])),
            int(q.quantizedDimension) if q is not None else 0, nbytes))
    ops = []
    for i, o in enumerate(sub.operators):
        code = model.operatorCodes[o.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        ops.append(TfliteOp(i, names.get(builtin, f"OP_{builtin}"),
                            [int(x) for x in (o.inputs if o.inputs is not None else [])],
                            [int(x) for x in (o.outputs if o.outputs is not None else [])], int(code.version)))
    signatures = {}
    for sig in model.signatureDefs or []:
        key = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else sig.signatureKey
        signatures[key] = {
            "inputs": {(m.name.decode() if isinstance(m.name, bytes) else m.name): m.tensorIndex
                       for m in sig.inputs or []},
            "outputs": {(m.name.decode() if isinstance(m.name, bytes) else m.name): m.tensorIndex
                        for m in sig.outputs or []}}
    return TfliteModel(len(data), tensors, ops, [int(i) for i in sub.inputs], [int(i) for i in sub.outputs],
                       signatures)


def summarize_tflite(model: TfliteModel) -> dict:
    """Same shape as ir.summary.summarize: inputs, outputs, a row per op, totals (params = weight elements)."""
    t = model.tensors
    rows = []
    for o in model.ops:
        params = sum(int(np.prod(t[i].shape)) for i in o.inputs if i >= 0 and t[i].is_const
                     and t[i].dtype in ("int8", "float32", "int32", "float16") and len(t[i].shape) >= 1
                     and o.op not in ("RESHAPE", "PAD", "TRANSPOSE", "MEAN"))
        out = t[o.outputs[0]]
        rows.append({"name": out.name, "op": o.op, "output_shape": out.shape, "params": params,
                     "macs": op_macs(o, t),
                     "activation": None, "dtype": out.dtype,
                     "scale": out.scale[0] if out.scale else None,
                     "zero_point": out.zero_point[0] if out.zero_point else None})
    io = {k: {t[i].name: list(t[i].shape) for i in idx} for k, idx in (("inputs", model.inputs),
                                                                       ("outputs", model.outputs))}
    totals = {"params": sum(r["params"] for r in rows), "macs": sum(r["macs"] for r in rows), "nodes": len(rows),
              "op_counts": model.op_counts(), "bytes": model.size,
              "weight_bytes": sum(x.data_bytes for x in t)}
    return {**io, "nodes": rows, "totals": totals}


def op_macs(o: TfliteOp, t: list[TfliteTensor]) -> int:
    """Multiply-accumulates of one operator (0 for ops without a weight product)."""
    out = int(np.prod(t[o.outputs[0]].shape))
    if len(o.inputs) < 2:
        return 0
    if o.op == "CONV_2D":  # weights OHWI
        return out * int(np.prod(t[o.inputs[1]].shape[1:]))
    if o.op == "DEPTHWISE_CONV_2D":  # weights 1HWO
        w = t[o.inputs[1]].shape
        return out * int(w[1] * w[2])
    if o.op == "FULLY_CONNECTED":  # weights (O, I)
        return out * int(t[o.inputs[1]].shape[-1])
    if o.op == "TRANSPOSE_CONV" and len(o.inputs) >= 3:  # each input element meets Cout*kh*kw weights
        return int(np.prod(t[o.inputs[2]].shape)) * int(np.prod(t[o.inputs[1]].shape[:3]))
    if o.op == "BATCH_MATMUL":
        return out * int(t[o.inputs[0]].shape[-1])
    return 0
