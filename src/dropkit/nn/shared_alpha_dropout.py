"""``SharedAlphaDropout``: alpha dropout with a mask shared along chosen axes, as a module."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import _check_dims
from dropkit.functional.shared_alpha_dropout import shared_alpha_dropout
from dropkit.nn._base import _DropoutNd

__all__ = ["SharedAlphaDropout"]


class SharedAlphaDropout(_DropoutNd):
    """Alpha dropout with one draw shared along ``shared_axes`` (Keras's ``AlphaDropout`` with a
    ``noise_shape``); identity in eval. See :func:`dropkit.functional.shared_alpha_dropout`.

    Paper: Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.

    Args:
        p: probability of a unit being dropped, in [0, 1). Default: 0.5
        inplace: do the operation in place. Default: False
        shared_axes: int or sequence of ints (keyword only), the axes sharing one draw.
        generator: optional ``torch.Generator`` (keyword only).

    Example::

        >>> m = dropkit.nn.SharedAlphaDropout(0.1, shared_axes=1)  # (N, T, D): same mask every step
    """

    _allow_one = False

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        shared_axes: Sequence[int] | int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, generator=generator)
        self.shared_axes = _check_dims(shared_axes, None, type(self).__name__)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shared_axes={self.shared_axes}"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return shared_alpha_dropout(
            input,
            self.p,
            self.training,
            self.inplace,
            shared_axes=self.shared_axes,
            generator=self.generator,
        )
