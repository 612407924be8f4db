"""NumPy reference for DropBlock (Ghiasi et al. 2018), given explicit seeds.

The torch op grows seeds into blocks with prefix-sum window counts; this reference paints each
block explicitly.
"""

from __future__ import annotations

import math

import numpy as np

from dropkit._validation import _check_p
from dropkit.reference._checks import _check_float_array

__all__ = [
    "clip_block",
    "dropblock_gamma",
    "dropblock_mask",
    "dropblock_forward",
    "dropblock_backward",
]


def clip_block(block: tuple[int, ...], size: tuple[int, ...]) -> tuple[int, ...]:
    """``clip_block_size=True``: along each axis the block spans at most the whole map."""
    return tuple(b if b <= s else s for b, s in zip(block, size, strict=True))


def dropblock_gamma(p: float, size: tuple[int, ...], block: tuple[int, ...]) -> float:
    """``p / prod(block) * prod(size) / prod(size - block + 1)`` (eq. 1, per dimension)."""
    p = _check_p(p, "reference.dropblock_gamma")
    valid = math.prod(s - b + 1 for s, b in zip(size, block, strict=True))
    return p * math.prod(size) / (math.prod(block) * valid)


def dropblock_mask(seeds: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
    """Keep-mask ``(N, C, *(seed_size + block - 1))``: False inside every block whose corner (its
    lowest index in each spatial dimension) is a True seed.
    """
    if seeds.dtype != np.bool_ or seeds.ndim - 2 != len(block):
        raise ValueError("reference.dropblock_mask: seeds must be a bool (N, C, *spatial) array")
    size = tuple(s + b - 1 for s, b in zip(seeds.shape[2:], block, strict=True))
    keep = np.ones(seeds.shape[:2] + size, dtype=bool)
    for idx in zip(*np.nonzero(seeds), strict=True):
        nc, corner = idx[:2], idx[2:]
        region = tuple(slice(c, c + b) for c, b in zip(corner, block, strict=True))
        keep[nc + region] = False
    return keep


def _scale(mask: np.ndarray, shape: tuple[int, ...], dtype: np.dtype):
    full = np.broadcast_to(mask, shape)
    kept = int(full.sum())
    return dtype.type(0.0 if kept == 0 else np.float64(full.size) / np.float64(kept))


def dropblock_forward(
    x: np.ndarray,
    mask: np.ndarray,
    *,
    training: bool = True,
    scale_by_keep: bool = True,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Training: ``x * mask * count(mask) / count_ones(mask)`` (counts over the broadcast mask,
    scale computed in float64 and rounded once), ``x * mask`` with ``scale_by_keep=False``; with
    ``noise`` (``with_noise=True``, an array of the mask's shape) every dropped unit is its noise
    value instead of 0. Eval: ``x``.
    """
    op = "reference.dropblock_forward"
    x = _check_float_array(x, op)
    if not training:
        return x.copy()
    full = np.broadcast_to(mask, x.shape)
    s = _scale(mask, x.shape, x.dtype) if scale_by_keep else x.dtype.type(1.0)
    out = x * (full.astype(x.dtype) * s)
    if noise is not None:
        if noise.shape != mask.shape:
            raise ValueError(f"{op}: noise {noise.shape} must have the mask's shape {mask.shape}")
        out = np.where(full, out, np.broadcast_to(noise.astype(x.dtype), x.shape))
    return out


def dropblock_backward(
    grad_out: np.ndarray, mask: np.ndarray, *, scale_by_keep: bool = True
) -> np.ndarray:
    """Gradient in training: the same mask and scale (the noise does not depend on the input)."""
    return dropblock_forward(grad_out, mask, scale_by_keep=scale_by_keep)
