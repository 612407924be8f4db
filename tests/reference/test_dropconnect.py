"""Reference DropConnect: masked weights, a hand-computed layer, the written-out convolution."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit import reference as ref


def test_masked_weight_and_linear_by_hand():
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    mask = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(ref.dropconnect_weight(w, mask, 0.5), [[2.0, 0.0], [0.0, 8.0]])
    x = np.array([[1.0, 1.0]])
    out = ref.dropconnect_linear_forward(x, w, np.array([0.5, 0.0]), mask, 0.5)
    np.testing.assert_array_equal(out, [[2.5, 8.0]])
    gx, gw, gb = ref.dropconnect_linear_backward(x, w, np.ones((1, 2)), mask, 0.5)
    np.testing.assert_array_equal(gx, [[2.0, 8.0]])
    np.testing.assert_array_equal(gw, [[2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(gb, [1.0, 1.0])


def test_per_sample_linear_by_hand():
    w = np.ones((1, 2))
    masks = np.array([[[True, False]], [[False, True]]])  # (N=2, out=1, in=2)
    x = np.array([[1.0, 10.0], [1.0, 10.0]])
    out = ref.dropconnect_linear_forward(x, w, None, masks, 0.5, scale="classic")
    np.testing.assert_array_equal(out, [[1.0], [10.0]])


def test_conv_by_hand():
    x = np.arange(5.0).reshape(1, 1, 5)  # [0 1 2 3 4]
    w = np.array([[[1.0, -1.0]]])
    np.testing.assert_array_equal(ref.conv_forward(x, w), [[[-1.0, -1.0, -1.0, -1.0]]])
    np.testing.assert_array_equal(ref.conv_forward(x, w, stride=2), [[[-1.0, -1.0]]])
    np.testing.assert_array_equal(ref.conv_forward(x, w, padding=1), [[[0.0, -1, -1, -1, -1, 4]]])
    np.testing.assert_array_equal(ref.conv_forward(x, w, dilation=2), [[[-2.0, -2.0, -2.0]]])
    # groups=2: each output channel sees only its own input channel
    x2 = np.stack([x[0, 0], 10 * x[0, 0]])[None]
    w2 = np.array([[[1.0]], [[1.0]]])
    np.testing.assert_array_equal(ref.conv_forward(x2, w2, groups=2), x2)


def test_checks():
    with pytest.raises(ValueError, match="mask must be a bool array"):
        ref.dropconnect_weight(np.ones((2, 2)), np.ones((2, 3), dtype=bool), 0.5)
