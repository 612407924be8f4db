"""Turn a config into tensors: load, carve the validation split (by seed), subsample, standardise."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from dropkit.data import load_digits_split, load_idx, load_mnist1d, load_mnist_like, load_uci
from dropkit.lab.config import Config


@dataclass
class Prepared:
    """Tensors of one run. Inputs keep a channel axis: ``(N, 1, L)`` signals, ``(N, 1, H, W)``
    images, ``(N, D)`` tables. ``y_scale`` converts regression errors back to target units."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str  # "classification" or "regression"
    n_outputs: int
    y_scale: float = 1.0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@lru_cache(maxsize=4)
def _raw(dataset: str, data_dir: str | None, uci_split: int):
    # The raw arrays, cached: a sweep reloads the same set for every run in a process.
    if dataset == "mnist1d":
        x_tr, y_tr, x_te, y_te = load_mnist1d()
        return x_tr[:, None, :], y_tr, x_te[:, None, :], y_te
    if dataset in ("fashion_mnist", "mnist"):
        if dataset == "mnist" and data_dir is None:
            raise ValueError("dataset=mnist needs data_dir (a folder with MNIST's four IDX files)")
        x_tr, y_tr, x_te, y_te = (
            load_mnist_like(data_dir) if data_dir is None else load_idx(data_dir)
        )
        return x_tr[:, None] / np.float32(255), y_tr, x_te[:, None] / np.float32(255), y_te
    if dataset == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_split(seed=0)  # fixed test set across seeds
        return x_tr[:, None] / np.float32(16), y_tr, x_te[:, None] / np.float32(16), y_te
    if dataset == "uci":
        if data_dir is None:
            raise ValueError("dataset=uci needs data_dir (a folder such as .../uci/bostonHousing)")
        return load_uci(data_dir).split(uci_split)
    raise ValueError(f"unknown dataset {dataset!r}")  # pragma: no cover - the config refuses it


def data_files(config: Config) -> list[Path]:
    """The files a run of ``config`` reads its data from (for their fingerprints in the run's
    provenance): the four IDX files, or the UCI folder's files; none for data generated in process
    (mnist1d), shipped with a package (digits) or loaded by the user's code."""
    from dropkit.data.idx import FASHION_MNIST_DEFAULT_DIR

    if config.dataset in ("fashion_mnist", "mnist"):
        folder = Path(config.data_dir) if config.data_dir else FASHION_MNIST_DEFAULT_DIR
        stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        stems += ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        found = (
            next((folder / n for n in (s, s + ".gz") if (folder / n).is_file()), None)
            for s in stems
        )
        return [path for path in found if path is not None]  # load_idx's choice: raw before .gz
    if config.dataset == "uci" and config.data_dir:
        return sorted(p for p in Path(config.data_dir).iterdir() if p.is_file())
    return []


def _user_raw(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``dataset=pkg.module:load``: ``load(config)`` returns ``(x_train, y_train, x_test, y_test)``
    (NumPy arrays or tensors), checked here so a malformed loader is named, not trained on."""
    from dropkit.lab._imports import load_object

    key = f"dataset={config.dataset!r}"
    out = load_object(config.dataset, "dataset")(config)
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise ValueError(f"{key} must return (x_train, y_train, x_test, y_test)")
    arrays = [
        a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a) for a in out
    ]
    x_tr, y_tr, x_te, y_te = arrays
    for part, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"{key}: {part} inputs {x.shape} and targets {y.shape} must be (N, ...) and (N,), "
                "N > 0"
            )
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ValueError(f"{key}: {part} inputs must be finite numbers")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"{key}: train inputs {x_tr.shape} and test inputs {x_te.shape} differ")
    if np.issubdtype(y_tr.dtype, np.integer) != np.issubdtype(y_te.dtype, np.integer):
        raise ValueError(f"{key}: train and test targets must both be integer labels or floats")
    if np.issubdtype(y_tr.dtype, np.integer):
        low = min(int(y_tr.min()), int(y_te.min()))
        if low < 0:
            raise ValueError(f"{key}: class labels must be 0..K-1, but got {low}")
    elif not (np.isfinite(y_tr).all() and np.isfinite(y_te).all()):
        raise ValueError(f"{key}: regression targets must be finite")
    return x_tr.astype(np.float32), y_tr, x_te.astype(np.float32), y_te


def prepare(config: Config) -> Prepared:
    if ":" in config.dataset:
        x_tr, y_tr, x_te, y_te = _user_raw(config)
        task = "classification" if np.issubdtype(y_tr.dtype, np.integer) else "regression"
    else:
        x_tr, y_tr, x_te, y_te = _raw(config.dataset, config.data_dir, config.uci_split)
        task = "regression" if config.dataset == "uci" else "classification"

    # Validation split and subsample, both from one permutation seeded by config.seed: the val set
    # does not depend on train_size, so a training-set-size sweep is judged on the same val set.
    order = np.random.default_rng(config.seed).permutation(len(x_tr))
    n_val = int(round(config.val_fraction * len(x_tr)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if config.train_size is not None:
        if config.train_size > len(train_idx):
            raise ValueError(
                f"train_size={config.train_size} but only {len(train_idx)} training examples "
                f"remain after the validation split"
            )
        train_idx = train_idx[: config.train_size]

    x_fit = x_tr[train_idx].astype(np.float64)
    if task == "regression":
        x_mean, x_std = x_fit.mean(0), x_fit.std(0)  # per feature
        x_std[x_std == 0] = 1.0
        y_mean, y_std = float(y_tr[train_idx].mean()), float(y_tr[train_idx].std() or 1.0)
    else:
        x_mean, x_std = float(x_fit.mean()), float(x_fit.std() or 1.0)  # one scalar: keep shapes
        y_mean, y_std = 0.0, 1.0

    def xs(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(((a - x_mean) / x_std).astype(np.float32))

    def ys(a: np.ndarray) -> torch.Tensor:
        if task == "regression":
            return torch.as_tensor(((a - y_mean) / y_std).astype(np.float32))
        return torch.as_tensor(a.astype(np.int64))

    has_val = n_val > 0
    return Prepared(
        x_train=xs(x_tr[train_idx]),
        y_train=ys(y_tr[train_idx]),
        x_val=xs(x_tr[val_idx]) if has_val else None,
        y_val=ys(y_tr[val_idx]) if has_val else None,
        x_test=xs(x_te),
        y_test=ys(y_te),
        task=task,
        n_outputs=1 if task == "regression" else int(max(y_tr.max(), y_te.max()) + 1),
        y_scale=y_std,
    )
