"""Fake quantization in torch (quantize-dequantize with a straight-through gradient): how torch_exec
simulates int8 so accuracy is measured in-process and quantization-aware fine-tuning is possible."""
from __future__ import annotations

import numpy as np
import torch

from .quant import QuantParams


def fake_quant_tflite(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """Quantize-dequantize with ir.quant.quantize_array semantics (round half away from zero, computed in
    float64) and a straight-through gradient that is zero where the value was clipped. Used for constants
    (weights, int32 biases), where the rounding must match the converter's bit for bit."""
    shape = [1] * x.dim()
    if qp.axis is not None:
        shape[qp.axis] = len(qp.scale)
    s = torch.tensor(qp.scale, dtype=torch.float64, device=x.device).reshape(shape)
    z = torch.tensor(qp.zero_point, dtype=torch.float64, device=x.device).reshape(shape)
    return _RoundAwayFakeQuant.apply(x, s, z, qp.qmin, qp.qmax)


class _RoundAwayFakeQuant(torch.autograd.Function):
    """Forward: exactly the dequantized grid value; backward: gradient passed where not clipped."""

    @staticmethod
    def forward(ctx, x, s, z, qmin, qmax):
        scaled = x.double() / s
        q = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5) + z
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return ((q.clamp(qmin, qmax) - z) * s).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def fake_quant_activation(x: torch.Tensor, qp: QuantParams) -> torch.Tensor:
    """Per-tensor (or per-channel) fake quantization with torch's fused STE kernels. torch rounds half to
    even where TFLite rounds half away from zero; for activations the difference is a one-step tie that
    the integer kernels resolve their own way anyway, so it is harmless here (weights use fake_quant_tflite)."""
    if qp.axis is None:
        fast = _per_tensor_no_grad(x, qp.scale[0], qp.zero_point[0], qp.qmin, qp.qmax)
        if fast is not None:
            return fast
        return torch.fake_quantize_per_tensor_affine(x, qp.scale[0], qp.zero_point[0], qp.qmin, qp.qmax)
    scale = torch.tensor(qp.scale, dtype=torch.float32, device=x.device)
    zp = torch.tensor(qp.zero_point, dtype=torch.int32, device=x.device)
    return torch.fake_quantize_per_channel_affine(x, scale, zp, qp.axis, qp.qmin, qp.qmax)


_EXACT_SPAN = 2.0 ** 24  # |x / scale| below this: the vectorised arithmetic is torch's kernel's, bit for bit


def _per_tensor_no_grad(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int):
    """torch.fake_quantize_per_tensor_affine's values, computed ~4x faster (its CPU kernel is scalar and
    also writes a mask): float32 ``x * (1f / scale)``, round half to even, + zero point, clamp, - zero
    point, times float32 ``scale``, the same operations in the same precision. None (use torch's kernel)
    where a gradient is wanted (its straight-through backward), for other dtypes, and for values whose
    scaled magnitude is not small and finite (the kernel's int64 cast then behaves its own way)."""
    if x.dtype != torch.float32 or not x.numel() or (x.requires_grad and torch.is_grad_enabled()):
        return None
    sc = np.float32(scale)
    inv = float(np.float32(1.0) / sc)
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not max(-lo, hi) * inv < _EXACT_SPAN:  # NaN and inf fail this too
        return None
    return torch.mul(x, inv).round_().add_(zero_point).clamp_(qmin, qmax).sub_(zero_point).mul_(float(sc))
