"""``GaussianNoise``: additive Gaussian noise as a module (Keras's ``GaussianNoise``)."""

from __future__ import annotations

import torch
from torch import nn

from dropkit._validation import _check_bool
from dropkit.functional.additive_noise import _check_std, additive_noise
from dropkit.nn._base import _Stochastic

__all__ = ["GaussianNoise"]


class GaussianNoise(_Stochastic, nn.Module):
    """Add ``N(0, std^2)`` noise to every element in training; the identity in eval.

    Keras's ``GaussianNoise(stddev)``. It has no drop probability, so the rate utilities
    (``get_dropout_p``) do not list it; Monte-Carlo mode switches it on like any dropout layer.

    Args:
        std: standard deviation of the noise, >= 0. Default: 0.1
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` (keyword only).

    Example::

        >>> out = dropkit.nn.GaussianNoise(0.2)(torch.randn(8, 16))
    """

    def __init__(
        self, std: float = 0.1, inplace: bool = False, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.std = _check_std(std, "GaussianNoise")
        self.inplace = _check_bool(inplace, "inplace", "GaussianNoise")
        self.generator = generator

    def extra_repr(self) -> str:
        return f"std={self.std}, inplace={self.inplace}"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return additive_noise(
            input, self.std, self.training, self.inplace, generator=self.generator
        )
