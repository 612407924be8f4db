"""lab.activations: train- vs eval-mode statistics, checked against exact moments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.lab.activations import activation_stats, plot_activation_stats
from tests.conftest import Z


def test_dropout_raises_the_variance_only_in_train_mode():
    # ones through inverted dropout p: each output is 0 or 1/(1-p): mean 1, variance p/(1-p)
    p, n, units = 0.5, 4000, 50
    model = nn.Sequential(nn.Linear(1, units), dnn.Dropout(p), nn.BatchNorm1d(units))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    model.train()
    torch.manual_seed(0)
    rows = activation_stats(model, torch.ones(n, 1), samples=2)
    assert model.training and all(m.training for m in model.modules())  # flags restored
    by = {r["kind"]: r for r in rows}
    assert [r["kind"] for r in rows] == ["Linear", "Dropout", "BatchNorm1d"]
    drop = by["Dropout"]
    want_var = p / (1 - p)
    # the variance over n draws of a two-point variable: its std is about sqrt(mu4 / n)
    tol = Z * 2 * want_var / (n * units * 2) ** 0.5
    assert drop["train_var"] == pytest.approx(want_var, abs=tol)
    assert drop["train_mean"] == pytest.approx(1.0, abs=Z * want_var**0.5 / (n * units) ** 0.5)
    assert drop["eval_var"] == 0.0 and drop["eval_mean"] == 1.0
    assert by["Linear"]["train_var"] == by["Linear"]["eval_var"] == 0.0


def test_variance_shift_through_batchnorm():
    # BN after dropout, fitted (running stats) on training-mode activations: in eval mode its
    # output variance is no longer what it saw in training
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), dnn.Dropout(0.5), nn.BatchNorm1d(32))
    x = torch.randn(2048, 8)
    model.train()
    for _ in range(50):
        model(x)  # BN's running statistics settle on the dropout-noised activations
    rows = {r["kind"]: r for r in activation_stats(model, x)}
    bn = rows["BatchNorm1d"]
    assert bn["train_var"] == pytest.approx(1.0, abs=0.1)
    assert bn["eval_var"] < 0.8 * bn["train_var"]


def test_bad_arguments_and_plot(tmp_path):
    with pytest.raises(ValueError, match="no linear"):
        activation_stats(nn.ReLU(), torch.ones(2, 2))
    with pytest.raises(ValueError, match="samples"):
        activation_stats(nn.Linear(2, 2), torch.ones(2, 2), samples=0)
    rows = activation_stats(nn.Sequential(nn.Linear(2, 3), dnn.Dropout(0.2)), torch.randn(64, 2))
    out = plot_activation_stats([("a", rows), ("b", rows)], tmp_path / "stats.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
