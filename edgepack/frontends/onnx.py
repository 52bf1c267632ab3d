"""ONNX in: a path, bytes or onnx.ModelProto -> ir.Graph.

Steps: read and check the model, fix every graph input to a static shape, inline local functions,
infer shapes and fold constants (onnx_fold), then map each node onto the IR op table
(onnx_normalize). The result has static shapes, float32 activations and passes ir.verify.
"""
from __future__ import annotations

import logging
from pathlib import Path

import onnx
import onnx.inliner

from .. import ir
from ..errors import ModelLoadError, ShapeError, one_line
from ..ir.passes import run_one
from .keras_normalize import normalize_keras_graph
from .onnx_fold import DEFAULT_DOMAINS, fold_constants
from .onnx_normalize import build_graph

log = logging.getLogger(__name__)

OPSET_MIN, OPSET_MAX = 11, 21


def load_onnx(model, input_shapes: dict[str, tuple[int, ...]] | None = None,
              batch_size: int = 1) -> ir.Graph:
    """Load an ONNX model (path, bytes or ModelProto) as a static-shaped, normalised ir.Graph.

    A symbolic first dim of a graph input becomes ``batch_size``; any other unknown dim must be
    given in ``input_shapes`` (input name -> full shape).
    """
    proto, path = _read(model)
    _check(proto, path)
    opset = _default_opset(proto, path)
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    declared = _declared_input_shapes(proto, path)
    shapes = resolve_input_shapes(declared, input_shapes, batch_size)
    _make_inputs_static(proto, shapes)
    for i, node in enumerate(proto.graph.node):  # name by original position, before folding drops nodes
        node.name = node.name or f"{node.op_type}_{i}"
    try:
        folded = fold_constants(proto)
        graph = build_graph(folded, list(shapes), [o.name for o in proto.graph.output], opset, path)
        if proto.producer_name == "tf2onnx":  # a Keras/TF model: its NHWC input Transpose etc. tidied (exact)
            run_one(graph, normalize_keras_graph)
        ir.verify(graph)
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError, AttributeError, ir.GraphError) as exc:
        # a malformed tensor or attribute (raw_data of the wrong size, an unknown data type, an input that is
        # never produced): the file's fault unless onnxruntime runs it, and then ours to hear about
        raise ModelLoadError(f"malformed ONNX model: {one_line(exc)} (if onnxruntime runs this model, please "
                             "report it as an edgepack bug)", path) from None
    log.info("loaded ONNX model %s: %d nodes %s", path or proto.graph.name, len(graph.nodes),
             graph.op_counts())
    return graph


# ---- reading and checking -------------------------------------------------------------------


def _read(model) -> tuple[onnx.ModelProto, str | None]:
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)  # we edit input shapes; never touch the caller's object
        path = None
    elif isinstance(model, (bytes, bytearray, memoryview)):
        path = None
        proto = _parse(lambda: onnx.load_model_from_string(bytes(model)), path)
    elif isinstance(model, (str, Path)):
        p = Path(model)
        path = str(p)
        if not p.exists():
            raise ModelLoadError("file not found", path)
        if p.is_dir():
            raise ModelLoadError("is a directory, expected an .onnx file", path)
        proto = _parse(lambda: onnx.load(path), path)
    else:
        raise ModelLoadError(f"expected a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelLoadError("not a valid ONNX model: no graph or opset found "
                             "(is this file an ONNX export?)", path)
    return proto, path


def _parse(load, path):
    try:
        return load()
    except Exception as exc:  # protobuf and onnx raise a variety of types on garbage input
        raise ModelLoadError(f"not a valid ONNX model: {one_line(exc)}", path) from None


def _check(proto: onnx.ModelProto, path: str | None) -> None:
    try:
        onnx.checker.check_model(proto)
    except ValueError as exc:
        if path is None or "2GB" not in str(exc):
            raise ModelLoadError(f"not a valid ONNX model: {one_line(exc)}", path) from None
        try:  # models over 2 GB can only be checked from their file
            onnx.checker.check_model(path)
        except Exception as exc2:
            raise ModelLoadError(f"not a valid ONNX model: {one_line(exc2)}", path) from None
    except Exception as exc:
        raise ModelLoadError(f"not a valid ONNX model: {one_line(exc)}", path) from None


def _default_opset(proto: onnx.ModelProto, path: str | None) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ModelLoadError("the model imports no default-domain ONNX opset "
                             f"(allowed: {OPSET_MIN}..{OPSET_MAX})", path)
    opset = versions[0]
    if not OPSET_MIN <= opset <= OPSET_MAX:
        raise ModelLoadError(f"ONNX opset {opset} is not supported (allowed: {OPSET_MIN}..{OPSET_MAX}); "
                             "re-export the model with an opset in that range", path)
    return opset


# ---- static input shapes ---------------------------------------------------------------------
def _fmt(shape) -> str:
    if shape is None:
        return "(unknown rank)"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _declared_input_shapes(proto: onnx.ModelProto, path) -> dict[str, tuple | None]:
    """Graph inputs (initializers excluded) -> declared dims, None for an unknown dim or rank."""
    inits = {t.name for t in proto.graph.initializer}
    declared: dict[str, tuple | None] = {}
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ModelLoadError(f"graph input '{vi.name}' is not a tensor; edgepack handles tensor "
                                 "inputs only", path)
        if tt.elem_type != onnx.TensorProto.FLOAT:
            dtype = onnx.TensorProto.DataType.Name(tt.elem_type).lower()
            raise ModelLoadError(f"graph input '{vi.name}' is {dtype}; edgepack handles float32 models "
                                 "only (allowed input dtype: float32)", path)
        if not tt.HasField("shape"):
            declared[vi.name] = None
        else:
            declared[vi.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                                      else None for d in tt.shape.dim)
    return declared


def resolve_input_shapes(declared: dict[str, tuple | None], given: dict | None,
                         batch_size: int = 1) -> dict[str, tuple[int, ...]]:
    """Static shape of every graph input from the model, ``given`` and ``batch_size``."""
    given = dict(given or {})
    if "*" in given:  # the CLI's --input-shape: the one input of a single-input model
        if len(declared) != 1:
            raise ShapeError(f"the model has {len(declared)} inputs ({', '.join(declared)}); "
                             "--input-shape applies only to single-input models")
        given = {next(iter(declared)): given.pop("*"), **given}
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ShapeError(f"batch_size must be a positive integer, got {batch_size!r}")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ShapeError(f"input_shapes names {unknown} that are not inputs of the model "
                         f"(model inputs: {', '.join(declared)})")
    resolved: dict[str, tuple[int, ...]] = {}
    for name, dims in declared.items():
        if name in given:
            try:
                want = tuple(int(d) for d in given[name])
            except (TypeError, ValueError):
                raise ShapeError(f"input shape for '{name}' must be a sequence of integers, "
                                 f"got {given[name]!r}") from None
            fits = dims is None or (len(dims) == len(want) and
                                    all(d is None or d == w for d, w in zip(dims, want)))
            if not fits or any(w < 1 for w in want):
                raise ShapeError(f"input shape {_fmt(want)} given for '{name}' does not fit the "
                                 f"model's input shape {_fmt(dims)}")
            resolved[name] = want
            continue
        hint = f"pass its full shape with --input-shape (input_shapes={{'{name}': (...)}})"
        if dims is None:
            raise ShapeError(f"input '{name}' has an unknown rank; {hint}")
        dims = list(dims)
        if dims and dims[0] is None:
            dims[0] = batch_size
        if None in dims:
            raise ShapeError(f"input '{name}' has shape {_fmt(declared[name])} with unknown dims "
                             f"besides the batch; {hint}")
        resolved[name] = tuple(dims)
    return resolved


def _make_inputs_static(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    """Write the static input shapes and drop stale symbolic shapes so inference recomputes them."""
    for vi in proto.graph.input:
        if vi.name in shapes:
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for d in shapes[vi.name]:
                shape.dim.add().dim_value = d
    for vi in proto.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
