"""Additive Gaussian noise (Keras's GaussianNoise): exact parity with the reference given the draws,
moments within a stated tolerance, eval identity, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import Z


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_backward_match_the_reference(dtype):
    std = 0.3
    x = torch.randn(20, 30, dtype=dtype, generator=_seeded(1), requires_grad=True)
    out = DF.additive_noise(x, std, generator=_seeded(2))
    eps = torch.randn(20, 30, dtype=dtype, generator=_seeded(2)).numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.additive_noise_forward(x.detach().numpy(), eps, std)
    )
    grad = torch.randn(20, 30, dtype=dtype, generator=_seeded(3))
    out.backward(grad)
    np.testing.assert_array_equal(x.grad.numpy(), ref.additive_noise_backward(grad.numpy()))
    sample = DF.additive_noise_sample(x.detach(), std, generator=_seeded(2))
    torch.testing.assert_close(x.detach() + sample, out.detach(), rtol=0, atol=0)


def test_noise_moments():
    # mean 0 and variance std^2: the sample mean of n draws is within Z * std / sqrt(n) of 0, and
    # the sample variance within Z * std^2 * sqrt(2 / n) of std^2 (normal noise: var(s^2) ~ 2s^4/n).
    n, std = 200_000, 0.5
    noise = DF.additive_noise(torch.zeros(n, dtype=torch.float64), std, generator=_seeded(4))
    assert abs(noise.mean().item()) < Z * std / n**0.5
    assert abs(noise.var().item() - std**2) < Z * std**2 * (2 / n) ** 0.5


def test_eval_zero_std_and_inplace():
    x = torch.randn(3, 4)
    assert DF.additive_noise(x, 0.5, training=False) is x
    y = DF.additive_noise(x, 0.0)
    assert torch.equal(y, x) and y is not x
    z = x.clone()
    out = DF.additive_noise(z, 0.5, inplace=True, generator=_seeded(5))
    assert out is z and not torch.equal(z, x)


@pytest.mark.parametrize(
    ("std", "err", "match"),
    [(-0.1, ValueError, "std must be a finite number >= 0"), (float("nan"), ValueError, "std must be a finite"),
     ("0.1", TypeError, "std must be a real number"), (True, TypeError, "std must be a real")],
)  # fmt: skip
def test_errors(std, err, match):
    with pytest.raises(err, match=f"additive_noise: {match}"):
        DF.additive_noise(torch.ones(2), std)


def test_rejects_integer_input():
    with pytest.raises(TypeError, match="floating-point"):
        DF.additive_noise(torch.ones(2, dtype=torch.long), 0.1)
