"""Summaries against closed forms on hand-made samples."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit.uncertainty import (
    expected_entropy,
    mc_mean,
    mc_variance,
    mutual_information,
    predictive_entropy,
    regression_predictive,
)

LOG2 = math.log(2.0)


class TestClassification:
    def test_disagreeing_confident_samples(self):
        # two samples, each certain, of different classes: p̄ = (1/2, 1/2)
        probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
        assert predictive_entropy(probs).item() == pytest.approx(LOG2, abs=1e-12)
        assert expected_entropy(probs).item() == pytest.approx(0.0, abs=1e-12)
        assert mutual_information(probs).item() == pytest.approx(LOG2, abs=1e-12)

    def test_agreeing_uncertain_samples(self):
        # identical samples: all uncertainty is aleatoric, MI = 0
        probs = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]]], dtype=torch.float64)
        assert predictive_entropy(probs).item() == pytest.approx(LOG2, abs=1e-12)
        assert expected_entropy(probs).item() == pytest.approx(LOG2, abs=1e-12)
        assert mutual_information(probs).item() == pytest.approx(0.0, abs=1e-12)

    def test_three_class_closed_form(self):
        a = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
        b = torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64)
        probs = torch.stack([a, b]).unsqueeze(1)  # (2, 1, 3)
        m = (a + b) / 2

        def h(p):
            return -sum(float(v) * math.log(float(v)) for v in p)

        assert predictive_entropy(probs).item() == pytest.approx(h(m), abs=1e-12)
        assert expected_entropy(probs).item() == pytest.approx((h(a) + h(b)) / 2, abs=1e-12)
        expected_mi = h(m) - (h(a) + h(b)) / 2
        assert mutual_information(probs).item() == pytest.approx(expected_mi, abs=1e-12)

    def test_from_logits_matches_probs(self):
        logits = torch.randn(
            5, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        probs = logits.softmax(-1)
        for f in (predictive_entropy, expected_entropy, mutual_information):
            assert torch.allclose(f(logits, from_logits=True), f(probs), atol=1e-12)
        assert (mutual_information(probs) >= -1e-12).all()

    def test_errors(self):
        with pytest.raises(ValueError, match="predictive_entropy: expected samples"):
            predictive_entropy(torch.rand(3))
        with pytest.raises(TypeError, match="samples must be a Tensor"):
            mc_mean([1.0])
        with pytest.raises(TypeError, match="floating point"):
            mc_variance(torch.ones(3, 2, dtype=torch.long))


class TestRegression:
    def test_mean_variance(self):
        s = torch.tensor([[1.0, 2.0], [3.0, 2.0]], dtype=torch.float64)  # (T=2, B=2)
        assert torch.equal(mc_mean(s), torch.tensor([2.0, 2.0], dtype=torch.float64))
        assert torch.equal(mc_variance(s), torch.tensor([1.0, 0.0], dtype=torch.float64))

    def test_predictive_adds_observation_noise(self):
        s = torch.tensor([[1.0], [3.0], [5.0]], dtype=torch.float64)
        mean, var = regression_predictive(s, tau=4.0)
        # E[y^2] - E[y]^2 = 35/3 - 9 = 8/3, plus 1/tau
        assert mean.item() == pytest.approx(3.0)
        assert var.item() == pytest.approx(8 / 3 + 0.25, abs=1e-12)

    def test_bad_tau(self):
        with pytest.raises(ValueError, match="regression_predictive: tau must be a positive"):
            regression_predictive(torch.ones(2, 1), tau=0.0)
