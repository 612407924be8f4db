"""Gaussian dropout: multiply by noise drawn from N(1, p/(1-p)) instead of a scaled Bernoulli.

Srivastava et al. 2014, section 10 ("Multiplicative Gaussian Noise"): inverted Bernoulli dropout
multiplies each unit by a variable of mean 1 and variance p/(1-p); Gaussian noise with the same two
moments works as well or better and is never exactly zero. Eval is the identity (the noise has mean 1).

Sampling is separate from applying: :func:`gaussian_noise` draws the multiplier, :func:`apply_noise`
multiplies by it. On CPU (float32/float64, contiguous, dropout's fast-path switch and ``min_numel``)
the noise is still torch's normal draw, formed and applied in one numba pass: the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_noise_args,
    _check_p,
)
from dropkit.functional import _fast_family, _random

__all__ = ["gaussian_noise", "apply_noise", "gaussian_dropout"]


def _noise_std(p: float) -> float:
    return math.sqrt(p / (1.0 - p))


def gaussian_noise(
    shape: Sequence[int],
    p: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Multiplicative noise ``1 + sqrt(p/(1-p)) * eps``, ``eps ~ N(0, 1)``, of the given shape/dtype.

    ``p`` must be in [0, 1): the variance p/(1-p) is infinite at p=1.
    """
    op = "gaussian_noise"
    p = _check_p(p, op, allow_one=False)
    if not dtype.is_floating_point:
        raise TypeError(f"{op}: dtype must be a floating-point dtype, but got {dtype}")
    device = torch.device(device) if device is not None else torch.empty(0).device
    _check_generator(generator, device, op)
    eps = _random.randn(shape, dtype, device, generator)
    # 1 + std * eps, with std rounded once to the dtype (the reference does the same).
    return eps.mul_(torch.tensor(_noise_std(p), dtype=dtype, device=device)).add_(1.0)


def apply_noise(input: torch.Tensor, noise: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``input * noise`` (noise broadcast to the input). The gradient is ``grad_out * noise``."""
    op = "apply_noise"
    _check_float_tensor(input, op)
    _check_float_tensor(noise, op, "noise")
    _check_bool(inplace, "inplace", op)
    if noise.dtype != input.dtype:
        raise TypeError(f"{op}: noise has dtype {noise.dtype} but the input has {input.dtype}")
    try:
        broadcast = torch.broadcast_shapes(noise.shape, input.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != input.shape:
        raise ValueError(
            f"{op}: noise of shape {tuple(noise.shape)} does not broadcast to the input's shape "
            f"{tuple(input.shape)}"
        )
    return input.mul_(noise) if inplace else input * noise


def gaussian_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Multiply each element by independent noise from N(1, p/(1-p)) in training; identity in eval.

    ``p`` plays the role it has in Bernoulli dropout (the noise has the same mean and variance as
    inverted dropout's multiplier), so swapping ``Dropout(p)`` for ``GaussianDropout(p)`` keeps the
    regularisation strength comparable.

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 2014, section 10.

    Args:
        input: floating-point tensor of any shape.
        p: equivalent drop probability, in [0, 1). Default: 0.5
        training: apply noise if True. Default: True
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` for the noise.

    Example::

        >>> y = dropkit.functional.gaussian_dropout(torch.randn(4, 8), p=0.2)
    """
    op = "gaussian_dropout"
    p = _check_noise_args(input, p, training, inplace, generator, op)
    if not training:
        return input
    if p == 0.0:
        return input if inplace else input.clone()
    if input.is_contiguous() and _fast_family.applies(input):
        # torch's own normal draws; one pass forms the noise and applies it (kernels/cpu_family.py)
        eps = torch.randn(input.shape, dtype=input.dtype, generator=generator)
        out = _GaussianFast.apply(input, eps, _noise_std(p))
        return input.copy_(out) if inplace else out
    noise = gaussian_noise(
        input.shape, p, dtype=input.dtype, device=input.device, generator=generator
    )
    return input.mul_(noise) if inplace else input * noise


class _GaussianFast(torch.autograd.Function):
    """``input * (1 + std * eps)``, the noise formed in place over ``eps``; gradient ``grad * noise``."""

    @staticmethod
    def forward(ctx, input, eps, std):
        out = _fast_family.kernels().gaussian_apply(input, eps, std)
        ctx.save_for_backward(eps)  # now the noise
        return out

    @staticmethod
    def backward(ctx, grad):
        (noise,) = ctx.saved_tensors
        return grad * noise, None, None
