"""Matplotlib figures for runs and reports (Agg back-end: no display needed), saved as PNG atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402

from dropkit.lab._io import atomic_write  # noqa: E402

__all__ = ["curves_figure", "plot_run", "save_png", "sweep_figure"]


def save_png(fig: plt.Figure, path: str | Path | None = None) -> bytes:
    """PNG bytes of ``fig`` (closed afterwards), also written atomically to ``path`` if given."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return data


def _metric(history: Sequence[dict]) -> str:
    return "acc" if "test_acc" in history[0] else "rmse"


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and the half-width of its 95% Student-t interval (0 for one seed)."""
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2:
        return mean, np.zeros_like(mean)
    from scipy.special import stdtrit

    half = stdtrit(n - 1, 0.975) * values.std(axis=0, ddof=1) / np.sqrt(n)  # Student t
    return mean, half


def curves_figure(series: dict[str, Sequence[Sequence[dict]]], title: str = "") -> plt.Figure:
    """Learning curves: for each label, the mean over its runs' histories, train dashed, validation
    dotted, test solid, with a band of ± the 95% confidence interval over seeds on val and test.

    ``series`` maps a label to a list of histories (one per seed); runs of unequal length (early
    stopping) are averaged over the epochs they all reached.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first = next(iter(series.values()))[0]
    metric = _metric(first)
    parts = [("train", "--"), ("val", ":"), ("test", "-")]
    for i, (label, histories) in enumerate(series.items()):
        color = colors[i % len(colors)]
        n = min(len(h) for h in histories)
        epochs = [r["epoch"] for r in histories[0][:n]]
        for ax, key in zip(axes, (metric, "loss"), strict=True):
            for part, style in parts:
                if any(h[0].get(f"{part}_{key}") is None for h in histories):
                    continue  # e.g. no validation set
                values = np.array([[r[f"{part}_{key}"] for r in h[:n]] for h in histories])
                mean, half = _band(values)
                ax.plot(epochs, mean, style, color=color, lw=1.5, label=f"{label} ({part})")
                if part != "train" and half.any():
                    ax.fill_between(epochs, mean - half, mean + half, color=color, alpha=0.15, lw=0)
    for ax, key in zip(axes, (metric, "loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel({"acc": "accuracy", "rmse": "RMSE", "loss": "loss (log scale)"}[key])
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")  # train loss falls by decades when a model memorises
    # Ticks at 1, 2 and 5 of each decade, as plain numbers: readable whether the losses span one
    # decade or several (a bare log axis may show no label at all within one decade).
    axes[1].yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes[1].yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axes[1].yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(1, 10)))
    axes[1].yaxis.set_minor_formatter(ticker.NullFormatter())
    for ax in axes:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(
        (title + ": " if title else "")
        + "train (dashed), validation (dotted), test (solid); bands: 95% CI over seeds"
    )
    fig.tight_layout()
    return fig


def plot_run(history: Sequence[dict], path: str | Path, title: str = "") -> None:
    save_png(curves_figure({title or "run": [history]}, title), path)


def sweep_figure(
    points: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
) -> plt.Figure:
    """One line per series: ``label -> (x, mean, ci_half_width)`` with 95% CI error bars."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, mean, ci) in points.items():
        ci = np.nan_to_num(np.asarray(ci, dtype=float))
        ax.errorbar(x, mean, yerr=ci, marker="o", capsize=3, lw=1.6, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(points) > 1 or next(iter(points)):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
