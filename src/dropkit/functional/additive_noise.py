"""Additive Gaussian noise: ``input + std * eps``, ``eps ~ N(0, 1)``, in training; identity in eval.

Keras's ``GaussianNoise(stddev)`` layer: a regulariser (and a data-augmentation for real inputs)
that, unlike dropout, has no drop probability; its one argument is the noise's standard deviation
``std``. Sampling is separate from applying: :func:`additive_noise_sample` draws ``std * eps``,
the op adds it. For the multiplicative form with dropout's moments see
:mod:`dropkit.functional.gaussian_dropout`.
"""

from __future__ import annotations

import math
import numbers

import torch

from dropkit._validation import _check_bool, _check_float_tensor, _check_generator
from dropkit.ops import sharding as _sharding
from dropkit.random import draws

__all__ = ["additive_noise", "additive_noise_sample"]


def _check_std(std: object, op: str) -> float:
    if isinstance(std, bool) or not isinstance(std, numbers.Real):
        raise TypeError(f"{op}: std must be a real number, but got {type(std).__name__} ({std!r})")
    std = float(std)
    if not math.isfinite(std) or std < 0.0:
        raise ValueError(f"{op}: std must be a finite number >= 0, but got {std}")
    return std


@_sharding.rule()
def additive_noise_sample(
    input: torch.Tensor, std: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``std * eps`` with ``eps ~ N(0, 1)`` of the input's shape, dtype and device (``std``
    rounded once to the dtype, as the reference does)."""
    op = "additive_noise_sample"
    _check_float_tensor(input, op)
    std = _check_std(std, op)
    _check_generator(generator, input.device, op)
    eps = draws.randn(input.shape, input.dtype, input.device, generator)
    return eps.mul_(torch.tensor(std, dtype=input.dtype, device=input.device))


@_sharding.rule()
def additive_noise(
    input: torch.Tensor,
    std: float = 0.1,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add independent Gaussian noise of standard deviation ``std`` to each element in training.

    Eval: the identity (the noise has mean 0). The gradient is ``grad_out`` itself.

    Args:
        input: floating-point tensor of any shape.
        std: standard deviation of the noise, >= 0 (Keras's ``stddev``). Default: 0.1
        training: add noise if True. Default: True
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` for the noise.

    Example::

        >>> y = dropkit.functional.additive_noise(torch.randn(4, 8), std=0.2)
    """
    op = "additive_noise"
    _check_float_tensor(input, op)
    std = _check_std(std, op)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    _check_generator(generator, input.device, op)
    if not training:
        return input
    if std == 0.0:
        return input if inplace else input.clone()
    noise = additive_noise_sample(input, std, generator=generator)
    return input.add_(noise) if inplace else input + noise
