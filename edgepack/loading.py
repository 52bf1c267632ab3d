"""Any supported model -> the IR graph: the frontend chosen by what the model is, weights checked, the
cleanup passes applied. ``load`` is public (``edgepack.load``); the export's load stage calls it too."""
from __future__ import annotations

from pathlib import Path

from .config import ExportConfig
from .errors import ModelLoadError
from .input_files import MAX_MODEL_BYTES, check_file
from .ir import Graph, verify

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
         optimize: bool = True, custom_objects: dict | None = None) -> Graph:
    """Any supported model -> IR graph (float, NCHW), with the cleanup passes applied.

    ``model``: a path (.onnx, TorchScript .pt, torch.export .pt2, Keras .keras/.h5 or SavedModel
    folder), an onnx.ModelProto or bytes, an in-memory torch.nn.Module (with ``example_input`` or
    ``input_shape``) or keras.Model. ``custom_objects``: a Keras model's custom layers."""
    from .exporter.passes import run_passes
    from .pipeline import build_pipeline, stage
    from .frontends.weight_check import check_weights

    cfg = (config or ExportConfig()).replace(**({"input_shape": input_shape} if input_shape else {}))
    graph = _load_raw(model, cfg, example_input, custom_objects)
    verify(graph)
    check_weights(graph)
    return run_passes(graph, stage(build_pipeline(cfg), "cleanup")) if optimize else graph


def _load_raw(model, cfg: ExportConfig, example_input, custom_objects=None) -> Graph:
    from .frontends.keras import is_keras_model, is_saved_model_dir, load_keras
    from .frontends.onnx import load_onnx

    def keras(m):
        return load_keras(m, custom_objects=custom_objects, trust_code=cfg.trust_code,
                          input_shape=cfg.input_shape, opset=cfg.opset or 17)

    if _is_torch_model(model):
        from .frontends.torch import load_torch
        return load_torch(model, example_input, cfg.input_shape, exporter=cfg.exporter, opset=cfg.opset)
    if is_keras_model(model):
        return keras(model)
    if isinstance(model, (bytes, bytearray)) or type(model).__name__ == "ModelProto":
        return load_onnx(model, _onnx_shapes(cfg))
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError("file not found", str(path))
        check_file(path, "model", MAX_MODEL_BYTES, allow_dir=True, error=ModelLoadError)
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES or is_saved_model_dir(path):
            return keras(path)
        if suffix in ONNX_SUFFIXES:
            return load_onnx(path, _onnx_shapes(cfg))
        if suffix in TORCH_SUFFIXES:
            from .frontends.torch import load_torch_file
            return load_torch_file(path, cfg.input_shape, trust_pickle=cfg.trust_pickle,
                                   exporter=cfg.exporter, opset=cfg.opset)
        raise ModelLoadError(f"unknown model format '{suffix or path.name}' "
                             f"(supported: {', '.join(ALLOWED)}, a SavedModel folder)", str(path))
    raise ModelLoadError(f"cannot load a {type(model).__name__}: pass a path, an onnx.ModelProto, "
                         "a torch.nn.Module or a keras.Model")


def _onnx_shapes(cfg: ExportConfig):
    # For ONNX files --input-shape names the (single) input's full shape.
    return {"*": cfg.input_shape} if cfg.input_shape else None


def model_name(model) -> str:
    if isinstance(model, (str, Path)):
        return Path(model).stem or Path(model).name
    return type(model).__name__
