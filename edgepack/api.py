"""The one orchestrator: load -> passes -> (calibrate -> quantize) -> emit -> (validate) -> Report."""
from __future__ import annotations

import logging
from pathlib import Path

from . import artifacts
from .config import ExportConfig
from .errors import ModelLoadError
from .ir import Graph, verify
from .report import Report

log = logging.getLogger(__name__)

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".jit")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
ALLOWED = ONNX_SUFFIXES + TORCH_SUFFIXES + KERAS_SUFFIXES


def _is_torch_model(model) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))


def load(model, input_shape=None, *, example_input=None, config: ExportConfig | None = None,
         optimize: bool = True) -> Graph:
    """Any supported model -> IR graph (float, NCHW), with the cleanup passes applied.

    ``model``: a path (.onnx, TorchScript .pt, torch.export .pt2), an onnx.ModelProto or bytes,
    or an in-memory torch.nn.Module (with ``example_input`` or ``input_shape``)."""
    from .exporter.passes import run_passes

    cfg = (config or ExportConfig()).replace(**({"input_shape": input_shape} if input_shape else {}))
    graph = _load_raw(model, cfg, example_input)
    verify(graph)
    return run_passes(graph) if optimize else graph


def _load_raw(model, cfg: ExportConfig, example_input) -> Graph:
    from .frontends.onnx import load_onnx

    if _is_torch_model(model):
        from .frontends.torch import load_torch
        return load_torch(model, example_input, cfg.input_shape, exporter=cfg.exporter, opset=cfg.opset)
    if isinstance(model, (bytes, bytearray)) or type(model).__name__ == "ModelProto":
        return load_onnx(model, _onnx_shapes(cfg))
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError("file not found", str(path))
        suffix = path.suffix.lower()
        if suffix in ONNX_SUFFIXES:
            return load_onnx(path, _onnx_shapes(cfg))
        if suffix in TORCH_SUFFIXES:
            from .frontends.torch import load_torch_file
            return load_torch_file(path, cfg.input_shape, trust_pickle=cfg.trust_pickle,
                                   exporter=cfg.exporter, opset=cfg.opset)
        raise ModelLoadError(f"unknown model format '{suffix or path.name}' "
                             f"(supported: {', '.join(ALLOWED[:-3])})", str(path))
    raise ModelLoadError(f"cannot load a {type(model).__name__}: pass a path, an onnx.ModelProto "
                         "or a torch.nn.Module")


def _onnx_shapes(cfg: ExportConfig):
    # For ONNX files --input-shape names the (single) input's full shape.
    return {"*": cfg.input_shape} if cfg.input_shape else None


def model_name(model) -> str:
    if isinstance(model, (str, Path)):
        return Path(model).stem
    return type(model).__name__


def export(model, calib=None, out="edgepack_out", *, config: ExportConfig | None = None,
           example_input=None, **settings) -> Report:
    """Export ``model`` to ``out``: model.float.onnx now; the int8 artifacts when ``calib`` data is given
    (later stages). Returns the Report, also saved as ``out/report.json``."""
    from .exporter.emit_onnx import to_onnx
    from .ir.summary import summarize

    cfg = (config or ExportConfig()).replace(**settings)
    out = Path(out)
    paths = {"float_onnx": out / "model.float.onnx", "report": out / "report.json"}
    artifacts.check_writable(paths.values(), cfg.force)

    graph = load(model, config=cfg, example_input=example_input)
    report = Report(model=model_name(model),
                    inputs={n: list(graph.tensors[n].shape) for n in graph.inputs},
                    outputs={n: list(graph.tensors[n].shape) for n in graph.outputs},
                    summary=summarize(graph)["totals"])
    onnx_bytes = to_onnx(graph).SerializeToString()
    artifacts.write_bytes(paths["float_onnx"], onnx_bytes)
    report.artifacts["float_onnx"] = {"path": str(paths["float_onnx"]), "bytes": len(onnx_bytes)}
    report.save(paths["report"])
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return report
