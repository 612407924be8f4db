"""``GaussianDropout``: multiplicative N(1, p/(1-p)) noise as a module."""

from __future__ import annotations

import torch

from dropkit.functional.gaussian_dropout import gaussian_dropout
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["GaussianDropout"]


class GaussianDropout(_DropoutNd):
    """Multiply each element by independent N(1, p/(1-p)) noise in training; identity in eval.

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 2014, section 10.

    Args:
        p: equivalent drop probability, in [0, 1). Default: 0.5
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` (keyword only).

    Example::

        >>> out = dropkit.nn.GaussianDropout(0.3)(torch.randn(4, 8))
    """

    _allow_one = False

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(p, inplace, generator=generator)

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.gaussian_dropout(
                input, self.p, self.training, self.inplace, self.generator
            )
        return gaussian_dropout(
            input, self.p, self.training, self.inplace, generator=self.generator
        )
