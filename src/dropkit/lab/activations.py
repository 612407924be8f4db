"""Activation statistics in training vs inference mode: the "variance shift" of dropout before BN.

In training, inverted dropout keeps each unit's mean but raises its variance; at inference it is the
identity. A BatchNorm layer placed *after* dropout accumulates its running variance from the noisy
training activations, so at inference it normalises activations of another variance (Li, Chen, Hu &
Yang, "Understanding the Disharmony between Dropout and Batch Normalization by Variance Shift",
CVPR 2019). :func:`activation_stats` measures each layer's output mean and variance both ways:

* ``"train"``: dropout layers sampling masks, every other layer in eval mode (BatchNorm uses its
  running statistics, as at inference, so the two modes differ only by the dropout noise);
* ``"eval"``: the whole model in eval mode.

:func:`plot_activation_stats` draws them, one panel for the means and one for the variances.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dropkit.nn import dropout_modules

__all__ = ["activation_stats", "plot_activation_stats"]

_TRACKED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


def _tracked(model: nn.Module) -> list[tuple[str, nn.Module]]:
    drops = {id(m) for _, m in dropout_modules(model)}
    return [
        (name, m)
        for name, m in model.named_modules()
        if name and (isinstance(m, _TRACKED) or id(m) in drops)
    ]


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor, *, samples: int = 1) -> list[dict]:
    """One row per tracked layer (linear/conv, BatchNorm, dropout), in forward order::

        {"layer": name, "kind": class name, "train_mean", "train_var", "eval_mean", "eval_var"}

    Means and variances are over every element of the layer's output for the batch ``x`` (the
    variance is the mean over units of each unit's variance across the batch; the mean likewise);
    ``samples`` averages the training-mode statistics over that many dropout draws. The model's
    train/eval flags are restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"activation_stats: model must be an nn.Module, got {type(model).__name__}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"activation_stats: samples must be a positive int, got {samples!r}")
    layers = _tracked(model)
    if not layers:
        raise ValueError(
            "activation_stats: the model has no linear, conv, BatchNorm or dropout layer"
        )
    drops = {id(m) for _, m in dropout_modules(model)}
    flags = {m: m.training for m in model.modules()}
    order: list[str] = []
    sums: dict[tuple[str, str], list[float]] = {}

    def hook_for(name: str, mode: str):
        def hook(_module, _inputs, out):
            if name not in order:
                order.append(name)
            unit = out.transpose(0, 1).reshape(out.shape[1], -1) if out.dim() > 2 else out.T
            # per unit (channel) over the batch (and positions), then averaged over units
            acc = sums.setdefault((name, mode), [0.0, 0.0])
            acc[0] += unit.mean(1).mean().item()
            acc[1] += unit.var(1, correction=0).mean().item()

        return hook

    try:
        for mode, reps in (("train", samples), ("eval", 1)):
            handles = [m.register_forward_hook(hook_for(n, mode)) for n, m in layers]
            model.eval()
            if mode == "train":
                for m in model.modules():
                    if id(m) in drops:
                        m.train()
            for _ in range(reps):
                model(x)
            for h in handles:
                h.remove()
    finally:
        for m, flag in flags.items():
            m.train(flag)
    kinds = dict(layers)
    rows = []
    for name in order:
        row = {"layer": name, "kind": type(kinds[name]).__name__}
        for mode, reps in (("train", samples), ("eval", 1)):
            mean_sum, var_sum = sums[(name, mode)]
            row[f"{mode}_mean"], row[f"{mode}_var"] = mean_sum / reps, var_sum / reps
        rows.append(row)
    return rows


def plot_activation_stats(
    panels: Sequence[tuple[str, list[dict]]], path: str | Path, title: str = ""
) -> Path:
    """Save a figure with one column per ``(label, rows)`` panel: means on top, variances below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dropkit.lab._io import atomic_write

    fig, axes = plt.subplots(
        2, len(panels), figsize=(4.2 * len(panels), 6), squeeze=False, constrained_layout=True
    )
    for col, (label, rows) in enumerate(panels):
        names = [f"{r['layer']}\n{r['kind']}" for r in rows]
        pos = range(len(rows))
        for row, stat in enumerate(("mean", "var")):
            ax = axes[row][col]
            width = 0.4
            ax.bar(
                [i - width / 2 for i in pos],
                [r[f"train_{stat}"] for r in rows],
                width,
                label="train mode (dropout on)",
            )
            ax.bar(
                [i + width / 2 for i in pos],
                [r[f"eval_{stat}"] for r in rows],
                width,
                label="eval mode",
            )
            ax.set_xticks(list(pos), names, fontsize=7, rotation=90)
            ax.set_ylabel("mean" if stat == "mean" else "variance")
            if row == 0:
                ax.set_title(label, fontsize=9)
            if stat == "var":
                ax.set_yscale("log")
        axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path
