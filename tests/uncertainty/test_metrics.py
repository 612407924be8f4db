"""Metrics against reference implementations (torchmetrics, scipy, scikit-learn, torch.distributions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from dropkit.uncertainty import (
    brier_score,
    calibration_bins,
    expected_calibration_error,
    gaussian_log_likelihood,
    mc_classification_nll,
    rmse,
)

torchmetrics = pytest.importorskip("torchmetrics", reason="torchmetrics comes with the lab extra")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestGaussianLL:
    def test_matches_numpy_logsumexp_formula(self):
        samples = torch.randn(50, 20, generator=gen(), dtype=torch.float64)
        y = torch.randn(20, generator=gen(1), dtype=torch.float64)
        tau = 2.5
        s, t = samples.numpy(), y.numpy()
        ref = (
            logsumexp(-0.5 * tau * (t[None] - s) ** 2, axis=0)
            - np.log(50)
            - 0.5 * np.log(2 * np.pi)
            + 0.5 * np.log(tau)
        )
        got = gaussian_log_likelihood(samples, y, tau, reduction="none")
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)
        assert gaussian_log_likelihood(samples, y, tau).item() == pytest.approx(
            ref.mean(), abs=1e-12
        )

    def test_mixture_density_from_torch_distributions(self):
        samples = torch.randn(7, 5, generator=gen(2), dtype=torch.float64)
        y = torch.randn(5, generator=gen(3), dtype=torch.float64)
        tau = 0.7
        normal = torch.distributions.Normal(samples, 1 / math.sqrt(tau))
        ref = normal.log_prob(y).exp().mean(0).log()
        assert torch.allclose(gaussian_log_likelihood(samples, y, tau, reduction="none"), ref)

    def test_errors(self):
        with pytest.raises(ValueError, match="samples must be \\(T, \\*target.shape\\)"):
            gaussian_log_likelihood(torch.ones(3, 4), torch.ones(5), 1.0)
        with pytest.raises(ValueError, match="tau must be positive"):
            gaussian_log_likelihood(torch.ones(3, 4), torch.ones(4), -1.0)
        with pytest.raises(ValueError, match="reduction must be"):
            gaussian_log_likelihood(torch.ones(3, 4), torch.ones(4), 1.0, reduction="sum")


class TestClassificationNLL:
    def test_one_sample_is_cross_entropy(self):
        logits = torch.randn(1, 30, 4, generator=gen(4), dtype=torch.float64)
        y = torch.randint(0, 4, (30,), generator=gen(5))
        ref = torch.nn.functional.cross_entropy(logits[0], y)
        assert torch.allclose(mc_classification_nll(logits, y, from_logits=True), ref)
        assert torch.allclose(mc_classification_nll(logits.softmax(-1), y), ref)

    def test_averages_probabilities_not_logs(self):
        probs = torch.rand(6, 10, 3, generator=gen(6), dtype=torch.float64).softmax(-1)
        y = torch.randint(0, 3, (10,), generator=gen(7))
        ref = torch.nn.functional.nll_loss(probs.mean(0).log(), y)
        assert torch.allclose(mc_classification_nll(probs, y), ref)


class TestRegressionMetrics:
    def test_rmse_matches_torchmetrics(self):
        a = torch.randn(100, generator=gen(8), dtype=torch.float64)
        b = torch.randn(100, generator=gen(9), dtype=torch.float64)
        ref = torchmetrics.MeanSquaredError(squared=False)(a, b)
        assert rmse(a, b).item() == pytest.approx(ref.item(), rel=1e-6)


class TestCalibration:
    @pytest.mark.parametrize("n_bins", [5, 15])
    def test_ece_matches_torchmetrics(self, n_bins):
        probs = (3 * torch.randn(500, 5, generator=gen(10))).softmax(-1)
        y = torch.randint(0, 5, (500,), generator=gen(11))
        ref = torchmetrics.classification.MulticlassCalibrationError(
            num_classes=5, n_bins=n_bins, norm="l1"
        )(probs, y)
        assert expected_calibration_error(probs, y, n_bins).item() == pytest.approx(
            ref.item(), abs=1e-6
        )

    def test_bins_hand_case(self):
        # confidences 0.9 (right), 0.8 (wrong), 0.6 (right) in 2 bins: (0, .5], (.5, 1]
        probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
        y = torch.tensor([0, 0, 0])
        conf, acc, count = calibration_bins(probs, y, n_bins=2)
        assert count.tolist() == [0, 3]
        assert conf[1].item() == pytest.approx((0.9 + 0.8 + 0.6) / 3)
        assert acc[1].item() == pytest.approx(2 / 3)
        ece = expected_calibration_error(probs, y, n_bins=2).item()
        assert ece == pytest.approx(abs(2 / 3 - 2.3 / 3))

    def test_brier_matches_sklearn_binary(self):
        sk = pytest.importorskip("sklearn.metrics")
        p1 = torch.rand(200, generator=gen(12), dtype=torch.float64)
        y = torch.randint(0, 2, (200,), generator=gen(13))
        probs = torch.stack([1 - p1, p1], dim=1)
        # the multiclass sum over classes counts the binary error twice
        ref = 2 * sk.brier_score_loss(y.numpy(), p1.numpy())
        assert brier_score(probs, y).item() == pytest.approx(ref, abs=1e-12)

    def test_brier_hand_case(self):
        probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.25, 0.25]], dtype=torch.float64)
        y = torch.tensor([0, 1])
        # (0) and (0.25 + 0.5625 + 0.0625) -> mean 0.4375
        assert brier_score(probs, y).item() == pytest.approx(0.4375)

    def test_shape_errors(self):
        with pytest.raises(ValueError, match="expected_calibration_error|calibration_bins"):
            expected_calibration_error(torch.rand(2, 3, 4), torch.zeros(3, dtype=torch.long))
        with pytest.raises(ValueError, match="n_bins must be a positive int"):
            calibration_bins(torch.rand(3, 2), torch.zeros(3, dtype=torch.long), n_bins=0)
        with pytest.raises(ValueError, match="rmse: shapes differ"):
            rmse(torch.ones(3), torch.ones(4))

    @pytest.mark.parametrize("fn", [expected_calibration_error, calibration_bins, brier_score])
    def test_empty_batch_and_bad_labels_are_refused(self, fn):
        # Before: ECE of an empty batch was NaN, and label 7 with 3 classes gave 0.333.
        probs = torch.full((4, 3), 1 / 3)
        with pytest.raises(ValueError, match="the batch is empty"):
            fn(probs[:0], torch.zeros(0, dtype=torch.long))
        with pytest.raises(ValueError, match=r"labels must be in 0..2 .*but got 7"):
            fn(probs, torch.tensor([0, 1, 7, 2]))
        with pytest.raises(ValueError, match=r"labels must be in 0..2 .*but got -1"):
            fn(probs, torch.tensor([0, -1, 1, 2]))
        with pytest.raises(TypeError, match="integer class labels, but got torch.float32"):
            fn(probs, torch.zeros(4))
