"""numba CPU kernels for element-wise dropout keyed by Philox4x32-10.

Every kernel works on flat, contiguous NumPy arrays in the tensor's memory order and follows the
contract of :mod:`dropkit.reference.philox`: element ``i`` is kept when word ``r // (BLOCK // 4)`` of
``philox(counter = i // BLOCK * BLOCK // 4 + i % (BLOCK // 4), key = seed)`` is at least
``t = round(p * 2**32)``. Work is split over threads by whole blocks, so the result does not depend
on the number of threads.

Arithmetic is that of the plain path: the multiplier is ``s`` (kept) or ``0`` (dropped) in the array's
dtype and the output is one product per element (``fastmath`` stays off, so ``NaN * 0`` is NaN, as in
torch). The fused kernels round after each operation exactly as the unfused ops do.

The bit-packed mask has one bit per element: bit ``j`` of byte ``q`` is element ``8q + j`` (NumPy's
``bitorder="little"``); 1 = keep.

Shapes in comments: ``n`` elements, ``B = BLOCK``, ``Q = B // 4``.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from dropkit.kernels._numba import CACHE_DIR, numba, sync_threads
from dropkit.reference.philox import BLOCK

__all__ = [
    "BLOCK",
    "PARALLEL_MIN_NUMEL",
    "bias_dropout_add_forward",
    "dropout_add_forward",
    "dropout_backward_bits",
    "dropout_backward_seed",
    "dropout_forward",
    "keep_mask",
    "philox4x32_10",
    "sync_threads",
]

_CACHE = CACHE_DIR is not None
_Q = BLOCK // 4
_UQ = np.uint64(_Q)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S56 = np.uint64(56)
# Multiplying 8 bytes that are each 0 or 1 by this constant gathers them into the top byte,
# byte j landing on bit 56 + j: one multiply packs 8 keep flags into a mask byte.
_PACK8 = np.uint64(0x0102040810204080)

# Below this many elements the kernels run serially. Waking numba's worker threads costs tens of
# microseconds on a quiet machine and milliseconds on a busy one, where a serial kernel is unaffected
# (see docs/benchmarks.md); environment variable DROPKIT_FAST_DROPOUT_PARALLEL_MIN_NUMEL overrides.
PARALLEL_MIN_NUMEL = int(os.environ.get("DROPKIT_FAST_DROPOUT_PARALLEL_MIN_NUMEL", 1 << 19))

_jit = numba.njit(cache=_CACHE, nogil=True)
_pjit = numba.njit(cache=_CACHE, nogil=True, parallel=True)
_inline = numba.njit(cache=_CACHE, inline="always")


@_inline
def _philox10(c0, c1, c2, c3, k0, k1):
    # All values are uint64 holding 32-bit words; the products are exact 64-bit 32x32 products.
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _LO32, (p0 >> _S32) ^ c3 ^ k1, p0 & _LO32
        k0 = (k0 + _W0) & _LO32
        k1 = (k1 + _W1) & _LO32
    return c0, c1, c2, c3


@_inline
def _keep_block(b, k0, k1, t, keep):
    # keep: (B,) uint8 scratch <- 1 where the element at offset r of block b is kept.
    # One Philox call per counter feeds four unit-stride runs: offsets j, Q+j, 2Q+j, 3Q+j.
    base = np.uint64(b) * _UQ
    zero = np.uint64(0)
    for j in range(_Q):
        c = base + np.uint64(j)
        w0, w1, w2, w3 = _philox10(c & _LO32, c >> _S32, zero, zero, k0, k1)
        keep[j] = w0 >= t
        keep[_Q + j] = w1 >= t
        keep[2 * _Q + j] = w2 >= t
        keep[3 * _Q + j] = w3 >= t


@_inline
def _pack_block(keep, start, bits):
    # bits[start // 8 : ...] <- keep packed 8 flags per byte (the last block may be cut short).
    k64 = keep.view(np.uint64)  # (B // 8,)
    q0 = start // 8
    for q in range(min(BLOCK // 8, bits.size - q0)):
        bits[q0 + q] = np.uint8((k64[q] * _PACK8) >> _S56)


# ---- one block of work each; the drivers below run them over all blocks, serially or in parallel --


@_inline
def _dropout_fwd_block(b, x, out, bits, k0, k1, t, s, save_bits):
    n = x.size
    zero = s * 0
    keep = np.empty(BLOCK, np.uint8)
    _keep_block(b, k0, k1, t, keep)
    start = b * BLOCK
    for r in range(min(BLOCK, n - start)):
        out[start + r] = x[start + r] * (s if keep[r] else zero)
    if save_bits:
        _pack_block(keep, start, bits)


@_inline
def _dropout_add_fwd_block(b, x, res, out, bits, k0, k1, t, s, save_bits):
    n = x.size
    zero = s * 0
    keep = np.empty(BLOCK, np.uint8)
    _keep_block(b, k0, k1, t, keep)
    start = b * BLOCK
    stop = min(start + BLOCK, n)
    # Two loops on purpose: in one, LLVM contracts x * m + res into a fused multiply-add, which
    # rounds once where the unfused ops round twice.
    for i in range(start, stop):
        out[i] = x[i] * (s if keep[i - start] else zero)
    for i in range(start, stop):
        out[i] = out[i] + res[i]
    if save_bits:
        _pack_block(keep, start, bits)


@_inline
def _bias_dropout_add_fwd_block(b, x, bias, res, out, bits, k0, k1, t, s, save_bits):
    # x, res, out: (n,) = (rows * H,) row-major; bias: (H,) added along the last dimension.
    n = x.size
    h = bias.size
    zero = s * 0
    keep = np.empty(BLOCK, np.uint8)
    _keep_block(b, k0, k1, t, keep)
    start = b * BLOCK
    stop = min(start + BLOCK, n)
    i = start
    while i < stop:
        # one run per row segment: the bias index is i % h without a division per element
        col = i % h
        run = min(h - col, stop - i)
        for c in range(run):
            out[i + c] = (x[i + c] + bias[col + c]) * (s if keep[i + c - start] else zero)
        i += run
    for i in range(start, stop):  # a separate loop: no fused multiply-add (see above)
        out[i] = out[i] + res[i]
    if save_bits:
        _pack_block(keep, start, bits)


@_inline
def _dropout_bwd_bits_block(b, g, gin, bits, s):
    # Block b covers mask bytes [b * B/8, (b+1) * B/8), i.e. the elements of forward block b.
    n = g.size
    zero = s * 0
    full = n // 8  # bytes whose 8 elements all exist
    q0 = b * (BLOCK // 8)
    for q in range(q0, min(q0 + BLOCK // 8, full)):
        v = bits[q]
        for j in range(8):
            gin[8 * q + j] = g[8 * q + j] * (s if (v >> j) & 1 else zero)
    if q0 + BLOCK // 8 >= bits.size:  # last block: the elements of a partial last byte
        for i in range(8 * full, n):
            gin[i] = g[i] * (s if (bits[i >> 3] >> (i & 7)) & 1 else zero)


@_inline
def _dropout_bwd_seed_block(b, g, gin, k0, k1, t, s):
    n = g.size
    zero = s * 0
    keep = np.empty(BLOCK, np.uint8)
    _keep_block(b, k0, k1, t, keep)
    start = b * BLOCK
    for r in range(min(BLOCK, n - start)):
        gin[start + r] = g[start + r] * (s if keep[r] else zero)


# Each driver exists twice, parallel (prange over blocks) and serial: a parallel region costs a
# thread hand-off (tens of microseconds, more on a busy machine) that small tensors do not repay.


@_pjit
def _dropout_fwd_par(x, out, bits, k0, k1, t, s, save_bits):
    for b in numba.prange((x.size + BLOCK - 1) // BLOCK):
        _dropout_fwd_block(b, x, out, bits, k0, k1, t, s, save_bits)


@_jit
def _dropout_fwd_ser(x, out, bits, k0, k1, t, s, save_bits):
    for b in range((x.size + BLOCK - 1) // BLOCK):
        _dropout_fwd_block(b, x, out, bits, k0, k1, t, s, save_bits)


@_pjit
def _dropout_add_fwd_par(x, res, out, bits, k0, k1, t, s, save_bits):
    for b in numba.prange((x.size + BLOCK - 1) // BLOCK):
        _dropout_add_fwd_block(b, x, res, out, bits, k0, k1, t, s, save_bits)


@_jit
def _dropout_add_fwd_ser(x, res, out, bits, k0, k1, t, s, save_bits):
    for b in range((x.size + BLOCK - 1) // BLOCK):
        _dropout_add_fwd_block(b, x, res, out, bits, k0, k1, t, s, save_bits)


@_pjit
def _bias_dropout_add_fwd_par(x, bias, res, out, bits, k0, k1, t, s, save_bits):
    for b in numba.prange((x.size + BLOCK - 1) // BLOCK):
        _bias_dropout_add_fwd_block(b, x, bias, res, out, bits, k0, k1, t, s, save_bits)


@_jit
def _bias_dropout_add_fwd_ser(x, bias, res, out, bits, k0, k1, t, s, save_bits):
    for b in range((x.size + BLOCK - 1) // BLOCK):
        _bias_dropout_add_fwd_block(b, x, bias, res, out, bits, k0, k1, t, s, save_bits)


@_pjit
def _dropout_bwd_bits_par(g, gin, bits, s):
    for b in numba.prange((g.size + BLOCK - 1) // BLOCK):
        _dropout_bwd_bits_block(b, g, gin, bits, s)


@_jit
def _dropout_bwd_bits_ser(g, gin, bits, s):
    for b in range((g.size + BLOCK - 1) // BLOCK):
        _dropout_bwd_bits_block(b, g, gin, bits, s)


@_pjit
def _dropout_bwd_seed_par(g, gin, k0, k1, t, s):
    for b in numba.prange((g.size + BLOCK - 1) // BLOCK):
        _dropout_bwd_seed_block(b, g, gin, k0, k1, t, s)


@_jit
def _dropout_bwd_seed_ser(g, gin, k0, k1, t, s):
    for b in range((g.size + BLOCK - 1) // BLOCK):
        _dropout_bwd_seed_block(b, g, gin, k0, k1, t, s)


@_pjit
def _keep_mask(keep_out, k0, k1, t):
    n = keep_out.size
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        keep = np.empty(BLOCK, np.uint8)
        _keep_block(b, k0, k1, t, keep)
        start = b * BLOCK
        for r in range(min(BLOCK, n - start)):
            keep_out[start + r] = keep[r]


@_jit
def _philox_many(counters, keys, out):
    # counters: (m, 4), keys: (m, 2), out: (m, 4); all uint64 holding 32-bit words.
    for i in range(counters.shape[0]):
        w = _philox10(
            counters[i, 0], counters[i, 1], counters[i, 2], counters[i, 3], keys[i, 0], keys[i, 1]
        )
        for j in range(4):
            out[i, j] = w[j]


# ---- Python-level wrappers: argument preparation only (no checks: callers validate) ----------------


def _key(seed: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)


def _threshold(p: float) -> np.uint64:
    # P(drop) = t / 2**32. The fast path serves 0 < p < 1 only, so t < 2**32 fits the compare.
    return np.uint64(min(int(round(p * 2.0**32)), 2**32 - 1))


def _bits_buffer(n: int, save_bits: bool) -> np.ndarray:
    return np.empty((n + 7) // 8 if save_bits else 0, dtype=np.uint8)


# numba's workqueue layer must not run two parallel regions at once (it aborts the process), so one
# Python thread at a time runs the parallel drivers; a thread that finds them busy runs serially.
_PARALLEL_LOCK = threading.Lock()


def _run(parallel, serial, n: int, *args) -> None:
    if n >= PARALLEL_MIN_NUMEL and numba.get_num_threads() > 1:
        if _PARALLEL_LOCK.acquire(blocking=False):
            try:
                return parallel(*args)
            finally:
                _PARALLEL_LOCK.release()
    serial(*args)


def dropout_forward(x, out, seed: int, p: float, s, save_bits: bool) -> np.ndarray:
    """``out[i] = x[i] * (s if keep[i] else 0)``; returns the packed mask (empty if not saved).

    ``x`` and ``out`` are flat contiguous float32/float64 arrays (``out`` may be ``x``); ``s`` is a
    NumPy scalar of their dtype.
    """
    bits = _bits_buffer(x.size, save_bits)
    args = (x, out, bits, *_key(seed), _threshold(p), s, save_bits)
    _run(_dropout_fwd_par, _dropout_fwd_ser, x.size, *args)
    return bits


def dropout_add_forward(x, res, out, seed: int, p: float, s, save_bits: bool) -> np.ndarray:
    """``out = x * m + res`` with the same mask as :func:`dropout_forward`."""
    bits = _bits_buffer(x.size, save_bits)
    args = (x, res, out, bits, *_key(seed), _threshold(p), s, save_bits)
    _run(_dropout_add_fwd_par, _dropout_add_fwd_ser, x.size, *args)
    return bits


def bias_dropout_add_forward(x, bias, res, out, seed: int, p: float, s, save_bits: bool):
    """``out = (x + bias) * m + res``; ``bias`` runs along the last (fastest) dimension."""
    bits = _bits_buffer(x.size, save_bits)
    args = (x, bias, res, out, bits, *_key(seed), _threshold(p), s, save_bits)
    _run(_bias_dropout_add_fwd_par, _bias_dropout_add_fwd_ser, x.size, *args)
    return bits


def dropout_backward_bits(g, gin, bits, s) -> None:
    """``gin = g * m * s`` reading the mask from the packed bits."""
    _run(_dropout_bwd_bits_par, _dropout_bwd_bits_ser, g.size, g, gin, bits, s)


def dropout_backward_seed(g, gin, seed: int, p: float, s) -> None:
    """``gin = g * m * s`` regenerating the mask from the seed."""
    args = (g, gin, *_key(seed), _threshold(p), s)
    _run(_dropout_bwd_seed_par, _dropout_bwd_seed_ser, g.size, *args)


def keep_mask(numel: int, p: float, seed: int) -> np.ndarray:
    """The kernels' keep-mask (bool, True = keep) for ``numel`` elements in memory order."""
    keep = np.empty(numel, dtype=np.uint8)
    with _PARALLEL_LOCK:
        _keep_mask(keep, *_key(seed), _threshold(p))
    return keep.view(np.bool_)


def philox4x32_10(counter, key) -> np.ndarray:
    """The kernels' Philox4x32-10 on a batch: ``counter`` (m, 4), ``key`` (m, 2) -> (m, 4) uint32."""
    c = np.ascontiguousarray(counter, dtype=np.uint64).reshape(-1, 4)
    k = np.ascontiguousarray(np.broadcast_to(np.asarray(key, dtype=np.uint64), (len(c), 2)))
    out = np.empty_like(c)
    _philox_many(c, k, out)
    return out.astype(np.uint32)
