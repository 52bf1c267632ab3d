"""Measuring int8 .tflite files side by side for bench_tflite_converter.py: what is in a file, its
accuracy on LiteRT reference kernels and TFLite Micro, how two quantizations of one model differ op by
op, and LiteRT latency of several files interleaved in one loop."""
from __future__ import annotations

import time

import numpy as np

from common import interleaved, median
from edgepack.frontends.tf_quiet import quiet as silenced  # XNNPACK announces itself on stderr

def file_facts(data: bytes) -> dict:
    from edgepack.targets.tflite_file import read_tflite

    tm = read_tflite(data)
    weight_bytes = sum(t.data_bytes for t in tm.tensors)
    return {"bytes": tm.size, "weight_bytes": weight_bytes, "other_bytes": tm.size - weight_bytes,
            "ops": len(tm.ops), "op_counts": tm.op_counts(), "transposes": tm.op_counts().get("TRANSPOSE", 0),
            "tensors": len(tm.tensors), "op_sequence": [o.op for o in tm.ops],
            "op_versions": {o.op: o.version for o in tm.ops}, "signatures": sorted(tm.signatures),
            "metadata": _metadata_names(data)}


def _metadata_names(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(data, 0)
    return [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]


def _io_params(data: bytes):
    from edgepack.targets.tflite_file import read_tflite

    tm = read_tflite(data)
    return tm.tensors[tm.inputs[0]], tm.tensors[tm.outputs[0]]


def run_int8(data: bytes, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """Dequantized logits of every sample on LiteRT reference kernels and on TFLM (batch 1), plus the
    raw int8 outputs, so the two runtimes can be checked for bit-exactness."""
    from edgepack.targets.io_mapping import dequantize_output, quantize_input
    from edgepack.targets.runtimes import TFLM, LiteRT

    i, o = _io_params(data)
    runners = {"litert_ref": LiteRT(data, reference=True), "tflm": TFLM(data)}
    out = {}
    for name, rt in runners.items():
        raw = np.stack([rt.run(quantize_input(s[None], np.int8, i.scale[0], i.zero_point[0]))[0].reshape(-1)
                        for s in x_nhwc])
        out[name + "_raw"] = raw
        out[name] = dequantize_output(raw, o.scale[0], o.zero_point[0])
    return out


def accuracy_facts(outs: dict, float_logits: np.ndarray, y: np.ndarray) -> dict:
    ref, tflm = outs["litert_ref"], outs["tflm"]
    float_top1 = float_logits.argmax(1)
    err = np.abs(ref - float_logits)
    lsb = np.abs(outs["litert_ref_raw"].astype(np.int32) - outs["tflm_raw"].astype(np.int32))
    return {"acc_litert_ref": float((ref.argmax(1) == y).mean()),
            "acc_tflm": float((tflm.argmax(1) == y).mean()),
            "top1_agreement_with_float": float((ref.argmax(1) == float_top1).mean()),
            "logit_max_abs_err": float(err.max()), "logit_mean_abs_err": float(err.mean()),
            "tflm_vs_litert_ref_samples_differing": int(np.any(lsb > 0, axis=1).sum()),
            "tflm_vs_litert_ref_max_lsb": int(lsb.max())}


def intermediate_agreement(a: bytes, b: bytes, x_nhwc: np.ndarray) -> list[dict] | None:
    """Op by op (same op sequence needed), the fraction of int8 output values the two files share on
    LiteRT reference kernels: shows where two quantizations of one model start to differ."""
    from edgepack.targets.io_mapping import quantize_input
    from edgepack.targets.runtimes import LiteRT
    from edgepack.targets.tflite_file import read_tflite

    models = [read_tflite(a), read_tflite(b)]
    if [o.op for o in models[0].ops] != [o.op for o in models[1].ops]:
        return None
    same = np.zeros(len(models[0].ops))
    worst = np.zeros(len(models[0].ops), dtype=np.int64)
    runtimes = [LiteRT(data, reference=True, preserve_all=True) for data in (a, b)]
    for s in x_nhwc:
        values = []
        for tm, rt in zip(models, runtimes):
            i = tm.tensors[tm.inputs[0]]
            rt.run(quantize_input(s[None], np.int8, i.scale[0], i.zero_point[0]))
            t = rt.tensors()
            values.append([t[tm.tensors[o.outputs[0]].name].astype(np.int32) for o in tm.ops])
        for k, (va, vb) in enumerate(zip(*values)):
            same[k] += np.mean(va == vb)
            worst[k] = max(worst[k], int(np.abs(va - vb).max()))
    return [{"op": o.op, "identical_fraction": float(same[k] / len(x_nhwc)), "max_lsb_diff": int(worst[k])}
            for k, o in enumerate(models[0].ops)]


def quant_param_diff(a: bytes, b: bytes) -> dict:
    """How far the two files' scales are apart, op by op (the graphs must have the same op sequence):
    the largest relative difference of output scales, of weight scales where both have the same
    granularity, zero points, and per MAC op the number of weight scales in each file."""
    from edgepack.targets.tflite_file import read_tflite

    ta, tb = read_tflite(a), read_tflite(b)
    if [o.op for o in ta.ops] != [o.op for o in tb.ops]:
        return {"comparable": False}
    out_rel, w_rel, zp_diff, granularity = [], [], 0, []
    for oa, ob in zip(ta.ops, tb.ops):
        xa, xb = ta.tensors[oa.outputs[0]], tb.tensors[ob.outputs[0]]
        if xa.scale and xb.scale:
            out_rel.append(abs(xa.scale[0] - xb.scale[0]) / xb.scale[0])
            zp_diff = max(zp_diff, abs(xa.zero_point[0] - xb.zero_point[0]))
        if oa.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            wa, wb = np.asarray(ta.tensors[oa.inputs[1]].scale), np.asarray(tb.tensors[ob.inputs[1]].scale)
            granularity.append({"op": oa.op, "edgepack_weight_scales": int(wa.size),
                                "converter_weight_scales": int(wb.size)})
            if wa.shape == wb.shape and wa.size:
                w_rel.append(float(np.max(np.abs(wa - wb) / wb)))
    return {"comparable": True, "max_rel_output_scale_diff": float(max(out_rel, default=0.0)),
            "max_rel_weight_scale_diff": float(max(w_rel, default=0.0)), "max_zero_point_diff": int(zp_diff),
            "weight_scale_counts": granularity}


def litert_latency(files: dict[str, bytes], x_nhwc: np.ndarray, rounds: int, baseline: str) -> dict:
    """Median seconds per batch-1 invoke on LiteRT's default resolver (XNNPACK), 1 thread; the files'
    blocks interleaved round by round. Blocks are sized to ~20 ms so the clock resolution is moot.
    Every file's ratio to ``baseline`` is the ratio of the medians and the median of per-round ratios."""
    from edgepack.targets.io_mapping import quantize_input
    from edgepack.targets.runtimes import LiteRT

    interps = {}
    for k, data in files.items():
        with silenced():
            rt = LiteRT(data, reference=False, threads=1)
        i, _ = _io_params(data)
        rt.interp.set_tensor(rt.inputs[0]["index"], quantize_input(x_nhwc[:1], np.int8, i.scale[0], i.zero_point[0]))
        interps[k] = rt.interp
    for it in interps.values():  # warm up
        for _ in range(50):
            it.invoke()
    first = interps[baseline]
    t0 = time.perf_counter()
    for _ in range(50):
        first.invoke()
    block = max(10, int(0.02 / ((time.perf_counter() - t0) / 50)))

    def runner(k):
        invoke = interps[k].invoke
        return lambda: [invoke() for _ in range(block)]
    times = interleaved({k: runner(k) for k in interps}, rounds)
    per_call = {k: [t / block for t in v] for k, v in times.items()}
    ratios = {}
    for k in files:
        if k != baseline:
            paired = [a / b for a, b in zip(per_call[k], per_call[baseline])]
            ratios[k] = {"ratio_of_medians": median(per_call[k]) / median(per_call[baseline]),
                         "paired_ratio_median": median(paired), "paired_ratio_range": [min(paired), max(paired)]}
    return {"median_s": {k: median(v) for k, v in per_call.items()}, "block": block, "rounds": rounds,
            "baseline": baseline, "vs_baseline": ratios}
