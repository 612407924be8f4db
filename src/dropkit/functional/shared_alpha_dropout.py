"""Alpha dropout with one draw shared along chosen axes (Keras's ``AlphaDropout(noise_shape=...)``).

Klambauer et al.'s alpha dropout (:mod:`dropkit.functional.alpha_dropout`) with the keep-mask of
:func:`dropkit.functional.sample_shared_mask`: size 1 along ``shared_axes``, broadcast there. Keras
writes the same thing as a ``noise_shape`` with 1 on the shared axes. ``shared_axes=()`` is plain
alpha dropout; ``shared_axes=(2, 3)`` on ``(N, C, H, W)`` is feature alpha dropout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import _check_dims
from dropkit.functional.alpha_dropout import _alpha_dropout
from dropkit.functional.shared_dropout import shared_mask_shape
from dropkit.ops import sharding as _sharding

__all__ = ["shared_alpha_dropout"]


@_sharding.rule()
def shared_alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    shared_axes: Sequence[int] | int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Alpha dropout whose keep/drop decision is shared along ``shared_axes``; identity in eval.

    Paper: Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.

    Args:
        input: floating-point tensor.
        p: probability of a unit being dropped, in [0, 1). Default: 0.5
        training: apply if True. Default: True
        inplace: do the operation in place. Default: False
        shared_axes: int or sequence of ints (negative allowed), the axes sharing one draw.
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> x = torch.selu(torch.randn(8, 20, 16))  # (N, T, D)
        >>> y = dropkit.functional.shared_alpha_dropout(x, 0.1, shared_axes=1)  # same mask each step
    """
    op = "shared_alpha_dropout"
    if isinstance(input, torch.Tensor):
        _check_dims(shared_axes, input.dim(), op)
    return _alpha_dropout(
        input,
        p,
        training,
        inplace,
        generator,
        lambda x: shared_mask_shape(x.shape, shared_axes),
        op,
    )
