"""Alpha dropout: SELU's mean and variance kept, exact parity with the reference given the mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dropkit.functional as DF
from dropkit import reference as ref
from dropkit.functional.alpha_dropout import ALPHA_PRIME
from tests.conftest import Z, binomial_tol

FLOATS = [torch.float32, torch.float64]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_forward_and_backward_match_the_reference(dtype, p):
    x = torch.randn(40, 50, dtype=dtype, generator=_seeded(1), requires_grad=True)
    mask = DF.sample_mask(x.shape, p, generator=_seeded(2))
    out = DF.apply_alpha_mask(x, mask, p)
    grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
    out.backward(grad_out)
    m = mask.numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.alpha_dropout_forward(x.detach().numpy(), m, p)
    )
    np.testing.assert_array_equal(
        x.grad.numpy(), ref.alpha_dropout_backward(grad_out.numpy(), m, p)
    )
    assert DF.alpha_affine(p) == pytest.approx(ref.alpha_affine(p), rel=1e-15)


def test_op_draws_the_mask_sample_mask_draws():
    x = torch.randn(100, 10)
    out = DF.alpha_dropout(x, 0.3, generator=_seeded(4))
    mask = DF.sample_mask(x.shape, 0.3, generator=_seeded(4))
    assert torch.equal(out, DF.apply_alpha_mask(x, mask, 0.3))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3])
def test_selu_input_keeps_mean_zero_and_variance_one(p):
    # selu(z), z ~ N(0, 1), has mean 0 and variance 1 (SELU's fixed point); so must the output.
    # Tolerances: the output's elements are iid with variance 1, so the sample mean has std
    # 1/sqrt(n) and the sample variance std sqrt((m4 - 1)/n), m4 the fourth moment (estimated).
    n = 1_000_000
    x = torch.selu(torch.randn(n, dtype=torch.float64, generator=_seeded(5)))
    out = DF.alpha_dropout(x, p, generator=_seeded(6))
    mean, var = out.mean().item(), out.var().item()
    m4 = (out - mean).pow(4).mean().item()
    assert abs(mean) < Z / math.sqrt(n), mean
    assert abs(var - 1) < Z * math.sqrt((m4 - 1) / n), var


def test_selu_network_stays_normalised():
    # Ten Lecun-initialised SELU layers with alpha dropout: activations stay near N(0, 1).
    g = _seeded(7)
    h = torch.randn(4096, 256, dtype=torch.float64, generator=g)
    for _ in range(10):
        w = torch.randn(256, 256, dtype=torch.float64, generator=g) / 16  # std 1/sqrt(fan_in)
        h = DF.alpha_dropout(torch.selu(h @ w.T), 0.1, generator=g)
    assert abs(h.mean().item()) < 0.1 and abs(h.var().item() - 1) < 0.1


def test_fraction_dropped():
    p, n = 0.2, 1_000_000
    x = torch.randn(n, dtype=torch.float64)
    out = DF.alpha_dropout(x, p, generator=_seeded(8))
    a, b = DF.alpha_affine(p)
    dropped = (out == a * ALPHA_PRIME + b).double().mean().item()
    assert abs(dropped - p) < binomial_tol(p, n)


@pytest.mark.parametrize("dtype", FLOATS)
def test_same_as_torch_under_the_same_seed(dtype):
    x = torch.randn(10_000, dtype=dtype)
    torch.manual_seed(3)
    theirs = F.alpha_dropout(x, 0.4, True)
    torch.manual_seed(3)
    torch.testing.assert_close(DF.alpha_dropout(x, 0.4), theirs)
    y = torch.randn(8, 16, 5, 5, dtype=dtype)
    torch.manual_seed(3)
    theirs = F.feature_alpha_dropout(y, 0.4, True)
    torch.manual_seed(3)
    torch.testing.assert_close(DF.feature_alpha_dropout(y, 0.4), theirs)


def test_feature_alpha_dropout_drops_whole_channels():
    p = 0.3
    x = torch.randn(200, 50, 4, 4, dtype=torch.float64)
    out = DF.feature_alpha_dropout(x, p, generator=_seeded(9))
    a, b = DF.alpha_affine(p)
    flat = out.flatten(2)
    dropped = (flat == a * ALPHA_PRIME + b).all(-1)
    torch.testing.assert_close(flat[~dropped], (a * x.flatten(2) + b)[~dropped])
    assert abs(dropped.double().mean().item() - p) < binomial_tol(p, dropped.numel())


def test_eval_inplace_gradcheck():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert DF.alpha_dropout(x, 0.5, training=False) is x
    f = lambda t: DF.alpha_dropout(t, 0.5, generator=_seeded(1))  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    y = x.detach().clone()
    expected = DF.alpha_dropout(y, 0.5, generator=_seeded(1))
    assert DF.alpha_dropout(y, 0.5, inplace=True, generator=_seeded(1)) is y
    assert torch.equal(y, expected)


def test_errors():
    with pytest.raises(
        ValueError, match=r"alpha_dropout: dropout probability has to be in \[0, 1\)"
    ):
        DF.alpha_dropout(torch.ones(3), 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        DF.alpha_dropout(torch.ones(3, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="feature_alpha_dropout: expected input to be 2D or"):
        DF.feature_alpha_dropout(torch.ones(3), 0.5)
