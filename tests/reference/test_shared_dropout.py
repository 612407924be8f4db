"""Reference shared-axes, channel and DropPath dropout: hand-computed values and checks."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit import reference as ref


def test_shared_mask_shape():
    assert ref.shared_mask_shape((2, 3, 4, 5), (2, 3)) == (2, 3, 1, 1)
    assert ref.shared_mask_shape((2, 3, 4), -1) == (2, 3, 1)
    assert ref.shared_mask_shape((2, 3), ()) == (2, 3)


def test_shared_forward_by_hand():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    mask = np.array([[True], [False]])  # one draw per row, shared along axis 1
    out = ref.shared_dropout_forward(x, mask, 0.5)
    np.testing.assert_array_equal(out, [[2.0, 4.0, 6.0], [0.0, 0.0, 0.0]])
    out = ref.shared_dropout_forward(x, mask, 0.5, scale="classic")
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ref.shared_dropout_forward(x, None, 0.5, training=False), x)
    np.testing.assert_array_equal(
        ref.shared_dropout_forward(x, None, 0.25, scale="classic", training=False), x * 0.75
    )


def test_channel_and_drop_path_by_hand():
    x = np.ones((2, 2, 3), dtype=np.float32)
    out = ref.channel_dropout_forward(
        x, np.array([[True, False], [False, True]]), 0.75, spatial_dims=1
    )
    np.testing.assert_array_equal(out[:, :, 0], [[4.0, 0.0], [0.0, 4.0]])
    assert out.dtype == np.float32 and (out == out[..., :1]).all()
    out = ref.drop_path_forward(x, np.array([False, True]), 0.5)
    np.testing.assert_array_equal(out, np.stack([np.zeros((2, 3)), 2 * np.ones((2, 3))]))


def test_checks():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        ref.shared_dropout_forward(x, np.ones((3, 1), dtype=bool), 0.5)
    with pytest.raises(TypeError, match="bool array of rank 2"):
        ref.shared_dropout_forward(x, np.ones((2, 1)), 0.5)
    with pytest.raises(ValueError, match="channel_mask"):
        ref.channel_dropout_forward(x, np.ones(3, dtype=bool), 0.5, spatial_dims=1)
    with pytest.raises(ValueError, match="sample_mask must have shape"):
        ref.drop_path_forward(x, np.ones(3, dtype=bool), 0.5)
    with pytest.raises(ValueError, match="dropout probability"):
        ref.shared_dropout_forward(x, np.ones((2, 1), dtype=bool), 1.0)


def test_drop_path_unscaled_by_hand():
    x = np.full((3, 2), 4.0, dtype=np.float32)
    out = ref.drop_path_forward(x, np.array([True, False, True]), 0.5, scale_by_keep=False)
    np.testing.assert_array_equal(out, [[4.0, 4.0], [0.0, 0.0], [4.0, 4.0]])
