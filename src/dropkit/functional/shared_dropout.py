"""Dropout with a mask shared along chosen axes (Keras's ``noise_shape`` idea).

One Bernoulli draw is made per position of the *other* axes and broadcast along the shared ones. The
structured variants in dropkit are this op with the axes fixed: channel dropout shares along the
spatial axes (whole channels), DropPath along every axis but the batch (whole samples).

Sampling and applying are separate, as everywhere in dropkit: :func:`sample_shared_mask` draws a mask
with size-1 dimensions on the shared axes and :func:`dropkit.functional.apply_mask` applies it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import (
    _check_bool,
    _check_dims,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_scale,
)
from dropkit.functional.dropout import _apply, _bernoulli_keep, _eval, sample_mask
from dropkit.ops import sharding as _sharding

__all__ = ["shared_mask_shape", "sample_shared_mask", "shared_dropout"]


def shared_mask_shape(shape: Sequence[int], shared_axes: Sequence[int] | int) -> torch.Size:
    """The mask shape for ``shape``: size 1 along ``shared_axes``, the input's size elsewhere.

    This is Keras's ``noise_shape`` written the other way round (name the axes that share a draw).
    """
    shape = torch.Size(shape)
    axes = _check_dims(shared_axes, len(shape), "shared_mask_shape")
    return torch.Size(1 if d in axes else s for d, s in enumerate(shape))


def sample_shared_mask(
    shape: Sequence[int],
    p: float,
    shared_axes: Sequence[int] | int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A bool keep-mask (True with probability 1-p) of :func:`shared_mask_shape` ``(shape, axes)``."""
    return sample_mask(shared_mask_shape(shape, shared_axes), p, device=device, generator=generator)


def _shared_dropout(
    input: torch.Tensor,
    p: float,
    axes: tuple[int, ...],
    training: bool,
    inplace: bool,
    scale: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    # Arguments already validated; ``axes`` are non-negative and distinct.
    if not training:
        return _eval(input, p, scale, inplace)
    if p == 0.0:
        return input if inplace else input.clone()
    mask_shape = [1 if d in axes else s for d, s in enumerate(input.shape)]
    mask = input.new_empty(
        mask_shape, dtype=torch.bool
    )  # new_empty: a per-sample mask under torch.func.vmap
    return _apply(input, _bernoulli_keep(mask, p, generator), p, scale, inplace)


@_sharding.rule()
def shared_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    shared_axes: Sequence[int] | int,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Dropout whose keep/drop decision is shared along ``shared_axes``.

    Training: one Bernoulli(1-p) draw per index of the non-shared axes, broadcast along the shared
    ones, then the usual scaling (1/(1-p) inverted, 1 classic). Eval: the identity (inverted, the
    input itself) or times 1-p (classic). ``shared_axes=()`` is standard dropout;
    ``shared_axes=(2, 3)`` on ``(N, C, H, W)`` drops whole channels; ``shared_axes=(1,)`` on
    ``(N, T, D)`` drops the same features at every time step (variational dropout's mask).

    Paper: Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015
    (shared masks over space); Keras's ``Dropout(noise_shape=...)`` for the general form.

    Args:
        input: floating-point tensor of any shape.
        p: probability of a draw being a drop. Default: 0.5
        training: apply dropout if True. Default: True
        inplace: do the operation in place. Default: False
        shared_axes: int or sequence of ints (negative allowed): the axes that share one draw.
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> x = torch.randn(8, 20, 16)  # (N, T, D)
        >>> y = dropkit.functional.shared_dropout(x, 0.3, shared_axes=1)  # same mask at every step
    """
    op = "shared_dropout"
    _check_float_tensor(input, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    axes = _check_dims(shared_axes, input.dim(), op)
    _check_generator(generator, input.device, op)
    return _shared_dropout(input, p, axes, training, inplace, scale, generator)
