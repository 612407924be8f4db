"""TorchScript forms of dropkit's plain paths, for the ``torch.jit.script`` branch of the modules.

``torch.jit.script`` cannot compile the Python ops (argument checks with ``numbers``, keyword-only
arguments, the numba fast path), so each scriptable module's ``forward`` starts with
``if torch.jit.is_scripting(): return <function here>(...)`` (the compiler sees only that branch).
These functions are the plain path written in the subset TorchScript compiles: the same arithmetic
given the mask or noise (one correctly rounded product per element, the scale rounded once to the
input's dtype and saturated for float16), and the same ``bernoulli_``/``randn`` calls, so a scripted
module draws the masks of eager's *plain* path for the same seed. Where eager takes the fast path
(CPU tensors of 4096 elements or more), eager's masks come from the Philox kernels and differ.

The module's attributes were validated when it was built; the checks here are those that depend on
the input (its rank), and raise what TorchScript raises (``torch.jit.Error``, a RuntimeError).

This file deliberately has no ``from __future__ import annotations``: TorchScript reads the
annotations as written.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__: list[str] = []

# Constants as functions: TorchScript does not read module-level floats.


def _alpha_prime() -> float:
    # -SELU_SCALE * SELU_ALPHA, as in functional/alpha_dropout.py
    return -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


def _half_max() -> float:
    return 65504.0  # the largest finite float16


def _factor(value: float, like: Tensor) -> Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _keep_scale(p: float, scale: str, dtype: torch.dtype) -> float:
    # _validation._keep_scale: 1/(1-p) or 1, 0 at p=1, saturated where float16 would overflow
    if scale == "classic":
        return 1.0
    if p == 1.0:
        return 0.0
    s = 1.0 / (1.0 - p)
    if dtype == torch.float16 and s > _half_max():
        s = _half_max()
    return s


def _apply(input: Tensor, mask: Tensor, p: float, scale: str, inplace: bool) -> Tensor:
    multiplier = mask * _factor(_keep_scale(p, scale, input.dtype), input)
    if inplace:
        return input.mul_(multiplier)
    return input * multiplier


def _eval(input: Tensor, p: float, scale: str, inplace: bool) -> Tensor:
    if scale == "inverted" or p == 0.0:
        return input
    keep = _factor(1.0 - p, input)
    if inplace:
        return input.mul_(keep)
    return input * keep


def _masked(
    input: Tensor,
    mask_shape: list[int],
    p: float,
    training: bool,
    inplace: bool,
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    if not training:
        return _eval(input, p, scale, inplace)
    if p == 0.0:
        if inplace:
            return input
        return input.clone()
    mask = torch.empty(mask_shape, dtype=torch.bool, device=input.device)
    mask.bernoulli_(1.0 - p, generator=generator)
    return _apply(input, mask, p, scale, inplace)


def dropout(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    if not training:
        return _eval(input, p, scale, inplace)
    if p == 0.0:
        if inplace:
            return input
        return input.clone()
    mask = torch.empty_like(input, dtype=torch.bool)  # the input's layout, as in eager
    mask.bernoulli_(1.0 - p, generator=generator)
    return _apply(input, mask, p, scale, inplace)


def _shape_sharing(input: Tensor, axes: list[int]) -> list[int]:
    shape: list[int] = []
    for d in range(input.dim()):
        shape.append(1 if d in axes else input.size(d))
    return shape


def shared_dropout(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    shared_axes: list[int],
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    ndim = input.dim()
    axes: list[int] = []
    for d in shared_axes:
        if d < -ndim or d >= ndim:
            raise ValueError("shared_dropout: a shared_axes entry is out of range for the input")
        axes.append(d % ndim)
    return _masked(input, _shape_sharing(input, axes), p, training, inplace, scale, generator)


def channel_dropout(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    spatial_dims: int,
    batched: bool | None,
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    n = spatial_dims
    rank = input.dim()
    if batched is None:
        if rank != n + 1 and rank != n + 2:
            raise RuntimeError(
                "dropout"
                + str(n)
                + "d: expected input to be "
                + str(n + 1)
                + "D or "
                + str(n + 2)
                + "D, but received a "
                + str(rank)
                + "D input"
            )
        if rank == n + 1 and n > 1:
            raise ValueError(
                "dropout" + str(n) + "d: a " + str(rank) + "-D input is ambiguous (unbatched or a "
                "batch of the op one dimension lower); build the module with batched=False or "
                "use the lower-dimensional op"
            )
    else:
        want = n + 2 if batched else n + 1
        if rank != want:
            raise RuntimeError(
                "dropout"
                + str(n)
                + "d: expected input to be "
                + str(want)
                + "D, but received a "
                + str(rank)
                + "D input"
            )
    axes = list(range(rank - n, rank))
    return _masked(input, _shape_sharing(input, axes), p, training, inplace, scale, generator)


def drop_path(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    scale: str,
    generator: torch.Generator | None,
    mode: str = "row",
    scale_by_keep: bool = True,
) -> Tensor:
    if input.dim() == 0:
        raise ValueError("drop_path: expected an input with a batch dimension, (N, *)")
    if training and not scale_by_keep:  # drop_path's _training_scale (checked at construction)
        scale = "classic"
    axes = list(range(0 if mode == "batch" else 1, input.dim()))
    return _masked(input, _shape_sharing(input, axes), p, training, inplace, scale, generator)


def locked_dropout(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    batch_first: bool,
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    if input.dim() == 2:
        shape = [1, input.size(1)]
    elif input.dim() == 3:
        if batch_first:
            shape = [input.size(0), 1, input.size(2)]
        else:
            shape = [1, input.size(1), input.size(2)]
    else:
        raise RuntimeError(
            "locked_dropout: expected input to be 2D or 3D, but received a "
            + str(input.dim())
            + "D input (PackedSequence input is eager-only)"
        )
    return _masked(input, shape, p, training, inplace, scale, generator)


def _apply_alpha(input: Tensor, mask: Tensor, p: float, inplace: bool) -> Tensor:
    alpha_prime = _alpha_prime()
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * alpha_prime**2))
    b = -a * alpha_prime * p
    mult = torch.where(mask, _factor(a, input), _factor(0.0, input))
    offset = torch.where(mask, _factor(b, input), _factor(a * alpha_prime + b, input))
    if inplace:
        return input.mul_(mult).add_(offset)
    return input * mult + offset


def alpha_dropout(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    feature: bool,
    generator: torch.Generator | None,
) -> Tensor:
    if not training:
        return input
    if p == 0.0:
        if inplace:
            return input
        return input.clone()
    shape: list[int] = []
    if feature:
        if input.dim() < 2:
            raise RuntimeError(
                "feature_alpha_dropout: expected an (N, C, *) input, but received a "
                + str(input.dim())
                + "D input"
            )
        for d in range(input.dim()):
            shape.append(input.size(d) if d < 2 else 1)
    else:
        shape = list(input.shape)
    mask = torch.empty(shape, dtype=torch.bool, device=input.device)
    mask.bernoulli_(1.0 - p, generator=generator)
    return _apply_alpha(input, mask, p, inplace)


def gaussian_dropout(
    input: Tensor, p: float, training: bool, inplace: bool, generator: torch.Generator | None
) -> Tensor:
    if not training:
        return input
    if p == 0.0:
        if inplace:
            return input
        return input.clone()
    noise = torch.randn(input.shape, dtype=input.dtype, device=input.device, generator=generator)
    noise.mul_(_factor(math.sqrt(p / (1.0 - p)), input)).add_(1.0)
    if inplace:
        return input.mul_(noise)
    return input * noise


def _window_sum(t: Tensor, dim: int, b: int) -> Tensor:
    # functional/dropblock.py's _window_sum
    length = t.size(dim)
    c = t.cumsum(dim, dtype=torch.int32)
    left_shape = list(c.shape)
    left_shape[dim] = b
    right_shape = list(c.shape)
    right_shape[dim] = b - 1
    left = torch.zeros_like(c.narrow(dim, 0, 1)).expand(left_shape)
    right = c.narrow(dim, length - 1, 1).expand(right_shape)
    e = torch.cat([left, c, right], dim)
    return e.narrow(dim, b, length + b - 1) - e.narrow(dim, 0, length + b - 1)


def _fill_noise(
    input: Tensor, kept: Tensor, mask: Tensor, generator: torch.Generator | None, inplace: bool
) -> Tensor:
    # functional/dropblock.py's _fill_noise
    noise = torch.randn(mask.shape, dtype=input.dtype, device=input.device, generator=generator)
    out = torch.where(mask, kept, noise)
    if inplace:
        return input.copy_(out)
    return out


def dropblock(
    input: Tensor,
    p: float,
    training: bool,
    inplace: bool,
    block_size: list[int],
    share_channels: bool,
    generator: torch.Generator | None,
    scale_by_keep: bool = True,
    with_noise: bool = False,
    clip_block_size: bool = False,
) -> Tensor:
    n = len(block_size)
    if input.dim() != n + 2:
        raise RuntimeError(
            "dropblock"
            + str(n)
            + "d: expected input to be "
            + str(n + 2)
            + "D, but received a "
            + str(input.dim())
            + "D input"
        )
    size = list(input.shape[2:])
    if clip_block_size:  # functional/dropblock.py's _clip
        block_size = [min(block_size[i], size[i]) for i in range(n)]
    for i in range(n):
        if block_size[i] > size[i]:
            raise ValueError("dropblock: block_size does not fit in the feature map")
    if not training:
        return input
    if p == 0.0:
        if inplace:
            return input
        return input.clone()
    if p == 1.0:
        if with_noise:
            shape = list(input.shape)
            if share_channels:
                shape[1] = 1
            none = torch.zeros(shape, dtype=torch.bool, device=input.device)
            return _fill_noise(input, input, none, generator, inplace)
        zero = torch.zeros([1] * input.dim(), dtype=torch.bool, device=input.device)
        if inplace:
            return input.mul_(zero)
        return input * zero
    valid = 1
    blocks = 1
    total_size = 1
    seeds_shape = [input.size(0), 1 if share_channels else input.size(1)]
    for i in range(n):
        valid *= size[i] - block_size[i] + 1
        blocks *= block_size[i]
        total_size *= size[i]
        seeds_shape.append(size[i] - block_size[i] + 1)
    gamma = p / blocks * total_size / valid
    seeds = torch.empty(seeds_shape, dtype=torch.bool, device=input.device)
    seeds.bernoulli_(gamma, generator=generator)
    grown = seeds.to(torch.int32)
    for d in range(n):
        if block_size[d] > 1:
            grown = _window_sum(grown, 2 + d, block_size[d])
    mask = grown == 0
    if scale_by_keep:
        # functional/dropblock.py's _rescale
        expand = input.numel() // max(mask.numel(), 1)
        total = torch.tensor(float(mask.numel() * expand), dtype=torch.float64, device=mask.device)
        kept = mask.sum(dtype=torch.float64) * expand
        s = torch.where(kept > 0, total / kept.clamp(min=1), torch.zeros_like(total))
        if input.dtype == torch.float16:
            s = s.clamp(max=_half_max())
        multiplier = mask * s.to(input.dtype)
    else:
        multiplier = mask.to(input.dtype)
    if with_noise:
        return _fill_noise(input, input * multiplier, mask, generator, inplace)
    if inplace:
        return input.mul_(multiplier)
    return input * multiplier


def embedding_dropout(
    input: Tensor,
    weight: Tensor,
    p: float,
    training: bool,
    padding_idx: int | None,
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    if training:
        mask = torch.empty([weight.size(0), 1], dtype=torch.bool, device=weight.device)
        mask.bernoulli_(1.0 - p, generator=generator)
        weight = _apply(weight, mask, p, scale, False)
    else:
        weight = _eval(weight, p, scale, False)
    return F.embedding(input, weight, padding_idx)


def dropconnect_linear(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    p: float,
    training: bool,
    per_sample: bool,
    scale: str,
    generator: torch.Generator | None,
) -> Tensor:
    if not training:
        return F.linear(input, _eval(weight, p, scale, False), bias)
    shape = list(weight.shape)
    if per_sample:
        if input.dim() < 2:
            raise ValueError("dropconnect_linear: per_sample=True needs a batched (N, *, in) input")
        shape = [input.size(0)] + shape
    mask = torch.empty(shape, dtype=torch.bool, device=weight.device)
    mask.bernoulli_(1.0 - p, generator=generator)
    w = _apply(weight, mask, p, scale, False)
    if not per_sample:
        return F.linear(input, w, bias)
    out = torch.einsum("n...i,noi->n...o", input, w)
    if bias is not None:
        out = out + bias
    return out
