"""Locked (variational) dropout: one mask per sequence, reused at every time step.

Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural Networks",
NeurIPS 2016. Element-wise dropout draws a fresh mask for every time step, so the noise a recurrent
network sees changes at every step; locked dropout draws one ``(batch, features)`` mask per sequence
and applies it at all steps. It is used on the inputs and outputs of RNN layers (AWD-LSTM calls it
``LockedDropout``).

Layouts follow ``torch.nn.LSTM``: ``(T, N, H)`` (``batch_first=False``), ``(N, T, H)``
(``batch_first=True``), an unbatched ``(T, H)`` sequence, or a ``PackedSequence``. For a packed
sequence the mask of sequence ``i`` (in the caller's batch order) is applied to every packed row of that
sequence, so packing and padding give the same values for the same mask.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence

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

__all__ = ["locked_dropout", "locked_mask_shape"]

_RANK_HINT = (
    "locked_dropout takes a sequence like torch.nn.LSTM: (T, N, H), (N, T, H) with "
    "batch_first=True, an unbatched (T, H), or a PackedSequence"
)


def locked_mask_shape(input: torch.Tensor, batch_first: bool = False) -> tuple[int, ...]:
    """The shape of the keep-mask :func:`locked_dropout` draws for a padded ``input``.

    ``(1, N, H)`` for ``(T, N, H)``, ``(N, 1, H)`` for ``batch_first`` ``(N, T, H)``, ``(1, H)`` for an
    unbatched ``(T, H)``: size 1 along time, so one draw is shared by every step.
    """
    _check_rank(input, (2, 3), "locked_dropout", hint=_RANK_HINT)
    if input.dim() == 2:
        return (1, input.shape[1])
    n, h = (input.shape[0], input.shape[2]) if batch_first else (input.shape[1], input.shape[2])
    return (n, 1, h) if batch_first else (1, n, h)


def _packed_rows(batch_sizes: torch.Tensor | list[int], device: torch.device) -> torch.Tensor:
    # Row r of packed data belongs to the (sorted) sequence at position r within its time step:
    # batch_sizes (T,) -> (sum(batch_sizes),) positions 0..b_t-1 for each t.
    return torch.cat([torch.arange(int(b), device=device) for b in batch_sizes])


@_sharding.rule()
def locked_dropout(
    input: torch.Tensor | PackedSequence,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    batch_first: bool = False,
    scale: str = "inverted",
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | PackedSequence:
    """Drop the same features of a sequence at every time step (variational dropout).

    Training: one keep-mask of shape ``(N, H)`` is drawn per call and applied at every time step;
    survivors are scaled by 1/(1-p) (``scale="inverted"``) or left as they are (``"classic"``). Eval:
    the identity (inverted) or multiplication by 1-p (classic), as for :func:`dropkit.functional.dropout`.

    Paper: Gal & Ghahramani, NeurIPS 2016.

    Args:
        input: ``(T, N, H)``, ``(N, T, H)`` with ``batch_first=True``, ``(T, H)`` or a ``PackedSequence``.
        p: probability that a feature of a sequence is zeroed at all its steps. Default: 0.5
        training: apply dropout if True. Default: True
        inplace: do the operation in place (tensors only). Default: False
        batch_first: the layout of a padded input, as in ``torch.nn.LSTM``. Default: False
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        mask: optional bool keep-mask to use instead of drawing one: ``locked_mask_shape(input)`` for a
            tensor, ``(N, H)`` in the caller's batch order for a ``PackedSequence``.
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> x = torch.randn(35, 8, 400)  # (T, N, H)
        >>> y = dropkit.functional.locked_dropout(x, p=0.3)
        >>> bool(((y[0] == 0) == (y[-1] == 0)).all())  # same units dropped at every step
        True
    """
    op = "locked_dropout"
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    batch_first = _check_bool(batch_first, "batch_first", op)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    if isinstance(input, PackedSequence):
        return _locked_packed(input, p, training, scale, mask, generator)
    _check_float_tensor(input, op)
    shape = locked_mask_shape(input, batch_first)
    if not training:
        return _eval(input, p, scale, inplace)
    _check_generator(generator, input.device, op)
    if mask is None:
        # new_empty: a per-sample mask under torch.func.vmap
        mask = _bernoulli_keep(input.new_empty(shape, dtype=torch.bool), p, generator)
    else:
        _check_mask(mask, input, op)
    return _apply(input, mask, p, scale, inplace)


def _locked_packed(
    packed: PackedSequence,
    p: float,
    training: bool,
    scale: str,
    mask: torch.Tensor | None,
    generator: torch.Generator | None,
) -> PackedSequence:
    op = "locked_dropout"
    data = _check_float_tensor(packed.data, op, "input.data")
    _check_rank(data, (2,), op, "packed data is (sum of lengths, H)", name="input.data")
    if not training:
        return _with_data(packed, _eval(data, p, scale, False))
    _check_generator(generator, data.device, op)
    n, h = int(packed.batch_sizes[0]), data.shape[1]
    if mask is None:
        mask = _bernoulli_keep(
            torch.empty((n, h), dtype=torch.bool, device=data.device), p, generator
        )
    else:
        _check_mask(mask, torch.empty((n, h), device=data.device), op)
        if mask.dim() != 2:
            mask = mask.expand(n, h)
    if packed.sorted_indices is not None:
        # The caller's sequence i sits at sorted position j where sorted_indices[j] = i.
        mask = mask.index_select(0, packed.sorted_indices)
    rows = _packed_rows(packed.batch_sizes, data.device)  # (S,)
    return _with_data(packed, _apply(data, mask.index_select(0, rows), p, scale, False))


def _with_data(packed: PackedSequence, data: torch.Tensor) -> PackedSequence:
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
