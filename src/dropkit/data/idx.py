"""MNIST and Fashion-MNIST from IDX files (gzip or raw), from a folder the user has.

Expected names (the distribution's own): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ending in ``.gz``. Debian's
``dataset-fashion-mnist`` package installs them in :data:`FASHION_MNIST_DEFAULT_DIR`, which is used when
no folder is given. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["FASHION_MNIST_DEFAULT_DIR", "load_idx", "load_mnist_like", "read_idx"]

FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_HOW_TO_GET = (
    "Fashion-MNIST: 'apt-get install dataset-fashion-mnist' (Debian) puts the files in "
    f"{FASHION_MNIST_DEFAULT_DIR}; or copy the four IDX files (train-images-idx3-ubyte[.gz], "
    "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) of "
    "Fashion-MNIST or MNIST into a folder and set data_dir to that folder"
)
_N_CLASSES = 10  # MNIST's digits, Fashion-MNIST's garment types
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw). Raises ``ValueError`` naming the file when it is corrupt."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"read_idx: cannot read '{path}' ({err}); {_HOW_TO_GET}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"read_idx: '{path}' is not an IDX file (bad magic number); {_HOW_TO_GET}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"read_idx: '{path}' is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes) but the file has {len(raw)} bytes; {_HOW_TO_GET}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx(directory: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from the four IDX files in ``directory``.

    Images are returned as uint8 ``(N, 28, 28)``, labels as int64 ``(N,)``.

    Raises:
        FileNotFoundError: the folder or one of the files is missing (the message says how to get them).
        ValueError: a file is corrupt, images and labels disagree in number, or a label is outside
            0..9 (it would otherwise silently widen the model's output layer).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"load_idx: no folder '{directory}'. {_HOW_TO_GET}")
    paths = {key: _find(directory, stem) for key, stem in _FILES.items()}
    missing = [_FILES[key] + "[.gz]" for key, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(
            f"load_idx: '{directory}' lacks {', '.join(missing)}. {_HOW_TO_GET}"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"load_idx: {part} images {x.shape} and labels {y.shape} do not match in "
                f"'{directory}'; {_HOW_TO_GET}"
            )
        bad = (y < 0) | (y >= _N_CLASSES)
        if bad.any():
            raise ValueError(
                f"load_idx: '{paths[f'y_{part}']}' has {int(bad.sum())} label(s) outside "
                f"0..{_N_CLASSES - 1} (MNIST and Fashion-MNIST have {_N_CLASSES} classes), e.g. "
                f"{int(y[bad][0])} at index {int(np.flatnonzero(bad)[0])}; the file is corrupt"
            )
    return (
        arrays["x_train"],
        arrays["y_train"].astype(np.int64),
        arrays["x_test"],
        arrays["y_test"].astype(np.int64),
    )


def load_mnist_like(
    data_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`load_idx` on ``data_dir``, or on :data:`FASHION_MNIST_DEFAULT_DIR` when it is None."""
    return load_idx(FASHION_MNIST_DEFAULT_DIR if data_dir is None else data_dir)
