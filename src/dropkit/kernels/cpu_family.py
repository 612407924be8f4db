"""numba CPU kernels for the structured members of the dropout family (DropBlock), keyed by the
Philox4x32-10 of :mod:`dropkit.kernels.cpu`.

DropBlock's mask is drawn and grown without float noise: block corners ("seeds") are the positions
``j`` (flat, in the seed grid's C order) whose Philox word, in the layout of
:mod:`dropkit.reference.philox`, is below ``round(gamma * 2**32)`` -- exactly the elements that
:func:`dropkit.kernels.cpu.keep_mask` marks as dropped for ``p = gamma`` -- and each seed is painted
into a byte mask (1 = keep) as the block of ``block`` units from the seed onwards. Painting costs the
number of seeds times the block's volume, on average ``p`` times the map's size, and a corner's
block does not depend on the order in which seeds are painted, so the mask depends only on the
seed and the shapes: not on the number of threads.

Applying a mask is one product per element, ``x * (s if keep else 0)`` with ``s`` rounded to the
data's dtype, as the plain path's ``x * (mask * s)``. Shapes in comments: ``M`` maps (N*C, or N
when channels share a pattern), ``(D, H, W)`` the map (D = 1 in 2-D), ``(Dv, Hv, Wv)`` the seed grid
``(D - bd + 1, ...)``.
"""

from __future__ import annotations

import numpy as np
import torch

from dropkit.kernels._numba import CACHE_DIR, numba
from dropkit.kernels.cpu import BLOCK, _keep_block, threshold

__all__ = ["apply_byte_mask", "dropblock_keep", "threshold"]

_jit = numba.njit(cache=CACHE_DIR is not None, nogil=True)


@_jit
def _paint_blocks(keep, k0, k1, t, bd, bh, bw):
    # keep: (M, D, H, W) uint8, all 1 on entry. Every seed position j of the (M, Dv, Hv, Wv) grid
    # whose Philox flag is 0 (word < t) zeroes keep[m, z:z+bd, y:y+bh, x:x+bw]. Returns the
    # number of units still kept.
    m_, d_, h_, w_ = keep.shape
    dv, hv, wv = d_ - bd + 1, h_ - bh + 1, w_ - bw + 1
    per_map = dv * hv * wv
    n = m_ * per_map
    flags = np.empty(BLOCK, np.uint8)
    for b in range((n + BLOCK - 1) // BLOCK):
        _keep_block(b, k0, k1, t, flags)
        start = b * BLOCK
        for r in range(min(BLOCK, n - start)):
            if flags[r] == 0:
                j = start + r
                m, rem = j // per_map, j % per_map
                z, rem = rem // (hv * wv), rem % (hv * wv)
                y, x = rem // wv, rem % wv
                for dz in range(bd):
                    for dy in range(bh):
                        row = keep[m, z + dz, y + dy, x : x + bw]
                        for dx in range(bw):
                            row[dx] = 0
    flat = keep.reshape(-1)
    kept = 0
    for i in range(flat.size):
        kept += flat[i]
    return kept


@_jit
def _apply_bytes(x, keep, out, s):
    # x, out: (N, C, S); keep: (N, Ck, S) with Ck = C or 1 (one pattern for all channels).
    # out = x * (s or 0): one product per element, a branch-free select.
    zero = s - s
    n_, c_, s_ = x.shape
    shared = keep.shape[1] == 1
    for n in range(n_):
        for c in range(c_):
            a, o = x[n, c], out[n, c]
            k = keep[n, 0] if shared else keep[n, c]
            for i in range(s_):
                o[i] = a[i] * (s if k[i] else zero)


def dropblock_keep(
    maps: int, size: tuple[int, ...], block: tuple[int, ...], gamma: float, seed: int
) -> tuple[torch.Tensor, int]:
    """The byte keep-mask ``(maps, *size)`` (1 = keep) and its number of ones, for ``seed``.

    ``size``, ``block``: 2 or 3 spatial sizes (block fits the map). ``0 <= gamma < 1``.
    """
    size3 = (1, *size) if len(size) == 2 else tuple(size)
    block3 = (1, *block) if len(block) == 2 else tuple(block)
    keep = torch.ones((maps, *size3), dtype=torch.uint8)
    if gamma == 0.0 or keep.numel() == 0:
        return keep.view(maps, *size), keep.numel()
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    kept = _paint_blocks(keep.numpy(), k0, k1, np.uint64(threshold(gamma)), *block3)
    return keep.view(maps, *size), int(kept)


def apply_byte_mask(x: torch.Tensor, keep: torch.Tensor, s: float) -> torch.Tensor:
    """``x * (s if keep else 0)`` for contiguous float32/float64 ``x`` of shape (N, C, ...) and a
    byte mask (N, C or 1, ...) of the same spatial size; ``s`` is rounded to ``x``'s dtype."""
    out = torch.empty_like(x)
    n, c = x.shape[0], x.shape[1]
    if x.numel() == 0:
        return out
    dtype = np.float32 if x.dtype == torch.float32 else np.float64
    _apply_bytes(
        x.detach().numpy().reshape(n, c, -1),
        keep.numpy().reshape(n, keep.shape[1], -1),
        out.numpy().reshape(n, c, -1),
        dtype(s),
    )
    return out
