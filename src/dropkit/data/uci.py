"""UCI regression benchmarks in the standard split format.

The format is the one distributed with the public code of the probabilistic-backprop (Hernández-Lobato
& Adams 2015) and Monte-Carlo dropout (Gal & Ghahramani 2016) papers; one folder per dataset:

* ``data.txt``: whitespace-separated rows, features and target side by side;
* ``index_features.txt``, ``index_target.txt``: column indices (0-based) of the features and target;
* ``index_train_<i>.txt``, ``index_test_<i>.txt``: row indices of split i, one per line;
* ``n_splits.txt``, ``n_hidden.txt``, ``n_epochs.txt``: the protocol's settings;
* ``dropout_rates.txt``, ``tau_values.txt``: the published grid-search values.

Users bring their own copy; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["UCI_DATASETS", "UCIDataset", "load_uci"]

# The nine folders of the standard distribution.
UCI_DATASETS = (
    "bostonHousing",
    "concrete",
    "energy",
    "kin8nm",
    "naval-propulsion-plant",
    "power-plant",
    "protein-tertiary-structure",
    "wine-quality-red",
    "yacht",
)

_REQUIRED = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt")


@dataclass(frozen=True)
class UCIDataset:
    """One UCI regression set: all rows, the split indices and the protocol's settings."""

    name: str
    x: np.ndarray  # (N, D) float64
    y: np.ndarray  # (N,) float64
    train_indices: tuple[np.ndarray, ...]
    test_indices: tuple[np.ndarray, ...]
    n_hidden: int = 50
    n_epochs: int = 40
    dropout_rates: tuple[float, ...] = field(default=())
    tau_values: tuple[float, ...] = field(default=())

    @property
    def n_splits(self) -> int:
        return len(self.train_indices)

    def split(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_train, y_train, x_test, y_test)`` of split ``i`` (raw, not normalised)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"UCIDataset.split: i must be an int, but got {type(i).__name__}")
        if not 0 <= i < self.n_splits:
            raise ValueError(
                f"UCIDataset.split: {self.name} has splits 0..{self.n_splits - 1}, but got i={i}"
            )
        tr, te = self.train_indices[i], self.test_indices[i]
        return self.x[tr], self.y[tr], self.x[te], self.y[te]


def _read_ints(path: Path) -> np.ndarray:
    return np.atleast_1d(np.loadtxt(path, dtype=np.int64))


def _read_floats(path: Path) -> tuple[float, ...]:
    if not path.is_file():
        return ()
    return tuple(float(v) for v in np.atleast_1d(np.loadtxt(path, dtype=np.float64)))


def _read_int(path: Path, default: int) -> int:
    return int(path.read_text().split()[0]) if path.is_file() else default


def load_uci(directory: str | Path) -> UCIDataset:
    """Load one dataset folder (e.g. ``.../uci/bostonHousing``) in the standard split format.

    Raises:
        FileNotFoundError: the folder or a required file is missing (the message lists what is needed).
        ValueError: indices out of range, or train and test of a split overlapping.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"load_uci: no dataset folder at '{directory}'. Expected a folder in the standard UCI "
            f"split format (one of {', '.join(UCI_DATASETS)}), holding {', '.join(_REQUIRED)} and "
            "index_train_<i>.txt / index_test_<i>.txt"
        )
    missing = [name for name in _REQUIRED if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"load_uci: '{directory}' lacks {', '.join(missing)}")

    data = np.loadtxt(directory / "data.txt", dtype=np.float64, ndmin=2)
    features = _read_ints(directory / "index_features.txt")
    target = int(_read_ints(directory / "index_target.txt")[0])
    n_splits = _read_int(directory / "n_splits.txt", 0)
    n_rows, n_cols = data.shape
    if features.max(initial=-1) >= n_cols or target >= n_cols:
        raise ValueError(f"load_uci: column indices exceed data.txt's {n_cols} columns")

    train, test = [], []
    for i in range(n_splits):
        paths = [directory / f"index_{part}_{i}.txt" for part in ("train", "test")]
        absent = [p.name for p in paths if not p.is_file()]
        if absent:
            raise FileNotFoundError(
                f"load_uci: n_splits.txt says {n_splits} splits but '{directory}' lacks "
                f"{', '.join(absent)}"
            )
        tr, te = (_read_ints(p) for p in paths)
        for name, idx in (("train", tr), ("test", te)):
            if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
                raise ValueError(
                    f"load_uci: index_{name}_{i}.txt has row indices outside 0..{n_rows - 1}"
                )
        if np.intersect1d(tr, te).size:
            raise ValueError(f"load_uci: split {i} has rows in both train and test")
        train.append(tr)
        test.append(te)

    return UCIDataset(
        name=directory.name,
        x=data[:, features],
        y=data[:, target],
        train_indices=tuple(train),
        test_indices=tuple(test),
        n_hidden=_read_int(directory / "n_hidden.txt", 50),
        n_epochs=_read_int(directory / "n_epochs.txt", 40),
        dropout_rates=_read_floats(directory / "dropout_rates.txt"),
        tau_values=_read_floats(directory / "tau_values.txt"),
    )
