"""Presets: a base config, a grid and named variants for each published claim the lab checks.

Run one with ``dropkit sweep --preset NAME`` (add ``--grid seed=0,1`` to change an axis, ``key=value``
to change the base). Measured results are in docs/results.md. Every preset starts from the MNIST-1D
recipe of the mnist1d package's paper (Greydanus 2020: MLP 40-100-100-10, ReLU, Adam lr 1e-2, batch
100, 6,000 steps = 150 epochs of its 4,000 training signals) and overrides only what differs; the
issue-15 presets (Fashion-MNIST MLP, MNIST-1D CNN and GRU, noise kinds, schedules) have their own
bases, described where they are defined. ``scripts/results_issue15.py`` runs and tabulates those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FASHION_MLP", "MNIST1D_RECIPE", "PRESETS", "Preset"]

MNIST1D_RECIPE: dict[str, Any] = {
    "dataset": "mnist1d",
    "model": "mlp",
    "widths": (100, 100),
    "activation": "relu",
    "optimizer": "adam",
    "lr": 1e-2,
    "batch_size": 100,
    "epochs": 150,
    "val_fraction": 0.0,  # the recipe trains on all 4,000; test on the 1,000 held out
}
# The comparisons: 10% of the training signals held out for validation (early stopping needs it),
# two 256-unit layers (room for dropout to help), 100 epochs (4,000 steps), evaluated every 5th.
_COMPARE = {
    **MNIST1D_RECIPE,
    "val_fraction": 0.1,
    "widths": (256, 256),
    "epochs": 100,
    "eval_every": 5,
}


# Issue 15: Fashion-MNIST MLP, 784-1024-1024-10 ReLU, Adam 1e-3 decayed to 0 by a cosine over 40
# epochs, batch 256; 5,000 of the 60,000 training images held out for validation; test on the 10,000.
FASHION_MLP: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "model": "mlp",
    "widths": (1024, 1024),
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "batch_size": 256,
    "epochs": 40,
    "val_fraction": 1 / 12,
    "eval_every": 5,
    "eval_train_max": 10_000,
}
_FASHION_RATES: dict[str, dict[str, Any]] = {
    "no dropout": {},
    "hidden 0.3": {"p_hidden": 0.3},
    "hidden 0.5": {"p_hidden": 0.5},
    "hidden 0.7": {"p_hidden": 0.7},
    "input 0.2, hidden 0.5": {"p_input": 0.2, "p_hidden": 0.5},
    "input 0.2, hidden 0.7": {"p_input": 0.2, "p_hidden": 0.7},
}


# Issue 15: MNIST-1D CNN (conv 3 -> ReLU -> dropout -> max-pool 2, 32 and 64 channels, dense 128,
# no dropout on the dense layer), Adam 3e-3 with cosine decay, 60 epochs; every kind of conv dropout
# at p = 0.2 in both conv blocks, and the activation-dropping kinds at 0.3 (0.1 is defined too).
MNIST1D_CNN: dict[str, Any] = {
    **MNIST1D_RECIPE,
    "model": "cnn",
    "channels": (32, 64),
    "hidden_size": 128,
    "lr": 3e-3,
    "lr_schedule": "cosine",
    "epochs": 60,
    "val_fraction": 0.1,
    "eval_every": 5,
}
_CNN_KINDS = ("element", "channel", "dropblock", "dropconnect")
_CNN_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    **{
        f"{kind} {p:g}": {"conv_dropout": kind, "p_hidden": (p, p, 0.0)}
        for kind in _CNN_KINDS
        for p in (0.1, 0.2, 0.3)
    },
}
# Fashion-MNIST CNN on 6,000 training images (the overfitting regime of fashion-mlp-small): two
# blocks of conv 3x3 -> ReLU -> dropout -> max-pool 2 with 32 and 64 channels, dense 128 -> ReLU ->
# dropout -> 10; Adam 1e-3 with cosine decay over 40 epochs (about 1,900 steps), batch 128; the
# same validation and test sets as the other Fashion-MNIST presets. The articles' CNN advice:
# whole channels at 0.2-0.3 in the conv blocks, 0.5 before the classifier.
FASHION_CNN_SMALL: dict[str, Any] = {
    **FASHION_MLP,
    "model": "cnn",
    "channels": (32, 64),
    "hidden_size": 128,
    "batch_size": 128,
    "train_size": 6000,
    "epochs": 40,
}
_FASHION_CNN_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "dense 0.5": {"p_hidden": (0.0, 0.0, 0.5)},
    "channel 0.2, dense 0.5": {"conv_dropout": "channel", "p_hidden": (0.2, 0.2, 0.5)},
    "element 0.2, dense 0.5": {"conv_dropout": "element", "p_hidden": (0.2, 0.2, 0.5)},
}
# Issue 15: MNIST-1D read as 40 steps of one value by a one-layer GRU (64 units), Adam 5e-3 with
# cosine decay, 40 epochs; dropout 0.25 on the input sequence and the output state.
MNIST1D_GRU: dict[str, Any] = {
    **MNIST1D_RECIPE,
    "model": "gru",
    "hidden_size": 64,
    "lr": 5e-3,
    "lr_schedule": "cosine",
    "epochs": 40,
    "val_fraction": 0.1,
    "eval_every": 5,
}
_RNN_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "naive (new mask each step)": {"rnn_dropout": "standard", "p_hidden": 0.25},
    "variational (input, h, output)": {"rnn_dropout": "recurrent", "p_hidden": 0.25},
    "weight drop 0.25": {"weight_dropout": 0.25},
    "AWD (locked + weight drop)": {
        "rnn_dropout": "variational",
        "p_input": 0.1,
        "p_hidden": 0.25,
        "weight_dropout": 0.25,
    },
}

# The overfitting regime: 1,000 training signals (the 400 validation ones are split off first), two stacked GRU
# layers of 128, 60 epochs (train accuracy reaches 100% without dropout). Every technique at 0.1 (0.25
# underfit in a seed-0 pilot); no input dropout anywhere: with one input feature per step, a locked
# input mask would blank a whole sequence.
MNIST1D_GRU_OVERFIT: dict[str, Any] = {
    **MNIST1D_GRU,
    "train_size": 1000,
    "hidden_size": 128,
    "rnn_layers": 2,
    "epochs": 60,
    "eval_every": 10,
}
_RNN_OVERFIT_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "naive 0.1": {"rnn_dropout": "standard", "p_hidden": 0.1},
    "variational 0.1": {"rnn_dropout": "recurrent", "p_hidden": 0.1},
    "weight drop 0.1": {"weight_dropout": 0.1},
    "AWD 0.1 (locked + weight drop)": {
        "rnn_dropout": "variational",
        "p_hidden": 0.1,
        "weight_dropout": 0.1,
    },
}

# Issue 15, MNIST-1D MLP (the comparisons' 256-256 net): Bernoulli vs Gaussian noise (Srivastava et
# al. Table 10) and DropConnect (Wan et al. 2013), all at p = 0.3 on the hidden layers.
_NOISE_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "Bernoulli dropout 0.3": {"p_hidden": 0.3},
    "Gaussian noise, p 0.3": {"p_hidden": 0.3, "mlp_dropout": "gaussian"},
    "DropConnect 0.3": {"p_hidden": 0.3, "mlp_dropout": "dropconnect"},
}
# Fig. 9b: keep-probability x width fixed at 128 (n = 128 / (1 - p)).
_PN_VARIANTS: dict[str, dict[str, Any]] = {
    f"p={p:g}, n={round(128 / (1 - p))}": {
        "p_hidden": p,
        "widths": (round(128 / (1 - p)),) * 2,
    }
    for p in (0.0, 0.2, 0.4, 0.6, 0.8)
}
# Liu et al. 2023 in kind: an underfitting MLP (40-32-32-10, Adam 1e-3, 60 epochs; train accuracy
# stays far from 100%), dropout 0.1 constant, only in the first 12 epochs (early) or only after them.
_UNDERFIT = {
    **_COMPARE,
    "widths": (32, 32),
    "lr": 1e-3,
    "epochs": 60,
    "eval_every": 3,
}
_SCHEDULE_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "constant 0.1": {"p_hidden": 0.1},
    "early 0.1 (first 12 epochs)": {
        "p_hidden": 0.1,
        "dropout_schedule": "early",
        "schedule_length": 12,
    },
    "late 0.1 (from epoch 12)": {
        "p_hidden": 0.1,
        "dropout_schedule": "late",
        "schedule_length": 12,
    },
}

# Issue 25: k data-parallel ranks seeded alike draw the same dropout masks, sample i of each rank the
# same as sample i of the others. mask_share=k (lab/mask_share.py) simulates that on one process: the
# batch is k chunks sharing one mask pattern row for row. Both models at their dropout of the
# overfitting regimes above, batch 256 so that every k divides it: independent masks (k = 1), k = 4,
# 16, 64, and k = 256 (one sample a rank: batchwise dropout, one mask for the whole batch), with no
# dropout as the floor. The Fashion-MNIST MLP is fashion-mlp-small's (batch 256 already); the GRU
# is mnist1d-rnn-overfit's at batch 256 instead of 100 (see GRU_MASK_SHARE).
MASK_SHARE_K = (1, 4, 16, 64, 256)


def _mask_share_variants(dropout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    labels = {1: "k=1 (independent masks)", 256: "k=256 (batchwise: one mask a batch)"}
    return {
        "no dropout": {},
        **{labels.get(k, f"k={k}"): {**dropout, "mask_share": k} for k in MASK_SHARE_K},
    }


# Batch 256 for 150 epochs: 4 batches an epoch, 600 steps, as the batch-100 preset's 60 epochs. In a
# seed-0 pilot, 60 epochs at batch 256 (240 steps) left the GRU far from fitting (train 67%, test
# 55% with and without dropout); at 150 the regime is back: none 100% / 89.2%, variational 0.1
# 100% / 95.1%.
GRU_MASK_SHARE: dict[str, Any] = {**MNIST1D_GRU_OVERFIT, "batch_size": 256, "epochs": 150}


@dataclass(frozen=True)
class Preset:
    title: str
    base: dict[str, Any]
    grid: dict[str, list]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


def _size_variants(sizes: tuple[int, ...], steps: int = 3000) -> dict[str, dict[str, Any]]:
    # Same number of optimiser steps at every size, so small sets are not simply under-trained.
    out = {}
    for n in sizes:
        epochs = max(1, steps // -(-n // 100))  # batches per epoch: ceil(n / 100)
        out[f"n={n}"] = {"train_size": n, "epochs": epochs, "eval_every": max(1, epochs // 50)}
    return out


PRESETS: dict[str, Preset] = {
    "mnist1d-mlp": Preset(
        title="MNIST-1D MLP, published recipe, with and without dropout",
        base=MNIST1D_RECIPE,
        grid={
            "variant": [
                "no regularization",
                "dropout 0.2",
                "dropout 0.1 in, 0.3 hidden, 256 wide",
                "dropout 0.3 hidden, 256 wide",
            ],
            "seed": [0, 1, 2],
        },
        variants={
            "no regularization": {},
            "dropout 0.2": {"p_hidden": 0.2},
            "dropout 0.3 hidden, 256 wide": {"widths": (256, 256), "p_hidden": 0.3},
            "dropout 0.1 in, 0.3 hidden, 256 wide": {
                "widths": (256, 256),
                "p_input": 0.1,
                "p_hidden": 0.3,
            },
        },
    ),
    "fashion-mlp": Preset(
        title="Fashion-MNIST MLP 784-512-512-10, with and without dropout",
        base={
            "dataset": "fashion_mnist",
            "model": "mlp",
            "widths": (512, 512),
            "lr": 1e-3,
            "batch_size": 128,
            "epochs": 30,
            "val_fraction": 1 / 12,
            "eval_train_max": 10_000,
        },
        grid={"variant": ["no dropout", "dropout 0.2 in, 0.5 hidden"], "seed": [0, 1]},
        variants={
            "no dropout": {},
            "dropout 0.2 in, 0.5 hidden": {"p_input": 0.2, "p_hidden": 0.5},
        },
    ),
    "rate-sweep": Preset(
        title="MNIST-1D: test accuracy vs drop probability (Srivastava et al. Fig. 9)",
        base={**_COMPARE, "name": "rate-sweep"},
        grid={"p_hidden": [0.0, 0.2, 0.4, 0.6, 0.8], "seed": [0, 1, 2]},
    ),
    "size-sweep": Preset(
        title="MNIST-1D: dropout vs training-set size (Srivastava et al. Fig. 10)",
        base={**_COMPARE, "name": "size-sweep"},
        grid={
            "variant": list(_size_variants((100, 250, 500, 1000, 2000, 3600))),
            "p_hidden": [0.0, 0.3],
            "seed": [0, 1, 2],
        },
        variants=_size_variants((100, 250, 500, 1000, 2000, 3600)),
    ),
    "regularizers": Preset(
        title="MNIST-1D: regularizers compared (Srivastava et al. Table 9)",
        base=_COMPARE,
        grid={
            "variant": [
                "none",
                "L2",
                "L2+L1",
                "max-norm",
                "dropout+L2",
                "dropout+max-norm",
                "early stopping",
                "augmentation",
                "BatchNorm",
            ],
            "seed": [0, 1, 2],
        },
        variants={
            "none": {},
            "L2": {"l2": 1e-4},
            "L2+L1": {"l2": 1e-4, "l1": 1e-5},
            "max-norm": {"max_norm": 3.0},
            "dropout+L2": {"p_hidden": 0.3, "l2": 1e-4},
            "dropout+max-norm": {"p_hidden": 0.3, "max_norm": 3.0},
            "early stopping": {"early_stopping": 4},  # 4 evaluations = 20 epochs
            "augmentation": {"augment_shift": 3, "augment_noise": 0.1},
            "BatchNorm": {"batchnorm": "before_dropout"},
        },
    ),
    "bn-placement": Preset(
        title="MNIST-1D: BatchNorm before vs after dropout (Li et al. 2019)",
        base={**_COMPARE, "p_hidden": 0.3},
        grid={
            "variant": ["dropout, no BN", "BN before dropout", "BN after dropout"],
            "seed": [0, 1, 2],
        },
        variants={
            "dropout, no BN": {},
            "BN before dropout": {"batchnorm": "before_dropout"},
            "BN after dropout": {"batchnorm": "after_dropout"},
        },
    ),
    # Issue 15. Fashion-MNIST MLP: the rates are chosen on seed 0 ("fashion-mlp-rates"), then
    # the chosen pair is confirmed against no dropout on 5 seeds ("fashion-mlp-dropout").
    "fashion-mlp-rates": Preset(
        title="Fashion-MNIST MLP 784-1024-1024-10: choosing the drop rates (seed 0)",
        base=FASHION_MLP,
        # hidden 0.7 was stopped at epoch 25 of 40 (clearly behind) to save compute
        grid={"variant": ["no dropout", "hidden 0.3", "hidden 0.5"], "seed": [0]},
        variants=_FASHION_RATES,
    ),
    "fashion-mlp-dropout": Preset(
        title="Fashion-MNIST MLP 784-1024-1024-10: no dropout vs the chosen rate (hidden 0.3)",
        base=FASHION_MLP,
        # hidden 0.3 had the best validation accuracy of fashion-mlp-rates; seeds 0-2 were run
        # here (about 17 min a run at the load of the time); --grid seed=0,1,2,3,4 adds two more
        grid={"variant": ["no dropout", "hidden 0.3"], "seed": [0, 1, 2]},
        variants=_FASHION_RATES,
    ),
    "fashion-mlp-long": Preset(
        title="Fashion-MNIST MLP 784-1024-1024-10, 100 epochs: no dropout vs hidden 0.5 vs input 0.2 "
        "+ hidden 0.5 (rate chosen by mean validation accuracy)",
        base={**FASHION_MLP, "epochs": 100, "eval_every": 10},
        # seeds outermost, so that an interrupted sweep has whole seeds done
        grid={"seed": [0, 1, 2], "variant": ["no dropout", "hidden 0.5", "input 0.2, hidden 0.5"]},
        variants=_FASHION_RATES,
    ),
    "fashion-mlp-small": Preset(
        title="Fashion-MNIST MLP 784-1024-1024-10 on 6,000 training images, 100 epochs: no dropout "
        "vs hidden 0.5 vs input 0.2 + hidden 0.5 or 0.7",
        # the same validation and test sets as the full-data presets (the split does not depend on
        # train_size); 100 epochs of 6,000 images are about 2,400 steps (40 full epochs: 8,600)
        base={**FASHION_MLP, "train_size": 6000, "epochs": 100, "eval_every": 10},
        grid={
            "seed": [0, 1, 2, 3, 4],
            "variant": [
                "no dropout",
                "hidden 0.5",
                "input 0.2, hidden 0.5",
                "input 0.2, hidden 0.7",
            ],
        },
        variants=_FASHION_RATES,
    ),
    "fashion-cnn-small": Preset(
        title="Fashion-MNIST CNN (32-64 channels, dense 128) on 6,000 training images: no dropout "
        "vs dense 0.5 vs channel or element 0.2 in the conv blocks + dense 0.5",
        base=FASHION_CNN_SMALL,
        # seeds outermost, so that an interrupted sweep has whole seeds done
        grid={"seed": [0, 1, 2, 3, 4], "variant": list(_FASHION_CNN_VARIANTS)},
        variants=_FASHION_CNN_VARIANTS,
    ),
    "mnist1d-cnn": Preset(
        title="MNIST-1D CNN: element vs channel dropout vs DropBlock vs DropConnect",
        base=MNIST1D_CNN,
        grid={
            "variant": [
                "none",
                *(f"{k} 0.2" for k in _CNN_KINDS),
                *(f"{k} 0.3" for k in ("element", "channel", "dropblock")),
            ],
            "seed": [0, 1, 2],
        },
        variants=_CNN_VARIANTS,
    ),
    "mnist1d-rnn": Preset(
        title="MNIST-1D as a 40-step sequence, GRU: naive vs variational vs weight drop vs AWD",
        base=MNIST1D_GRU,
        grid={"variant": list(_RNN_VARIANTS), "seed": [0, 1, 2]},
        variants=_RNN_VARIANTS,
    ),
    "mnist1d-rnn-overfit": Preset(
        title="MNIST-1D as a 40-step sequence, 2-layer GRU on 1,000 signals: naive vs variational "
        "vs weight drop vs AWD at 0.1",
        base=MNIST1D_GRU_OVERFIT,
        grid={"seed": [0, 1, 2, 3, 4], "variant": list(_RNN_OVERFIT_VARIANTS)},
        variants=_RNN_OVERFIT_VARIANTS,
    ),
    "mask-share-mlp": Preset(
        title="Fashion-MNIST MLP on 6,000 images (input 0.2, hidden 0.5), batch 256: dropout masks "
        "shared by k data-parallel ranks seeded alike (k = 256: batchwise)",
        base={**FASHION_MLP, "train_size": 6000, "epochs": 100, "eval_every": 10},
        # seeds outermost, so that an interrupted sweep has whole seeds done
        grid={
            "seed": [0, 1, 2, 3, 4],
            "variant": list(_mask_share_variants({"p_input": 0.2, "p_hidden": 0.5})),
        },
        variants=_mask_share_variants({"p_input": 0.2, "p_hidden": 0.5}),
    ),
    "mask-share-gru": Preset(
        title="MNIST-1D 2-layer GRU on 1,000 signals, variational 0.1, batch 256: dropout masks "
        "shared by k data-parallel ranks seeded alike (k = 256: batchwise)",
        base=GRU_MASK_SHARE,
        grid={
            "seed": [0, 1, 2, 3, 4],
            "variant": list(_mask_share_variants({"rnn_dropout": "recurrent", "p_hidden": 0.1})),
        },
        variants=_mask_share_variants({"rnn_dropout": "recurrent", "p_hidden": 0.1}),
    ),
    "mlp-noise": Preset(
        title="MNIST-1D MLP: Bernoulli vs Gaussian dropout vs DropConnect (Table 10, Wan et al.)",
        base=_COMPARE,
        grid={"variant": list(_NOISE_VARIANTS), "seed": list(range(10))},
        variants=_NOISE_VARIANTS,
    ),
    "pn-fixed": Preset(
        title="MNIST-1D MLP: drop rate with (1 - p) x width fixed (Srivastava et al. Fig. 9b)",
        base=_COMPARE,
        grid={"variant": list(_PN_VARIANTS), "seed": [0, 1, 2]},
        variants=_PN_VARIANTS,
    ),
    "early-dropout": Preset(
        title="MNIST-1D, underfitting MLP 40-32-32-10: early and late dropout (Liu et al. 2023)",
        base=_UNDERFIT,
        grid={"variant": list(_SCHEDULE_VARIANTS), "seed": [0, 1, 2, 3, 4]},
        variants=_SCHEDULE_VARIANTS,
    ),
}
