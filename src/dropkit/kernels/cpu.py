"""numba CPU kernels for element-wise dropout keyed by Philox4x32-10.

Every kernel works on flat, contiguous arrays in the tensor's memory order and follows the contract
of :mod:`dropkit.reference.philox`: element ``i`` is kept when word ``r // (BLOCK // 4)`` of
``philox(counter = i // BLOCK * BLOCK // 4 + i % (BLOCK // 4), key = seed)`` is at least
``t = round(p * 2**32)``. Work is split over threads by whole blocks, so the result does not depend
on the number of threads.

Layers, bottom up: block kernels (generate and apply one block), drivers (a range of blocks), tasks
(C callbacks that take chunks of blocks from an atomic counter in a record; any number of threads may
run one), and the launcher, which runs a task on the calling thread, on torch's own OpenMP team
(:mod:`dropkit.kernels._openmp`) or on Python threads. The entry points take tensors
(``forward_tensor``, ``backward_tensor``, ``residual_tensor``; what :mod:`dropkit.functional` calls)
or, for tests and tools, tensors or NumPy arrays (``dropout_forward`` and the rest).

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

import ctypes
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import llvmlite.ir as ir
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic

from dropkit.kernels._numba import CACHE_DIR, numba
from dropkit.kernels._openmp import runtime
from dropkit.reference.philox import BLOCK

__all__ = [
    "BLOCK",
    "PARALLEL_MIN_NUMEL",
    "bias_dropout_add_forward",
    "dropout_add_forward",
    "dropout_backward_bits",
    "dropout_backward_seed",
    "dropout_forward",
    "backward_tensor",
    "forward_tensor",
    "keep_mask",
    "keep_runs",
    "philox4x32_10",
    "residual_tensor",
    "threshold",
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

_jit = numba.njit(cache=_CACHE, nogil=True)
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


@_jit
def _keep_mask_fwd(keep_out, k0, k1, t, b0, b1):
    n = keep_out.size
    keep = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
        _keep_block(b, k0, k1, t, keep)
        start = b * BLOCK
        dst = keep_out[start : min(start + BLOCK, n)]
        for r in range(dst.size):
            dst[r] = keep[r]


@_jit
def _keep_runs(starts, length, keep, k0, k1, t):
    # keep: (R * length,) uint8 <- 1 where the element at global index starts[r] + j is kept: the
    # mask of a box of a larger tensor (a DTensor's shard), element by element. Each element takes
    # one word of its counter's Philox output, as in _keep_block (4x the generator work of a block,
    # for an index set of any shape).
    for r in range(starts.shape[0]):
        base = np.uint64(starts[r])
        out = keep[r * length : (r + 1) * length]
        for j in range(length):
            i = base + np.uint64(j)
            b = i // np.uint64(BLOCK)
            off = i - b * np.uint64(BLOCK)
            c = b * _UQ + off % _UQ
            w0, w1, w2, w3 = _philox10(c & _LO32, c >> _S32, _ZERO, _ZERO, k0, k1)
            q = off // _UQ
            w = w0 if q == 0 else (w1 if q == 1 else (w2 if q == 2 else w3))
            out[j] = w >= t


@_jit
def _philox_many(counters, keys, out):
    # counters: (m, 4), keys: (m, 2), out: (m, 4); all uint64 holding 32-bit words.
    for i in range(counters.shape[0]):
        w = _philox10(
            counters[i, 0], counters[i, 1], counters[i, 2], counters[i, 3], keys[i, 0], keys[i, 1]
        )
        for j in range(4):
            out[i, j] = w[j]


# ---- tasks: C callbacks that every thread of a parallel region runs -------------------------------
#
# A task receives a pointer to one record (_RECORD below). The blocks are cut into NCHUNKS chunks; each
# thread takes the next chunk with an atomic fetch-and-add on the record's NEXT field until none is
# left, so any number of threads (one, torch's OpenMP team, Python threads) computes the same thing,
# and a thread that arrives late finds the work done. The dtype is not in the record: each task is
# compiled for one dtype (``itemsize`` picks the task).

_X, _R, _B, _OUT, _BITS, _N, _H, _K0, _K1, _T, _S, _SAVE, _FUSE, _NCHUNKS, _NEXT = range(15)
_NARGS = 15


@intrinsic
def _fetch_add(typingctx, record, index, value):
    # int64 atomic fetch-and-add on word `index` of the record.
    sig = types.int64(types.voidptr, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        slot = builder.gep(builder.bitcast(args[0], ir.IntType(64).as_pointer()), [args[1]])
        return builder.atomic_rmw("add", slot, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def _address(typingctx, value):
    # An int64 holding an address, as a pointer (for numba.carray).
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


@_inline
def _chunks(record, a):
    # (b0, b1) of the next chunk of blocks; b0 >= the number of blocks once all are taken.
    nblocks = (a[_N] + BLOCK - 1) // BLOCK
    size = (nblocks + a[_NCHUNKS] - 1) // a[_NCHUNKS]
    b0 = _fetch_add(record, _NEXT, 1) * size
    return b0, min(nblocks, b0 + size), nblocks


@_inline
def _fields(record):
    a = numba.carray(record, _NARGS, np.int64)
    f = numba.carray(record, _NARGS, np.float64)
    bits = numba.carray(_address(a[_BITS]), (a[_N] + 7) // 8 if a[_SAVE] else 0, np.uint8)
    return a, f[_S], bits, np.uint64(a[_K0]), np.uint64(a[_K1]), np.uint64(a[_T])


@_inline
def _array(a, field, dtype):
    return numba.carray(_address(a[field]), a[_N], dtype)


@_jit
def _run_forward(record, a, x, out, bits, k0, k1, t, s):
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        _dropout_fwd(x, out, bits, k0, k1, t, s, a[_SAVE] != 0, a[_FUSE] != 0, b0, b1)
        b0, b1, nblocks = _chunks(record, a)


# One task per operation and dtype: a first call compiles only what it uses (float32 alone in most
# programs), about half the cold compile time of a task holding both dtypes.


def _task_forward_f32(record):
    a, s, bits, k0, k1, t = _fields(record)
    x, out = _array(a, _X, np.float32), _array(a, _OUT, np.float32)
    _run_forward(record, a, x, out, bits, k0, k1, t, np.float32(s))


def _task_forward_f64(record):
    a, s, bits, k0, k1, t = _fields(record)
    x, out = _array(a, _X, np.float64), _array(a, _OUT, np.float64)
    _run_forward(record, a, x, out, bits, k0, k1, t, s)


@_jit
def _run_add(record, a, x, res, out, bits, k0, k1, t, s):
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        _dropout_add_fwd(x, res, out, bits, k0, k1, t, s, a[_SAVE] != 0, b0, b1)
        b0, b1, nblocks = _chunks(record, a)


def _task_add_f32(record):
    a, s, bits, k0, k1, t = _fields(record)
    x, r, o = _array(a, _X, np.float32), _array(a, _R, np.float32), _array(a, _OUT, np.float32)
    _run_add(record, a, x, r, o, bits, k0, k1, t, np.float32(s))


def _task_add_f64(record):
    a, s, bits, k0, k1, t = _fields(record)
    x, r, o = _array(a, _X, np.float64), _array(a, _R, np.float64), _array(a, _OUT, np.float64)
    _run_add(record, a, x, r, o, bits, k0, k1, t, s)


@_jit
def _run_bias_add(record, a, x, bias, res, out, bits, k0, k1, t, s):
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        _bias_dropout_add_fwd(x, bias, res, out, bits, k0, k1, t, s, a[_SAVE] != 0, b0, b1)
        b0, b1, nblocks = _chunks(record, a)


def _task_bias_add_f32(record):
    a, s, bits, k0, k1, t = _fields(record)
    x, r, o = _array(a, _X, np.float32), _array(a, _R, np.float32), _array(a, _OUT, np.float32)
    bias = numba.carray(_address(a[_B]), a[_H], np.float32)
    _run_bias_add(record, a, x, bias, r, o, bits, k0, k1, t, np.float32(s))


def _task_bias_add_f64(record):
    a, s, bits, k0, k1, t = _fields(record)
    x, r, o = _array(a, _X, np.float64), _array(a, _R, np.float64), _array(a, _OUT, np.float64)
    bias = numba.carray(_address(a[_B]), a[_H], np.float64)
    _run_bias_add(record, a, x, bias, r, o, bits, k0, k1, t, s)


@_jit
def _run_backward(record, a, g, gin, bits, k0, k1, t, s):
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        if a[_SAVE]:
            _dropout_bwd_bits(g, gin, bits, s, b0, b1)
        else:
            _dropout_bwd_seed(g, gin, k0, k1, t, s, a[_FUSE] != 0, b0, b1)
        b0, b1, nblocks = _chunks(record, a)


def _task_backward_f32(record):
    a, s, bits, k0, k1, t = _fields(record)
    g, gin = _array(a, _X, np.float32), _array(a, _OUT, np.float32)
    _run_backward(record, a, g, gin, bits, k0, k1, t, np.float32(s))


def _task_backward_f64(record):
    a, s, bits, k0, k1, t = _fields(record)
    g, gin = _array(a, _X, np.float64), _array(a, _OUT, np.float64)
    _run_backward(record, a, g, gin, bits, k0, k1, t, s)


def _task_keep_mask(record):
    a = numba.carray(record, _NARGS, np.int64)
    keep = _array(a, _OUT, np.uint8)
    k0, k1, t = np.uint64(a[_K0]), np.uint64(a[_K1]), np.uint64(a[_T])
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        _keep_mask_fwd(keep, k0, k1, t, b0, b1)
        b0, b1, nblocks = _chunks(record, a)


class _Task:
    """One task compiled on first use (cached on disk), callable directly or by address."""

    def __init__(self, key: tuple[str, int], py_func) -> None:
        self.key, self.py_func = key, py_func

    def compiled(self) -> tuple[int, object]:
        cf = numba.cfunc(types.void(types.voidptr), cache=_CACHE, nogil=True)(self.py_func)
        self.cfunc = cf  # owns the machine code
        compiled = (cf.address, ctypes.CFUNCTYPE(None, ctypes.c_void_p)(cf.address))
        _COMPILED[self.key] = compiled
        return compiled


# (operation, itemsize) -> (address, callable), filled on first use
_COMPILED: dict[tuple[str, int], tuple[int, object]] = {}
_TASKS = {
    key: _Task(key, fn)
    for key, fn in {
        ("forward", 4): _task_forward_f32,
        ("forward", 8): _task_forward_f64,
        ("add", 4): _task_add_f32,
        ("add", 8): _task_add_f64,
        ("bias_add", 4): _task_bias_add_f32,
        ("bias_add", 8): _task_bias_add_f64,
        ("backward", 4): _task_backward_f32,
        ("backward", 8): _task_backward_f64,
        ("keep_mask", 1): _task_keep_mask,
    }.items()
}


# The record a task reads, in the order of the field indices above: addresses and sizes as int64,
# the multiplier as a double. Each thread packs its records into a buffer of its own.
_RECORD = struct.Struct("<10qd4q")
_records = threading.local()


def _record_buffer() -> tuple[ctypes.Array, int]:
    record = getattr(_records, "buffer", None)
    if record is None:
        buffer = ctypes.create_string_buffer(_RECORD.size)
        record = _records.buffer = (buffer, ctypes.addressof(buffer))
    return record


# ---- launching: serially, on torch's OpenMP team, or on Python threads ----------------------------

# Below this many elements a task runs on the calling thread alone. Torch's team takes over a 128K
# element tensor in a few microseconds (docs/benchmarks.md); environment variable
# DROPKIT_FAST_DROPOUT_PARALLEL_MIN_NUMEL overrides.
PARALLEL_MIN_NUMEL = int(os.environ.get("DROPKIT_FAST_DROPOUT_PARALLEL_MIN_NUMEL", 1 << 16))
# The blocks are cut into this many chunks per thread, taken in turn. One: thread i takes the i-th
# slice, as torch's own element-wise operators do, so each thread reads what it wrote in the previous
# operator and faults in pages (2 MiB ones too) of its own; smaller chunks shared between threads made
# a 16M-element call up to 25% slower (docs/benchmarks.md). Tests raise it to check uneven splits.
_CHUNKS_PER_THREAD = 1

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


def _run(name, x, r, b, out, bits, n, h, seed, t, s, fuse, itemsize, threads) -> None:
    # x, r, b, out, bits: addresses (0: none; bits 0 = no mask kept); itemsize picks the task. Packs
    # the record, then runs the task on this thread alone, on torch's OpenMP team, or on Python threads.
    key = (name, itemsize)
    address, call = _COMPILED.get(key) or _TASKS[key].compiled()
    if threads is None:
        threads = torch.get_num_threads()
    nblocks = (n + BLOCK - 1) // BLOCK
    parallel = threads > 1 and n >= PARALLEL_MIN_NUMEL and nblocks > 1
    nchunks = 1
    if parallel:
        threads = min(threads, nblocks)
        nchunks = min(nblocks, threads * _CHUNKS_PER_THREAD)
    buffer, record = _record_buffer()
    key0, key1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    save = 1 if bits else 0
    _RECORD.pack_into(buffer, 0, x, r, b, out, bits, n, h, key0, key1, t, s, save, fuse, nchunks, 0)
    if not parallel:
        call(record)
        return
    omp = runtime()
    if omp is not None:
        omp.GOMP_parallel(address, record, threads, 0)
        return
    helpers = [_pool().submit(call, record) for _ in range(threads - 1)]
    call(record)
    for f in helpers:
        if not f.cancel():  # a helper that never started has nothing left to do
            f.result()


def threshold(p: float) -> int:
    """The drop threshold ``t`` of :mod:`dropkit.reference.philox` for ``0 < p < 1``."""
    return min(int(round(p * 4294967296.0)), 4294967295)


# ---- entry points on tensors (what dropkit.functional calls; no checks: callers validate) ---------


def forward_tensor(x, out, bits, n: int, seed: int, t: int, s: float, fuse: bool) -> None:
    """``out = x * m``: contiguous tensors of ``n`` elements; ``bits`` (or None) gets the mask.

    ``fuse``: ``x`` and ``out`` do not overlap (one pass; in-place calls must pass False).
    """
    b = 0 if bits is None else bits.data_ptr()
    a, o = x.data_ptr(), out.data_ptr()
    _run("forward", a, 0, 0, o, b, n, 0, seed, t, s, fuse, x.element_size(), None)


def backward_tensor(g, gin, bits, n: int, seed: int, t: int, s: float) -> None:
    """``gin = g * m`` from the packed ``bits``, or from the seed when ``bits`` is None."""
    b = 0 if bits is None else bits.data_ptr()
    a, o = g.data_ptr(), gin.data_ptr()
    fuse = bits is None and _disjoint(g, gin)
    _run("backward", a, 0, 0, o, b, n, 0, seed, t, s, fuse, g.element_size(), None)


def residual_tensor(x, bias, res, out, bits, n: int, seed: int, t: int, s: float) -> None:
    """``out = x * m + res``, or ``(x + bias) * m + res`` (bias along the last dimension)."""
    h = 0 if bias is None else bias.numel()
    b = 0 if bias is None else bias.data_ptr()
    name = "add" if bias is None else "bias_add"
    args = (x.data_ptr(), res.data_ptr(), b, out.data_ptr(), 0 if bits is None else bits.data_ptr())
    _run(name, *args, n, h, seed, t, s, False, x.element_size(), None)


# ---- NumPy-or-tensor wrappers (tests, tools): the mask comes back as the same kind as ``x`` -------


def _tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)


def _bits_for(x: torch.Tensor, save_bits: bool) -> torch.Tensor | None:
    return torch.empty((x.numel() + 7) // 8, dtype=torch.uint8) if save_bits else None


def _returned(bits: torch.Tensor | None, x):
    bits = torch.empty(0, dtype=torch.uint8) if bits is None else bits
    return bits if isinstance(x, torch.Tensor) else bits.numpy()


def dropout_forward(x, out, seed: int, p: float, s, save_bits: bool, threads=None):
    """``out[i] = x[i] * (s if keep[i] else 0)``; returns the packed mask (empty if not saved).

    ``x`` and ``out`` are contiguous float32/float64 tensors or NumPy arrays of one dtype (``out``
    may be ``x``). ``s`` is the multiplier, already rounded to the data's dtype. ``threads``: torch's
    intra-op thread count when None.
    """
    xt, ot = _tensor(x), _tensor(out)
    bits = _bits_for(xt, save_bits)
    b = 0 if bits is None else bits.data_ptr()
    fuse = _disjoint(xt, ot)
    args = (xt.data_ptr(), 0, 0, ot.data_ptr(), b, xt.numel(), 0)
    _run("forward", *args, seed, threshold(p), float(s), fuse, xt.element_size(), threads)
    return _returned(bits, x)


def dropout_add_forward(x, res, out, seed: int, p: float, s, save_bits: bool, threads=None):
    """``out = x * m + res`` with the same mask as :func:`dropout_forward`."""
    return bias_dropout_add_forward(x, None, res, out, seed, p, s, save_bits, threads)


def bias_dropout_add_forward(
    x, bias, res, out, seed: int, p: float, s, save_bits: bool, threads=None
):
    """``out = (x + bias) * m + res``; ``bias`` runs along the last (fastest) dimension."""
    xt, rt, ot = _tensor(x), _tensor(res), _tensor(out)
    bt = None if bias is None else _tensor(bias)
    bits = _bits_for(xt, save_bits)
    b = 0 if bits is None else bits.data_ptr()
    h = 0 if bt is None else bt.numel()
    name = "add" if bt is None else "bias_add"
    args = (xt.data_ptr(), rt.data_ptr(), 0 if bt is None else bt.data_ptr(), ot.data_ptr(), b)
    _run(
        name, *args, xt.numel(), h, seed, threshold(p), float(s), False, xt.element_size(), threads
    )
    return _returned(bits, x)


def dropout_backward_bits(g, gin, bits, s, threads=None) -> None:
    """``gin = g * m * s`` reading the mask from the packed bits."""
    gt, it, bt = _tensor(g), _tensor(gin), _tensor(bits)
    args = (gt.data_ptr(), 0, 0, it.data_ptr(), bt.data_ptr(), gt.numel(), 0)
    _run("backward", *args, 0, 0, float(s), False, gt.element_size(), threads)


def dropout_backward_seed(g, gin, seed: int, p: float, s, threads=None) -> None:
    """``gin = g * m * s`` regenerating the mask from the seed."""
    gt, it = _tensor(g), _tensor(gin)
    args = (gt.data_ptr(), 0, 0, it.data_ptr(), 0, gt.numel(), 0)
    fuse = _disjoint(gt, it)
    _run("backward", *args, seed, threshold(p), float(s), fuse, gt.element_size(), threads)


def _disjoint(a: torch.Tensor, b: torch.Tensor) -> bool:
    # The one-loop kernels need input and output apart (in-place calls take the two-pass kernels).
    pa, pb, size = a.data_ptr(), b.data_ptr(), a.numel() * a.element_size()
    return pa + size <= pb or pb + size <= pa


def keep_mask(numel: int, p: float, seed: int, threads=None) -> np.ndarray:
    """The kernels' keep-mask (bool, True = keep) for ``numel`` elements in memory order."""
    keep = torch.empty(numel, dtype=torch.uint8)
    ptr = keep.data_ptr()
    _run("keep_mask", ptr, 0, 0, ptr, 0, numel, 0, seed, threshold(p), 1.0, False, 1, threads)
    return keep.numpy().view(np.bool_)


def keep_runs(starts: torch.Tensor, length: int, p: float, seed: int) -> torch.Tensor:
    """The keep-mask (uint8, 1 = keep) of ``len(starts)`` runs of ``length`` elements at the global
    indices ``starts[r] + j`` of a tensor whose mask is ``keep_mask(numel, p, seed)``: a box of it
    (a DTensor's shard), run after run. ``starts``: int64, >= 0."""
    keep = torch.empty(starts.numel() * length, dtype=torch.uint8)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    _keep_runs(starts.numpy(), length, keep.numpy(), k0, k1, np.uint64(threshold(p)))
    return keep


def philox4x32_10(counter, key) -> np.ndarray:
    """The kernels' Philox4x32-10 on a batch: ``counter`` (m, 4), ``key`` (m, 2) -> (m, 4) uint32."""
    c = np.ascontiguousarray(counter, dtype=np.uint64).reshape(-1, 4)
    k = np.ascontiguousarray(np.broadcast_to(np.asarray(key, dtype=np.uint64), (len(c), 2)))
    out = np.empty_like(c)
    _philox_many(c, k, out)
    return out.astype(np.uint32)
