"""Metrics for Monte-Carlo predictions: test log-likelihood / NLL, RMSE, ECE, Brier score.

The log-likelihoods average the *densities* of the T samples (a mixture), in log space with
``logsumexp``, as Gal & Ghahramani's code does: ``log (1/T) sum_t p(y | x, w_t)``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "brier_score",
    "calibration_bins",
    "expected_calibration_error",
    "gaussian_log_likelihood",
    "mc_classification_nll",
    "rmse",
]


def _check_pair(pred: object, target: object, op: str) -> None:
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, but got {type(t).__name__}")


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over all elements."""
    _check_pair(pred, target, "rmse")
    if pred.shape != target.shape:
        raise ValueError(
            f"rmse: shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}"
        )
    return (pred - target).square().mean().sqrt()


def gaussian_log_likelihood(
    samples: torch.Tensor, target: torch.Tensor, tau: float, *, reduction: str = "mean"
) -> torch.Tensor:
    """Test log-likelihood of MC-dropout regression: ``log (1/T) sum_t N(y; y_t, 1/tau)``.

    ``samples`` (T, B, …), ``target`` (B, …); ``reduction`` ``"mean"`` (the test LL) or ``"none"``.
    """
    _check_pair(samples, target, "gaussian_log_likelihood")
    if samples.dim() < 1 or samples.shape[1:] != target.shape:
        raise ValueError(
            f"gaussian_log_likelihood: samples must be (T, *target.shape), but got "
            f"{tuple(samples.shape)} and target {tuple(target.shape)}"
        )
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ValueError(f"gaussian_log_likelihood: tau must be positive, but got {tau!r}")
    t = samples.shape[0]
    ll = (
        torch.logsumexp(-0.5 * tau * (target - samples) ** 2, dim=0)
        - math.log(t)
        - 0.5 * math.log(2 * math.pi)
        + 0.5 * math.log(tau)
    )
    return _reduce(ll, reduction, "gaussian_log_likelihood")


def mc_classification_nll(
    probs: torch.Tensor, target: torch.Tensor, *, from_logits: bool = False, reduction: str = "mean"
) -> torch.Tensor:
    """Negative log-likelihood of the MC-averaged prediction: ``-log (1/T) sum_t p_t[y]``.

    ``probs`` (T, B, C) probabilities (or logits with ``from_logits=True``), ``target`` (B,) labels.
    """
    _check_pair(probs, target, "mc_classification_nll")
    if probs.dim() != 3 or target.shape != probs.shape[1:2]:
        raise ValueError(
            f"mc_classification_nll: expected probs (T, B, C) and target (B,), but got "
            f"{tuple(probs.shape)} and {tuple(target.shape)}"
        )
    logp = probs.log_softmax(-1) if from_logits else probs.clamp_min(1e-45).log()
    picked = logp.gather(-1, target.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(-1)
    nll = -(torch.logsumexp(picked, dim=0) - math.log(probs.shape[0]))
    return _reduce(nll, reduction, "mc_classification_nll")


def _check_probs(probs: object, target: object, op: str) -> None:
    _check_pair(probs, target, op)
    if probs.dim() != 2 or target.shape != probs.shape[:1]:
        raise ValueError(
            f"{op}: expected probs (B, C) and target (B,), but got {tuple(probs.shape)} and "
            f"{tuple(target.shape)}; average MC samples first (mc_mean)"
        )
    if probs.shape[0] == 0:
        raise ValueError(f"{op}: the batch is empty (probs {tuple(probs.shape)}); nothing to score")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"{op}: target must hold integer class labels, but got {target.dtype}")
    n_classes = probs.shape[1]
    low, high = int(target.min()), int(target.max())
    if low < 0 or high >= n_classes:
        raise ValueError(
            f"{op}: target labels must be in 0..{n_classes - 1} (probs has {n_classes} classes), "
            f"but got {low if low < 0 else high}"
        )


def brier_score(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multiclass Brier score: ``mean_b sum_c (p_bc - [y_b = c])^2`` (Brier 1950; in [0, 2])."""
    _check_probs(probs, target, "brier_score")
    onehot = torch.nn.functional.one_hot(target, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).square().sum(dim=1).mean()


def calibration_bins(
    probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-label confidence in ``n_bins`` equal-width bins over (0, 1]: per bin the mean confidence,
    the accuracy and the count (empty bins give 0, 0, 0)."""
    _check_probs(probs, target, "calibration_bins")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"calibration_bins: n_bins must be a positive int, but got {n_bins!r}")
    conf, pred = probs.max(dim=1)
    correct = (pred == target).to(probs.dtype)
    # bin i holds confidences in (i/n, (i+1)/n]
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).to(probs.dtype)
    conf_sum = torch.zeros(n_bins, dtype=probs.dtype).index_add_(0, idx, conf)
    acc_sum = torch.zeros(n_bins, dtype=probs.dtype).index_add_(0, idx, correct)
    safe = count.clamp_min(1)
    return conf_sum / safe, acc_sum / safe, count


def expected_calibration_error(
    probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15
) -> torch.Tensor:
    """ECE (Naeini et al. 2015; Guo et al. 2017): ``sum_i (n_i / n) |acc_i - conf_i|`` over
    equal-width top-label confidence bins; the same quantity as torchmetrics'
    ``MulticlassCalibrationError(norm="l1")``."""
    conf, acc, count = calibration_bins(probs, target, n_bins)
    return ((count / count.sum()) * (acc - conf).abs()).sum()


def _reduce(values: torch.Tensor, reduction: str, op: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"{op}: reduction must be 'mean' or 'none', but got {reduction!r}")
