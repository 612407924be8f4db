"""Embedding (word-type) dropout: whole rows of the embedding matrix dropped for a batch.

Gal & Ghahramani, NeurIPS 2016, section 4.2; used in AWD-LSTM (Merity et al., ICLR 2018). Dropping
elements of the looked-up vectors drops a word *token*; dropping a row of the embedding matrix drops
the word *type*: every occurrence of that word in the batch becomes the zero vector, so the network
cannot lean on any single word. Survivors are rescaled by 1/(1-p) (``scale="inverted"``).

The mask has one entry per vocabulary row and is applied to the weight before the lookup, so the
gradient reaching a dropped row is zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_rank,
    _check_scale,
)
from dropkit.functional.dropout import _apply, _bernoulli_keep, _check_mask, _eval
from dropkit.ops import sharding as _sharding

__all__ = ["embedding_dropout"]


@_sharding.rule()
def embedding_dropout(
    input: torch.Tensor,
    weight: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    *,
    padding_idx: int | None = None,
    scale: str = "inverted",
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Look up ``input`` in ``weight`` after dropping whole rows (word types) of ``weight``.

    Training: each row of ``weight`` is dropped with probability ``p`` (one draw per call, shared by
    every occurrence of the word in the batch); kept rows are scaled by 1/(1-p) (inverted) or left
    as they are (classic). Eval: ``F.embedding(input, weight)`` (classic: times 1-p).

    Paper: Gal & Ghahramani, NeurIPS 2016 (section 4.2).

    Args:
        input: integer tensor of indices, any shape.
        weight: ``(V, D)`` embedding matrix.
        p: probability that a row (word type) is dropped. Default: 0.1
        training: apply dropout if True. Default: True
        padding_idx: as in ``F.embedding``: that row gets no gradient.
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        mask: optional ``(V, 1)`` bool keep-mask to use instead of drawing one.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        - Input: ``(*)`` indices. Output: ``(*, D)``.

    Example::

        >>> weight = torch.randn(1000, 32)
        >>> out = dropkit.functional.embedding_dropout(torch.randint(1000, (35, 8)), weight, p=0.1)
    """
    op = "embedding_dropout"
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    _check_float_tensor(weight, op, "weight")
    _check_rank(weight, (2,), op, "the embedding matrix is (num_embeddings, dim)", name="weight")
    if not isinstance(input, torch.Tensor) or input.is_floating_point() or input.is_complex():
        got = input.dtype if isinstance(input, torch.Tensor) else type(input).__name__
        raise TypeError(f"{op}: input must be an integer tensor of indices, but got {got}")
    if training:
        _check_generator(generator, weight.device, op)
        if mask is None:
            # (V, 1): one draw per row, broadcast along the embedding dimension.
            # input.new_empty: a per-sample mask under torch.func.vmap over the indices
            shape = (weight.shape[0], 1)
            mask = input.new_empty(shape, dtype=torch.bool, device=weight.device)
            mask = _bernoulli_keep(mask, p, generator)
        else:
            _check_mask(mask, weight, op)
        weight = _apply(weight, mask, p, scale, False)
    else:
        weight = _eval(weight, p, scale, False)
    return F.embedding(input, weight, padding_idx)
