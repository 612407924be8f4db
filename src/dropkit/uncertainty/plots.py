"""Plots (matplotlib, from the ``lab`` extra; imported lazily): reliability diagram, Fig. 11 curve."""

from __future__ import annotations

from pathlib import Path

import torch

from dropkit.uncertainty.metrics import calibration_bins, expected_calibration_error

__all__ = ["plot_mc_vs_weight_scaling", "plot_reliability_diagram"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("dropkit plots need matplotlib: pip install 'dropkit[lab]'") from err
    return plt


def plot_reliability_diagram(
    probs: torch.Tensor,
    target: torch.Tensor,
    n_bins: int = 15,
    *,
    ax=None,
    title: str | None = None,
    path: str | Path | None = None,
):
    """Accuracy against mean confidence per top-label confidence bin, with the diagonal and the ECE.

    ``probs`` (B, C) (e.g. the MC mean), ``target`` (B,). Returns the matplotlib ``Figure``; saves it to
    ``path`` when given.
    """
    plt = _pyplot()
    conf, acc, count = calibration_bins(probs, target, n_bins)
    ece = float(expected_calibration_error(probs, target, n_bins))
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    edges = torch.linspace(0, 1, n_bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).numpy()
    used = (count > 0).numpy()
    width = 1.0 / n_bins
    ax.bar(centres[used], acc.numpy()[used], width=width, edgecolor="k", label="accuracy")
    ax.bar(
        centres[used],
        (conf - acc).numpy()[used],
        bottom=acc.numpy()[used],
        width=width,
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    ax.set_title(title or f"reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    return fig


def plot_mc_vs_weight_scaling(result: dict, path: str | Path | None = None, *, title: str = ""):
    """Test error of MC averaging against the number of samples k, with weight scaling as a line.

    ``result`` as returned by :func:`dropkit.uncertainty.ensemble.run_mc_vs_scaling`.
    """
    plt = _pyplot()
    ks = result["ks"]
    mean = [100 * v for v in result["mc_error_mean"]]
    std = [100 * v for v in result["mc_error_std"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(ks, mean, yerr=std, marker="o", ms=3, capsize=2, label="Monte-Carlo averaging")
    ax.axhline(
        100 * result["weight_scaling_error"], color="tab:red", ls="--", label="weight scaling"
    )
    ax.set_xscale("log")
    ax.set(xlabel="number of sampled networks k", ylabel="test error (%)")
    ax.set_title(title or f"MC averaging vs weight scaling ({result['config']['dataset']})")
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
