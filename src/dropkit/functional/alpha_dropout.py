"""Alpha dropout: dropout for self-normalising (SELU) networks.

Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017. Setting a SELU activation to 0
would shift its mean and variance; alpha dropout sets dropped units to SELU's negative saturation
value ``alpha' = -lambda * alpha`` and then applies the affine map ``a * x + b`` with

    a = ((1-p) * (1 + p * alpha'^2)) ** -0.5,     b = -a * alpha' * p,

so that an input of mean 0 and variance 1 keeps mean 0 and variance 1. Eval is the identity.

Fast path (``alpha_dropout`` on a contiguous CPU float32/float64 tensor of at least
``_fast_family.NOISE_MIN_NUMEL`` elements, the switch of :func:`dropkit.set_fast_dropout` on; under
torch.compile and torch.export too, through the op ``dropkit::alpha_dropout``): one numba pass draws dropout's Philox mask (:func:`dropkit.functional.fast_keep_mask` for the
seed :func:`dropkit.functional.draw_seed` gives) and applies the affine map; backward keeps the mask
as 1 bit per element. Given its mask the output is the plain path's, bit for bit.
``feature_alpha_dropout`` keeps torch's mask (one draw per channel) and applies it in one pass.

Sampling is separate from applying: :func:`dropkit.functional.sample_mask` (element-wise) or
:func:`dropkit.functional.sample_shared_mask` (whole channels, "feature" alpha dropout) draw the mask,
:func:`apply_alpha_mask` applies it.
"""

from __future__ import annotations

import math

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_noise_args,
    _check_p,
    _check_rank,
)
from dropkit.functional.dropout import _bernoulli_keep, _check_mask, _factor
from dropkit.ops import family as _fast_family
from dropkit.ops import sharding as _sharding

__all__ = ["alpha_affine", "apply_alpha_mask", "alpha_dropout", "feature_alpha_dropout"]

# SELU's constants (Klambauer et al. 2017, the values torch.nn.SELU uses).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
ALPHA_PRIME = -SELU_SCALE * SELU_ALPHA


def alpha_affine(p: float) -> tuple[float, float]:
    """The affine correction ``(a, b)`` for drop probability ``p`` in [0, 1) (float64)."""
    p = _check_p(p, "alpha_affine", allow_one=False)
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * ALPHA_PRIME**2))
    return a, -a * ALPHA_PRIME * p


def _apply_alpha(input: torch.Tensor, mask: torch.Tensor, p: float, inplace: bool) -> torch.Tensor:
    # out = a * (x if kept else alpha') + b = x * mult + offset, with per-element
    # mult = a or 0 and offset = b or a * alpha' + b, each rounded once to the input's dtype.
    a, b = alpha_affine(p)
    mult = torch.where(mask, _factor(a, input), _factor(0.0, input))
    offset = torch.where(mask, _factor(b, input), _factor(a * ALPHA_PRIME + b, input))
    if inplace:
        return input.mul_(mult).add_(offset)
    return input * mult + offset


@_sharding.rule()
def apply_alpha_mask(
    input: torch.Tensor, mask: torch.Tensor, p: float, *, inplace: bool = False
) -> torch.Tensor:
    """Apply a keep-mask (True = keep, broadcast to the input) the alpha-dropout way.

    Kept units become ``a * x + b``, dropped ones ``a * alpha' + b``. The gradient is
    ``grad_out * a`` where kept and 0 where dropped.
    """
    op = "apply_alpha_mask"
    _check_float_tensor(input, op)
    p = _check_p(p, op, allow_one=False)
    _check_mask(mask, input, op)
    _check_bool(inplace, "inplace", op)
    return _apply_alpha(input, mask, p, inplace)


def _alpha_dropout(input, p, training, inplace, generator, mask_shape, op):
    p = _check_noise_args(input, p, training, inplace, generator, op)
    if not training:
        return input
    if p == 0.0:
        return input if inplace else input.clone()
    if (
        op == "alpha_dropout"
        and input.numel() >= _fast_family.NOISE_MIN_NUMEL
        and input.is_contiguous()
        and _fast_family.applies(input)
    ):
        a, b = alpha_affine(p)
        out = _fast_family.alpha(input, p, (a, b, a * ALPHA_PRIME + b), generator)
        return input.copy_(out) if inplace else out
    # new_empty: a per-sample mask under torch.func.vmap
    mask = input.new_empty(mask_shape(input), dtype=torch.bool)
    mask = _bernoulli_keep(mask, p, generator)
    if (
        op == "feature_alpha_dropout"
        and input.is_contiguous()
        and _fast_family.applies(input)
        and not _fast_family.graph(input)  # graphs: the plain path, the same values
    ):
        # torch's own mask (one draw per channel); one pass applies it (kernels/cpu_family.py)
        a, b = alpha_affine(p)
        rows = mask.reshape(-1)
        mult = torch.where(rows, _factor(a, input), _factor(0.0, input))
        offset = torch.where(rows, _factor(b, input), _factor(a * ALPHA_PRIME + b, input))
        out = _fast_family.row_affine.eager(input, mult, offset)
        return input.copy_(out) if inplace else out
    return _apply_alpha(input, mask, p, inplace)


@_sharding.rule()
def alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Alpha dropout of each element independently; identity in eval.

    Keeps the mean and variance of a zero-mean, unit-variance (SELU-normalised) input. Drop-in for
    ``torch.nn.functional.alpha_dropout``. ``p`` must be in [0, 1).

    Paper: Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.

    Args:
        input: floating-point tensor of any shape.
        p: probability of an element being dropped (set to SELU's saturation value). Default: 0.5
        training: apply if True. Default: True
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> y = dropkit.functional.alpha_dropout(torch.selu(torch.randn(4, 8)), p=0.1)
    """
    return _alpha_dropout(
        input, p, training, inplace, generator, lambda x: x.shape, "alpha_dropout"
    )


def _feature_shape(input: torch.Tensor) -> list[int]:
    _check_rank(
        input,
        tuple(range(2, 9)),
        "feature_alpha_dropout",
        "feature_alpha_dropout drops whole channels of an (N, C, *) input",
    )
    return [*input.shape[:2], *([1] * (input.dim() - 2))]


@_sharding.rule()
def feature_alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Alpha dropout of whole channels of an ``(N, C, *)`` input (one draw per sample and channel).

    Drop-in for ``torch.nn.functional.feature_alpha_dropout``. See :func:`alpha_dropout`.
    """
    return _alpha_dropout(
        input, p, training, inplace, generator, _feature_shape, "feature_alpha_dropout"
    )
