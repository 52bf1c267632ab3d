"""Run artifacts on the real runtimes: .tflite on LiteRT (XNNPACK or reference kernels) and on
TensorFlow Lite Micro, .onnx on onnxruntime. Inputs and outputs are in the file's own layout and
dtype; validate.py converts user data (NCHW float) to that.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings

import numpy as np

from ..errors import EdgepackError, UnsupportedOpError, first_line

log = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "onnxruntime-ref", "litert", "litert-ref", "tflm")


class RuntimeFailure(EdgepackError):
    """A runtime refused or failed to run an artifact (the message says which and why)."""


class LiteRT:
    """A .tflite on LiteRT. ``reference=True`` uses BUILTIN_REF kernels (no XNNPACK)."""

    def __init__(self, model: bytes, reference: bool = False, threads: int = 1, preserve_all: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
        step = "load the model"
        try:  # LiteRT announces its XNNPACK delegate on stderr and warns about preserve_all: not for users
            with _captured_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.interp = Interpreter(model_content=bytes(model), num_threads=threads,
                                          experimental_op_resolver_type=kind,
                                          experimental_preserve_all_tensors=preserve_all)
                step = "allocate the model's tensors"  # fails with no message when memory runs out
                self.interp.allocate_tensors()
        except Exception as exc:
            raise RuntimeFailure(f"LiteRT cannot {step}: {first_line(exc)}") from None
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def run(self, *xs: np.ndarray) -> list[np.ndarray]:
        for detail, x in zip(self.inputs, xs):
            self.interp.set_tensor(detail["index"], np.ascontiguousarray(x, detail["dtype"]))
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]).copy() for d in self.outputs]

    def undelegated_ops(self) -> list[dict]:
        """Ops that XNNPACK did not take (they run on LiteRT's own CPU kernels): [{op, node}].

        LiteRT appends one DELEGATE node per partition, whose inputs and outputs are the partition's
        boundary tensors; walking back from its outputs to its inputs recovers the ops it replaced."""
        w = self.interp._interpreter
        names = [w.NodeName(i) for i in range(w.NumNodes())]
        delegates = [i for i, n in enumerate(names) if n == "DELEGATE"]
        original = [i for i, n in enumerate(names) if n != "DELEGATE"]
        producer = {int(t): i for i in original for t in w.NodeOutputs(i)}
        taken: set[int] = set()
        for d in delegates:
            boundary = {int(t) for t in w.NodeInputs(d)}
            stack = [int(t) for t in w.NodeOutputs(d)]
            while stack:
                node = producer.get(stack.pop())
                if node is None or node in taken:
                    continue
                taken.add(node)
                stack.extend(int(t) for t in w.NodeInputs(node) if int(t) >= 0 and int(t) not in boundary)
        return [{"op": names[i], "node": w.TensorName(int(w.NodeOutputs(i)[0]), 0)}
                for i in original if i not in taken]

    def tensors(self) -> dict[str, np.ndarray]:
        """Every tensor after ``run`` (needs preserve_all=True), keyed by name."""
        out = {}
        for d in self.interp.get_tensor_details():
            try:
                out[d["name"]] = self.interp.get_tensor(d["index"]).copy()
            except ValueError:  # tensors without data (e.g. optional inputs)
                continue
        return out


@contextlib.contextmanager
def _captured_stderr():
    """Capture what C++ code writes to fd 2 (TFLM's print_allocations does)."""
    buf = io.StringIO()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield buf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            buf.write(tmp.read().decode("utf-8", "replace"))


class TFLM:
    """A .tflite on TensorFlow Lite Micro (the microcontroller runtime, reference C kernels)."""

    def __init__(self, model: bytes, arena_size: int | None = None):
        import tflite_micro

        self.model = bytes(model)
        self.arena_size = arena_size or max(10 * len(self.model), 64 * 1024)
        failure = None
        with _captured_stderr() as messages:
            try:
                self.interp = tflite_micro.runtime.Interpreter.from_bytes(self.model, arena_size=self.arena_size)
            except Exception as exc:
                failure = exc
        if failure is not None:
            missing = missing_kernel(self.model, messages.getvalue())
            if missing is not None:
                raise missing from None
            raise RuntimeFailure(f"TFLite Micro cannot load the model with a {self.arena_size}-byte arena: "
                                 f"{first_line(failure)}") from None
        n_in, n_out = _io_counts(self.model)
        self.inputs = [self.interp.get_input_details(i) for i in range(n_in)]
        self.outputs = [self.interp.get_output_details(i) for i in range(n_out)]

    def run(self, *xs: np.ndarray) -> list[np.ndarray]:
        for i, (detail, x) in enumerate(zip(self.inputs, xs)):
            self.interp.set_input(np.ascontiguousarray(x, detail["dtype"]).reshape(detail["shape"]), i)
        self.interp.invoke()
        return [self.interp.get_output(i).copy() for i in range(len(self.outputs))]

    def arena_used(self) -> int | None:
        """Arena bytes TFLM reports as used (from print_allocations), None if not reported."""
        with _captured_stderr() as text:
            self.interp.print_allocations()
        match = re.search(r"Arena allocation total (\d+) bytes", text.getvalue())
        return int(match.group(1)) if match else None


def missing_kernel(model: bytes, tflm_messages: str) -> UnsupportedOpError | None:
    """The error for a builtin this TFLM build has no kernel for (from what TFLM printed), naming the op
    and the node (the tensor its first operator writes); None when TFLM complained about something else."""
    from .tflite_file import read_tflite

    found = re.search(r"Didn't find op for builtin opcode '(\w+)'", tflm_messages)
    if found is None:
        return None
    op, info = found.group(1), read_tflite(model)
    node = next((info.tensors[o.outputs[0]].name for o in info.ops if o.op == op and o.outputs), "?")
    return UnsupportedOpError(op, node, ["the builtins it has kernels for (see SUPPORTED_OPS.md)"],
                              where="TFLite Micro")


def _io_counts(model: bytes) -> tuple[int, int]:
    from ai_edge_litert import schema_py_generated as schema

    sub = schema.Model.GetRootAs(model, 0).Subgraphs(0)
    return sub.InputsLength(), sub.OutputsLength()


class OnnxRuntime:
    """An .onnx on onnxruntime's CPU provider. ``reference=True`` runs the file's QDQ arithmetic as the ONNX
    spec defines it (no fusion of DequantizeLinear-op-QuantizeLinear into onnxruntime's integer kernels,
    whose U8S8 int16 pair sums saturate on x86 CPUs without VNNI: onnxruntime issue 16105)."""

    def __init__(self, model: bytes, threads: int = 1, reference: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        if reference:  # basic: constant folding and such; the QDQ fusions are 'extended'
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        try:
            self.sess = ort.InferenceSession(bytes(model), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise RuntimeFailure(f"onnxruntime cannot load the model: {first_line(exc)}") from None
        self.inputs = self.sess.get_inputs()
        self.outputs = self.sess.get_outputs()

    def run(self, *xs: np.ndarray) -> list[np.ndarray]:
        return self.sess.run(None, {i.name: np.asarray(x, np.float32) for i, x in zip(self.inputs, xs)})
