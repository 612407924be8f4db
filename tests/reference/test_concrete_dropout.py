"""Reference concrete dropout: limits, the hand-derived gradient against finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dropkit import reference as ref


def test_zero_noise_at_logit_zero_halves_then_rescales():
    # p = 1/2, noise 0: z = sigmoid(0) = 1/2, so out = x (1 - 1/2) / (1 - 1/2) = x.
    x = np.array([1.0, -3.0])
    np.testing.assert_allclose(ref.concrete_forward(x, 0.0, np.zeros(2), 0.1), x, rtol=1e-15)


def test_gradient_by_central_differences():
    rng = np.random.default_rng(0)
    x, noise, g = rng.normal(size=5), rng.logistic(size=5), rng.normal(size=5)
    logit, t, h = -0.7, 0.3, 1e-6

    def loss(lg):
        return float(np.sum(g * ref.concrete_forward(x, lg, noise, t)))

    _, gl = ref.concrete_backward(x, logit, noise, t, g)
    assert gl == pytest.approx((loss(logit + h) - loss(logit - h)) / (2 * h), rel=1e-6)
    gx, _ = ref.concrete_backward(x, logit, noise, t, g)
    np.testing.assert_allclose(gx * x, g * ref.concrete_forward(x, logit, noise, t), rtol=1e-12)


def test_regularizer_by_hand():
    # p = 1/2: neg. entropy = log(1/2); weight term = wr * 4 / (1/2)
    reg = ref.concrete_regularizer(0.0, [np.full(4, 1.0)], 3, 0.1, 0.01)
    assert reg == pytest.approx(0.1 * 4 / 0.5 + 0.01 * 3 * math.log(0.5))
