"""Reference alpha dropout: the affine constants from the paper and the moments they preserve."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit import reference as ref
from dropkit.reference.alpha_dropout import ALPHA_PRIME


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_affine_preserves_zero_mean_unit_variance(p):
    # For x with mean 0 and variance 1 (independent of the mask):
    # E[out] = a ((1-p) 0 + p alpha') + b = 0 and Var[out] = a^2 (1-p)(1 + p alpha'^2) = 1.
    a, b = ref.alpha_affine(p)
    ap = ALPHA_PRIME
    assert a * p * ap + b == pytest.approx(0.0, abs=1e-15)
    assert a**2 * ((1 - p) + p * ap**2 - (p * ap) ** 2) == pytest.approx(1.0, rel=1e-14)
    assert ap == pytest.approx(-1.7580993408473766, rel=1e-15)  # -lambda * alpha (Klambauer et al.)


def test_forward_backward_by_hand():
    p = 0.5
    a, b = ref.alpha_affine(p)
    x = np.array([1.0, 2.0])
    mask = np.array([True, False])
    out = ref.alpha_dropout_forward(x, mask, p)
    assert out[0] == pytest.approx(a * 1.0 + b) and out[1] == pytest.approx(a * ALPHA_PRIME + b)
    np.testing.assert_array_equal(ref.alpha_dropout_backward(np.ones(2), mask, p), [a, 0.0])
    np.testing.assert_array_equal(ref.alpha_dropout_forward(x, mask, p, training=False), x)


def test_checks():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ref.alpha_dropout_forward(np.ones(2), np.ones(2, dtype=bool), 1.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        ref.alpha_dropout_forward(np.ones(2), np.ones(3, dtype=bool), 0.5)
