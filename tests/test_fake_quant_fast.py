"""The vectorised per-tensor fake quantization (ir/fake_quant.py) gives torch's kernel's values bit for bit,
ties and clipped values included, and leaves to the kernel what it cannot match (gradients, NaN, inf)."""
import numpy as np
import torch

from edgepack.ir.fake_quant import _per_tensor_no_grad, fake_quant_activation
from edgepack.ir.quant import QuantParams


def _hard_values(scale: float, rng) -> torch.Tensor:
    k = rng.integers(-400, 400, 2000).astype(np.float64)
    ties = (k + 0.5) * scale  # exactly half-way between two codes: round half to even must agree
    vals = np.concatenate([ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf), k * scale,
                           rng.normal(0, 300 * scale, 2000), [0.0, -0.0]])
    return torch.from_numpy(vals.astype(np.float32))


def test_fast_per_tensor_fake_quant_is_bit_identical_to_torch():
    rng = np.random.default_rng(0)
    for i in range(120):
        scale = float(10 ** rng.uniform(-7, 2) * rng.uniform(0.5, 1.5))
        qmin, qmax = (-128, 127) if i % 2 else (0, 255)
        zero = int(rng.integers(qmin, qmax + 1))
        x = _hard_values(scale, rng)
        fast = _per_tensor_no_grad(x, scale, zero, qmin, qmax)
        assert fast is not None
        assert torch.equal(fast, torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)), (scale, zero)


def test_what_the_fast_path_cannot_match_goes_to_torch():
    qp = QuantParams((0.1,), (3,))
    for bad in (float("nan"), float("inf"), 1e30):
        x = torch.tensor([bad, 1.0, -2.0])
        assert _per_tensor_no_grad(x, 0.1, 3, -128, 127) is None
        assert torch.equal(fake_quant_activation(x, qp), torch.fake_quantize_per_tensor_affine(x, 0.1, 3, -128, 127))
    x = torch.tensor([0.26, 5.0, -20.0], requires_grad=True)
    assert _per_tensor_no_grad(x, 0.1, 3, -128, 127) is None  # the straight-through gradient is torch's
    fake_quant_activation(x, qp).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]  # -20 / 0.1 + 3 is below -128: clipped, no gradient
