"""A config small enough to train in well under a second: scikit-learn digits, one hidden layer."""

from __future__ import annotations

TINY = {
    "dataset": "digits",
    "widths": [32],
    "epochs": 1,
    "batch_size": 64,
    "lr": 0.01,
    "val_fraction": 0.2,
    "plots": False,
}
