"""IR graph (+ QuantParams on its tensors) -> .tflite bytes, written directly as a flatbuffer.

``to_tflite(graph, int8, io)``: float32 everywhere, or int8 activations (per-tensor, from
``graph.tensors[name].quant``), int8 symmetric weights (per channel for convolutions) and int32
biases (scale = input scale x weight scale). With ``io="float"`` an int8 model keeps float32
inputs/outputs through one QUANTIZE after each input and one DEQUANTIZE before each output.
Layouts come from ``layout.build_layout``; per-op writers from ``tflite_ops.WRITERS``.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np

from ..errors import ConfigError, UnsupportedOpError
from ..ir import Graph, OPS
from ..ir.precision import node_precision, tensor_params
from ..ir.quant import (QuantParams, check_bias_fits, params_from_range, quantize_array, symmetric_params,
                        symmetric_weight_params)
from .layout import LayoutPlan, build_layout, file_transpose_perm, identity, same_bytes, stored_shape
from .tflite_builder import BuiltinOp, Options, TfliteBuilder, TfliteExportError, same_params, tfl
from .tflite_ops import NOT_EMITTED, WRITERS, version
from .tflite_versions import INT16X8, boundary_version

log = logging.getLogger(__name__)

IO_MODES = ("int8", "float")


def to_tflite(graph: Graph, int8: bool, io: str = "int8", order: list | None = None) -> bytes:
    """Serialize ``graph`` as a TFLite flatbuffer (deterministic bytes); ``order``: the operators' order
    (a topological order of ``graph.nodes``, e.g. schedule.memory_order's; default the graph's)."""
    if io not in IO_MODES:
        raise ConfigError(f"unknown io mode '{io}'", key="io", allowed=IO_MODES)
    if int8:
        check_quant_rules(graph)
    ctx = EmitContext(graph, build_layout(graph), int8)
    float_io = int8 and io == "float"
    inputs = []
    for name in graph.inputs:
        idx = ctx.output(name)
        if float_io:
            idx = _float_edge(ctx, idx, name, dequantize=False)
        inputs.append(idx)
    for node in order or graph.nodes:
        writer = WRITERS.get(node.op)
        if writer is None:
            reason = NOT_EMITTED.get(node.op, "no TFLite writer for this op")
            raise UnsupportedOpError(node.op, node.name, WRITERS, where=f"TFLite export ({reason})")
        with ctx.node_precision(node):
            writer(ctx, node)
    outputs = []
    for name in graph.outputs:
        ctx.output_as_int8(name)  # no-op unless an int16 / float layer wrote it
        idx = ctx.index[name]
        rank = len(ctx.shape(name))
        if rank != 4 and ctx.perm(name) != identity(rank):
            # Users read non-4-D outputs in the IR order (only 4-D ones may be NHWC): convert.
            stored, idx = idx, ctx.input(name, identity(rank))
            if ctx.b.tensors[stored].name == name:
                ctx.b.rename(stored, f"{name}/stored")
        if float_io:
            idx = _float_edge(ctx, idx, name, dequantize=True)
        elif ctx.b.tensors[idx].name != name and name not in graph.inputs:
            ctx.b.rename(idx, name)  # a vanished Transpose: the file output carries the IR output name
        outputs.append(idx)
    log.debug("tflite: %d tensors, %d operators", len(ctx.b.tensors), len(ctx.b.operators))
    return ctx.b.finish(inputs, outputs, list(graph.inputs), list(graph.outputs),
                        description=f"edgepack {graph.name}")


def _float_edge(ctx, idx: int, name: str, dequantize: bool) -> int:
    """``--io float``: a float32 tensor named ``name`` at a model edge, joined to the int8 tensor ``idx``
    (renamed ``<name>_int8``) by a QUANTIZE (input) or DEQUANTIZE (output). Returns the float tensor."""
    ctx.b.rename(idx, f"{name}_int8")
    fidx = ctx.b.add_tensor(name, ctx.b.shape(idx), "float32")
    if dequantize:
        ctx.b.add_op(BuiltinOp.DEQUANTIZE, [idx], [fidx], Options.DequantizeOptions,
                     tfl.DequantizeOptionsT(), version=2)
    else:
        ctx.b.add_op(BuiltinOp.QUANTIZE, [fidx], [idx], Options.QuantizeOptions, tfl.QuantizeOptionsT(), version=1)
    return fidx


def check_quant_rules(graph: Graph) -> None:
    """Raise when QuantParams break what the TFLite int8 kernels require (shared/fixed params)."""
    for node in graph.nodes:
        spec = OPS.get(node.op)
        if spec is None or spec.quant == "calibrated":
            continue
        out = node.outputs[0]
        oq = graph.tensors[out].quant
        if oq is None:
            raise TfliteExportError(f"int8 export: activation '{out}' (output of node '{node.name}') "
                                    f"has no quantization parameters; calibrate the graph first")
        if spec.quant == "fixed":
            want = QuantParams.per_tensor(*spec.fixed)
            if not same_params(oq, want):
                raise TfliteExportError(
                    f"int8 export: node '{node.name}' ({node.op}) output '{out}' has scale "
                    f"{oq.scale[0]:.6g}, zero-point {oq.zero_point[0]}; TFLite requires "
                    f"{want.scale[0]:.6g}, {want.zero_point[0]}")
            continue
        for i in node.inputs:
            t = graph.tensors.get(i)
            if not i or t is None or t.is_const:
                continue
            if t.quant is None or not same_params(t.quant, oq):
                got = "none" if t.quant is None else f"{t.quant.scale[0]:.6g}/{t.quant.zero_point[0]}"
                raise TfliteExportError(
                    f"int8 export: node '{node.name}' ({node.op}) must keep its input's quantization "
                    f"(TFLite kernel rule): input '{i}' has {got}, output '{out}' has "
                    f"{oq.scale[0]:.6g}/{oq.zero_point[0]}")


class EmitContext:
    """What the per-op writers use: the graph, the layout plan and the file being built."""

    def __init__(self, graph: Graph, plan: LayoutPlan, int8: bool):
        self.g, self.plan, self.int8 = graph, plan, int8
        self.mode = "int8" if int8 else "float"  # the precision of the node being written
        self.b = TfliteBuilder()
        self.index: dict[str, int] = {}  # activation -> tensor index in its planned layout
        self.stored: dict[str, str] = {}  # activation -> precision of that tensor, when not int8
        self._converted: dict[tuple, int] = {}

    # ---- per-layer precision (ir/precision.py) ------------------------------------------------
    @contextlib.contextmanager
    def node_precision(self, node):
        """Write ``node`` at its precision: inputs stored at another one are read through a QUANTIZE /
        DEQUANTIZE copy (made once per tensor and precision), its outputs are stored at its own."""
        mode = node_precision(node) if self.int8 else "float"
        if mode == self.mode and not any(self.stored.get(i, self.mode) != mode for i in node.inputs if i):
            yield  # the all-int8 (or all-float) path: the file is written exactly as before
            return
        base, swapped = self.mode, {}
        for name in dict.fromkeys(i for i in node.inputs if i in self.index):
            if self.stored.get(name, base) != mode:
                swapped[name] = self.index[name]
                self.index[name] = self.converted(name, mode)
        self.mode, self.int8 = mode, mode != "float"
        try:
            yield
        finally:
            self.mode, self.int8 = base, base != "float"
            self.index.update(swapped)
            for out in node.outputs:
                if out in self.index and mode != base:
                    self.stored[out] = mode

    def converted(self, name: str, mode: str) -> int:
        """Activation ``name`` (stored at another precision) as a tensor of precision ``mode``."""
        key = (name, "as", mode)
        if key not in self._converted:
            src = self.index[name]
            have = self.stored.get(name, "int8")
            dtype = {"int8": "int8", "int16": "int16", "float": "float32"}[mode]
            out = self.b.add_tensor(f"{name}/{mode}", self.b.shape(src), dtype, tensor_params(self.g, name, mode))
            code = BuiltinOp.DEQUANTIZE if mode == "float" else BuiltinOp.QUANTIZE
            opts = (Options.DequantizeOptions, tfl.DequantizeOptionsT()) if mode == "float" else \
                (Options.QuantizeOptions, tfl.QuantizeOptionsT())
            self.b.add_op(code, [src], [out], *opts, version=boundary_version(code, have, mode))
            self._converted[key] = out
        return self._converted[key]

    def output_as_int8(self, name: str) -> None:
        """A graph output of an int16 / float layer: its int8 copy is the output and takes its name."""
        if self.stored.get(name, "int8") != "int8":
            self.b.rename(self.index[name], f"{name}/{self.stored[name]}")
            self.index[name] = self.converted(name, "int8")

    def const_weight(self, node, pos: int = 1) -> np.ndarray:
        """The constant weight input of ``node`` (writers cannot take computed weights)."""
        w = self.g.const(node.inputs[pos])
        if w is None:
            raise TfliteExportError(f"node '{node.name}': {node.op} weights '{node.inputs[pos]}' must be constant")
        return w

    @property
    def act_dtype(self) -> str:
        return {"int8": "int8", "int16": "int16", "float": "float32"}[self.mode]

    def version(self, code: int, **flags) -> int:
        if self.mode == "int16":
            if code not in INT16X8:
                raise TfliteExportError(f"no 16x8 kernel is known for TFLite builtin {code}")
            return INT16X8[code][0]
        return version(code, self.int8, **flags)

    def op(self, code: int, inputs, outputs, options_type: int = 0, options=None, **flags) -> None:
        if code == BuiltinOp.TRANSPOSE:
            flags["dims"] = len(self.b.shape(inputs[0]))
        self.b.add_op(code, inputs, outputs, options_type, options, self.version(code, **flags))

    # ---- activations --------------------------------------------------------------------
    def quant(self, name: str) -> QuantParams | None:
        if not self.int8:
            return None
        q = self.g.tensors[name].quant
        if q is None:
            raise TfliteExportError(f"int8 export: activation '{name}' has no quantization parameters; "
                                    f"calibrate the graph first")
        if q.is_per_channel or q.dtype != "int8":
            raise TfliteExportError(f"int8 export: activation '{name}' must be per-tensor int8, "
                                    f"got {q.dtype} axis={q.axis}")
        return q if self.mode == "int8" else tensor_params(self.g, name, self.mode)

    def perm(self, name: str) -> tuple[int, ...]:
        return self.plan.perms[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.g.tensors[name].shape)

    def output(self, name: str) -> int:
        """Create the file tensor of activation ``name`` in its planned layout."""
        idx = self.b.add_tensor(name, stored_shape(self.shape(name), self.perm(name)),
                                self.act_dtype, self.quant(name))
        self.index[name] = idx
        return idx

    def temp(self, name: str, shape, quant: QuantParams | None) -> int:
        """An intermediate activation the IR does not have (explicit pad, composed ops)."""
        return self.b.add_tensor(name, shape, self.act_dtype, quant if self.int8 else None)

    def input(self, name: str, perm: tuple[int, ...] | None = None) -> int:
        """Tensor index of activation ``name``; with ``perm``, in that layout (TRANSPOSE if needed)."""
        idx = self.index[name]
        have = self.perm(name)
        if perm is None or tuple(perm) == have:
            return idx
        key = (name, tuple(perm), self.mode)
        if key not in self._converted:
            shape = self.shape(name)
            target = stored_shape(shape, perm)
            out = self.temp(f"{name}/as_{''.join(map(str, perm))}", target, self.quant(name))
            if [a for a in have if shape[a] != 1] == [a for a in perm if shape[a] != 1]:
                # only size-1 axes move: the bytes stay, a RESHAPE is enough
                self.op(BuiltinOp.RESHAPE, [idx, self.b.add_int32(f"{name}/shape", target)], [out],
                        Options.ReshapeOptions, tfl.ReshapeOptionsT(newShape=list(target)))
            else:
                q = file_transpose_perm(have, identity(len(perm)), perm)
                self.op(BuiltinOp.TRANSPOSE, [idx, self.b.add_int32(f"{name}/perm", q)], [out],
                        Options.TransposeOptions, tfl.TransposeOptionsT())
                log.debug("layout conversion TRANSPOSE for '%s' to %s", name, perm)
            self._converted[key] = out
        return self._converted[key]

    def operand(self, name: str, out: str, quant: QuantParams | None = None,
                data: np.ndarray | None = None) -> int:
        """An input of an elementwise op, in the layout of the op's output ``out``; ``data``
        replaces the values of a constant (e.g. a reciprocal)."""
        out_perm, out_rank = self.perm(out), len(self.shape(out))
        t = self.g.tensors[name]
        if t.is_const:
            own = data is None
            data = np.asarray(t.data if own else data, np.float32)
            data = data.reshape((1,) * (out_rank - data.ndim) + data.shape).transpose(out_perm)
            if not self.int8:
                return self.b.add_const(name, data, "float32")
            qp = quant or self.const_quant(name, data, own=own)
            if self.mode == "int16":  # a 16x8 kernel takes its constant operand in int16 too
                qp = quant or symmetric_params(data, "int16")
            return self.b.add_const(name, quantize_array(data, qp), qp.dtype, qp)
        if len(t.shape) == out_rank:
            return self.input(name, out_perm)
        # lower-rank activation broadcast against the output: reshape when the bytes allow it
        expanded = (1,) * (out_rank - len(t.shape)) + tuple(t.shape)
        if not (same_bytes(t.shape, self.perm(name)) and same_bytes(expanded, out_perm)):
            raise TfliteExportError(f"activation '{name}' of shape {t.shape} cannot be broadcast "
                                    f"against '{out}' without a transpose")
        target = stored_shape(expanded, out_perm)
        res = self.temp(f"{name}/expanded", target, self.quant(name))
        self.op(BuiltinOp.RESHAPE, [self.index[name], self.b.add_int32(f"{name}/shape", target)], [res],
                Options.ReshapeOptions, tfl.ReshapeOptionsT(newShape=list(target)))
        return res

    # ---- constants ----------------------------------------------------------------------
    def const_quant(self, name: str, data: np.ndarray, own: bool = True) -> QuantParams:
        """The constant's own per-tensor params if set, else min/max of ``data`` (0 included)."""
        q = self.g.tensors[name].quant if own and name in self.g.tensors else None
        if q is not None and not q.is_per_channel and q.dtype == "int8":
            return q
        return params_from_range(float(data.min(initial=0.0)), float(data.max(initial=0.0)))

    def weight(self, name: str, ir_data: np.ndarray, perm: tuple[int, ...],
               per_channel: bool, axis: int = 0) -> tuple[int, QuantParams | None]:
        """A weight stored as ``ir_data.transpose(perm)``; int8 symmetric (per channel on IR ``axis``)."""
        if not self.int8:
            return self.b.add_const(name, ir_data.transpose(perm), "float32"), None
        qp = self.g.tensors[name].quant if name in self.g.tensors else None
        if qp is None or qp.dtype != "int8":
            qp = symmetric_weight_params(ir_data, axis if per_channel else None)
        if any(z != 0 for z in qp.zero_point):
            raise TfliteExportError(f"int8 export: weight '{name}' must be symmetric (zero-point 0)")
        q = quantize_array(ir_data, qp).transpose(perm)
        axis = perm.index(qp.axis) if qp.is_per_channel else 0
        return self.b.add_const(name, q, "int8", qp, axis), qp

    def bias(self, name: str, data: np.ndarray | None, n_out: int, in_name: str,
             wq: QuantParams | None) -> int:
        data = np.zeros(n_out, np.float32) if data is None else np.asarray(data, np.float32)
        if not self.int8:
            return self.b.add_const(name, data, "float32")
        s_in = np.float64(self.quant(in_name).scale[0])
        scales = s_in * np.asarray(wq.scale, np.float64)
        dtype = "int64" if self.mode == "int16" else "int32"  # 16x8 conv/FC kernels take an int64 bias
        if wq.is_per_channel:
            qp = QuantParams.per_channel(scales, 0, dtype)
        else:
            qp = QuantParams.per_tensor(float(scales[0]), 0, dtype)
        if dtype == "int32":
            check_bias_fits(name, data, qp)
        return self.b.add_const(name, quantize_array(data, qp), dtype, qp, 0)
