"""Concrete dropout: relaxed-Bernoulli masks, gradients in p, the regulariser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import binomial_tol

# NumPy's and torch's exp/sigmoid may differ in the last bit: float64 agreement to ~1e-13.
TOL = {"rtol": 1e-12, "atol": 1e-13}


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logit(p):
    return torch.tensor(math.log(p / (1 - p)), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_forward_and_gradients_match_the_reference(p, t):
    x = torch.randn(20, 30, dtype=torch.float64, generator=_seeded(1), requires_grad=True)
    logit = _logit(p)
    noise = DF.concrete_noise(x.shape, dtype=torch.float64, generator=_seeded(2))
    out = DF.apply_concrete(x, logit, noise, t)
    g = torch.randn(x.shape, dtype=torch.float64, generator=_seeded(3))
    out.backward(g)
    xn, ln, nn_ = x.detach().numpy(), logit.item(), noise.numpy()
    np.testing.assert_allclose(out.detach().numpy(), ref.concrete_forward(xn, ln, nn_, t), **TOL)
    gx, gl = ref.concrete_backward(xn, ln, nn_, t, g.numpy())
    np.testing.assert_allclose(x.grad.numpy(), gx, **TOL)
    assert logit.grad.item() == pytest.approx(gl, rel=1e-10)


def test_op_draws_the_noise_concrete_noise_draws():
    x = torch.randn(10, 10)
    logit = torch.tensor(-1.0)
    out = DF.concrete_dropout(x, logit, 0.1, generator=_seeded(4))
    noise = DF.concrete_noise(x.shape, generator=_seeded(4))
    assert torch.equal(out, DF.apply_concrete(x, logit, noise, 0.1))


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("t", [0.1, 1.0])
def test_drop_indicator_exceeds_one_half_with_probability_p(p, t):
    # z > 1/2 iff logit(p) + L > 0 for logistic L: probability exactly p, at every temperature.
    n = 1_000_000
    x = torch.ones(n, dtype=torch.float64)
    out = DF.concrete_dropout(x, _logit(p).detach(), t, generator=_seeded(5))
    mostly_dropped = out < 0.5 / (1 - p)  # (1 - z) / (1 - p) < 1/2 / (1 - p)  <=>  z > 1/2
    assert abs(mostly_dropped.double().mean().item() - p) < binomial_tol(p, n)


def test_low_temperature_approaches_bernoulli_dropout():
    # At t = 1e-3 almost every multiplier is 0 or 1/(1-p).
    p = 0.3
    out = DF.concrete_dropout(
        torch.ones(100_000, dtype=torch.float64), _logit(p).detach(), 1e-3, generator=_seeded(6)
    )
    near = (out < 1e-3) | ((out - 1 / (1 - p)).abs() < 1e-3)
    assert near.double().mean().item() > 0.99


def test_regulariser_matches_the_reference_and_pulls_p_towards_one_half():
    w = [torch.randn(4, 6, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    logit = _logit(0.1)
    reg = DF.concrete_regularizer(logit, w, 6, weight_regularizer=1e-2, dropout_regularizer=1e-1)
    expected = ref.concrete_regularizer(logit.item(), [t.numpy() for t in w], 6, 1e-2, 1e-1)
    assert reg.item() == pytest.approx(expected, rel=1e-12)
    # The dropout term alone is minus the entropy: gradient descent drives p to 1/2.
    logit = _logit(0.1)
    opt = torch.optim.SGD([logit], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        DF.concrete_regularizer(logit, [], 10, dropout_regularizer=1.0).backward()
        opt.step()
    assert torch.sigmoid(logit).item() == pytest.approx(0.5, abs=1e-3)


def test_gradcheck_in_input_and_logit():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    logit = _logit(0.3)
    noise = DF.concrete_noise(x.shape, dtype=torch.float64, generator=_seeded(7))
    assert torch.autograd.gradcheck(lambda a, b: DF.apply_concrete(a, b, noise, 0.2), (x, logit))


def test_eval_is_identity_and_noise_is_finite():
    x = torch.randn(3)
    assert DF.concrete_dropout(x, torch.tensor(0.0), training=False) is x
    assert DF.concrete_noise((1_000_000,), generator=_seeded(8)).isfinite().all()


def test_errors():
    with pytest.raises(ValueError, match="temperature must be positive"):
        DF.concrete_dropout(torch.ones(3), torch.tensor(0.0), 0.0)
    with pytest.raises(ValueError, match="p_logit must hold one value"):
        DF.concrete_dropout(torch.ones(3), torch.zeros(2))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        DF.concrete_dropout(torch.ones(3, dtype=torch.long), torch.tensor(0.0))
    with pytest.raises(ValueError, match="input_dim must be a positive int"):
        DF.concrete_regularizer(torch.tensor(0.0), [], 0)
