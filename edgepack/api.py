"""The one orchestrator: load -> passes -> (calibrate -> quantize) -> emit -> (validate) -> Report."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from . import artifacts
from .config import ExportConfig
from .errors import BudgetExceeded, ConfigError, ModelLoadError
from .input_files import MAX_MODEL_BYTES, check_file, read_bytes
from .loading import ALLOWED, load, model_name  # noqa: F401  (load is public API)
from .report import Report

log = logging.getLogger(__name__)

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
    from .budget import missed

    if missed(report):  # --accuracy-budget not met: the report says which fixes were tried
        raise BudgetExceeded(missed(report))
    if cfg.fail_on_budget and report.verdict and not report.verdict.fits:
        raise BudgetExceeded(f"the model does not fit {profile.name}: "
                             + "; ".join(m for m in report.verdict.messages if "does not fit" in m
                                         or "unsupported" in m))
    return report


def _export_into(out: Path, model, calib, val, val_labels, train, train_labels, cfg: ExportConfig,
                 example_input, progress, custom_objects):
    """The work of ``export`` in the (staging) folder ``out``: its stages in order (export_stages.py),
    each taking and returning the plain-data ExportState. Returns (Report, target profile)."""
    from . import export_stages as st

    given = st.ExportInputs(model, calib, val, val_labels, train, train_labels, example_input, custom_objects)
    state = st.ExportState(given, cfg, out, _profile(cfg.target), progress)
    state = st.run_stages(state)
    return state.report, state.profile


def _profile(target):
    from .targets.profile import load_profile

    return load_profile(target)


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


def validate_artifacts(artifacts, data, *, labels=None, reference=None, config: ExportConfig | None = None,
                       progress: Progress | None = None, **settings) -> Report:
    """`edgepack validate`: run .tflite/.onnx files on the target's runtimes and compare them with the float
    ``reference`` (a model file; default: a float artifact among those given). Settings are the ExportConfig
    keys that apply (``target``, ``val_limit`` (alias ``limit``), ``trust_pickle`` / ``trust_code`` for a
    reference model file whose loading runs code), as keywords or as ``config``."""
    from .calibration import load_labels, load_samples
    from .prove import check_accuracy, check_layers, check_target

    if "limit" in settings:
        settings["val_limit"] = settings.pop("limit")
    cfg = (config or ExportConfig()).replace(**settings)
    target, limit = cfg.target, cfg.val_limit
    profile = _profile(target)
    paths = _artifact_paths(artifacts)
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
        ref_out = _reference_outputs(ref_path, x, cfg)
        report.notes.append(f"reference: {ref_path}")
    tested = {p.name: p for p in paths if p != ref_path}
    if not tested:
        raise ConfigError(f"nothing to compare: {ref_path} is the float reference and no other artifact was "
                          "given; give the int8 artifact too (e.g. model.int8.tflite model.float.tflite), or "
                          "--reference MODEL to compare it with")
    check_accuracy(report, tested, x, y, ref_out, profile.runtime, progress, arch=profile.arch)  # + qemu aarch64
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


def _artifact_paths(artifacts) -> list[Path]:
    paths = [Path(a) for a in artifacts]
    for p in paths:
        if not p.exists():
            raise ModelLoadError("file not found", str(p))
        check_file(p, "artifact", MAX_MODEL_BYTES, error=ModelLoadError)
        if p.suffix not in (".onnx", ".tflite"):
            raise ModelLoadError(f"validate takes .tflite and .onnx files, not '{p.suffix}'", str(p))
    return paths


def _reference_outputs(ref_path: Path, x: np.ndarray, cfg: ExportConfig) -> np.ndarray:
    """The float reference's outputs on ``x``: a .onnx/.tflite file as it is, any other model loaded."""
    from .prove import reference_outputs

    if not ref_path.exists():
        raise ModelLoadError("file not found", str(ref_path))
    if ref_path.suffix in (".onnx", ".tflite"):
        return reference_outputs(ref_path, x)
    from .exporter.emit_onnx import to_onnx
    from .targets.validate import run_artifact

    onnx_bytes = to_onnx(load(ref_path, config=cfg)).SerializeToString()
    return run_artifact(onnx_bytes, "onnx", "onnxruntime", x)[0]


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
