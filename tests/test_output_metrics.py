"""The report picks its metrics by what the output is, and says how far TFLM is from the reference and why."""
from __future__ import annotations

import numpy as np

from edgepack.cli_tables import _equal_pct
from edgepack.targets.metrics import compare, output_kind
from edgepack.targets.tflite_file import TfliteModel, TfliteOp
from edgepack.targets.validate import tflm_vs_reference


def test_dense_maps_get_per_position_argmax_not_top1():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 3, 5, 6))
    noisy = ref + 0.01 * rng.standard_normal(ref.shape)
    m = compare(ref, noisy)
    assert output_kind(ref.shape) == ("dense", 1) and "top1_agreement" not in m
    assert m["per_position_agreement"] == np.mean(ref.argmax(1) == noisy.argmax(1)) > 0.9
    assert "per-position argmax" in m["metrics_used"] and "does not apply" in m["metrics_used"]
    seq = compare(ref[:, 0], ref[:, 0])  # (N, T, C): argmax over the last axis
    assert seq["output_kind"] == "dense" and seq["per_position_agreement"] == 1.0


def test_class_scores_keep_top1():
    ref = np.eye(4)[[0, 1, 2, 3, 0]] + 0.1
    m = compare(ref, ref[:, ::-1].copy(), labels=np.array([0, 1, 2, 3, 0]))
    assert m["output_kind"] == "class scores" and m["top1_agreement"] < 1 and "top-1" in m["metrics_used"]


def test_tflm_difference_is_measured_and_explained():
    ref = np.zeros(10000, np.int8)
    tflm = ref.copy()
    tflm[:2] = [1, 24]  # 99.98% equal, max 24 LSB
    info = TfliteModel(0, [], [TfliteOp(0, "FULLY_CONNECTED", [], [])] * 3, [], [])
    d = tflm_vs_reference(tflm, ref, info)
    assert d["max_lsb"] == 24 and d["identical_fraction"] == 0.9998 and not d["bit_exact"]
    assert "rounds twice" in d["why"] and "3 FULLY_CONNECTED" in d["why"]
    assert _equal_pct(d["identical_fraction"]) == "99.98%" and _equal_pct(1.0) == "100.0%"
    assert "why" not in tflm_vs_reference(ref, ref, info)
