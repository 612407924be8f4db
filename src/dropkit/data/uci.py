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
    """Whole numbers, one or more per file; ``ValueError`` naming the file otherwise."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"load_uci: '{path}' is not a text file of integers") from None
    values = text.split()
    if not values:
        raise ValueError(f"load_uci: '{path}' is empty; it should list integer indices")
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        bad = next(v for v in values if not _is_int(v))
        raise ValueError(f"load_uci: '{path}' should hold integers only, but has {bad!r}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _read_floats(path: Path) -> tuple[float, ...]:
    if not path.is_file():
        return ()
    try:
        return tuple(float(v) for v in path.read_text().split())
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"load_uci: '{path}' should hold numbers only") from None


def _read_int(path: Path, default: int) -> int:
    if not path.is_file():
        return default
    values = _read_ints(path)
    if len(values) != 1 or values[0] < 0:
        raise ValueError(
            f"load_uci: '{path}' should hold one non-negative integer, but has "
            f"{' '.join(map(str, values))}"
        )
    return int(values[0])


def _read_data(path: Path) -> np.ndarray:
    """``data.txt`` as an (N, D) float64 array: rectangular, numeric and finite, or ``ValueError``."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"load_uci: '{path}' is not a text file of numbers") from None
    rows, width = [], None
    for lineno, line in enumerate(lines, 1):
        cells = line.split()
        if not cells:
            continue
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise ValueError(
                f"load_uci: '{path}' line {lineno} has {len(cells)} columns, the first row {width}"
            )
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise ValueError(
                f"load_uci: '{path}' line {lineno} has a non-numeric cell {bad!r}"
            ) from None
    if not rows:
        raise ValueError(f"load_uci: '{path}' holds no rows")
    data = np.array(rows, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(data))
    if len(bad):
        row, col = bad[0]
        raise ValueError(
            f"load_uci: '{path}' has {len(bad)} non-finite cell(s) (NaN or inf), the first at "
            f"row {row + 1}, column {col} ({data[row, col]}); impute or drop them first"
        )
    return data


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_uci(directory: str | Path) -> UCIDataset:
    """Load one dataset folder (e.g. ``.../uci/bostonHousing``) in the standard split format.

    Raises:
        FileNotFoundError: the folder or a required file is missing (the message lists what is needed).
        ValueError: a malformed file (named in the message): ragged or non-numeric rows, NaN or inf
            cells, non-integer or out-of-range indices, a target that is also a feature, an empty
            split, or train and test of a split overlapping.
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

    data = _read_data(directory / "data.txt")
    n_rows, n_cols = data.shape
    features = _read_ints(directory / "index_features.txt")
    target_values = _read_ints(directory / "index_target.txt")
    if len(target_values) != 1:
        raise ValueError(
            f"load_uci: '{directory / 'index_target.txt'}' should hold one column index, but has "
            f"{len(target_values)}"
        )
    target = int(target_values[0])
    # Indices are 0-based column numbers; negative ones (NumPy's from-the-end) are refused: they
    # would silently alias another column (e.g. the target reused as a feature).
    for name, idx in (("index_features.txt", features), ("index_target.txt", target_values)):
        if idx.min() < 0 or idx.max() >= n_cols:
            raise ValueError(
                f"load_uci: '{directory / name}' has column indices outside 0..{n_cols - 1} "
                f"(data.txt has {n_cols} columns): {sorted(set(idx.tolist()))}"
            )
    if target in features.tolist():
        raise ValueError(
            f"load_uci: column {target} is both the target (index_target.txt) and a feature "
            f"(index_features.txt) in '{directory}'"
        )
    if len(np.unique(features)) != len(features):
        raise ValueError(f"load_uci: '{directory / 'index_features.txt'}' repeats a column")
    n_splits = _read_int(directory / "n_splits.txt", 0)
    if n_splits < 1:
        raise ValueError(f"load_uci: '{directory / 'n_splits.txt'}' says 0 splits")

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
        for path, idx in zip(paths, (tr, te), strict=True):
            if idx.min() < 0 or idx.max() >= n_rows:
                raise ValueError(f"load_uci: '{path}' has row indices outside 0..{n_rows - 1}")
        if np.intersect1d(tr, te).size:
            raise ValueError(f"load_uci: split {i} has rows in both train and test ('{directory}')")
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
