"""The NumPy reference: hand-computed values, both conventions, and its argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dropkit import reference as ref
from tests.conftest import binomial_tol


class TestForwardBackward:
    x = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], dtype=np.float64)
    mask = np.array([[True, False, True], [False, True, True]])

    def test_inverted_train_scales_survivors(self):
        out = ref.dropout_forward(self.x, self.mask, 0.5)
        np.testing.assert_array_equal(out, [[2.0, -0.0, 6.0], [0.0, 10.0, -12.0]])

    def test_classic_train_leaves_survivors(self):
        out = ref.dropout_forward(self.x, self.mask, 0.5, scale="classic")
        np.testing.assert_array_equal(out, self.x * self.mask)

    def test_eval(self):
        assert np.array_equal(ref.dropout_forward(self.x, None, 0.25, training=False), self.x)
        out = ref.dropout_forward(self.x, None, 0.25, scale="classic", training=False)
        np.testing.assert_array_equal(out, self.x * 0.75)

    @pytest.mark.parametrize("scale", ["inverted", "classic"])
    def test_backward_is_the_same_mask_and_scale(self, scale):
        g = np.arange(6.0).reshape(2, 3) + 1
        s = 2.0 if scale == "inverted" else 1.0
        out = ref.dropout_backward(g, self.mask, 0.5, scale=scale)
        np.testing.assert_array_equal(out, g * self.mask * s)

    def test_broadcast_mask(self):
        mask = np.array([[True], [False]])
        out = ref.dropout_forward(self.x, mask, 0.5)
        np.testing.assert_array_equal(out, [[2.0, -4.0, 6.0], [0.0, 0.0, -0.0]])

    def test_dtype_is_kept(self):
        x = self.x.astype(np.float32)
        assert ref.dropout_forward(x, self.mask, 0.3).dtype == np.float32


class TestChecks:
    x = np.ones(4)
    mask = np.ones(4, dtype=bool)

    @pytest.mark.parametrize("p", [1.0, -0.1, 1.5, math.nan, math.inf])
    def test_p_outside_unit_interval(self, p):
        with pytest.raises(ValueError, match="dropout probability"):
            ref.dropout_forward(self.x, self.mask, p)

    @pytest.mark.parametrize("p", ["0.5", None, True])
    def test_p_wrong_type(self, p):
        with pytest.raises(TypeError, match="p must be a real number"):
            ref.dropout_forward(self.x, self.mask, p)

    def test_integer_array(self):
        with pytest.raises(TypeError, match="floating dtype"):
            ref.dropout_forward(np.ones(4, dtype=np.int64), self.mask, 0.5)

    def test_not_an_array(self):
        with pytest.raises(TypeError, match="numpy.ndarray"):
            ref.dropout_forward([1.0, 2.0], self.mask, 0.5)

    def test_mask_dtype(self):
        with pytest.raises(TypeError, match="bool"):
            ref.dropout_forward(self.x, np.ones(4), 0.5)

    def test_mask_shape(self):
        with pytest.raises(ValueError, match="does not broadcast"):
            ref.dropout_forward(self.x, np.ones(3, dtype=bool), 0.5)

    def test_scale(self):
        with pytest.raises(ValueError, match="scale must be one of"):
            ref.dropout_forward(self.x, self.mask, 0.5, scale="inverse")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_sample_mask_keeps_one_minus_p(p):
    n = 200_000
    mask = ref.sample_mask((n,), p, np.random.default_rng(0))
    assert abs(mask.mean() - (1 - p)) < binomial_tol(p, n)
