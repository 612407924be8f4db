"""DropBlock: drop contiguous square (cubic) regions of a feature map.

Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks", NeurIPS 2018.
Dropping isolated activations of a conv feature map removes little information (neighbours carry it);
DropBlock drops ``block_size``-sized blocks instead:

1. Block corners ("seeds") are drawn Bernoulli(gamma) over the positions where a whole block fits,
   ``gamma = p / prod(block) * prod(size) / prod(size - block + 1)`` (eq. 1 of the paper, per
   dimension), so that about a fraction ``p`` of the units is dropped (blocks may overlap, so a bit
   less).
2. Every seed is grown into a block (per axis, a window count of seeds by prefix sums).
3. Kept units are rescaled by ``count(mask) / count_ones(mask)`` over the whole tensor, which keeps
   the total activation; eval is the identity.

Sampling is separate from applying: :func:`dropblock_seeds` draws the seeds, :func:`dropblock_mask`
grows them into the keep-mask, :func:`apply_dropblock` applies it.

Fast path (CPU, float32/float64, contiguous, at least dropout's ``min_numel`` elements; the
switch of :func:`dropkit.set_fast_dropout`; under torch.compile and torch.export too, through the
op ``dropkit::dropblock``): the seeds come from Philox4x32-10 keyed by one seed
drawn from torch's generator and are painted into a byte mask by a numba kernel
(:mod:`dropkit.kernels.cpu_family`), with no float noise and no full-size float multiplier; backward
keeps the byte mask (1 B per unit, or per spatial position with ``share_channels``). Given its mask
the output is the plain path's, bit for bit; :func:`fast_dropblock_mask` gives the mask of a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_rank,
    _check_size_tuple,
)
from dropkit.functional.dropout import _check_mask
from dropkit.ops import family as _fast_family
from dropkit.ops import sharding as _sharding
from dropkit.random import draws as _random

__all__ = [
    "dropblock_gamma",
    "dropblock_seeds",
    "dropblock_mask",
    "apply_dropblock",
    "dropblock",
    "dropblock2d",
    "dropblock3d",
    "fast_dropblock_mask",
]

_SHAPES = {2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _clip(size: Sequence[int], block: tuple[int, ...]) -> tuple[int, ...]:
    """timm's rule: a block larger than the map along an axis spans the whole axis."""
    return tuple(min(b, s) for b, s in zip(block, size, strict=True))


def _check_fits(size: Sequence[int], block: tuple[int, ...], op: str) -> None:
    if any(b > s for b, s in zip(block, size, strict=True)):
        raise ValueError(
            f"{op}: block_size {block} does not fit in the feature map's spatial size "
            f"{tuple(size)}; use a block no larger than the map, or clip_block_size=True"
        )


def dropblock_gamma(p: float, size: Sequence[int], block_size: Sequence[int]) -> float:
    """The seed probability gamma for drop rate ``p`` (eq. 1 of Ghiasi et al., per dimension).

    Never above ``p``: ``b (s - b + 1) >= s`` for every block ``1 <= b <= s``.
    """
    p = _check_p(p, "dropblock_gamma")
    block = _check_size_tuple(block_size, len(size), "dropblock_gamma")
    _check_fits(size, block, "dropblock_gamma")
    # a list, not a generator expression: torch.compile traces lists (fullgraph=True)
    valid = math.prod([s - b + 1 for s, b in zip(size, block, strict=True)])
    return p / math.prod(block) * math.prod(size) / valid


def dropblock_seeds(
    shape: Sequence[int],
    p: float,
    block_size: int | Sequence[int],
    *,
    share_channels: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw block corners: a bool tensor, True = a block starts here, Bernoulli(gamma).

    Shape ``(N, C or 1, *(size - block + 1))`` for an input of shape ``(N, C, *size)``: only positions
    where a whole block fits are drawn. ``share_channels=True`` draws one seed map per sample.
    """
    op = "dropblock_seeds"
    _check_bool(share_channels, "share_channels", op)
    shape = torch.Size(shape)
    n = len(shape) - 2
    if n not in _SHAPES:
        raise ValueError(
            f"{op}: shape must be (N, C, H, W) or (N, C, D, H, W), but got {tuple(shape)}"
        )
    block = _check_size_tuple(block_size, n, op)
    gamma = dropblock_gamma(p, shape[2:], block)
    device = torch.device(device) if device is not None else torch.empty(0).device
    _check_generator(generator, device, op)
    seeds = torch.empty(_seeds_shape(shape, block, share_channels), dtype=torch.bool, device=device)
    return _random.bernoulli_(seeds, gamma, generator)


def _seeds_shape(shape, block, share_channels) -> tuple[int, ...]:
    return (
        shape[0],
        1 if share_channels else shape[1],
        *[s - b + 1 for s, b in zip(shape[2:], block, strict=True)],
    )


def _window_sum(t: torch.Tensor, dim: int, b: int) -> torch.Tensor:
    """``out[y] = sum(t[y - b + 1 : y + 1])`` along ``dim`` (zeros outside), length ``L + b - 1``."""
    length = t.shape[dim]
    c = t.cumsum(dim, dtype=torch.int32)  # c[i] = sum(t[: i + 1])
    # e = (b zeros, c, b - 1 copies of the total): out[y] = e[y + b] - e[y].
    left = torch.zeros_like(c.narrow(dim, 0, 1)).expand(*c.shape[:dim], b, *c.shape[dim + 1 :])
    right = c.narrow(dim, length - 1, 1).expand(*c.shape[:dim], b - 1, *c.shape[dim + 1 :])
    e = torch.cat([left, c, right], dim)
    return e.narrow(dim, b, length + b - 1) - e.narrow(dim, 0, length + b - 1)


def dropblock_mask(seeds: torch.Tensor, block_size: int | Sequence[int]) -> torch.Tensor:
    """Grow seeds into blocks: the keep-mask (True = keep) of shape ``(N, C, *(seed + block - 1))``.

    A unit is dropped when a seed lies in the block of positions ``[y - block + 1, y]`` before it
    (per dimension), i.e. a seed's block spans ``block`` units from the seed onwards.
    """
    op = "dropblock_mask"
    if not isinstance(seeds, torch.Tensor) or seeds.dtype != torch.bool:
        raise TypeError(f"{op}: seeds must be a bool tensor")
    n = seeds.dim() - 2
    if n not in _SHAPES:
        raise ValueError(f"{op}: seeds must be 4-D or 5-D, but got {seeds.dim()}-D")
    block = _check_size_tuple(block_size, n, op)
    # Count the seeds in each unit's window, one axis at a time, with prefix sums: exact integer
    # arithmetic whose cost does not grow with the block (a stride-1 max-pool's does).
    grown = seeds.to(torch.int32)
    for d, b in enumerate(block):
        if b > 1:
            grown = _window_sum(grown, 2 + d, b)
    return grown == 0


def _rescale(mask: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    # count(M) / count_ones(M) for the broadcast mask, in float64, then rounded once to the dtype;
    # 0 (not inf) when every unit is dropped, so the output is zeros, never NaN.
    expand = input.numel() // max(mask.numel(), 1)
    total = torch.tensor(float(mask.numel() * expand), dtype=torch.float64, device=mask.device)
    kept = mask.sum(dtype=torch.float64) * expand
    s = torch.where(kept > 0, total / kept.clamp(min=1), torch.zeros_like(total))
    # saturated at the dtype's largest finite value (float16 with few survivors), never inf: a
    # dropped unit is then 0, not 0 * inf = NaN
    return s.clamp(max=torch.finfo(input.dtype).max).to(input.dtype)


@_sharding.rule()
def apply_dropblock(
    input: torch.Tensor, mask: torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """``input * mask * count(mask) / count_ones(mask)`` (counts over the whole broadcast tensor).

    Differentiable in ``input``: the gradient is ``grad_out * mask * s`` with the same scale ``s``.
    """
    op = "apply_dropblock"
    _check_float_tensor(input, op)
    _check_mask(mask, input, op)
    _check_bool(inplace, "inplace", op)
    multiplier = mask * _rescale(mask, input)
    return input.mul_(multiplier) if inplace else input * multiplier


@_sharding.rule()
def dropblock(
    input: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    inplace: bool = False,
    *,
    block_size: int | Sequence[int] = 7,
    share_channels: bool = False,
    clip_block_size: bool = False,
    scale_by_keep: bool = True,
    with_noise: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on a batched 2-D ``(N, C, H, W)`` or 3-D ``(N, C, D, H, W)`` feature map.

    Training: blocks of ``block_size`` are dropped so that about a fraction ``p`` of units is zero
    (see the module docstring for gamma and the rescaling); each channel has its own blocks unless
    ``share_channels``. ``block_size=1`` is element-wise dropout with a data-dependent rescale. Eval:
    the identity. timm's ``DropBlock2d(with_noise=True)`` is ``with_noise=True,
    scale_by_keep=False`` here (timm does not rescale when it adds noise).

    Paper: Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018.

    Args:
        input: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` floating-point tensor.
        p: target fraction of dropped units (``1 - keep_prob`` in the paper); p=1 drops
            everything. Default: 0.1
        training: apply if True. Default: True
        inplace: do the operation in place. Default: False
        block_size: int or one int per spatial dimension, at most the map's size. Default: 7
        share_channels: one block pattern for all channels of a sample. Default: False
        clip_block_size: clip a block larger than the map to the map's size along that axis (as
            timm does) instead of raising. Default: False
        scale_by_keep: rescale the kept units by count/count_ones; False (timm's option) keeps
            them as they are (``input * mask``). Default: True
        with_noise: fill the dropped units with standard-normal noise instead of zeros (timm's
            option), drawn at the mask's shape after the seeds. Default: False
        generator: optional ``torch.Generator`` for the seeds (and the noise).
    """
    op = "dropblock"
    _check_float_tensor(input, op)
    _check_rank(input, (4, 5), op, "dropblock takes batched (N, C, H, W) or (N, C, D, H, W) input")
    return _dropblock(
        input,
        p,
        training,
        inplace,
        block_size,
        share_channels,
        generator,
        op,
        clip_block_size,
        scale_by_keep,
        with_noise,
    )


def _dropblock(
    input,
    p,
    training,
    inplace,
    block_size,
    share_channels,
    generator,
    op,
    clip_block_size=False,
    scale_by_keep=True,
    with_noise=False,
):
    p = _check_p(p, op)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    _check_bool(share_channels, "share_channels", op)
    _check_bool(clip_block_size, "clip_block_size", op)
    _check_bool(scale_by_keep, "scale_by_keep", op)
    _check_bool(with_noise, "with_noise", op)
    block = _check_size_tuple(block_size, input.dim() - 2, op)
    if clip_block_size:
        block = _clip(input.shape[2:], block)
    _check_fits(input.shape[2:], block, op)
    _check_generator(generator, input.device, op)
    if not training:
        return input
    if p == 0.0:
        return input if inplace else input.clone()
    if p == 1.0:
        # Overlapping blocks never cover every unit for sure; p=1 means "drop everything", as in
        # every other dropkit op: zeros (never NaN) for a finite input, noise with_noise.
        if with_noise:
            shape = _mask_shape(input.shape, share_channels)
            mask = torch.zeros(shape, dtype=torch.bool, device=input.device)
            return _fill_noise(input, input, mask, generator, inplace)
        mask = torch.zeros((1,) * input.dim(), dtype=torch.bool, device=input.device)
        return input.mul_(mask) if inplace else input * mask
    if input.is_contiguous() and _fast_family.applies(input):
        # the kernels (kernels/cpu_family.py), in graphs through dropkit::dropblock, same seed
        gamma = dropblock_gamma(p, input.shape[2:], block)
        out, keep = _fast_family.dropblock(
            input, gamma, block, share_channels, scale_by_keep, generator
        )
        if with_noise:
            return _fill_noise(input, out, keep.bool(), generator, inplace)
        return input.copy_(out) if inplace else out
    # dropblock_seeds' draw, made with input.new_empty: per-sample seeds under torch.func.vmap
    gamma = dropblock_gamma(p, input.shape[2:], block)
    seeds = input.new_empty(_seeds_shape(input.shape, block, share_channels), dtype=torch.bool)
    mask = dropblock_mask(_random.bernoulli_(seeds, gamma, generator), block)
    multiplier = mask * _rescale(mask, input) if scale_by_keep else mask
    if with_noise:
        return _fill_noise(input, input * multiplier, mask, generator, inplace)
    return input.mul_(multiplier) if inplace else input * multiplier


def _mask_shape(shape, share_channels) -> tuple[int, ...]:
    return (shape[0], 1 if share_channels else shape[1], *shape[2:])


def _fill_noise(input, kept, mask, generator, inplace):
    """``with_noise``: the dropped units (False in ``mask``) are standard-normal noise drawn at the
    mask's shape (one value per spatial position for all channels with ``share_channels``), the
    kept ones ``kept``. The noise is no function of ``input``: the gradient is the mask's."""
    noise = _random.randn(mask.shape, input.dtype, input.device, generator)
    out = torch.where(mask, kept, noise)
    return input.copy_(out) if inplace else out


@_sharding.rule()
def dropblock2d(
    input: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    inplace: bool = False,
    *,
    block_size: int | Sequence[int] = 7,
    share_channels: bool = False,
    clip_block_size: bool = False,
    scale_by_keep: bool = True,
    with_noise: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on ``(N, C, H, W)`` input; see :func:`dropblock`.

    Example::

        >>> y = dropkit.functional.dropblock2d(torch.randn(8, 16, 28, 28), p=0.1, block_size=5)
    """
    op = "dropblock2d"
    _check_float_tensor(input, op)
    _check_rank(input, (4,), op, "dropblock2d takes batched (N, C, H, W) input")
    return _dropblock(
        input,
        p,
        training,
        inplace,
        block_size,
        share_channels,
        generator,
        op,
        clip_block_size,
        scale_by_keep,
        with_noise,
    )


@_sharding.rule()
def dropblock3d(
    input: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    inplace: bool = False,
    *,
    block_size: int | Sequence[int] = 7,
    share_channels: bool = False,
    clip_block_size: bool = False,
    scale_by_keep: bool = True,
    with_noise: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on ``(N, C, D, H, W)`` input; see :func:`dropblock`."""
    op = "dropblock3d"
    _check_float_tensor(input, op)
    _check_rank(input, (5,), op, "dropblock3d takes batched (N, C, D, H, W) input")
    return _dropblock(
        input,
        p,
        training,
        inplace,
        block_size,
        share_channels,
        generator,
        op,
        clip_block_size,
        scale_by_keep,
        with_noise,
    )


# ---- fast path: numba kernels (kernels/cpu_family.py) ----------------------------------------------


def _fast_keep(shape, p, block, share_channels, seed):
    # (byte keep-mask (N, C or 1, *size), multiplier s as a Python float: _rescale's
    # count(M) / count_ones(M))
    gamma = dropblock_gamma(p, tuple(shape[2:]), block)
    return _fast_family.dropblock_keep(shape, gamma, block, share_channels, seed)


def fast_dropblock_mask(
    shape: Sequence[int],
    p: float,
    block_size: int | Sequence[int],
    seed: int,
    *,
    share_channels: bool = False,
) -> torch.Tensor:
    """The keep-mask (bool, True = keep) the fast path draws for ``seed``: ``(N, C or 1, *size)``.

    Block corners are the seed-grid positions (C order) that :func:`dropkit.functional.fast_keep_mask`
    marks as dropped for ``p = gamma``; each grows into a block as in :func:`dropblock_mask`. With
    :func:`dropkit.functional.draw_seed` on an identically seeded generator::

        >>> out = dropblock2d(x, 0.1, block_size=7, generator=torch.Generator().manual_seed(0))
        >>> seed = draw_seed(torch.Generator().manual_seed(0))
        >>> mask = fast_dropblock_mask(x.shape, 0.1, 7, seed)  # out == apply_dropblock(x, mask)
    """
    op = "fast_dropblock_mask"
    _check_bool(share_channels, "share_channels", op)
    shape = torch.Size(shape)
    if len(shape) - 2 not in _SHAPES:
        raise ValueError(
            f"{op}: shape must be (N, C, H, W) or (N, C, D, H, W), but got {tuple(shape)}"
        )
    p = _check_p(p, op, allow_one=False)
    block = _check_size_tuple(block_size, len(shape) - 2, op)
    _check_fits(shape[2:], block, op)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be an int in [0, 2**64), but got {seed!r}")
    if _fast_family.kernels() is None:
        raise RuntimeError(f"{op}: numba could not be imported; the fast path is off")
    keep, _ = _fast_keep(shape, p, block, share_channels, seed)
    return keep.bool()
