"""Concrete dropout: a drop rate learned by gradient descent through a relaxed Bernoulli mask.

Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017. The Bernoulli drop indicator is replaced by
its Concrete (relaxed Bernoulli) counterpart

    z = sigmoid((logit(p) + log u - log(1 - u)) / t),   u ~ U(0, 1),

which is differentiable in ``p``; the input is multiplied by ``(1 - z) / (1 - p)``. ``P(z > 1/2) = p``
exactly for every temperature ``t``; as ``t -> 0`` z becomes the Bernoulli(p) indicator. To learn
``p`` the training loss must include the regulariser of :func:`concrete_regularizer` (the KL term of
the variational objective): a weight-decay term ``||W||^2 / (1 - p)`` on the layer the dropout feeds,
and ``K * (p log p + (1-p) log(1-p))`` (minus the entropy of Bernoulli(p), ``K`` = the number of
dropped units per sample), which pushes ``p`` up towards 1/2.

Sampling is separate from applying: :func:`concrete_noise` draws the logistic noise
``log u - log(1 - u)``, :func:`apply_concrete` applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from dropkit._validation import _check_bool, _check_float_tensor, _check_generator
from dropkit.ops import sharding as _sharding
from dropkit.random import draws as _random

__all__ = ["concrete_noise", "apply_concrete", "concrete_dropout", "concrete_regularizer"]


def _check_temperature(temperature: object, op: str) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"{op}: temperature must be a positive number, but got {temperature!r}")
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"{op}: temperature must be positive and finite, but got {temperature}")
    return float(temperature)


def _check_logit(p_logit: object, op: str) -> torch.Tensor:
    _check_float_tensor(p_logit, op, "p_logit")
    if p_logit.numel() != 1:
        raise ValueError(f"{op}: p_logit must hold one value, but got shape {tuple(p_logit.shape)}")
    return p_logit


def concrete_noise(
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Standard logistic noise ``log u - log(1 - u)``, ``u ~ U(0, 1)`` (0 excluded, so finite)."""
    device = torch.device(device) if device is not None else torch.empty(0).device
    _check_generator(generator, device, "concrete_noise")
    u = _random.rand(shape, dtype, device, generator)
    u.clamp_(min=torch.finfo(dtype).tiny)
    return torch.log(u) - torch.log1p(-u)


@_sharding.rule()
def apply_concrete(
    input: torch.Tensor, p_logit: torch.Tensor, noise: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """``input * (1 - sigmoid((p_logit + noise) / t)) / (1 - sigmoid(p_logit))``.

    Differentiable in ``input`` and ``p_logit`` (the logit of the drop probability).
    """
    op = "apply_concrete"
    _check_float_tensor(input, op)
    _check_logit(p_logit, op)
    _check_float_tensor(noise, op, "noise")
    t = _check_temperature(temperature, op)
    # In the input's dtype, so the output keeps it (a float32 logit would promote half inputs).
    p_logit = p_logit.reshape(()).to(input.dtype)
    drop = torch.sigmoid((p_logit + noise) / t)
    # 1 - sigmoid(l) = sigmoid(-l): no cancellation for p near 1. The multiplier saturates at the
    # dtype's largest finite value (float16 with p near 1), never inf: finite outputs and gradients.
    keep = (1 - drop) / torch.sigmoid(-p_logit)
    return input * keep.clamp(max=torch.finfo(input.dtype).max)


@_sharding.rule()
def concrete_dropout(
    input: torch.Tensor,
    p_logit: torch.Tensor,
    temperature: float = 0.1,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Concrete dropout of ``input`` with drop probability ``sigmoid(p_logit)``; identity in eval.

    Paper: Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.

    Args:
        input: floating-point tensor of any shape.
        p_logit: one-element tensor, the logit of the drop probability (learnable).
        temperature: Concrete relaxation temperature. Default: 0.1 (the paper's)
        training: apply if True. Default: True
        generator: optional ``torch.Generator`` for the noise.
    """
    op = "concrete_dropout"
    _check_float_tensor(input, op)
    _check_logit(p_logit, op)
    t = _check_temperature(temperature, op)
    _check_bool(training, "training", op)
    _check_generator(generator, input.device, op)
    if not training:
        return input
    noise = concrete_noise(input.shape, dtype=input.dtype, device=input.device, generator=generator)
    return apply_concrete(input, p_logit, noise, t)


@_sharding.rule()
def concrete_regularizer(
    p_logit: torch.Tensor,
    weights: Iterable[torch.Tensor],
    input_dim: int,
    *,
    weight_regularizer: float = 1e-6,
    dropout_regularizer: float = 1e-5,
) -> torch.Tensor:
    """The term to add to the loss for one concrete dropout layer (Gal et al. 2017, eq. 3-4):

    ``weight_regularizer * sum ||W||^2 / (1 - p) + dropout_regularizer * input_dim * (p log p +
    (1-p) log(1-p))``. The paper sets ``weight_regularizer = l^2 / N`` and ``dropout_regularizer =
    2 / (tau N)`` for a prior length-scale ``l``, model precision ``tau`` and ``N`` training points.
    """
    op = "concrete_regularizer"
    _check_logit(p_logit, op)
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"{op}: input_dim must be a positive int, but got {input_dim!r}")
    p_logit = p_logit.reshape(())
    p = torch.sigmoid(p_logit)
    # log p = logsigmoid(l), log(1-p) = logsigmoid(-l): finite for every logit.
    neg_entropy = p * torch.nn.functional.logsigmoid(p_logit) + (1 - p) * (
        torch.nn.functional.logsigmoid(-p_logit)
    )
    square = sum((w.pow(2).sum() for w in weights), torch.zeros((), dtype=p.dtype, device=p.device))
    return weight_regularizer * square / (1 - p) + dropout_regularizer * input_dim * neg_entropy
