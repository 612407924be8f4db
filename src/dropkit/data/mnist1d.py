"""MNIST-1D (Greydanus 2020), regenerated offline with the ``mnist1d`` package.

The package's ``make_dataset()`` builds the 5,000 signals (4,000 train / 1,000 test, length 40) from ten
fixed templates with seeded random transforms; nothing is downloaded. (Its ``get_dataset()`` would try a
download first, so it is not used.) ``make_dataset`` reseeds NumPy's and Python's global generators;
the caller's global random state is saved and restored around it.
"""

from __future__ import annotations

import random

import numpy as np

__all__ = ["load_mnist1d"]


def load_mnist1d(
    seed: int = 42, num_samples: int = 5000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 signals ``(N, 40)`` and int64 labels.

    ``seed`` is the dataset's own generation seed; 42, the package default, gives the published set.
    ``num_samples`` (default 5,000, the published size) is split 80/20 into train and test.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(f"load_mnist1d: num_samples must be an int >= 10, but got {num_samples!r}")
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_mnist1d: the 'mnist1d' package is missing; install the lab extra "
            "(pip install -e '.[lab]')"
        ) from err
    args = get_dataset_args()
    args.seed = int(seed)
    args.num_samples = num_samples
    # make_dataset seeds the legacy global generators; put the caller's state back afterwards.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return (
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )
