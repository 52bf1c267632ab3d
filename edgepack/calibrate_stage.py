"""The calibrate stage of the export (export_stages.py): sample data or a calibration.json -> ranges ->
QuantParams on every tensor; with its choices: the global-pool form, per-channel FC weights (re-run
per-tensor where a tight TFLM arena needs it, fc_budget.py), the per-layer settings and int16 / float marks."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .config import ExportConfig
from .errors import ConfigError
from .ir import Graph
from .report import Report
from .stage_data import read_samples, timed

log = logging.getLogger("edgepack.export_stages")  # the logger name users already filter on


def calibrate(s):
    """The calibrate stage (``ExportState -> ExportState``): sample data (or a calibration.json) -> ranges
    -> QuantParams on every tensor (``s.qgraph``)."""
    if not s.quantize:
        return s
    from .calibration import calibrate as calibrate_samples
    from .calibration.fc_weights import choose_fc_weights
    from .calibration.pool_form import choose_pool_forms
    from .calibration.quantize import load_adaround_flips, load_bias_deltas, load_calibration, load_per_channel_nodes
    from .input_files import read_text

    graph, cfg, report = s.graph, s.cfg, s.report
    ranges = bias_deltas = saved_channels = text = flips = None
    if cfg.calibration_file:
        path = Path(cfg.calibration_file)
        if not path.exists():
            raise ConfigError(f"calibration file not found: {path}", "calibration_file")
        text = read_text(path, "calibration file", error=ConfigError)
        ranges, bias_deltas = load_calibration(text, str(path)), load_bias_deltas(text)
        flips = load_adaround_flips(text)
        saved_channels = load_per_channel_nodes(text)  # the file's own choice: reusing it gives the same model
    else:
        s.samples = read_samples(s.calib, graph, cfg, limit=cfg.calib_limit)
        _warn_raw_bytes(graph, s.samples, cfg, report)
    floats: dict = {}  # the float Gemm inputs the pool-form check computed, for the FC weight check
    with timed(s, "calibrate.pool_form"):
        graph, pools = choose_pool_forms(graph, s.samples.as_array()[:64] if s.samples is not None else None,
                                         s.profile.global_pool, s.profile.supports("MEAN"), text, floats)
    total = len(s.samples) if s.samples is not None else 0
    tick = (lambda n: s.progress("calibrating", n, total)) if s.progress else None
    opts = {"percentile": cfg.percentile} if cfg.calibration == "percentile" else {}
    with timed(s, "calibrate.fc_weights"):
        fc = choose_fc_weights(graph, s.samples.as_array()[:64] if s.samples is not None else None,
                               float_values=floats or None)

    def run(per_channel):
        per_tensor, s.rules = layer_rules(graph, cfg, per_channel)
        with timed(s, "calibrate.ranges"):
            return calibrate_samples(graph, s.samples, cfg.calibration, progress=tick, ranges=ranges, rules=s.rules,
                                     bias_correction=cfg.bias_correction, bias_deltas=bias_deltas,
                                     per_tensor=per_tensor, adaround=cfg.adaround, adaround_flips=flips,
                                     workers=cfg.workers, **opts)
    cal = run(fc.per_channel if saved_channels is None else saved_channels)
    if saved_channels is None:  # a tight TFLM arena: per-channel FC only where it fits (fc_budget.py)
        from .fc_budget import fc_choice_for_target, forced_per_channel, note

        reduced = fc_choice_for_target(fc, cal.qgraph, s.profile, forced_per_channel(graph, cfg))
        if reduced is not None:
            fc, cal = reduced, run(reduced.per_channel)
            report.notes.append(note(reduced))
    s.qgraph, s.ranges, s.calibration = cal.qgraph, cal.ranges, cal
    if cfg.layers:  # int16 / float layers: marked on the int8 graph, both emitters follow the marks
        from .precision import apply_precision, float_layers_keep_float_bias, layer_precisions
        apply_precision(s.qgraph, layer_precisions(s.qgraph, cfg), s.profile)
        float_layers_keep_float_bias(s.qgraph, cal.bias_deltas)  # so calibration.json omits them too
    report.calibration = {"method": cfg.calibration, "samples": total,
                          "from_file": cfg.calibration_file, "fc_weights": fc.to_json(), **cal.section}
    if pools:  # AVERAGE_POOL_2D (shared scale) or MEAN (own scale): the target's preference, or by error
        report.calibration["global_pool"] = pools
    if cfg.layers:
        report.calibration["layers"] = {k: v.given() for k, v in cfg.layers.items()}
    report.notes.append(f"calibrated {len(s.ranges)} tensors with {cfg.calibration}"
                        + (f" on {total} samples" if total else f" from {cfg.calibration_file}"))
    report.notes += cal.notes
    report.calibration["rewrites"] = [c.to_json() for c in s.checks]
    report.notes += [c.note for c in s.checks]
    if cfg.lint:
        from .calibration.lint import lint_graph

        several = len(graph.inputs) > 1  # lint's sample statistics take one input: weights alone then
        sample_x = s.samples.as_array()[:64] if s.samples is not None and not several else None
        with timed(s, "calibrate.lint"):
            report.lint = [f.to_json() for f in lint_graph(graph, sample_x)]
    return s


def layer_rules(graph: Graph, cfg: ExportConfig, fc_per_channel: frozenset):
    """The per-layer settings as calibration takes them: ({output tensor: (method, observer options)} of the
    nodes observed otherwise than globally, QuantRules with the per-channel choices)."""
    from .calibration.quantize import QuantRules

    per_tensor, on, off = {}, set(), set()
    for node in graph.nodes if cfg.layers else ():
        layer = cfg.layer(node.name, node.op)
        if (layer.calibration, layer.percentile) != (cfg.calibration, cfg.percentile):
            opts = {"percentile": layer.percentile} if layer.calibration == "percentile" else {}
            per_tensor.update({out: (layer.calibration, opts) for out in node.outputs})
        if layer.per_channel is not None:
            (on if layer.per_channel else off).add(node.name)
    ops = {n.name: n.op for n in graph.nodes}
    gemm = frozenset((set(fc_per_channel) | {n for n in on if ops[n] == "Gemm"}) - off)
    conv_off = frozenset(n for n in off if ops[n] != "Gemm")
    return per_tensor, QuantRules(per_channel_nodes=gemm, per_tensor_nodes=conv_off)


def _warn_raw_bytes(graph: Graph, samples, cfg: ExportConfig, report: Report) -> None:
    """A note (and a log warning) when the samples look like raw 0-255 pixels for a model whose first
    layer takes them as they are: most models are trained on [0, 1] or normalised inputs."""
    from .calibration.data import looks_like_raw_bytes

    if cfg.mean is not None or cfg.std is not None or len(graph.inputs) > 1:
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
