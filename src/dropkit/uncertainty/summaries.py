"""Summaries of Monte-Carlo samples stacked on dimension 0, ``(T, B, …)``.

Classification: ``probs`` are per-sample class probabilities ``(T, B, C)`` (or logits with
``from_logits=True``); entropies are in nats.

* predictive entropy ``H[p̄]`` with ``p̄ = mean_t p_t``: total uncertainty;
* expected entropy ``mean_t H[p_t]``: the aleatoric part;
* mutual information ``H[p̄] - mean_t H[p_t]`` (BALD, Houlsby et al. 2011): the epistemic part.

Regression (Gal & Ghahramani 2016, eq. 8-9): with model precision ``tau`` the predictive
distribution has mean ``mean_t y_t`` and variance ``1/tau + mean_t y_t^2 - (mean_t y_t)^2``.
"""

from __future__ import annotations

import torch

__all__ = [
    "expected_entropy",
    "mc_mean",
    "mc_variance",
    "mutual_information",
    "predictive_entropy",
    "regression_predictive",
]


def _check_samples(samples: object, op: str, min_dim: int = 1) -> torch.Tensor:
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"{op}: samples must be a Tensor, but got {type(samples).__name__}")
    if samples.dim() < min_dim or samples.shape[0] == 0:
        raise ValueError(
            f"{op}: expected samples (T, ...) with T >= 1 and at least {min_dim} dims, "
            f"but got shape {tuple(samples.shape)}"
        )
    if not samples.is_floating_point():
        raise TypeError(f"{op}: samples must be floating point, but got {samples.dtype}")
    return samples


def mc_mean(samples: torch.Tensor) -> torch.Tensor:
    """Mean over the samples (dimension 0)."""
    return _check_samples(samples, "mc_mean").mean(dim=0)


def mc_variance(samples: torch.Tensor) -> torch.Tensor:
    """Variance over the samples (dimension 0), the Monte-Carlo moment ``mean(y^2) - mean(y)^2``."""
    return _check_samples(samples, "mc_variance").var(dim=0, correction=0)


def _log_probs(probs: torch.Tensor, from_logits: bool, op: str) -> torch.Tensor:
    probs = _check_samples(probs, op, min_dim=2)
    if from_logits:
        return probs.log_softmax(dim=-1)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(dim=-1)


def predictive_entropy(probs: torch.Tensor, *, from_logits: bool = False) -> torch.Tensor:
    """``H[mean_t p_t]`` per input: ``(T, B, C) -> (B,)``."""
    logp = _log_probs(probs, from_logits, "predictive_entropy")
    t = logp.shape[0]
    log_mean = torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(t), dtype=logp.dtype))
    return _entropy(log_mean)


def expected_entropy(probs: torch.Tensor, *, from_logits: bool = False) -> torch.Tensor:
    """``mean_t H[p_t]`` per input: ``(T, B, C) -> (B,)``."""
    return _entropy(_log_probs(probs, from_logits, "expected_entropy")).mean(dim=0)


def mutual_information(probs: torch.Tensor, *, from_logits: bool = False) -> torch.Tensor:
    """BALD: ``H[mean_t p_t] - mean_t H[p_t]`` per input, >= 0 up to rounding: ``(T, B, C) -> (B,)``."""
    return predictive_entropy(probs, from_logits=from_logits) - expected_entropy(
        probs, from_logits=from_logits
    )


def regression_predictive(samples: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean and variance of MC-dropout regression with observation noise ``1/tau``."""
    samples = _check_samples(samples, "regression_predictive")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ValueError(f"regression_predictive: tau must be a positive number, but got {tau!r}")
    return samples.mean(dim=0), samples.var(dim=0, correction=0) + 1.0 / tau
