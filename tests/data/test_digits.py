"""scikit-learn digits, split by seed."""

from __future__ import annotations

import numpy as np

from dropkit.data import load_digits_split


def test_split_is_stratified_and_seeded():
    x_tr, y_tr, x_te, y_te = load_digits_split(seed=0)
    assert len(x_tr) + len(x_te) == 1797 and x_tr.shape[1:] == (8, 8)
    assert x_tr.max() == 16 and x_tr.min() == 0
    # Stratified: each class's share of the test set is within one example of 30%.
    counts = np.bincount(np.concatenate([y_tr, y_te]))
    assert np.all(np.abs(np.bincount(y_te) - 0.3 * counts) <= 1)
    np.testing.assert_array_equal(load_digits_split(seed=0)[3], y_te)
    assert not np.array_equal(load_digits_split(seed=1)[3], y_te)
