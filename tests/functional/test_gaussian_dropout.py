"""Gaussian dropout: noise N(1, p/(1-p)), exact parity with the reference given the noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import Z


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_is_the_reference_transform_of_the_normal_draws(dtype):
    noise = DF.gaussian_noise((1000,), 0.3, dtype=dtype, generator=_seeded(1))
    eps = torch.randn(1000, dtype=dtype, generator=_seeded(1)).numpy()
    np.testing.assert_array_equal(noise.numpy(), ref.gaussian_noise(eps, 0.3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_backward_match_the_reference(dtype):
    p = 0.4
    x = torch.randn(30, 40, dtype=dtype, generator=_seeded(2), requires_grad=True)
    out = DF.gaussian_dropout(x, p, generator=_seeded(3))
    noise = DF.gaussian_noise(x.shape, p, dtype=dtype, generator=_seeded(3))
    grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(4))
    out.backward(grad_out)
    n = noise.numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.gaussian_dropout_forward(x.detach().numpy(), n)
    )
    np.testing.assert_array_equal(
        x.grad.numpy(), ref.gaussian_dropout_backward(grad_out.numpy(), n)
    )
    np.testing.assert_array_equal(DF.apply_noise(x, noise).detach().numpy(), out.detach().numpy())


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_noise_mean_and_variance(p):
    # Sample mean: std sigma / sqrt(n). Sample variance of a normal: std sigma^2 sqrt(2 / (n-1)).
    n = 1_000_000
    noise = DF.gaussian_noise((n,), p, dtype=torch.float64, generator=_seeded(5))
    var = p / (1 - p)
    assert abs(noise.mean().item() - 1) < Z * math.sqrt(var / n)
    assert abs(noise.var().item() - var) < Z * var * math.sqrt(2 / (n - 1))


def test_same_moments_as_inverted_bernoulli_dropout():
    # E and Var of the multiplier match inverted dropout's (1/(1-p)) * Bernoulli(1-p).
    p, n = 0.3, 1_000_000
    bern = DF.dropout(torch.ones(n, dtype=torch.float64), p, generator=_seeded(6))
    gauss = DF.gaussian_dropout(torch.ones(n, dtype=torch.float64), p, generator=_seeded(7))
    var = p / (1 - p)
    assert abs(bern.mean().item() - gauss.mean().item()) < Z * math.sqrt(2 * var / n)
    assert abs(bern.var().item() - var) < 0.01 and abs(gauss.var().item() - var) < 0.01


def test_eval_is_identity_and_inplace():
    x = torch.randn(5)
    assert DF.gaussian_dropout(x, 0.5, training=False) is x
    y = x.clone()
    expected = DF.gaussian_dropout(x, 0.5, generator=_seeded(1))
    assert DF.gaussian_dropout(y, 0.5, inplace=True, generator=_seeded(1)) is y
    assert torch.equal(y, expected)


def test_gradcheck():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    f = lambda t: DF.gaussian_dropout(t, 0.5, generator=_seeded(3))  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))


def test_errors():
    with pytest.raises(
        ValueError, match=r"gaussian_dropout: dropout probability has to be in \[0, 1\)"
    ):
        DF.gaussian_dropout(torch.ones(3), 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        DF.gaussian_dropout(torch.ones(3, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError, match="noise has dtype"):
        DF.apply_noise(torch.ones(3), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="does not broadcast"):
        DF.apply_noise(torch.ones(3), torch.ones(4))
    with pytest.raises(TypeError, match="floating-point dtype"):
        DF.gaussian_noise((3,), 0.5, dtype=torch.int64)
