"""Channel (spatial) dropout for 1-D, 2-D and 3-D feature maps: whole channels are dropped.

Neighbouring activations of a feature map are strongly correlated, so element-wise dropout barely
removes information from it; zeroing whole channels does (Tompson et al. 2015). Each op is
:func:`dropkit.functional.shared_dropout` with the spatial axes shared.

Ranks: ``dropoutNd`` takes a batched ``(N, C, *spatial)`` input of rank N+2 or an unbatched
``(C, *spatial)`` one of rank N+1. For ``dropout2d`` and ``dropout3d`` the unbatched rank is also the
batched rank of the op one dimension lower (a 3-D tensor is an unbatched image *or* a batch of 1-D
signals); ``torch.nn.functional.dropout2d`` reads a 3-D input as a batch of 1-D signals, its
``dropout3d`` reads a 4-D input as unbatched. dropkit refuses to guess: pass ``batched=False`` to say
the input is unbatched, or call the lower-dimensional op.
"""

from __future__ import annotations

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_rank,
    _check_scale,
    _RankError,
)
from dropkit.functional.shared_dropout import _shared_dropout
from dropkit.ops import sharding as _sharding

__all__ = ["channel_dropout", "dropout1d", "dropout2d", "dropout3d"]

_SPATIAL = {1: "(L)", 2: "(H, W)", 3: "(D, H, W)"}


def _channel_axes(input: torch.Tensor, n: int, batched: bool | None, op: str) -> tuple[int, ...]:
    """The spatial axes of an ``n``-spatial-dim input, after deciding whether it is batched."""
    batched_shape = "(N, C, " + _SPATIAL[n][1:]
    unbatched_shape = "(C, " + _SPATIAL[n][1:]
    if batched is None:
        rank = input.dim()
        if rank not in (n + 1, n + 2):
            # torch's own text (torch.nn.functional.dropout1d's; dropout2d/3d only warn there)
            dims = "dimension" if n == 1 else "dimensions"
            raise _RankError(
                f"{op}: Expected {n + 1}D or {n + 2}D input, but received a {rank}D input. Note "
                f"that {op} exists to provide channel-wise dropout on inputs with {n} spatial "
                f"{dims}, a channel dimension, and an optional batch dimension (i.e. {n + 1}D or "
                f"{n + 2}D inputs). Got shape {tuple(input.shape)}"
            )
        if rank == n + 1 and n > 1:
            torch_reads = "a batch (N, C, L)" if n == 2 else f"unbatched {unbatched_shape}"
            raise ValueError(
                f"{op}: a {rank}-D input of shape {tuple(input.shape)} is ambiguous: it is an "
                f"unbatched {unbatched_shape} input or a batched input of dropout{n - 1}d "
                f"(torch.nn.functional.dropout{n}d reads it as {torch_reads}). Pass "
                f"batched=False for {unbatched_shape}, or call dropout{n - 1}d for a batch"
            )
    else:
        rank = n + 2 if batched else n + 1
        shape = batched_shape if batched else unbatched_shape
        _check_rank(input, (rank,), op, f"batched={batched} means the shape {shape}")
    return tuple(range(input.dim() - n, input.dim()))


@_sharding.rule()
def channel_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    spatial_dims: int,
    batched: bool | None = None,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of an input with ``spatial_dims`` (1, 2 or 3) spatial dimensions.

    Training: each channel of each sample is kept with probability 1-p (one draw shared by all its
    positions) and scaled by 1/(1-p) (inverted) or 1 (classic). Eval: the identity (inverted, the
    input itself) or times 1-p (classic).

    Paper: Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.

    Args:
        input: ``(N, C, *spatial)`` or ``(C, *spatial)`` floating-point tensor.
        p: probability of a channel being zeroed. Default: 0.5
        training: apply dropout if True. Default: True
        inplace: do the operation in place. Default: False
        spatial_dims: number of spatial dimensions, 1, 2 or 3.
        batched: None (infer from the rank; refused where ambiguous), True or False.
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the mask.
    """
    op = f"dropout{spatial_dims}d" if spatial_dims in _SPATIAL else "channel_dropout"
    if isinstance(spatial_dims, bool) or spatial_dims not in _SPATIAL:
        raise ValueError(
            f"channel_dropout: spatial_dims must be 1, 2 or 3, but got {spatial_dims!r}"
        )
    _check_float_tensor(input, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    if batched is not None:
        _check_bool(batched, "batched", op)
    axes = _channel_axes(input, spatial_dims, batched, op)
    _check_generator(generator, input.device, op)
    return _shared_dropout(input, p, axes, training, inplace, scale, generator)


@_sharding.rule()
def dropout1d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    batched: bool | None = None,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input; see :func:`channel_dropout`.

    Drop-in for ``torch.nn.functional.dropout1d``.

    Example::

        >>> y = dropkit.functional.dropout1d(torch.randn(8, 16, 100), p=0.2)
    """
    return channel_dropout(
        input,
        p,
        training,
        inplace,
        spatial_dims=1,
        batched=batched,
        scale=scale,
        generator=generator,
    )


@_sharding.rule()
def dropout2d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    batched: bool | None = None,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of ``(N, C, H, W)`` input, or ``(C, H, W)`` with ``batched=False``.

    Drop-in for ``torch.nn.functional.dropout2d`` on 4-D input; a 3-D input without ``batched=False``
    is refused (see the module docstring). See :func:`channel_dropout`.

    Example::

        >>> y = dropkit.functional.dropout2d(torch.randn(8, 16, 28, 28), p=0.2)
    """
    return channel_dropout(
        input,
        p,
        training,
        inplace,
        spatial_dims=2,
        batched=batched,
        scale=scale,
        generator=generator,
    )


@_sharding.rule()
def dropout3d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    batched: bool | None = None,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of ``(N, C, D, H, W)`` input, or ``(C, D, H, W)`` with ``batched=False``.

    Drop-in for ``torch.nn.functional.dropout3d`` on 5-D input. See :func:`channel_dropout`.

    Example::

        >>> y = dropkit.functional.dropout3d(torch.randn(2, 4, 8, 8, 8), p=0.2)
    """
    return channel_dropout(
        input,
        p,
        training,
        inplace,
        spatial_dims=3,
        batched=batched,
        scale=scale,
        generator=generator,
    )
