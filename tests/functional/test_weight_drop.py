"""dropkit.functional.weight_drop: DropConnect on a weight, against the NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import Z, binomial_tol


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_backward_bitwise(dtype):
    p = 0.4
    w = torch.randn(12, 3, dtype=dtype, generator=_seeded(1), requires_grad=True)
    out = DF.weight_drop(w, p, generator=_seeded(2))
    mask = DF.sample_mask(w.shape, p, generator=_seeded(2)).numpy()
    grad = torch.randn(w.shape, dtype=dtype, generator=_seeded(3))
    out.backward(grad)
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.weight_drop_forward(w.detach().numpy(), mask, p)
    )
    np.testing.assert_array_equal(w.grad.numpy(), ref.weight_drop_backward(grad.numpy(), mask, p))


def test_eval_and_p_zero_return_the_weight():
    w = torch.randn(3, 3)
    assert DF.weight_drop(w, 0.5, training=False) is w
    assert DF.weight_drop(w, 0.0) is w


def test_fraction_dropped_and_expectation():
    p, n = 0.3, 1_000_000
    w = torch.ones(1000, 1000, dtype=torch.float64)
    out = DF.weight_drop(w, p, generator=_seeded(4))
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < binomial_tol(p, n)
    assert abs(out.mean().item() - 1.0) < Z * math.sqrt(p / (1 - p) / n)


def test_gradcheck():
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: DF.weight_drop(t, 0.5, generator=_seeded(1)), (w,))


def test_errors():
    with pytest.raises(ValueError, match=r"weight_drop: dropout probability has to be in \[0, 1\)"):
        DF.weight_drop(torch.ones(2, 2), 1.0)
    with pytest.raises(TypeError, match="weight_drop: weight must be a floating-point tensor"):
        DF.weight_drop(torch.ones(2, 2, dtype=torch.int64), 0.5)
