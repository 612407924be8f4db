"""Reference DropBlock: blocks painted by hand, gamma, the count-based rescale."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit import reference as ref


def test_mask_paints_blocks_from_their_corner():
    seeds = np.zeros((1, 1, 3, 3), dtype=bool)
    seeds[0, 0, 1, 2] = True
    keep = ref.dropblock_mask(seeds, (2, 3))  # map (3 + 1, 3 + 2) = (4, 5)
    expected = np.ones((4, 5), dtype=bool)
    expected[1:3, 2:5] = False
    np.testing.assert_array_equal(keep[0, 0], expected)


def test_gamma_by_hand():
    # p = 0.1, 14x14 map, 7x7 block: 0.1 / 49 * 196 / 64
    assert ref.dropblock_gamma(0.1, (14, 14), (7, 7)) == pytest.approx(0.00625)
    assert ref.dropblock_gamma(0.3, (5,), (1,)) == pytest.approx(0.3)


def test_rescale_by_hand():
    x = np.ones((1, 1, 2, 2), dtype=np.float32)
    mask = np.array([[[[True, False], [True, True]]]])
    out = ref.dropblock_forward(x, mask)  # 4 units, 3 kept: survivors times 4/3
    np.testing.assert_array_equal(out, np.float32(4 / 3) * mask)
    np.testing.assert_array_equal(ref.dropblock_forward(x, np.zeros_like(mask)), np.zeros_like(x))
    np.testing.assert_array_equal(ref.dropblock_backward(x, mask), out)
    np.testing.assert_array_equal(ref.dropblock_forward(x, mask, training=False), x)


def test_checks():
    with pytest.raises(ValueError, match="seeds must be a bool"):
        ref.dropblock_mask(np.zeros((1, 1, 3, 3)), (2, 2))


def test_unscaled_and_noise_filled_by_hand():
    x = np.full((1, 2, 2, 2), 2.0, dtype=np.float32)
    mask = np.array([[[[True, False], [True, True]]]])  # (1, 1, 2, 2): shared by both channels
    np.testing.assert_array_equal(
        ref.dropblock_forward(x, mask, scale_by_keep=False), np.broadcast_to(2.0 * mask, x.shape)
    )
    noise = np.array([[[[9.0, -1.5], [9.0, 9.0]]]])  # only the dropped unit's value is used
    out = ref.dropblock_forward(x, mask, scale_by_keep=False, noise=noise)
    expected = np.full_like(x, 2.0)
    expected[0, :, 0, 1] = -1.5
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(
        ref.dropblock_backward(x, mask, scale_by_keep=False), np.broadcast_to(2.0 * mask, x.shape)
    )
    with pytest.raises(ValueError, match="noise .* must have the mask's shape"):
        ref.dropblock_forward(x, mask, noise=np.zeros((1, 2, 2, 2)))
