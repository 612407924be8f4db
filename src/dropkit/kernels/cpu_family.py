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
data's dtype, as the plain path's ``x * (mask * s)``.

Alpha dropout draws exactly dropout's mask (element ``i`` kept when its Philox word is at least
``round(p * 2**32)``; :func:`dropkit.functional.fast_keep_mask`) and computes the plain path's
``x * mult + offset`` with ``mult = a or 0`` and ``offset = b or c`` in the data's dtype: a product
and a sum, each rounded (``fastmath`` stays off, so LLVM does not contract them into one fused
multiply-add). Backward is ``grad * (a or 0)`` from the 1-bit mask kept by forward. Shapes in comments: ``M`` maps (N*C, or N
when channels share a pattern), ``(D, H, W)`` the map (D = 1 in 2-D), ``(Dv, Hv, Wv)`` the seed grid
``(D - bd + 1, ...)``.
"""

from __future__ import annotations

import numpy as np
import torch

from dropkit.kernels._hugepages import empty_like
from dropkit.kernels._numba import CACHE_DIR, numba
from dropkit.kernels.cpu import (
    BLOCK,
    _apply_keep,
    _keep_block,
    _pack_block,
    _philox10,
    _unpack_block,
    threshold,
)

__all__ = [
    "alpha_backward",
    "alpha_forward",
    "apply_byte_mask",
    "dropblock_keep",
    "gaussian_apply",
    "row_affine",
    "threshold",
]

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
    out = empty_like(x)  # huge pages for large outputs, as dropout's (kernels/_hugepages.py)
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


_Q = BLOCK // 4
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ZERO = np.uint64(0)


@numba.njit(cache=CACHE_DIR is not None, inline="always")
def _alpha_block(blk, k0, k1, t, keep, src, dst, a, b, c, zero):
    # A full block: the flags of _keep_block and the affine map in one loop (the structure of
    # cpu._keep_apply_block), so loads and stores overlap the generator's arithmetic.
    start = blk * BLOCK
    a0, a1 = src[start : start + _Q], src[start + _Q : start + 2 * _Q]
    a2, a3 = src[start + 2 * _Q : start + 3 * _Q], src[start + 3 * _Q : start + BLOCK]
    d0, d1 = dst[start : start + _Q], dst[start + _Q : start + 2 * _Q]
    d2, d3 = dst[start + 2 * _Q : start + 3 * _Q], dst[start + 3 * _Q : start + BLOCK]
    base = np.uint64(blk) * np.uint64(_Q)
    base_lo = base & _LO32
    hi = base >> _S32
    for j in range(_Q):
        cnt = (base_lo + np.uint64(j)) & _LO32
        w0, w1, w2, w3 = _philox10(cnt, hi, _ZERO, _ZERO, k0, k1)
        m0, m1, m2, m3 = w0 >= t, w1 >= t, w2 >= t, w3 >= t
        keep[j] = m0
        keep[_Q + j] = m1
        keep[2 * _Q + j] = m2
        keep[3 * _Q + j] = m3
        d0[j] = a0[j] * (a if m0 else zero) + (b if m0 else c)
        d1[j] = a1[j] * (a if m1 else zero) + (b if m1 else c)
        d2[j] = a2[j] * (a if m2 else zero) + (b if m2 else c)
        d3[j] = a3[j] * (a if m3 else zero) + (b if m3 else c)


@_jit
def _alpha_fwd(x, out, bits, k0, k1, t, a, b, c):
    # x, out: (n,), not overlapping; bits: ((n + 7) // 8,) packed keep flags (bit j of byte q =
    # element 8q + j).
    n = x.size
    zero = a - a
    keep = np.empty(BLOCK, np.uint8)
    for blk in range((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        if start + BLOCK <= n:
            _alpha_block(blk, k0, k1, t, keep, x, out, a, b, c, zero)
        else:
            _keep_block(blk, k0, k1, t, keep)
            xs, os = x[start:n], out[start:n]
            for r in range(xs.size):
                kr = keep[r]
                os[r] = xs[r] * (a if kr else zero) + (b if kr else c)
        _pack_block(keep, start, bits)


@_jit
def _masked_scale_bits(g, gin, bits, s):
    # gin = g * (s or 0) reading the packed flags
    n = g.size
    zero = s - s
    keep = np.empty(BLOCK, np.uint8)
    for blk in range((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        _unpack_block(bits, start // 8, keep)
        _apply_keep(g, gin, keep, start, min(start + BLOCK, n), s, zero)


def _np_dtype(t: torch.Tensor):
    return np.float32 if t.dtype == torch.float32 else np.float64


def alpha_forward(x: torch.Tensor, seed: int, p: float, a: float, b: float, c: float):
    """``(out, bits)``: ``out = x * (a or 0) + (b or c)`` for the mask of ``seed`` (contiguous
    float32/float64 ``x``; ``a``, ``b``, ``c`` are rounded to its dtype)."""
    out = empty_like(x)
    n = x.numel()
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    d = _np_dtype(x)
    xs, os, bs = x.detach().numpy().reshape(-1), out.numpy().reshape(-1), bits.numpy()
    _alpha_fwd(xs, os, bs, k0, k1, np.uint64(threshold(p)), d(a), d(b), d(c))
    return out, bits


def alpha_backward(grad: torch.Tensor, bits: torch.Tensor, a: float) -> torch.Tensor:
    """``grad * (a if kept else 0)`` from the packed mask of :func:`alpha_forward`."""
    grad = grad.contiguous()
    gin = empty_like(grad)
    gs, os = grad.numpy().reshape(-1), gin.numpy().reshape(-1)
    _masked_scale_bits(gs, os, bits.numpy(), _np_dtype(grad)(a))
    return gin


@_jit
def _row_affine(x, mult, offset, out):
    # x, out: (R, S); mult, offset: (R,). out[r] = x[r] * mult[r] + offset[r], rounded twice.
    for r in range(x.shape[0]):
        a, b = mult[r], offset[r]
        xs, os = x[r], out[r]
        for i in range(xs.size):
            os[i] = xs[i] * a + b


def row_affine(x: torch.Tensor, mult: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``x * mult + offset`` with one ``mult``/``offset`` per row of ``x`` viewed as (R, S)
    (contiguous float32/float64; ``mult``, ``offset``: (R,) of ``x``'s dtype)."""
    out = empty_like(x)
    rows = mult.numel()
    if x.numel():
        _row_affine(
            x.detach().numpy().reshape(rows, -1),
            mult.numpy(),
            offset.numpy(),
            out.numpy().reshape(rows, -1),
        )
    return out


@_jit
def _gaussian_apply(x, eps, out, std, one):
    # eps <- 1 + eps * std (the noise, kept for backward); out = x * noise. Each step rounded as
    # the plain path's eps.mul_(std).add_(1) and x * noise (std and one in the data's dtype: a
    # Python 1 would make numba compute in float64).
    for i in range(x.size):
        nz = eps[i] * std + one
        eps[i] = nz
        out[i] = x[i] * nz


def gaussian_apply(x: torch.Tensor, eps: torch.Tensor, std: float) -> torch.Tensor:
    """``out = x * (1 + std * eps)``, turning ``eps`` (contiguous, ``x``'s shape and dtype) into the
    noise in place; ``std`` is rounded to the dtype."""
    out = empty_like(x)
    d = _np_dtype(x)
    _gaussian_apply(
        x.detach().numpy().reshape(-1),
        eps.numpy().reshape(-1),
        out.numpy().reshape(-1),
        d(std),
        d(1.0),
    )
    return out
