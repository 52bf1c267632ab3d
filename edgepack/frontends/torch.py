"""PyTorch in: an nn.Module (plus an example input or a shape), a TorchScript .pt, a torch.export .pt2,
or (only when trusted) a pickled whole module. Everything goes through torch.onnx.export and then
the ONNX frontend, which is the only real parser."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from ..errors import ConfigError, EdgepackError, ModelLoadError, ShapeError, first_line
from ..ir import Graph
from .torch_archive_check import pt2_problem, torchscript_problem

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "legacy", "dynamo")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        raise EdgepackError("PyTorch models need the torch extra: pip install 'edgepack[torch]'") from None
    return torch


def _example(torch, example_input, input_shape):
    if example_input is not None:
        if isinstance(example_input, (tuple, list)):
            return tuple(example_input)
        return (example_input,)
    if input_shape is None:
        raise ShapeError("a PyTorch model needs an example input or --input-shape (e.g. 1,3,32,32)")
    return (torch.zeros(tuple(int(d) for d in input_shape)),)


def _input_names(model, count: int) -> list[str]:
    """"input" for one input; several are named like forward's parameters (calibration data is keyed by
    them), else input_0, input_1, ..."""
    if count == 1:
        return ["input"]
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    named = [p.name for p in params[:count] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return named if len(named) == count else [f"input_{i}" for i in range(count)]


def _export_onnx(torch, model, args, exporter: str, opset: int | None) -> bytes:
    buf = io.BytesIO()
    names = _input_names(model, len(args))
    dynamo = exporter == "dynamo"
    # Both exporters talk a lot (stdout banners, deprecation and torchvision warnings): keep them quiet.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        kwargs = dict(input_names=names, output_names=None, dynamo=dynamo,
                      opset_version=opset or (18 if dynamo else 17))
        if not dynamo:
            kwargs["do_constant_folding"] = False  # BatchNorm folding is our pass's job
        torch.onnx.export(model, args, buf, **kwargs)
    return buf.getvalue()


def load_torch(model, example_input=None, input_shape=None, *, exporter: str = "auto",
               opset: int | None = None) -> Graph:
    """Convert an nn.Module (or ScriptModule / ExportedProgram) to an IR graph via ONNX.

    ``exporter``: "legacy" (TorchScript-based, fast), "dynamo" (torch.export-based), or "auto"
    (legacy, then dynamo if legacy fails)."""
    from .onnx import load_onnx

    torch = _torch()
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter '{exporter}'", "exporter", EXPORTERS)
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    args = _example(torch, example_input, input_shape)
    _check_runs(torch, model, args)
    order = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    if isinstance(model, torch.export.ExportedProgram):
        order = ["dynamo"]
    errors = []
    for name in order:
        try:
            onnx_bytes = _export_onnx(torch, model, args, name, opset)
            break
        except EdgepackError:
            raise
        except Exception as exc:  # exporters raise many types; we report them as one line
            log.info("torch.onnx.export (%s) failed: %s", name, exc)
            errors.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    else:
        raise ModelLoadError("torch.onnx.export failed (" + "; ".join(errors) + ")")
    return load_onnx(onnx_bytes)


def _check_runs(torch, model, args) -> None:
    """Run the model once so that a wrong input shape is reported as such, not as an exporter crash."""
    if isinstance(model, torch.export.ExportedProgram):
        return
    try:
        with torch.no_grad():
            model(*args)
    except Exception as exc:
        shapes = ", ".join("x".join(map(str, a.shape)) for a in args if hasattr(a, "shape"))
        raise ShapeError(f"the model does not run on an input of shape {shapes}: {first_line(exc)} "
                         "(give the model's input shape with --input-shape, batch included)") from None


def load_torch_file(path, input_shape=None, *, trust_pickle: bool = False, exporter: str = "auto",
                    opset: int | None = None) -> Graph:
    """Load a TorchScript .pt, a torch.export .pt2, or (with trust_pickle) a pickled nn.Module."""
    torch = _torch()
    path = Path(path)
    if not path.exists():
        raise ModelLoadError("file not found", str(path))
    if path.suffix == ".pt2":
        if not trust_pickle:
            _refuse_code(path, pt2_problem, "not a torch.export program")
        logging.getLogger("torch.export").setLevel(logging.ERROR)  # it logs a traceback; we say one line
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"not a torch.export program: {first_line(exc)}", str(path)) from None
        shape = input_shape or _exported_input_shape(program)
        return load_torch(program, input_shape=shape, exporter="dynamo", opset=opset)
    if not trust_pickle:
        _refuse_code(path, torchscript_problem, "not a TorchScript or PyTorch file")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as jit_exc:
        module = _load_pickled(torch, path, trust_pickle, jit_exc)
    return load_torch(module, input_shape=input_shape, exporter=exporter, opset=opset)


def _refuse_code(path: Path, check, not_what: str) -> None:
    """Refuse a file whose loading would run code from it (see torch_archive_check), before torch reads it."""
    try:
        problem = check(path)
    except Exception as exc:  # zip, JSON and pickle readers raise many types on a damaged file
        raise ModelLoadError(f"{not_what}: {first_line(exc)}", str(path)) from None
    if problem:
        raise ModelLoadError(f"holds {problem}; loading it runs code from the file. Re-run with "
                             "--trust-pickle (Python: trust_pickle=True) if you trust it", str(path))


def _load_pickled(torch, path: Path, trust_pickle: bool, jit_exc: Exception):
    try:
        with warnings.catch_warnings():  # torch warns when it hands a TorchScript-like zip to jit.load
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not trust_pickle:
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                raise ModelLoadError(
                    "is a pickled Python object; loading it runs code from the file. "
                    "Re-run with --trust-pickle if you trust it, or save it with torch.jit.save / "
                    "torch.export.save", str(path)) from None
            raise ModelLoadError(f"not a TorchScript or PyTorch file: {first_line(jit_exc)}",
                                 str(path)) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise ModelLoadError(f"cannot unpickle: {first_line(exc2)}", str(path)) from None
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(
            f"holds a {type(obj).__name__}, not a model (a state_dict has no architecture: "
            "use the Python API with your nn.Module, or save a TorchScript/torch.export file)", str(path))
    return obj


def _exported_input_shape(program):
    for spec in program.graph_signature.input_specs:
        if spec.kind.name == "USER_INPUT":
            node = next(n for n in program.graph.nodes if n.name == spec.arg.name)
            return tuple(int(d) for d in node.meta["val"].shape)
    return None


