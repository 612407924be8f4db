"""Plots render and save (matplotlib from the lab extra)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib", reason="matplotlib comes with the lab extra")

from dropkit.uncertainty import plot_mc_vs_weight_scaling, plot_reliability_diagram  # noqa: E402


def test_reliability_diagram(tmp_path):
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(200, 4, generator=g).softmax(-1)
    y = torch.randint(0, 4, (200,), generator=g)
    fig = plot_reliability_diagram(probs, y, n_bins=10, path=tmp_path / "rel.png")
    assert "ECE" in fig.axes[0].get_title()
    assert (tmp_path / "rel.png").stat().st_size > 0


def test_mc_vs_weight_scaling_plot(tmp_path):
    result = {
        "ks": [1, 10],
        "mc_error_mean": [0.2, 0.1],
        "mc_error_std": [0.01, 0.0],
        "weight_scaling_error": 0.11,
        "config": {"dataset": "toy"},
    }
    fig = plot_mc_vs_weight_scaling(result, tmp_path / "f.png")
    assert fig.axes[0].get_xscale() == "log"
    assert (tmp_path / "f.png").stat().st_size > 0
