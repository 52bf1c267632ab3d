"""The stages of ``api.export``, in order: load -> passes -> shrink -> calibrate -> fix -> emit -> prove.

Each stage is a function ``(ExportState) -> ExportState``. The state is plain data (graphs, sample sets,
the Report being filled in, the bytes of every file), so a stage reads and tests on its own. Calibration
(ranges and QuantParams) and emission (the files) are separate stages: ``fix`` rewrites the int8 graph in
between, and both artifacts are written from what it leaves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import artifacts
from .config import ExportConfig
from .errors import ConfigError, ShapeError
from .ir import Graph
from .report import Report
from .calibrate_stage import calibrate, layer_rules  # noqa: F401  (layer_rules: its old import path)
from .stage_data import read_samples, timed, training_data, validation_data

Progress = Callable[[str, int, int], None]  # (stage, samples just done, total samples)


@dataclass(frozen=True)
class ExportInputs:
    """What the caller gave: the model and where its data comes from (paths, arrays or iterables)."""
    model: Any
    calib: Any = None
    val: Any = None
    val_labels: Any = None
    train: Any = None
    train_labels: Any = None
    example_input: Any = None
    custom_objects: dict | None = None


@dataclass
class ExportState:
    """What the stages hand each other; each stage fills in its part."""
    given: ExportInputs
    cfg: ExportConfig
    out: Path  # the (staging) folder the files are written into
    profile: Any  # the target profile (targets.profile.TargetProfile)
    progress: Progress | None = None
    calib: Any = None  # the calibration source, a SampleSet once read (equalize reads it first)
    graph: Graph | None = None  # the float graph being exported
    original: Graph | None = None  # the float graph before shrinking
    checks: list = field(default_factory=list)  # rewrite checks (equalize) for the report
    shape_note: str | None = None  # where the input shape came from, when not from the model or the user
    load_note: str | None = None  # how the model was loaded, when that is worth saying (old SavedModels)
    shrink: dict | None = None  # the shrink section of the report, with plan.json's content
    stages: dict = field(default_factory=dict)  # float graph after each shrink step (size ladder)
    report: Report | None = None
    samples: Any = None  # the calibration SampleSet (None with a calibration file)
    ranges: dict | None = None  # activation tensor -> (min, max)
    rules: Any = None  # calibration.quantize.QuantRules used for the weights
    qgraph: Graph | None = None  # the int8 graph: QuantParams on every tensor
    calibration: Any = None  # calibration.Calibration: the method of each tensor, bias corrections
    paths: dict[str, Path] = field(default_factory=dict)  # kind -> written file
    timing: dict[str, float] = field(default_factory=dict)  # stage (or "stage.part") -> wall seconds, summed

    @property
    def quantize(self) -> bool:
        return self.given.calib is not None or self.cfg.calibration_file is not None


def run_stages(s: ExportState) -> ExportState:
    """Every stage in order, each timed; the report gets the seconds (report.timing)."""
    for stage in STAGES:
        with timed(s, stage.__name__):
            s = stage(s)
    s.report.timing = {k: round(v, 3) for k, v in s.timing.items()}
    return s


def load(s: ExportState) -> ExportState:
    """The model -> the float IR graph, cleaned up (``api.load``); per-layer keys checked against it."""
    from .loading import load as load_model
    from .layer_settings import bind_layers

    s.calib = s.given.calib
    try:
        s.graph = load_model(s.given.model, config=s.cfg, example_input=s.given.example_input,
                             custom_objects=s.given.custom_objects)
    except ShapeError as exc:  # dims the model leaves open: the calibration samples have a full shape
        shape = _shape_from_samples(s) if "--input-shape" in str(exc) else None
        if shape is None:
            raise
        s.cfg = s.cfg.replace(input_shape=shape)
        s.graph = load_model(s.given.model, config=s.cfg, example_input=s.given.example_input,
                             custom_objects=s.given.custom_objects)
        s.shape_note = (f"input shape {'x'.join(map(str, shape))} taken from the calibration samples "
                        "(the model leaves dims open; --input-shape sets it)")
    s.cfg = bind_layers(s.cfg, s.graph)
    if s.cfg.layers:  # an int16 / float layer the target cannot run: refused before the long work
        from .precision import check_precision, layer_precisions
        check_precision(s.graph, layer_precisions(s.graph, s.cfg), s.profile)
    from .frontends.keras import loader_note

    s.load_note = loader_note(s.given.model)  # which TensorFlow loader read a SavedModel folder
    return s


def _shape_from_samples(s: "ExportState") -> tuple[int, ...] | None:
    """(1, *sample shape) of the calibration samples, read once (kept for calibration), or None."""
    if s.calib is None or s.cfg.calibration_file:
        return None
    from .calibration import load_samples

    s.calib = load_samples(s.calib, mean=s.cfg.mean, std=s.cfg.std, limit=s.cfg.calib_limit)
    return (1, *s.calib.sample_shape)


def passes(s: ExportState) -> ExportState:
    """--equalize, kept only when the int8 output error on the calibration samples does not grow."""
    if not s.cfg.equalize:
        return s
    from .calibration.rewrite_check import keep_if_not_worse
    from .exporter.passes import run_passes
    from .pipeline import build_pipeline, stage

    graph, cfg = s.graph, s.cfg
    new = run_passes(graph, stage(build_pipeline(cfg), "equalize"))
    if s.calib is None:
        s.graph = new
        return s
    s.calib = read_samples(s.calib, graph, cfg, limit=cfg.calib_limit)
    opts = {"percentile": cfg.percentile} if cfg.calibration == "percentile" else {}
    method = "minmax" if cfg.calibration == "auto" else cfg.calibration  # the check compares like with like
    s.graph, check = keep_if_not_worse(graph, new, s.calib.as_array(), "equalize", method, **opts)
    s.checks.append(check)
    return s


def shrink(s: ExportState) -> ExportState:
    """--prune / --separable (then distillation from the original); the report describes the result."""
    from .exporter.emit_tflite import to_tflite
    from .ir.summary import summarize
    from .shrink import shrink_stages, wants_shrink

    s.original = s.graph
    if wants_shrink(s.cfg):
        if len(s.graph.inputs) > 1:
            raise ConfigError(f"--prune/--separable/--cluster handle single-input models; this one has "
                              f"{len(s.graph.inputs)} inputs ({', '.join(s.graph.inputs)})", "prune")
        x_train, y_train = training_data(s, s.graph)
        s.graph, s.shrink, s.stages = shrink_stages(s.graph, s.cfg, x_train, y_train, s.progress)
        s.shrink["original_float_tflite_bytes"] = len(to_tflite(s.original, int8=False))
    graph = s.graph
    from .loading import model_name

    s.report = Report(model=model_name(s.given.model), target=s.profile.name,
                      inputs={n: list(graph.tensors[n].shape) for n in graph.inputs},
                      outputs={n: list(graph.tensors[n].shape) for n in graph.outputs},
                      summary=summarize(graph)["totals"])
    if s.shrink:
        s.report.shrink = {k: v for k, v in s.shrink.items() if k != "plan"}
    if s.shape_note:
        s.report.notes.append(s.shape_note)
    if s.load_note:
        s.report.notes.append(s.load_note)
    return s



def fix(s: ExportState) -> ExportState:
    """--qat-epochs, then --accuracy-budget: the ladder of fixes (budget.py), each candidate calibrated
    and distilled again by these stages from the settings it proposes."""
    s = qat(s)
    if not s.cfg.accuracy_budget:
        return s
    if s.qgraph is None:
        raise ConfigError("--accuracy-budget needs calibration data (--calib)", "accuracy_budget")
    from .budget import MAX_SAMPLES, meet_budget

    x, labels, where = validation_data(s, limit=MAX_SAMPLES)  # all given (--val-limit is the runtimes' share)
    return meet_budget(s, (calibrate, qat), x, labels, where)


def qat(s: ExportState) -> ExportState:
    """--qat-epochs: fake-quant distillation of the int8 graph from the float one (weights retrained
    through int8 rounding, activation ranges kept); weight QuantParams are then derived again."""
    if not s.cfg.qat_epochs:
        return s
    if s.qgraph is None:
        raise ConfigError("--qat-epochs needs calibration data (--calib or --calibration-file)", "qat_epochs")
    from .calibration.quantize import quantize_graph
    from .exporter.finetune import distill

    x, labels = training_data(s, s.graph)
    if x is None:
        raise ConfigError("--qat-epochs needs --train data (or --calib samples to reuse)", "qat_epochs")
    trained, history = distill(s.qgraph, s.graph, x, labels, epochs=s.cfg.qat_epochs, lr=s.cfg.finetune_lr,
                               fake_quant=True, progress=s.progress)
    for t in trained.tensors.values():
        t.quant = None  # the weights moved: their scales are derived again, activation ranges kept
    s.qgraph = quantize_graph(trained, s.ranges, s.rules)
    s.report.calibration["qat"] = history
    s.report.notes.append(f"quantization-aware distillation: {history['epochs_run']} epochs on {len(x)} samples "
                          f"(best epoch {history['best_epoch']}; 0 keeps the calibrated weights)")
    return s


def emit(s: ExportState) -> ExportState:
    """The files: plan.json, the float .onnx/.tflite, and from the int8 graph the int8 .onnx/.tflite and
    calibration.json; written into the staging folder (a later failure still leaves --out as it was)."""
    from .exporter.emit_onnx import to_onnx
    from .exporter.emit_tflite import to_tflite
    from .shrink import plan_bytes

    files = {"plan": plan_bytes(s.shrink)} if s.shrink else {}
    files.update(float_onnx=to_onnx(s.graph).SerializeToString(), float_tflite=to_tflite(s.graph, int8=False))
    if s.qgraph is not None:
        from .calibration.quantize import save_calibration
        from .exporter.emit_onnx_qdq import to_onnx_qdq

        files.update(int8_onnx=to_onnx_qdq(s.qgraph, activations=s.cfg.onnx_activations).SerializeToString(),
                     int8_tflite=_with_arena_plan(_smallest_arena_tflite(s.qgraph, s.cfg.io), s.cfg),
                     calibration=save_calibration(s.qgraph, s.ranges, s.cfg.calibration,
                                                  s.rules.per_channel_nodes, s.calibration.methods,
                                                  s.calibration.bias_deltas,
                                                  s.calibration.adaround_flips).encode())
        from .precision import report_precision
        report_precision(s.report, s.qgraph, s.profile, s.cfg.io)  # int16 / float layers and their cost
    for kind, data in files.items():
        s.paths[kind] = s.out / artifacts.EXPORT_FILES[kind]
        artifacts.write_bytes(s.paths[kind], data)
        s.report.artifacts[kind] = {"path": str(s.paths[kind]), "bytes": len(data)}
    return s


def prove(s: ExportState) -> ExportState:
    """Run the artifacts on the target's runtimes: accuracy, per-layer error, memory, latency, verdict."""
    if s.qgraph is None or not s.cfg.validate:
        return s
    from .prove import LAYER_SAMPLES, check_accuracy, check_layers, check_target, reference_outputs

    x, labels, where = validation_data(s)
    report, paths = s.report, s.paths
    check_target(report, paths["int8_tflite"], s.profile, s.qgraph)
    if x is None:
        report.notes.append("no validation data: accuracy and per-layer error were not measured")
        return s
    if labels is not None and len(labels) != len(x):
        raise ConfigError(f"{len(labels)} labels for {len(x)} validation samples")
    reference = reference_outputs(paths["float_onnx"], x)
    check_accuracy(report, {k: paths[k] for k in ("int8_tflite", "int8_onnx", "float_tflite")}, x, labels,
                   reference, s.profile.runtime, s.progress, s.cfg.validation)
    check_layers(report, paths["int8_tflite"], paths["float_tflite"], x[:LAYER_SAMPLES[s.cfg.validation]],
                 s.qgraph, s.progress)
    report.notes.append(f"validated on {len(x)} samples of {where}")
    if report.shrink:
        _compare_with_original(report, s.original, x, labels)
    cluster = (s.shrink or {}).get("cluster") or {}
    if not (s.cfg.size_ladder or cluster or s.cfg.sparsity):  # every rung is run again: only when asked
        return s
    from .ladder import size_ladder

    report.ladder = size_ladder(s.original, s.stages, paths["int8_tflite"].read_bytes(), x, labels,
                                cluster.get("layers"))
    return s


STAGES = (load, passes, shrink, calibrate, fix, emit, prove)



def _compare_with_original(report: Report, original: Graph, x, labels) -> None:
    """After shrinking: how the final artifacts compare with the ORIGINAL float model (not the shrunk one)."""
    from .ir.torch_exec import run
    from .targets.metrics import compare
    from .targets.validate import run_artifact

    ref = run(original, [x])[original.outputs[0]]
    path = report.artifacts["int8_tflite"]["path"]
    int8, _ = run_artifact(Path(path).read_bytes(), "tflite", "litert-ref", x, ref.shape, where=path)
    report.shrink["int8_tflite_vs_original_float"] = compare(ref, int8.reshape(ref.shape), labels)


def _smallest_arena_tflite(qgraph: Graph, io: str) -> bytes:
    """The int8 .tflite with the operator order whose arena (edgepack's TFLM planner estimate) is smallest:
    the graph's own order or the live-bytes order of exporter/schedule.py (ties: the graph's own)."""
    from .exporter.emit_tflite import to_tflite
    from .exporter.schedule import memory_order
    from .targets.memory import estimate_memory

    files = [to_tflite(qgraph, int8=True, io=io)]
    order = memory_order(qgraph)
    if [id(n) for n in order] != [id(n) for n in qgraph.nodes]:
        files.append(to_tflite(qgraph, int8=True, io=io, order=order))
    return min(files, key=lambda data: estimate_memory(data).arena_bytes)


def _with_arena_plan(tflite: bytes, cfg) -> bytes:
    """--arena-plan offline (auto: on TFLM targets): edgepack's arena plan stored in the file (TFLM honours it;
    unchanged when TFLM's own plan is already as small)."""
    from .targets.offline_plan import add_offline_plan, plan_offline
    from .targets.profile import load_profile

    if not plan_offline(cfg.arena_plan, load_profile(cfg.target).runtime):
        return tflite

    return add_offline_plan(tflite)
