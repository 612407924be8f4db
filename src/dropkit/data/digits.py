"""scikit-learn's bundled 8x8 digits (1,797 images), split into train and test by a seeded stratified
split (the set has no official test part)."""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits_split"]


def load_digits_split(
    seed: int = 0, test_fraction: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 images ``(N, 8, 8)`` in 0..16, int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x.reshape(-1, 8, 8).astype(np.float32),
        y.astype(np.int64),
        test_size=test_fraction,
        stratify=y,
        random_state=seed,
    )
    return x_tr, y_tr, x_te, y_te
