"""``AlphaDropout`` and ``FeatureAlphaDropout``: dropout for SELU networks, drop-ins for torch's."""

from __future__ import annotations

import torch

from dropkit.functional.alpha_dropout import alpha_dropout, feature_alpha_dropout
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["AlphaDropout", "FeatureAlphaDropout"]


class AlphaDropout(_DropoutNd):
    """Alpha dropout: dropped units take SELU's saturation value, then an affine correction keeps
    a zero-mean, unit-variance input at mean 0 and variance 1. Identity in eval.

    Paper: Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.

    Args:
        p: probability of an element being dropped, in [0, 1). Default: 0.5
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` (keyword only).

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.SELU(), dropkit.nn.AlphaDropout(0.1))
    """

    _allow_one = False

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(p, inplace, generator=generator)

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.alpha_dropout(
                input, self.p, self.training, self.inplace, False, self.generator
            )
        return alpha_dropout(input, self.p, self.training, self.inplace, generator=self.generator)


class FeatureAlphaDropout(AlphaDropout):
    """Alpha dropout of whole channels of ``(N, C, *)`` input; see :class:`AlphaDropout`.

    Paper: Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.alpha_dropout(
                input, self.p, self.training, self.inplace, True, self.generator
            )
        return feature_alpha_dropout(
            input, self.p, self.training, self.inplace, generator=self.generator
        )
