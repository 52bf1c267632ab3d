"""QuantParams: the one scale/zero-point spec shared by calibration and both emitters.

Follows the TFLite int8 quantization specification:
real = scale * (q - zero_point). ``axis`` is the IR (NCHW / OIHW) axis of per-channel
parameters, or None for per-tensor. Emitters map the axis to their own layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int32": (-(2**31), 2**31 - 1),
              "int64": (-(2**63), 2**63 - 1)}
# The largest |int32 bias| a weight scale may imply: half of int32, as TensorFlow's converter keeps
# (AdjustWeightsForBiasScale), so the bias plus the accumulated products still has headroom.
BIAS_LIMIT = 2**30


# A weight channel whose |w| range is below this fraction of its layer's largest is degenerate ("dead",
# e.g. 1e-30 in trained networks): nothing to balance or to warn about, and rescaling it explodes.
DEGENERATE_CHANNEL = 1e-6
# Narrower activation ranges are widened to this: a constant-zero tensor takes any scale, and a vanishing
# one (1e-11 wide in the deep layers of random-weight networks) would get a scale below ~2.8e-9, which makes
# TFLite Micro refuse a fused RELU6 (6 / scale overflows int32: "no_integer_overflow_from_quantization").
MIN_ACTIVATION_RANGE = 1e-5


def live_channels(ranges) -> np.ndarray:
    """Mask of the channels whose |w| range is not degenerate (see DEGENERATE_CHANNEL)."""
    r = np.asarray(ranges, np.float64)
    return r > DEGENERATE_CHANNEL * float(r.max(initial=0.0)) if r.size else np.zeros(0, bool)


class QuantizationBug(RuntimeError):
    """Quantization parameters that would make an artifact silently wrong (a saturated int32 bias):
    edgepack's own fault, never the user's, so it is not an EdgepackError."""


@dataclass(frozen=True)
class QuantParams:
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    dtype: str = "int8"  # int8 | int16 (16x8 layers) | int32 / int64 (bias)
    axis: int | None = None  # None = per-tensor

    def __post_init__(self):
        if len(self.scale) != len(self.zero_point):
            raise ValueError("scale and zero_point must have the same length")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("per-tensor QuantParams need exactly one scale")
        if self.dtype not in INT_RANGES:
            raise ValueError(f"unknown quantized dtype {self.dtype}")

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int, dtype: str = "int8") -> "QuantParams":
        return cls((float(np.float32(scale)),), (int(zero_point),), dtype, None)

    @classmethod
    def per_channel(cls, scales, axis: int, dtype: str = "int8") -> "QuantParams":
        scales = tuple(float(np.float32(s)) for s in np.asarray(scales).ravel())
        return cls(scales, (0,) * len(scales), dtype, axis)

    @property
    def is_per_channel(self) -> bool:
        return self.axis is not None

    @property
    def qmin(self) -> int:
        return INT_RANGES[self.dtype][0]

    @property
    def qmax(self) -> int:
        return INT_RANGES[self.dtype][1]

    def _broadcast(self, values, ndim: int):
        arr = np.asarray(values)
        if self.axis is None:
            return arr.reshape(())
        shape = [1] * ndim
        shape[self.axis] = arr.size
        return arr.reshape(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float -> integer with the rounding TFLite uses (half away from zero)."""
        return quantize_array(x, self)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        s = self._broadcast(np.asarray(self.scale, np.float32), q.ndim)
        z = self._broadcast(np.asarray(self.zero_point, np.int64), q.ndim)
        return ((q.astype(np.int64) - z) * s).astype(np.float32)

    def to_json(self) -> dict:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point),
                "dtype": self.dtype, "axis": self.axis}

    @classmethod
    def from_json(cls, d: dict) -> "QuantParams":
        return cls(tuple(float(s) for s in d["scale"]), tuple(int(z) for z in d["zero_point"]),
                   d.get("dtype", "int8"), d.get("axis"))

    def with_axis(self, axis: int | None) -> "QuantParams":
        return QuantParams(self.scale, self.zero_point, self.dtype, axis)


def quantize_array(x: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Quantize a float array with round-half-away-from-zero (as TFLite's converter does)."""
    x = np.asarray(x, np.float64)
    s = qp._broadcast(np.asarray(qp.scale, np.float64), x.ndim)
    z = qp._broadcast(np.asarray(qp.zero_point, np.int64), x.ndim)
    scaled = x / s
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + z
    dtype = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64}[qp.dtype]
    return np.clip(q, qp.qmin, qp.qmax).astype(dtype)


def params_from_range(rmin: float, rmax: float, dtype: str = "int8") -> QuantParams:
    """Asymmetric per-tensor params for an activation range; the range is widened to contain 0
    and the zero-point is nudged to an integer so that real 0 is exactly representable."""
    qmin, qmax = INT_RANGES[dtype]
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if rmax - rmin < MIN_ACTIVATION_RANGE:
        rmax = rmin + MIN_ACTIVATION_RANGE  # constant-zero or vanishing tensor (see MIN_ACTIVATION_RANGE)
    scale = (rmax - rmin) / (qmax - qmin)
    zp = int(np.clip(round(qmin - rmin / scale), qmin, qmax))
    return QuantParams.per_tensor(scale, zp, dtype)


def symmetric_params(x: np.ndarray, dtype: str = "int16") -> QuantParams:
    """Symmetric per-tensor params (zero point 0) covering ``x`` (a 16x8 kernel's constant operand)."""
    amax = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return QuantParams.per_tensor(max(amax, 1e-12) / INT_RANGES[dtype][1], 0, dtype)


def symmetric_weight_params(w: np.ndarray, axis: int | None) -> QuantParams:
    """Symmetric int8 weight params, range [-127, 127], zero-point 0 (per channel on ``axis``)."""
    if axis is None:
        amax = float(np.max(np.abs(w))) if w.size else 0.0
        return QuantParams.per_tensor(max(amax, 1e-12) / 127.0, 0)
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=reduce_axes) if w.size else np.zeros(w.shape[axis])
    return QuantParams.per_channel(np.maximum(amax, 1e-12) / 127.0, axis)


def bias_safe_weight_scales(weight_scales, bias, input_scale: float, limit: int = BIAS_LIMIT) -> np.ndarray:
    """Weight scales raised where needed so that every int32 bias fits: |bias| / (s_in * s_w) <= ``limit``.

    A trained network's "dead" output channels have weights ~1e-30 and a non-zero bias; their weight
    scale (~1e-32) would put bias / (s_in * s_w) far past int32 and the constant output would saturate.
    With the floor the weights quantize to 0 (as good as 1e-30) and the bias keeps ~2^30 steps.
    ``weight_scales``: one per channel (or one for a per-tensor weight, then the largest |bias| binds)."""
    s = np.asarray(weight_scales, np.float64).ravel()
    b = np.abs(np.asarray(bias, np.float64).ravel())
    need = b / (float(input_scale) * limit)
    if s.size == 1:
        return np.maximum(s, need.max(initial=0.0))
    return np.maximum(s, need)


def saturated_bias(bias, qp: QuantParams) -> np.ndarray:
    """Indices of the int32 bias entries that do not fit their scale (|bias / scale| > 2^31 - 1)."""
    b = np.asarray(bias, np.float64).ravel()
    s = np.broadcast_to(np.asarray(qp.scale, np.float64).ravel(), b.shape)
    return np.flatnonzero(np.abs(b / s) > INT_RANGES["int32"][1])


def check_bias_fits(name: str, bias, qp: QuantParams) -> None:
    """Refuse to write a saturated int32 bias (see ``bias_safe_weight_scales``): a bug, not a user error."""
    bad = saturated_bias(bias, qp)
    if bad.size:
        b = np.asarray(bias, np.float64).ravel()
        s = np.broadcast_to(np.asarray(qp.scale, np.float64).ravel(), b.shape)
        raise QuantizationBug(f"int32 bias '{name}' saturates on {bad.size} channel(s) (first: channel "
                              f"{bad[0]}, bias {b[bad[0]]:.4g} / scale {s[bad[0]]:.3g}); the weight scale "
                              f"should have been floored by ir.quant.bias_safe_weight_scales")
