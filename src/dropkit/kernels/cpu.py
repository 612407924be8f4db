"""numba CPU kernels for element-wise dropout keyed by Philox4x32-10.

Every kernel works on flat, contiguous NumPy arrays in the tensor's memory order and follows the
contract of :mod:`dropkit.reference.philox`: element ``i`` is kept when word ``r // (BLOCK // 4)`` of
``philox(counter = i // BLOCK * BLOCK // 4 + i % (BLOCK // 4), key = seed)`` is at least
``t = round(p * 2**32)``. Work is split over threads by whole blocks, so the result does not depend
on the number of threads.

Speed (see docs/benchmarks.md): the generator loop is written so that LLVM vectorises it across
counters (eight 64-bit lanes per AVX-512 register): the rounds are straight-line code, every multiplied
word is known to fit 32 bits (so each product is one ``vpmuludq``), and arrays are indexed through views
starting at 0 (an index of unknown sign makes numba's wraparound check turn unit-stride accesses into
gathers and scatters). Where input and output do not overlap, a full block is generated and applied
in one loop, so memory traffic overlaps the generator's arithmetic.

Arithmetic is that of the plain path: the multiplier is ``s`` (kept) or ``0`` (dropped) in the array's
dtype and the output is one product per element (``fastmath`` stays off, so ``NaN * 0`` is NaN, as in
torch). The fused kernels round after each operation exactly as the unfused ops do.

The bit-packed mask has one bit per element: bit ``j`` of byte ``q`` is element ``8q + j`` (NumPy's
``bitorder="little"``); 1 = keep.

Shapes in comments: ``n`` elements, ``B = BLOCK``, ``Q = B // 4``.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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
# The reverse: a mask byte times _SPREAD copies it into all 8 bytes; & _BITSEL keeps bit j in byte j.
_SPREAD = np.uint64(0x0101010101010101)
_BITSEL = np.uint64(0x8040201008040201)
_H7F = np.uint64(0x7F7F7F7F7F7F7F7F)
_S7 = np.uint64(7)
_ZERO = np.uint64(0)

# Below this many elements the kernels run serially. Waking numba's worker threads costs tens of
# microseconds on a quiet machine and milliseconds on a busy one, where a serial kernel is unaffected
# (see docs/benchmarks.md); environment variable DROPKIT_FAST_DROPOUT_PARALLEL_MIN_NUMEL overrides.
PARALLEL_MIN_NUMEL = int(os.environ.get("DROPKIT_FAST_DROPOUT_PARALLEL_MIN_NUMEL", 1 << 19))

_jit = numba.njit(cache=_CACHE, nogil=True)
_pjit = numba.njit(cache=_CACHE, nogil=True, parallel=True)
_inline = numba.njit(cache=_CACHE, inline="always")


@_inline
def _round(c0, c1, c2, c3, k0, k1):
    # One Philox round on uint64 values. c0, c2 (the multiplied words) and the keys are below
    # 2**32, so LLVM lowers the exact 32x32 products to vpmuludq when it vectorises over counters.
    # c1 and c3 may carry bits above 31 (low halves of products, left unmasked): they are only
    # xor-ed into words that are masked before the next multiply, which needs just their low half.
    p0 = _M0 * c0
    p1 = _M1 * c2
    return ((p1 >> _S32) ^ c1 ^ k0) & _LO32, p1, ((p0 >> _S32) ^ c3 ^ k1) & _LO32, p0


@_inline
def _philox10(c0, c1, c2, c3, k0, k1):
    # The ten rounds written out: straight-line code that the loop vectoriser sees through, and
    # where constant counter words (c2 = c3 = 0 in the kernels) fold away in the first rounds.
    k0, k1 = k0 & _LO32, k1 & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    return c0, c1 & _LO32, c2, c3 & _LO32


@_inline
def _keep_block(b, k0, k1, t, keep):
    # keep: (B,) uint8 scratch <- 1 where the element at offset r of block b is kept.
    # One Philox call per counter feeds four unit-stride runs: offsets j, Q+j, 2Q+j, 3Q+j.
    # The counters of a block share their high word: Q divides 2**32, so base_lo + j < 2**32.
    base = np.uint64(b) * _UQ
    base_lo = base & _LO32
    hi = base >> _S32
    for j in range(_Q):
        c = (base_lo + np.uint64(j)) & _LO32  # no-op, but tells LLVM the word fits 32 bits
        w0, w1, w2, w3 = _philox10(c, hi, _ZERO, _ZERO, k0, k1)
        keep[j] = w0 >= t
        keep[_Q + j] = w1 >= t
        keep[2 * _Q + j] = w2 >= t
        keep[3 * _Q + j] = w3 >= t


@_inline
def _keep_apply_block(b, k0, k1, t, keep, src, dst, s, zero):
    # A full block b: _keep_block and _apply_keep in one loop, so that the loads and stores of the
    # four runs overlap the generator's arithmetic (from memory, about 1.5x faster than two passes).
    # src and dst must not overlap: LLVM's run-time alias checks would fall back to scalar code.
    start = b * BLOCK
    a0, a1 = src[start : start + _Q], src[start + _Q : start + 2 * _Q]
    a2, a3 = src[start + 2 * _Q : start + 3 * _Q], src[start + 3 * _Q : start + BLOCK]
    d0, d1 = dst[start : start + _Q], dst[start + _Q : start + 2 * _Q]
    d2, d3 = dst[start + 2 * _Q : start + 3 * _Q], dst[start + 3 * _Q : start + BLOCK]
    base = np.uint64(b) * _UQ
    base_lo = base & _LO32
    hi = base >> _S32
    for j in range(_Q):
        c = (base_lo + np.uint64(j)) & _LO32
        w0, w1, w2, w3 = _philox10(c, hi, _ZERO, _ZERO, k0, k1)
        m0, m1, m2, m3 = w0 >= t, w1 >= t, w2 >= t, w3 >= t
        keep[j] = m0
        keep[_Q + j] = m1
        keep[2 * _Q + j] = m2
        keep[3 * _Q + j] = m3
        d0[j] = a0[j] * (s if m0 else zero)
        d1[j] = a1[j] * (s if m1 else zero)
        d2[j] = a2[j] * (s if m2 else zero)
        d3[j] = a3[j] * (s if m3 else zero)


@_inline
def _keep_and_apply(b, k0, k1, t, keep, src, dst, s, zero, fuse):
    # keep <- the flags of block b; dst <- src * (s or 0) over the block (cut short at the end).
    start = b * BLOCK
    n = src.size
    if fuse and start + BLOCK <= n:
        _keep_apply_block(b, k0, k1, t, keep, src, dst, s, zero)
    else:
        _keep_block(b, k0, k1, t, keep)
        _apply_keep(src, dst, keep, start, min(start + BLOCK, n), s, zero)


@_inline
def _pack_block(keep, start, bits):
    # bits[start // 8 : ...] <- keep packed 8 flags per byte (the last block may be cut short).
    k64 = keep.view(np.uint64)  # (B // 8,)
    q0 = start // 8
    dst = bits[q0 : q0 + BLOCK // 8]
    for q in range(dst.size):
        dst[q] = np.uint8((k64[q] * _PACK8) >> _S56)


@_inline
def _unpack_block(bits, q0, keep):
    # keep <- the flags of mask bytes bits[q0 : q0 + B/8] (fewer in the last block), one byte each.
    # Byte v spread to all 8 bytes of a word, masked to bit j in byte j, then each byte's
    # nonzero-ness moved to its bit 0 (adding 0x7F never carries out of a byte).
    k64 = keep.view(np.uint64)
    src = bits[q0 : q0 + BLOCK // 8]
    for q in range(src.size):
        v = (np.uint64(src[q]) * _SPREAD) & _BITSEL
        k64[q] = ((v + _H7F) >> _S7) & _SPREAD


@_inline
def _apply_keep(src, dst, keep, start, stop, s, zero):
    # dst[i] = src[i] * (s or 0): one product per element, a branch-free select. Indexing views
    # from 0 lets LLVM see unit-stride accesses (an index of unknown sign becomes a gather).
    a = src[start:stop]
    d = dst[start:stop]
    for r in range(a.size):
        d[r] = a[r] * (s if keep[r] else zero)


@_inline
def _add_to(out, res, start, stop):
    o = out[start:stop]
    r = res[start:stop]
    for i in range(o.size):
        o[i] = o[i] + r[i]


# ---- the drivers: blocks [b0, b1) each; the Python wrappers split the blocks over threads ---------


@_jit
def _dropout_fwd(x, out, bits, k0, k1, t, s, save_bits, fuse, b0, b1):
    zero = s - s  # s is finite; s * 0 would be a float64 for float32 s
    keep = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
        _keep_and_apply(b, k0, k1, t, keep, x, out, s, zero, fuse)
        if save_bits:
            _pack_block(keep, b * BLOCK, bits)


@_jit
def _dropout_add_fwd(x, res, out, bits, k0, k1, t, s, save_bits, b0, b1):
    n = x.size
    zero = s - s  # s is finite; s * 0 would be a float64 for float32 s
    keep = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
        _keep_block(b, k0, k1, t, keep)
        start = b * BLOCK
        stop = min(start + BLOCK, n)
        # Two loops on purpose: in one, LLVM contracts x * m + res into a fused multiply-add,
        # which rounds once where the unfused ops round twice.
        _apply_keep(x, out, keep, start, stop, s, zero)
        _add_to(out, res, start, stop)
        if save_bits:
            _pack_block(keep, start, bits)


@_jit
def _bias_dropout_add_fwd(x, bias, res, out, bits, k0, k1, t, s, save_bits, b0, b1):
    # x, res, out: (n,) = (rows * H,) row-major; bias: (H,) added along the last dimension.
    n = x.size
    h = bias.size
    zero = s - s  # s is finite; s * 0 would be a float64 for float32 s
    keep = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
        _keep_block(b, k0, k1, t, keep)
        start = b * BLOCK
        stop = min(start + BLOCK, n)
        i = start
        while i < stop:
            # one run per row segment: the bias index is i % h without a division per element
            col = i % h
            run = min(h - col, stop - i)
            xr, orun = x[i : i + run], out[i : i + run]
            br, kr = bias[col : col + run], keep[i - start : i - start + run]
            for c in range(xr.size):
                orun[c] = (xr[c] + br[c]) * (s if kr[c] else zero)
            i += run
        _add_to(out, res, start, stop)  # a separate loop: no fused multiply-add (see above)
        if save_bits:
            _pack_block(keep, start, bits)


@_jit
def _dropout_bwd_bits(g, gin, bits, s, b0, b1):
    # Block b reads mask bytes [b * B/8, (b+1) * B/8), written by forward block b.
    n = g.size
    zero = s - s  # s is finite; s * 0 would be a float64 for float32 s
    keep = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
        start = b * BLOCK
        _unpack_block(bits, start // 8, keep)
        _apply_keep(g, gin, keep, start, min(start + BLOCK, n), s, zero)


@_jit
def _dropout_bwd_seed(g, gin, k0, k1, t, s, fuse, b0, b1):
    zero = s - s  # s is finite; s * 0 would be a float64 for float32 s
    keep = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
        _keep_and_apply(b, k0, k1, t, keep, g, gin, s, zero, fuse)


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


def _disjoint(a: np.ndarray, b: np.ndarray) -> bool:
    # The one-loop kernels need input and output apart (in-place calls take the two-pass kernels).
    return not np.may_share_memory(a, b)


def _bits_buffer(n: int, save_bits: bool) -> np.ndarray:
    return np.empty((n + 7) // 8 if save_bits else 0, dtype=np.uint8)


# Work is split over threads in chunks of whole blocks that the threads take in turn (the kernels
# release the GIL): a thread slowed down by another process on its core simply takes fewer chunks,
# where an equal split in advance (numba's prange) waits for the slowest thread.
CHUNK_BLOCKS = 32
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), "dropkit-kernels")
        return _POOL


def _forget_pool() -> None:
    global _POOL
    global _POOL_LOCK
    _POOL = None  # a forked child has none of the parent's threads
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run(kernel, n: int, *args) -> None:
    nblocks = (n + BLOCK - 1) // BLOCK
    threads = numba.get_num_threads()
    if n < PARALLEL_MIN_NUMEL or threads < 2 or nblocks < 2:
        kernel(*args, 0, nblocks)
        return
    nchunks = min(nblocks, max(threads, -(-nblocks // CHUNK_BLOCKS)))
    size = -(-nblocks // nchunks)
    chunks = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        for c in chunks:
            if c * size >= nblocks:
                return
            kernel(*args, c * size, min(nblocks, (c + 1) * size))

    helpers = [_pool().submit(work) for _ in range(threads - 1)]
    work()
    for f in helpers:
        if not f.cancel():  # a helper that never started has nothing left to do
            f.result()


# numba's workqueue layer must not run two parallel regions at once (it aborts the process):
# keep_mask, the one prange kernel, runs under this lock.
_PARALLEL_LOCK = threading.Lock()


def dropout_forward(x, out, seed: int, p: float, s, save_bits: bool) -> np.ndarray:
    """``out[i] = x[i] * (s if keep[i] else 0)``; returns the packed mask (empty if not saved).

    ``x`` and ``out`` are flat contiguous float32/float64 arrays (``out`` may be ``x``); ``s`` is a
    NumPy scalar of their dtype.
    """
    bits = _bits_buffer(x.size, save_bits)
    args = (x, out, bits, *_key(seed), _threshold(p), s, save_bits, _disjoint(x, out))
    _run(_dropout_fwd, x.size, *args)
    return bits


def dropout_add_forward(x, res, out, seed: int, p: float, s, save_bits: bool) -> np.ndarray:
    """``out = x * m + res`` with the same mask as :func:`dropout_forward`."""
    bits = _bits_buffer(x.size, save_bits)
    args = (x, res, out, bits, *_key(seed), _threshold(p), s, save_bits)
    _run(_dropout_add_fwd, x.size, *args)
    return bits


def bias_dropout_add_forward(x, bias, res, out, seed: int, p: float, s, save_bits: bool):
    """``out = (x + bias) * m + res``; ``bias`` runs along the last (fastest) dimension."""
    bits = _bits_buffer(x.size, save_bits)
    args = (x, bias, res, out, bits, *_key(seed), _threshold(p), s, save_bits)
    _run(_bias_dropout_add_fwd, x.size, *args)
    return bits


def dropout_backward_bits(g, gin, bits, s) -> None:
    """``gin = g * m * s`` reading the mask from the packed bits."""
    _run(_dropout_bwd_bits, g.size, g, gin, bits, s)


def dropout_backward_seed(g, gin, seed: int, p: float, s) -> None:
    """``gin = g * m * s`` regenerating the mask from the seed."""
    args = (g, gin, *_key(seed), _threshold(p), s, _disjoint(g, gin))
    _run(_dropout_bwd_seed, g.size, *args)


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
