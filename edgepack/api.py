"""The one orchestrator: load -> passes -> (calibrate -> quantize) -> emit -> (validate) -> Report."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from . import artifacts
from .config import ExportConfig
from .errors import ConfigError, ModelLoadError
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


Progress = Callable[[str, int, int], None]  # (stage, samples just done, total samples)


def export(model, calib=None, out="edgepack_out", *, config: ExportConfig | None = None,
           example_input=None, progress: Progress | None = None, **settings) -> Report:
    """Export ``model`` into the folder ``out`` and return the Report (also saved as report.json).

    Always writes model.float.onnx and model.float.tflite. With ``calib`` sample data (a path or an
    iterable of arrays, see ``calibration.load_samples``) or ``calibration_file=``, also writes
    model.int8.onnx, model.int8.tflite and calibration.json, all from one calibration.
    Settings are the fields of ExportConfig, given as keywords or as ``config``."""
    from .exporter.emit_onnx import to_onnx
    from .exporter.emit_tflite import to_tflite
    from .ir.summary import summarize

    cfg = (config or ExportConfig()).replace(**settings)
    out = Path(out)
    quantize = calib is not None or cfg.calibration_file is not None
    paths = {"float_onnx": out / "model.float.onnx", "float_tflite": out / "model.float.tflite"}
    if quantize:
        paths.update(int8_onnx=out / "model.int8.onnx", int8_tflite=out / "model.int8.tflite",
                     calibration=out / "calibration.json")
    artifacts.check_writable(list(paths.values()) + [out / "report.json"], cfg.force)

    graph = load(model, config=cfg, example_input=example_input)
    report = Report(model=model_name(model),
                    inputs={n: list(graph.tensors[n].shape) for n in graph.inputs},
                    outputs={n: list(graph.tensors[n].shape) for n in graph.outputs},
                    summary=summarize(graph)["totals"])
    files = {"float_onnx": to_onnx(graph).SerializeToString(), "float_tflite": to_tflite(graph, int8=False)}
    if quantize:
        files.update(_quantize(graph, calib, cfg, report, progress))
    # Everything is computed before anything is written: a failure leaves no partial set behind.
    for kind, data in files.items():
        artifacts.write_bytes(paths[kind], data)
        report.artifacts[kind] = {"path": str(paths[kind]), "bytes": len(data)}
    report.save(out / "report.json")
    log.info("wrote %s", ", ".join(str(paths[k]) for k in files))
    return report


def _quantize(graph: Graph, calib, cfg: ExportConfig, report: Report, progress) -> dict[str, bytes]:
    from .calibration import calibrate_graph, load_samples
    from .calibration.quantize import load_calibration, save_calibration
    from .exporter.emit_onnx_qdq import to_onnx_qdq
    from .exporter.emit_tflite import to_tflite

    if len(graph.inputs) != 1:
        raise ConfigError(f"int8 export handles single-input models; this one has {len(graph.inputs)} "
                          f"inputs ({', '.join(graph.inputs)})")
    input_shape = graph.tensors[graph.inputs[0]].shape
    ranges, samples = None, None
    if cfg.calibration_file:
        path = Path(cfg.calibration_file)
        if not path.exists():
            raise ConfigError(f"calibration file not found: {path}", "calibration_file")
        ranges = load_calibration(path.read_text(), str(path))
    else:
        samples = load_samples(calib, input_shape, input_name=graph.inputs[0], mean=cfg.mean, std=cfg.std,
                               limit=cfg.calib_limit)
    total = len(samples) if samples is not None else 0
    tick = (lambda n: progress("calibrating", n, total)) if progress else None
    opts = {"percentile": cfg.percentile} if cfg.calibration == "percentile" else {}
    qgraph, ranges = calibrate_graph(graph, samples, cfg.calibration, progress=tick, ranges=ranges, **opts)
    report.metrics["calibration"] = {"method": cfg.calibration, "samples": total,
                                     "from_file": cfg.calibration_file}
    report.notes.append(f"calibrated {len(ranges)} tensors with {cfg.calibration}"
                        + (f" on {total} samples" if total else f" from {cfg.calibration_file}"))
    return {"int8_onnx": to_onnx_qdq(qgraph, activations=cfg.onnx_activations).SerializeToString(),
            "int8_tflite": to_tflite(qgraph, int8=True, io=cfg.io),
            "calibration": save_calibration(qgraph, ranges, cfg.calibration).encode()}
