"""Flatbuffer plumbing for the TFLite emitter: tensors, buffers, operator codes, signature.

Written with the object API of ``ai_edge_litert.schema_py_generated`` and packed with
``flatbuffers.Builder``. Schema version 3, buffer 0 is the empty sentinel, constant data is
aligned to 16 bytes (TFLM reads weights in place on devices that fault on unaligned loads).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from ..errors import EdgepackError
from ..ir.quant import QuantParams
from ..tflite_buffer import AlignedBufferT

BuiltinOp = tfl.BuiltinOperator
Options = tfl.BuiltinOptions
Activation = tfl.ActivationFunctionType
Padding = tfl.Padding

_TYPES = {"float32": tfl.TensorType.FLOAT32, "int8": tfl.TensorType.INT8,
          "int32": tfl.TensorType.INT32, "uint8": tfl.TensorType.UINT8, "int16": tfl.TensorType.INT16,
          "int64": tfl.TensorType.INT64}


class TfliteExportError(EdgepackError):
    """The graph cannot be written as a TFLite file as it is (missing or inconsistent quantization, ...)."""


def same_params(a: QuantParams, b: QuantParams, rel_tol: float = 1e-6) -> bool:
    """Equal quantization up to float32 rounding of the scales."""
    return (a.zero_point == b.zero_point and len(a.scale) == len(b.scale)
            and all(abs(x - y) <= rel_tol * max(abs(x), abs(y)) for x, y in zip(a.scale, b.scale)))


def quant_to_tflite(qp: QuantParams | None, axis: int = 0) -> tfl.QuantizationParametersT | None:
    """QuantParams -> QuantizationParametersT; ``axis`` is the already-mapped file axis."""
    if qp is None:
        return None
    q = tfl.QuantizationParametersT()
    q.scale = [float(s) for s in qp.scale]
    q.zeroPoint = [int(z) for z in qp.zero_point]
    q.quantizedDimension = int(axis) if qp.is_per_channel else 0
    return q


class TfliteBuilder:
    """Collects tensors and operators of one subgraph, then packs the model."""

    def __init__(self):
        self.tensors: list[tfl.TensorT] = []
        self.buffers: list[tfl.BufferT] = [tfl.BufferT()]  # buffer 0: empty sentinel
        self.operators: list[tfl.OperatorT] = []
        self._codes: dict[int, int] = {}  # builtin code -> index in self._opcodes
        self._opcodes: list[tfl.OperatorCodeT] = []
        self._names: set[str] = set()

    # ---- tensors ------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        return name

    def add_tensor(self, name: str, shape, dtype: str, quant: QuantParams | None = None,
                   quant_axis: int = 0, data: np.ndarray | None = None) -> int:
        if dtype not in _TYPES:
            raise TfliteExportError(f"tensor '{name}' has dtype {dtype}; TFLite export writes "
                                    f"{', '.join(_TYPES)}")
        t = tfl.TensorT()
        t.name = self.unique_name(name)
        self._names.add(t.name)
        t.shape = np.asarray([int(d) for d in shape], dtype=np.int32)
        t.type = _TYPES[dtype]
        t.quantization = quant_to_tflite(quant, quant_axis)
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data).astype(dtype, copy=False))
            if tuple(arr.shape) != tuple(int(d) for d in shape):
                raise TfliteExportError(f"constant '{name}' has shape {arr.shape}, expected {tuple(shape)}")
            buf = AlignedBufferT()
            buf.data = arr.reshape(-1).view(np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def add_const(self, name: str, data: np.ndarray, dtype: str | None = None,
                  quant: QuantParams | None = None, quant_axis: int = 0) -> int:
        data = np.asarray(data)
        return self.add_tensor(name, data.shape, dtype or str(data.dtype), quant, quant_axis, data)

    def add_int32(self, name: str, values) -> int:
        arr = np.asarray(values, dtype=np.int32)
        return self.add_tensor(name, arr.shape, "int32", data=arr)

    def rename(self, index: int, name: str) -> None:
        self._names.discard(self.tensors[index].name)
        self.tensors[index].name = self.unique_name(name)
        self._names.add(self.tensors[index].name)

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.tensors[index].shape)

    # ---- operators ----------------------------------------------------------------------
    def add_op(self, code: int, inputs, outputs, options_type: int = 0, options=None,
               version: int = 1) -> None:
        if code not in self._codes:
            oc = tfl.OperatorCodeT()
            oc.builtinCode = code
            # Codes above 127 do not fit the deprecated int8 field: readers use the max of both.
            oc.deprecatedBuiltinCode = min(code, BuiltinOp.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = version
            self._codes[code] = len(self._opcodes)
            self._opcodes.append(oc)
        oc = self._opcodes[self._codes[code]]
        oc.version = max(oc.version, version)  # one code per builtin, at the highest version used
        op = tfl.OperatorT()
        op.opcodeIndex = self._codes[code]
        op.inputs = [int(i) for i in inputs]
        op.outputs = [int(o) for o in outputs]
        op.builtinOptionsType = options_type
        op.builtinOptions = options
        self.operators.append(op)

    def op_count(self, code: int) -> int:
        idx = self._codes.get(code)
        return 0 if idx is None else sum(1 for op in self.operators if op.opcodeIndex == idx)

    # ---- model --------------------------------------------------------------------------
    def finish(self, inputs: list[int], outputs: list[int], input_names: list[str],
               output_names: list[str], description: str = "edgepack") -> bytes:
        sub = tfl.SubGraphT()
        sub.tensors, sub.operators = self.tensors, self.operators
        sub.inputs, sub.outputs = list(inputs), list(outputs)
        sub.name = "main"
        sig = tfl.SignatureDefT()
        sig.signatureKey = "serving_default"
        sig.subgraphIndex = 0
        sig.inputs = [_tensor_map(n, i) for n, i in zip(input_names, inputs)]
        sig.outputs = [_tensor_map(n, i) for n, i in zip(output_names, outputs)]
        model = tfl.ModelT()
        model.version = 3
        model.description = description
        model.operatorCodes = self._opcodes
        model.subgraphs = [sub]
        model.buffers = self.buffers
        model.signatureDefs = [sig]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _tensor_map(name: str, index: int) -> tfl.TensorMapT:
    tm = tfl.TensorMapT()
    tm.name, tm.tensorIndex = name, int(index)
    return tm
