"""Reference Gaussian dropout: the noise transform and forward/backward by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit import reference as ref


def test_noise_transform_by_hand():
    eps = np.array([-1.0, 0.0, 2.0])
    # p = 0.5: std sqrt(0.5 / 0.5) = 1 -> 1 + eps
    np.testing.assert_array_equal(ref.gaussian_noise(eps, 0.5), [0.0, 1.0, 3.0])
    # p = 0.2: std 0.5
    np.testing.assert_array_equal(ref.gaussian_noise(eps, 0.2), [0.5, 1.0, 2.0])


def test_forward_backward_eval():
    x, noise = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    np.testing.assert_array_equal(ref.gaussian_dropout_forward(x, noise), [0.5, -6.0])
    np.testing.assert_array_equal(ref.gaussian_dropout_backward(np.ones(2), noise), noise)
    np.testing.assert_array_equal(ref.gaussian_dropout_forward(x, noise, training=False), x)


def test_checks():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ref.gaussian_noise(np.zeros(2), 1.0)
    with pytest.raises(TypeError, match="floating dtype"):
        ref.gaussian_dropout_forward(np.ones(2, dtype=np.int64), np.ones(2))
