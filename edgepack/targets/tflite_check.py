"""Check a .tflite's structure before anything reads it further: the native runtimes (TFLite Micro,
LiteRT) trust the flatbuffer and crash, abort or hang on an index out of range, a zero dimension or a
buffer shorter than its tensor. A file that fails here is refused with the field at fault, e.g.
``model.tflite: operator 3 (CONV_2D) output index 57 out of range (57 tensors)``.

What is checked: the schema version and exactly one subgraph; every vector fits in the file; operator
codes are known builtins (or CUSTOM); tensor types are ones edgepack reads; dims positive and bounded;
constant data exactly shape x item size; quantization scales finite and positive, zero points in their
type's range, per-channel counts matching the quantized dimension; operator, graph, signature and
metadata indices in range (-1 only for an omitted optional operator input); strides, dilations and
pooling windows at least 1; the offline memory plan (if any) one entry per tensor.
"""
from __future__ import annotations

import math
import struct
from functools import lru_cache

import numpy as np

from ..errors import ModelLoadError

DECODE_CUSTOM_OP = b"TFLM_DECODE"  # TFLite Micro's decoder of compressed (look-up-table) tensors
# TFLite TensorType -> numpy dtype name: the types a file may hold here (read by tflite_file.py too)
DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
          9: "int8", 10: "float64"}

SCHEMA_VERSION = 3
MAX_RANK = 8
MAX_DIM = 1 << 24
MAX_TENSOR_BYTES = 1 << 30  # one tensor
MAX_ACTIVATION_BYTES = 1 << 32  # all non-constant tensors together
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
# Fields of the builtin options tables that divide or step (0 means a division by zero in the kernels).
AT_LEAST_ONE = ("StrideW", "StrideH", "StrideD", "DilationWFactor", "DilationHFactor", "DilationDFactor",
                "FilterWidth", "FilterHeight")
_READ_ERRORS = (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError, AttributeError)


@lru_cache(maxsize=1)
def builtin_names() -> dict[int, str]:
    """TFLite builtin operator code -> name (CONV_2D, ...), from the schema."""
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class _Refused(Exception):
    pass


def check_tflite(data: bytes, where: str | None = None):
    """Raise ModelLoadError naming the first field of ``data`` that a runtime could not safely use;
    return the whole model unpacked (schema.ModelT): unpacking reads every field of every table, so
    nothing points outside the file."""
    from ai_edge_litert import schema_py_generated as schema

    checker = _Checker(bytes(data))
    try:
        checker.run()
        checker.field = "a table or vector (some field points outside the file)"
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(checker.data, 0))
    except _Refused as exc:
        raise ModelLoadError(str(exc), where) from None
    except _READ_ERRORS:
        raise ModelLoadError(f"not a valid TFLite model: {checker.field} cannot be read (the file is "
                             "truncated or corrupt)", where) from None


class _Checker:
    def __init__(self, data: bytes):
        self.data, self.field = data, "the header"

    def refuse(self, message: str):
        raise _Refused(message)

    def length(self, what: str, n: int, each: int = 4) -> int:
        """A vector's length, refused when its entries cannot all be in the file."""
        if n < 0 or n * each > len(self.data):
            self.refuse(f"{what}: {n} entries cannot fit in a {len(self.data)}-byte file")
        return n

    def run(self) -> None:
        from ai_edge_litert import schema_py_generated as schema

        data = self.data
        if len(data) < 8 or data[4:8] != b"TFL3":
            self.refuse("not a TFLite model (no TFL3 identifier)")
        self.field = "the model table"
        model = schema.Model.GetRootAs(data, 0)
        if model.Version() != SCHEMA_VERSION:
            self.refuse(f"schema version {model.Version()} (supported: {SCHEMA_VERSION})")
        n_sub = self.length("subgraphs", model.SubgraphsLength())
        if n_sub != 1:
            self.refuse(f"{n_sub} subgraphs (supported: exactly 1)")
        self.buffers = self.check_buffers(model)
        self.codes = self.check_opcodes(model)
        self.field = "subgraph 0"
        sub = model.Subgraphs(0)
        self.encoded = self.decode_inputs(model, sub)
        self.tensors = self.check_tensors(sub)
        n = len(self.tensors)
        graph_io = {}
        for kind, vec, count in (("input", sub.InputsAsNumpy, sub.InputsLength),
                                 ("output", sub.OutputsAsNumpy, sub.OutputsLength)):
            self.field = f"subgraph 0 {kind}s"
            if self.length(f"subgraph 0 {kind}s", count()) == 0:
                self.refuse(f"subgraph 0 has no {kind}s")
            graph_io[kind] = np.asarray(vec()).tolist()
            for i in graph_io[kind]:
                if not 0 <= i < n:
                    self.refuse(f"subgraph 0 {kind} index {i} out of range ({n} tensors)")
        self.check_operators(sub, schema, set(graph_io["input"]))
        self.check_signatures(model)
        self.check_metadata(model)

    def check_buffers(self, model) -> list[int]:
        """Bytes of data in each buffer (inline or at an offset of the file)."""
        sizes = []
        for b in range(self.length("buffers", model.BuffersLength())):
            self.field = f"buffer {b}"
            buf = model.Buffers(b)
            if buf.Offset() > 1:  # data stored after the flatbuffer (files over 2 GB)
                if buf.Offset() + buf.Size() > len(self.data):
                    self.refuse(f"buffer {b} data at offset {buf.Offset()} + {buf.Size()} bytes is past the end "
                                f"of the {len(self.data)}-byte file")
                sizes.append(int(buf.Size()))
            else:
                sizes.append(int(buf.DataAsNumpy().size) if not buf.DataIsNone() else 0)  # numpy checks bounds
        return sizes

    def check_opcodes(self, model) -> list[str]:
        names, codes = builtin_names(), []
        for k in range(self.length("operator codes", model.OperatorCodesLength())):
            self.field = f"operator code {k}"
            code = model.OperatorCodes(k)
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            if builtin not in names:
                self.refuse(f"operator code {k}: unknown builtin code {builtin}")
            if code.Version() < 1:
                self.refuse(f"operator code {k} ({names[builtin]}): version {code.Version()} (must be >= 1)")
            codes.append(names[builtin])
        return codes

    def decode_inputs(self, model, sub) -> set[int]:
        """Tensors TFLite Micro's compression stores encoded (input 0 of its TFLM_DECODE custom op): their
        data are packed table indices, so their shape no longer matches their per-channel scales."""
        found = set()
        for k in range(sub.OperatorsLength()):
            op = sub.Operators(k)
            code = op.OpcodeIndex()
            if 0 <= code < model.OperatorCodesLength() and op.InputsLength() and \
                    model.OperatorCodes(code).CustomCode() == DECODE_CUSTOM_OP:
                found.add(int(op.Inputs(0)))
        return found

    def check_tensors(self, sub) -> list[tuple[str, int, bool, bool]]:
        """(dtype, elements, constant, variable) of each tensor."""
        out, activations = [], 0
        for t in range(self.length("subgraph 0 tensors", sub.TensorsLength())):
            self.field = f"tensor {t}"
            tensor = sub.Tensors(t)
            name = f"tensor {t} ('{(tensor.Name() or b'').decode('utf-8')}')"
            dtype = DTYPES.get(tensor.Type())
            if dtype is None:
                self.refuse(f"{name} has type {tensor.Type()} (supported: {', '.join(DTYPES.values())})")
            shape = self.check_shape(name, tensor)
            elements = math.prod(shape)
            nbytes = elements * np.dtype(dtype).itemsize
            if nbytes > MAX_TENSOR_BYTES:
                self.refuse(f"{name} shape {shape} needs {nbytes} bytes (at most {MAX_TENSOR_BYTES})")
            if tensor.Sparsity() is not None:
                self.refuse(f"{name} is sparse (not supported)")
            if tensor.ExternalBuffer():
                self.refuse(f"{name} refers to external buffer {tensor.ExternalBuffer()} (not supported)")
            b = tensor.Buffer()
            if not 0 <= b < len(self.buffers):
                self.refuse(f"{name} buffer index {b} out of range ({len(self.buffers)} buffers)")
            stored = self.buffers[b]
            if stored and stored != nbytes:
                self.refuse(f"{name} has {stored} bytes of data but its shape {shape} of {dtype} needs {nbytes}")
            if not stored:
                activations += nbytes
            if t not in self.encoded:
                self.check_quantization(name, tensor.Quantization(), dtype, shape)
            out.append((dtype, elements, bool(stored), bool(tensor.IsVariable())))
        if activations > MAX_ACTIVATION_BYTES:
            self.refuse(f"its non-constant tensors need {activations} bytes (at most {MAX_ACTIVATION_BYTES})")
        return out

    def check_shape(self, name: str, tensor) -> tuple[int, ...]:
        if tensor.ShapeIsNone():
            return ()
        rank = self.length(f"{name} shape", tensor.ShapeLength())
        if rank > MAX_RANK:
            self.refuse(f"{name} has rank {rank} (at most {MAX_RANK})")
        shape = tuple(int(d) for d in np.asarray(tensor.ShapeAsNumpy()).tolist())
        for axis, d in enumerate(shape):
            if not 1 <= d <= MAX_DIM:
                self.refuse(f"{name} dim {axis} is {d} (allowed: 1 to {MAX_DIM})")
        return shape

    def check_quantization(self, name: str, q, dtype: str, shape: tuple[int, ...]) -> None:
        if q is None:
            return
        n = self.length(f"{name} scales", q.ScaleLength())
        if n == 0:
            if q.ZeroPointLength():
                self.refuse(f"{name} has {q.ZeroPointLength()} zero points and no scale")
            return
        scales = np.asarray(q.ScaleAsNumpy(), np.float64)
        zero_points = np.asarray(q.ZeroPointAsNumpy(), np.int64) if not q.ZeroPointIsNone() else np.zeros(0, np.int64)
        if zero_points.size != n:
            self.refuse(f"{name} has {n} scales and {zero_points.size} zero points (must be equal)")
        if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
            bad = scales[~(np.isfinite(scales) & (scales > 0))][0]
            self.refuse(f"{name} quantization scale {bad} (must be finite and > 0)")
        lo, hi = INT_RANGES.get(dtype, (-(1 << 63), (1 << 63) - 1))
        if zero_points.size and (zero_points.min() < lo or zero_points.max() > hi):
            bad = next(z for z in zero_points.tolist() if not lo <= z <= hi)
            self.refuse(f"{name} zero point {bad} out of the {dtype} range [{lo}, {hi}]")
        axis = q.QuantizedDimension()
        if shape and not 0 <= axis < len(shape):
            self.refuse(f"{name} quantized dimension {axis} out of range (rank {len(shape)})")
        if n > 1 and (not shape or shape[axis] != n):
            self.refuse(f"{name} has {n} per-channel scales but dim {axis} of its shape {shape} differs")

    def check_operators(self, sub, schema, graph_inputs: set[int]) -> None:
        """Indices in range, and in execution order: an operator reads only constants, graph inputs,
        variables and what earlier operators wrote; each tensor has one writer at most."""
        n = len(self.tensors)
        written: dict[int, int] = {i: -1 for i in graph_inputs}
        for k in range(self.length("subgraph 0 operators", sub.OperatorsLength())):
            self.field = f"operator {k}"
            op = sub.Operators(k)
            code = op.OpcodeIndex()
            if not 0 <= code < len(self.codes):
                self.refuse(f"operator {k} opcode index {code} out of range ({len(self.codes)} operator codes)")
            what = f"operator {k} ({self.codes[code]})"
            for kind, lowest in (("Inputs", -1), ("Outputs", 0), ("Intermediates", 0)):
                if getattr(op, f"{kind}IsNone")():
                    continue
                self.length(f"{what} {kind.lower()}", getattr(op, f"{kind}Length")())
                for i in np.asarray(getattr(op, f"{kind}AsNumpy")()).tolist():
                    if not lowest <= i < n:
                        self.refuse(f"{what} {kind.lower()[:-1]} index {i} out of range ({n} tensors)")
                    dtype, _, const, variable = self.tensors[i] if i >= 0 else (None, 0, True, True)
                    if kind == "Inputs" and not (const or variable or i in written):
                        self.refuse(f"{what} reads tensor {i} before any operator writes it")
                    if kind == "Outputs":
                        if const:
                            self.refuse(f"{what} writes tensor {i}, which is a constant")
                        if i in written:
                            self.refuse(f"{what} writes tensor {i}, already written by "
                                        + ("the graph input" if written[i] < 0 else f"operator {written[i]}"))
                        written[i] = k
            self.check_options(what, op, schema)

    def check_options(self, what: str, op, schema) -> None:
        kind = op.BuiltinOptionsType()
        names = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
        table = op.BuiltinOptions()
        if kind == 0 or table is None or names.get(kind) is None:
            return
        options = getattr(schema, names[kind], None)
        if options is None:
            return
        opts = options()
        opts.Init(table.Bytes, table.Pos)
        for field in AT_LEAST_ONE:
            if hasattr(opts, field) and getattr(opts, field)() < 1:
                self.refuse(f"{what} {names[kind]} {field} is {getattr(opts, field)()} (must be >= 1)")

    def check_signatures(self, model) -> None:
        n = len(self.tensors)
        for s in range(self.length("signatures", model.SignatureDefsLength())):
            self.field = f"signature {s}"
            sig = model.SignatureDefs(s)
            (sig.SignatureKey() or b"").decode("utf-8")
            if sig.SubgraphIndex() != 0:
                self.refuse(f"signature {s} subgraph index {sig.SubgraphIndex()} out of range (1 subgraph)")
            for kind in ("Inputs", "Outputs"):
                for m in range(self.length(f"signature {s} {kind.lower()}", getattr(sig, f"{kind}Length")())):
                    entry = getattr(sig, kind)(m)
                    (entry.Name() or b"").decode("utf-8")
                    if not 0 <= entry.TensorIndex() < n:
                        self.refuse(f"signature {s} {kind.lower()[:-1]} {m} tensor index {entry.TensorIndex()} "
                                    f"out of range ({n} tensors)")

    def check_metadata(self, model) -> None:
        for m in range(self.length("metadata", model.MetadataLength())):
            self.field = f"metadata {m}"
            meta = model.Metadata(m)
            b = meta.Buffer()
            if not 0 <= b < len(self.buffers):
                self.refuse(f"metadata {m} buffer index {b} out of range ({len(self.buffers)} buffers)")
            if meta.Name() == b"OfflineMemoryAllocation":
                self.check_offline_plan(model.Buffers(b))

    def check_offline_plan(self, buf) -> None:
        """TFLM places tensors at these offsets as given: [version, subgraph, count, offset per tensor]."""
        raw = buf.DataAsNumpy().tobytes() if not buf.DataIsNone() else b""
        n = len(self.tensors)
        words = np.frombuffer(raw[: len(raw) // 4 * 4], "<i4")
        if len(raw) % 4 or len(words) < 3 or words[1] != 0 or words[2] != n or len(words) != 3 + n:
            self.refuse(f"OfflineMemoryAllocation metadata is not [version, 0, {n}, one offset per tensor]")
        if np.any(words[3:] < -1):
            self.refuse("OfflineMemoryAllocation metadata has a negative tensor offset (only -1 is allowed)")
