"""Weight scaling vs Monte-Carlo averaging (Srivastava et al. 2014, section 7.5 and Fig. 11).

A dropout network's prediction at test time is the average over its exponentially many thinned
sub-networks; the usual rule scales the weights (here: inverted dropout, so eval mode) to approximate
it. This experiment trains one dropout MLP and compares the test error of the weight-scaled network
with that of averaging the softmax outputs of k sampled sub-networks, k = 1 … ``max_k``; each point
is the mean (and std) over ``repeats`` random draws of k among the ``max_k`` samples.

Data: MNIST-1D (Greydanus 2020; generated offline by the ``mnist1d`` package) or Fashion-MNIST IDX
files from a directory. The loaders here are private stand-ins; switch to ``dropkit.data`` once that
package has them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dropkit.data.idx import load_idx
from dropkit.data.mnist1d import load_mnist1d
from dropkit.nn import Dropout
from dropkit.uncertainty.mc import mc_predict
from dropkit.uncertainty.metrics import (
    brier_score,
    expected_calibration_error,
    mc_classification_nll,
)

__all__ = ["MCvsScalingConfig", "build_mlp", "run_mc_vs_scaling"]

_DATASETS = ("mnist1d", "fashion-mnist")


@dataclass(frozen=True)
class MCvsScalingConfig:
    """Settings of one run; saved beside the results."""

    dataset: str = "mnist1d"
    data_dir: str | None = None  # folder with the Fashion-MNIST IDX files
    hidden: tuple[int, ...] = (512, 512)
    p_input: float = 0.2
    p_hidden: float = 0.5
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    max_k: int = 100
    repeats: int = 20
    n_train: int | None = None  # cap on training rows (smoke tests)
    n_test: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in _DATASETS:
            raise ValueError(
                f"MCvsScalingConfig: dataset must be one of {_DATASETS}, got {self.dataset!r}"
            )
        if self.dataset == "fashion-mnist" and not self.data_dir:
            raise ValueError(
                "MCvsScalingConfig: fashion-mnist needs data_dir (the IDX files' folder)"
            )
        for name in ("epochs", "batch_size", "max_k", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"MCvsScalingConfig: {name} must be >= 1, got {getattr(self, name)}"
                )


def _load(config: MCvsScalingConfig) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test), inputs standardised with training statistics."""
    if config.dataset == "mnist1d":
        xtr, ytr, xte, yte = load_mnist1d(num_samples=10_000)  # 8,000 train / 2,000 test
    else:
        xtr, ytr, xte, yte = load_idx(config.data_dir)
        xtr, xte = xtr.reshape(-1, 784) / 255.0, xte.reshape(-1, 784) / 255.0
    xtr, xte = np.asarray(xtr, np.float32), np.asarray(xte, np.float32)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    xtr, ytr = xtr[: config.n_train], ytr[: config.n_train]
    xte, yte = xte[: config.n_test], yte[: config.n_test]
    return (
        torch.from_numpy(xtr),
        torch.from_numpy(np.array(ytr, dtype=np.int64)),
        torch.from_numpy(xte),
        torch.from_numpy(np.array(yte, dtype=np.int64)),
    )


def build_mlp(
    d_in: int, hidden: tuple[int, ...], d_out: int, p_input: float, p_hidden: float
) -> nn.Sequential:
    """Dropout on the input, then Linear-ReLU-Dropout blocks, then a linear read-out."""
    layers: list[nn.Module] = [Dropout(p_input)]
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU(), Dropout(p_hidden)]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: MCvsScalingConfig) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(config.epochs):
        for idx in torch.randperm(len(x)).split(config.batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def _mc_errors(
    probs: torch.Tensor, y: torch.Tensor, ks: list[int], repeats: int, gen
) -> np.ndarray:
    """Error of the average of k samples, for each k, over ``repeats`` random orders: (repeats, K)."""
    out = np.empty((repeats, len(ks)))
    for r in range(repeats):
        order = torch.randperm(probs.shape[0], generator=gen)
        running = torch.cumsum(probs[order], dim=0)  # (T, N, C): sums of the first k samples
        for j, k in enumerate(ks):
            out[r, j] = (running[k - 1].argmax(-1) != y).double().mean().item()
    return out


def run_mc_vs_scaling(config: MCvsScalingConfig, out: str | Path | None = None, log=print) -> dict:
    """Train, then compare MC averaging with weight scaling; writes results.json and a plot to ``out``."""
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    xtr, ytr, xte, yte = _load(config)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    model = build_mlp(xtr.shape[1], config.hidden, n_classes, config.p_input, config.p_hidden)
    _train(model, xtr, ytr, config)
    log(f"trained {config.epochs} epochs in {time.perf_counter() - t0:.1f} s")
    model.eval()
    with torch.no_grad():
        ws_probs = model(xte).softmax(-1)
    ws_error = (ws_probs.argmax(-1) != yte).double().mean().item()
    probs = mc_predict(model, xte, samples=config.max_k, seed=config.seed + 1).softmax(-1)
    mc_probs = probs.mean(0)
    calibration = {
        name: {
            "nll": mc_classification_nll(p.unsqueeze(0), yte).item(),
            "brier": brier_score(p, yte).item(),
            "ece": expected_calibration_error(p, yte).item(),
        }
        for name, p in (("weight_scaling", ws_probs), ("mc_average", mc_probs))
    }
    ks = sorted({k for k in (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100) if k <= config.max_k})
    errors = _mc_errors(probs, yte, ks, config.repeats, torch.Generator().manual_seed(config.seed))
    result = {
        "config": asdict(config),
        "ks": ks,
        "mc_error_mean": errors.mean(0).tolist(),
        "mc_error_std": errors.std(0).tolist(),
        "weight_scaling_error": ws_error,
        "calibration": calibration,
        "n_train": len(xtr),
        "n_test": len(xte),
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, indent=1)
        os.replace(tmp, out / "results.json")
        from dropkit.uncertainty.plots import plot_mc_vs_weight_scaling, plot_reliability_diagram

        plot_mc_vs_weight_scaling(result, out / "mc_vs_weight_scaling.png")
        for name, p in (("weight_scaling", ws_probs), ("mc_average", mc_probs)):
            fig = plot_reliability_diagram(p, yte, path=out / f"reliability_{name}.png")
            fig.clf()
    return result
