"""The one orchestrator: load -> passes -> (calibrate -> quantize) -> emit -> (validate) -> Report."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from . import artifacts
from .config import ExportConfig
from .errors import BudgetExceeded, ConfigError, ModelLoadError
from .input_files import MAX_MODEL_BYTES, check_file, read_bytes, read_text
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


Progress = Callable[[str, int, int], None]  # (stage, samples just done, total samples)


def export(model, calib=None, out="edgepack_out", *, val=None, val_labels=None, train=None, train_labels=None,
           config: ExportConfig | None = None, example_input=None, progress: Progress | None = None,
           custom_objects: dict | None = None, **settings) -> Report:
    """Export ``model`` into the folder ``out`` and return the Report (also saved as report.json).

    Always writes model.float.onnx and model.float.tflite. With ``calib`` sample data (a path or an
    iterable of arrays, see ``calibration.load_samples``) or ``calibration_file=``, also writes
    model.int8.onnx, model.int8.tflite and calibration.json, all from one calibration.
    Then (``validate``, on by default) the artifacts run on the ``target``'s runtimes on ``val`` data
    (default: the calibration samples) and report.html is written. With ``fail_on_budget`` a model that
    does not fit the target raises BudgetExceeded after the report is written.
    ``prune`` / ``separable`` shrink the graph first (plan.json); ``finetune_epochs`` distils the shrunk
    graph from the original on ``train`` data (default: the calibration samples).
    Settings are the fields of ExportConfig, given as keywords or as ``config``.
    Every file is built in a staging folder and moved into ``out`` only when the whole run (validation
    included) succeeded; a second run into the same ``out`` meanwhile is refused (see artifacts.py)."""
    cfg = (config or ExportConfig()).replace(**settings)
    with artifacts.staged_output(out, artifacts.EXPORT_FILES.values(), force=cfg.force) as stage:
        report, profile = _export_into(stage.dir, model, calib, val, val_labels, train, train_labels, cfg,
                                       example_input, progress, custom_objects)
        report.relocate(stage.dir, Path(out))  # the report names the files where they will be
        report.save(stage.path(artifacts.EXPORT_FILES["report"]))
        if cfg.validate:
            report.save_html(stage.path(artifacts.EXPORT_FILES["report_html"]))
    log.info("wrote %s", ", ".join(a["path"] for a in report.artifacts.values()))
    if cfg.fail_on_budget and report.verdict and not report.verdict["fits"]:
        raise BudgetExceeded(f"the model does not fit {profile.name}: "
                             + "; ".join(m for m in report.verdict["messages"] if "does not fit" in m
                                         or "unsupported" in m))
    return report


def _export_into(out: Path, model, calib, val, val_labels, train, train_labels, cfg: ExportConfig,
                 example_input, progress, custom_objects):
    """The work of ``export``, writing into the (staging) folder ``out``: (Report, target profile)."""
    from .exporter.emit_onnx import to_onnx
    from .exporter.emit_tflite import to_tflite
    from .ir.summary import summarize
    from .shrink import plan_bytes, shrink, wants_shrink

    quantize = calib is not None or cfg.calibration_file is not None
    paths = {kind: out / name for kind, name in artifacts.EXPORT_FILES.items()}
    profile = _profile(cfg.target)

    graph = load(model, config=cfg, example_input=example_input, custom_objects=custom_objects)
    checks = []
    if cfg.equalize:
        graph, calib, checks = _equalize(graph, calib, cfg)
    files, original = {}, graph
    if wants_shrink(cfg):
        x_train, y_train = _training_data(train, train_labels, calib, graph, cfg)
        graph, section = shrink(graph, cfg, x_train, y_train, progress)
        files["plan"] = plan_bytes(section)
        section["original_float_tflite_bytes"] = len(to_tflite(original, int8=False))
    report = Report(model=model_name(model), target=profile.name,
                    inputs={n: list(graph.tensors[n].shape) for n in graph.inputs},
                    outputs={n: list(graph.tensors[n].shape) for n in graph.outputs},
                    summary=summarize(graph)["totals"])
    if wants_shrink(cfg):
        report.shrink = {k: v for k, v in section.items() if k != "plan"}
    files.update(float_onnx=to_onnx(graph).SerializeToString(), float_tflite=to_tflite(graph, int8=False))
    qgraph = None
    if quantize:
        quant_files, qgraph, samples = _quantize(graph, calib, cfg, report, progress)
        files.update(quant_files)
        report.calibration["rewrites"] = [c.to_json() for c in checks]
        report.notes += [c.note for c in checks]
        if cfg.lint:
            from .calibration.lint import lint_graph

            sample_x = samples.as_array()[:64] if samples is not None else None
            report.lint = [f.to_json() for f in lint_graph(graph, sample_x)]
    # Written into the staging folder: a failure later (validation) still leaves --out as it was.
    for kind, data in files.items():
        artifacts.write_bytes(paths[kind], data)
        report.artifacts[kind] = {"path": str(paths[kind]), "bytes": len(data)}
    if quantize and cfg.validate:
        data = _validation_data(val, val_labels, samples, graph, cfg)
        _prove(report, qgraph, paths, data, profile, progress)
        if report.shrink and data[0] is not None:
            _compare_with_original(report, original, data)
    return report, profile


def _equalize(graph: Graph, calib, cfg: ExportConfig):
    """--equalize, kept only when the int8 output error on the calibration samples does not grow.
    Returns (graph, calib as a SampleSet read once, [the check])."""
    from .calibration import load_samples
    from .calibration.rewrite_check import keep_if_not_worse
    from .exporter.passes import run_passes
    from .pipeline import build_pipeline, stage

    new = run_passes(graph, stage(build_pipeline(cfg), "equalize"))
    if calib is None:
        return new, calib, []
    calib = load_samples(calib, graph.tensors[graph.inputs[0]].shape, input_name=graph.inputs[0],
                         mean=cfg.mean, std=cfg.std, limit=cfg.calib_limit)
    opts = {"percentile": cfg.percentile} if cfg.calibration == "percentile" else {}
    graph, check = keep_if_not_worse(graph, new, calib.as_array(), "equalize", cfg.calibration, **opts)
    return graph, calib, [check]


def _training_data(train, train_labels, calib, graph: Graph, cfg: ExportConfig):
    """(x, labels) for distillation and taylor importance: ``train`` if given, else the calibration data."""
    from .calibration import load_labels, load_samples

    source = train if train is not None else calib
    if source is None:
        return None, None
    s = load_samples(source, graph.tensors[graph.inputs[0]].shape, input_name=graph.inputs[0],
                     mean=cfg.mean, std=cfg.std)
    labels = load_labels(train_labels) if isinstance(train_labels, (str, Path)) else train_labels
    if labels is None:
        labels = s.labels
    return s.as_array(), (None if labels is None else np.asarray(labels))


def _compare_with_original(report: Report, original: Graph, data) -> None:
    """After shrinking: how the final artifacts compare with the ORIGINAL float model (not the shrunk one)."""
    from .ir.torch_exec import run
    from .targets.metrics import compare
    from .targets.validate import run_artifact

    x, labels, _ = data
    ref = run(original, [x])[original.outputs[0]]
    path = report.artifacts["int8_tflite"]["path"]
    int8, _ = run_artifact(Path(path).read_bytes(), "tflite", "litert-ref", x, ref.shape, where=path)
    report.shrink["int8_tflite_vs_original_float"] = compare(ref, int8.reshape(ref.shape), labels)


def _profile(target):
    from .targets.profile import load_profile

    return load_profile(target)


def _validation_data(val, val_labels, calib_samples, graph: Graph, cfg: ExportConfig):
    """(samples array, labels or None, where they came from)."""
    from .calibration import load_labels, load_samples

    if val is None:
        s = calib_samples
        where = "the calibration samples (pass val= / --val for held-out data)"
    else:
        s = load_samples(val, graph.tensors[graph.inputs[0]].shape, input_name=graph.inputs[0],
                         mean=cfg.mean, std=cfg.std, limit=cfg.val_limit)
        where = "the validation data"
    labels = load_labels(val_labels) if isinstance(val_labels, (str, Path)) else val_labels
    if labels is None and s is not None:
        labels = s.labels
    x = s.as_array()[: cfg.val_limit] if s is not None else None
    return x, (None if labels is None else np.asarray(labels)[: cfg.val_limit]), where


def _prove(report: Report, qgraph: Graph, paths: dict, data, profile, progress) -> None:
    from .prove import check_accuracy, check_layers, check_target, reference_outputs

    x, labels, where = data
    check_target(report, paths["int8_tflite"], profile, qgraph)
    if x is None:
        report.notes.append("no validation data: accuracy and per-layer error were not measured")
        return
    if labels is not None and len(labels) != len(x):
        raise ConfigError(f"{len(labels)} labels for {len(x)} validation samples")
    reference = reference_outputs(paths["float_onnx"], x)
    check_accuracy(report, {k: paths[k] for k in ("int8_tflite", "int8_onnx", "float_tflite")}, x, labels,
                   reference, profile.runtime, progress)
    check_layers(report, paths["int8_tflite"], paths["float_tflite"], x[:32])
    report.notes.append(f"validated on {len(x)} samples of {where}")


def _quantize(graph: Graph, calib, cfg: ExportConfig, report: Report, progress):
    from .calibration import calibrate_graph, load_samples
    from .calibration.fc_weights import choose_fc_weights
    from .calibration.quantize import QuantRules, load_calibration, load_per_channel_nodes, save_calibration
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
        ranges = load_calibration(read_text(path, "calibration file", error=ConfigError), str(path))
    else:
        samples = load_samples(calib, input_shape, input_name=graph.inputs[0], mean=cfg.mean, std=cfg.std,
                               limit=cfg.calib_limit)
        _warn_raw_bytes(graph, samples, cfg, report)
    total = len(samples) if samples is not None else 0
    tick = (lambda n: progress("calibrating", n, total)) if progress else None
    opts = {"percentile": cfg.percentile} if cfg.calibration == "percentile" else {}
    fc = choose_fc_weights(graph, samples.as_array()[:64] if samples is not None else None)
    per_channel = fc.per_channel
    if cfg.calibration_file:  # the file's own choice, so that reusing it gives the same model
        saved = load_per_channel_nodes(Path(cfg.calibration_file).read_text())
        per_channel = per_channel if saved is None else saved
    qgraph, ranges = calibrate_graph(graph, samples, cfg.calibration, progress=tick, ranges=ranges,
                                     rules=QuantRules(per_channel_nodes=per_channel), **opts)
    report.calibration = {"method": cfg.calibration, "samples": total,
                          "from_file": cfg.calibration_file, "fc_weights": fc.to_json()}
    report.notes.append(f"calibrated {len(ranges)} tensors with {cfg.calibration}"
                        + (f" on {total} samples" if total else f" from {cfg.calibration_file}"))
    files = {"int8_onnx": to_onnx_qdq(qgraph, activations=cfg.onnx_activations).SerializeToString(),
             "int8_tflite": to_tflite(qgraph, int8=True, io=cfg.io),
             "calibration": save_calibration(qgraph, ranges, cfg.calibration, per_channel).encode()}
    return files, qgraph, samples


def _warn_raw_bytes(graph: Graph, samples, cfg: ExportConfig, report: Report) -> None:
    """A note (and a log warning) when the samples look like raw 0-255 pixels for a model whose first
    layer takes them as they are: most models are trained on [0, 1] or normalised inputs."""
    from .calibration.data import looks_like_raw_bytes

    if cfg.mean is not None or cfg.std is not None:
        return
    first = [n.op for n in graph.nodes if graph.inputs[0] in n.inputs]
    if not first or first[0] not in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
        return  # the model does its own preprocessing first (Sub, Mul, Div, ...)
    x = np.concatenate([samples[i] for i in range(min(64, len(samples)))])  # a folder is read lazily
    if looks_like_raw_bytes(x):
        note = (f"the calibration samples look like raw 0-255 values (max {float(x.max()):g}, all integers) "
                "but the model's first layer takes its input as is: if it was trained on [0, 1] or "
                "normalised inputs, scale the samples or give --mean/--std")
        log.warning(note)
        report.notes.append(note)


def lint(model, calib=None, *, config: ExportConfig | None = None, example_input=None, **settings):
    """`edgepack lint`: quantization-friendliness findings (list of calibration.lint.Finding)."""
    from .calibration import load_samples
    from .calibration.lint import lint_graph

    cfg = (config or ExportConfig()).replace(**settings)
    graph = load(model, config=cfg, example_input=example_input)
    samples = None
    if calib is not None:
        samples = load_samples(calib, graph.tensors[graph.inputs[0]].shape, input_name=graph.inputs[0],
                               mean=cfg.mean, std=cfg.std, limit=cfg.calib_limit or 256)
    return lint_graph(graph, samples)


def _is_float_artifact(path: Path) -> bool:
    if path.suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load_model_from_string(read_bytes(path, "artifact", MAX_MODEL_BYTES))
        except Exception as exc:  # protobuf raises several types on garbage
            raise ModelLoadError(f"not a valid ONNX model: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                                 str(path)) from None
        return not any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    from .targets.tflite_file import read_tflite

    info = read_tflite(path)
    return info.tensors[info.inputs[0]].dtype == "float32" and "QUANTIZE" not in info.op_counts()


def validate_artifacts(artifacts, data, *, labels=None, reference=None, target="stm32l4r5", limit: int = 300,
                       progress: Progress | None = None, trust_pickle: bool = False,
                       trust_code: bool = False) -> Report:
    """`edgepack validate`: run .tflite/.onnx files on the target's runtimes and compare them with the float
    ``reference`` (a model file; default: a float artifact among those given). ``trust_pickle`` /
    ``trust_code``: as for export, for a reference model file whose loading runs code."""
    from .calibration import load_labels, load_samples
    from .prove import check_accuracy, check_layers, check_target, reference_outputs

    profile = _profile(target)
    paths = [Path(a) for a in artifacts]
    for p in paths:
        if not p.exists():
            raise ModelLoadError("file not found", str(p))
        check_file(p, "artifact", MAX_MODEL_BYTES, error=ModelLoadError)
        if p.suffix not in (".onnx", ".tflite"):
            raise ModelLoadError(f"validate takes .tflite and .onnx files, not '{p.suffix}'", str(p))
    samples = load_samples(data, limit=limit)
    x = samples.as_array()
    y = load_labels(labels) if labels is not None else samples.labels
    if y is not None:
        if len(y) < len(x):
            raise ConfigError(f"{len(y)} labels for {len(x)} samples (labels: {labels})")
        y = np.asarray(y)[: len(x)]  # --limit cuts the samples: cut their labels the same way
    floats = [p for p in paths if _is_float_artifact(p)]
    report = Report(model=paths[0].stem, target=profile.name)
    ref_path = Path(reference) if reference else (floats[0] if floats else None)
    ref_out = None
    if ref_path is not None:
        if not ref_path.exists():
            raise ModelLoadError("file not found", str(ref_path))
        if ref_path.suffix in (".onnx", ".tflite"):
            ref_out = reference_outputs(ref_path, x)
        else:
            from .exporter.emit_onnx import to_onnx
            from .targets.validate import run_artifact

            trust = ExportConfig(trust_pickle=trust_pickle, trust_code=trust_code)
            onnx_bytes = to_onnx(load(ref_path, config=trust)).SerializeToString()
            ref_out, _ = run_artifact(onnx_bytes, "onnx", "onnxruntime", x)
        report.notes.append(f"reference: {ref_path}")
    tested = {p.name: p for p in paths if p != ref_path}
    if not tested:
        raise ConfigError(f"nothing to compare: {ref_path} is the float reference and no other artifact was "
                          "given; give the int8 artifact too (e.g. model.int8.tflite model.float.tflite), or "
                          "--reference MODEL to compare it with")
    check_accuracy(report, tested, x, y, ref_out, profile.runtime, progress)
    int8_tflite = [p for p in paths if p.suffix == ".tflite" and p not in floats]
    float_tflite = [p for p in paths + ([ref_path] if ref_path else []) if p.suffix == ".tflite" and p in floats
                    or (p == ref_path and p.suffix == ".tflite")]
    if int8_tflite and float_tflite:
        check_layers(report, int8_tflite[0], float_tflite[0], x[:32])
    if int8_tflite:
        check_target(report, int8_tflite[0], profile)
        report.artifacts["int8_tflite"] = {"path": str(int8_tflite[0]), "bytes": int8_tflite[0].stat().st_size}
    report.notes.append(f"validated on {len(x)} samples from {data}")
    return report


def validate(artifacts, data, **kwargs) -> Report:
    """The public name of ``validate_artifacts`` (what `edgepack validate` runs)."""
    return validate_artifacts(artifacts, data, **kwargs)


def inspect(model, *, config: ExportConfig | None = None, **settings) -> dict:
    """`edgepack inspect`: inputs, outputs, every node with its op, shapes, params and MACs (a dict).

    ``model``: anything ``load`` takes, or a .tflite file (then quantization parameters are included)."""
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".tflite"):
        from .targets.tflite_file import read_tflite, summarize_tflite

        return summarize_tflite(read_tflite(model))
    from .ir.summary import summarize

    return summarize(load(model, config=(config or ExportConfig()).replace(**settings)))


def list_targets() -> list:
    """The target profiles edgepack knows (TargetProfile objects; `edgepack targets`)."""
    from .targets.profile import list_profiles

    return list_profiles()


def load_target(name) -> "object":
    """One target profile by name, alias or .toml path (a TargetProfile)."""
    return _profile(name)
