"""Ranges and scales must be usable: a calibration sample of 3e38 (or a broken calibration.json) would
otherwise give a scale of 1e36 and an int8 model that is all zeros, or NaN scales. Refused with the tensor."""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from ..ir import Graph

MAX_SCALE = 1e6  # an int8 step of a million: a range of +-1.3e8, beyond any real activation or weight


def check_ranges(ranges: dict) -> None:
    """Every (min, max) is finite and narrow enough for a usable int8 scale."""
    for name in sorted(ranges):
        lo, hi = (float(v) for v in ranges[name])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise DataError(f"tensor '{name}' has the range [{lo:.3g}, {hi:.3g}], not finite; the calibration "
                            "samples or the calibration file hold NaN/Inf")
        if (max(hi, 0.0) - min(lo, 0.0)) / 255 > MAX_SCALE:
            raise DataError(f"tensor '{name}' has the range [{lo:.3g}, {hi:.3g}], too wide for int8 (a scale "
                            f"above {MAX_SCALE:g}); the calibration samples hold absurd values or miss "
                            "--mean/--std")


def check_scales(graph: Graph) -> None:
    """Every QuantParams scale is finite, positive and not absurd."""
    for name in sorted(graph.tensors):
        qp = graph.tensors[name].quant
        if qp is None:
            continue
        s = np.asarray(qp.scale, np.float64)
        if not (np.all(np.isfinite(s)) and np.all(s > 0) and np.all(s <= MAX_SCALE)):
            bad = s[~(np.isfinite(s) & (s > 0) & (s <= MAX_SCALE))][0]
            raise DataError(f"tensor '{name}' gets the {qp.dtype} scale {bad:.3g} (allowed: finite, "
                            f"above 0, at most {MAX_SCALE:g}); its values or calibration range are absurd")
