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

Gaussian dropout draws its standard normals from the same Philox words (Box-Muller, the section at
the end of this file): ``gaussian_mul`` multiplies by the noise ``1 + std * z`` of a seed (forward,
and backward from the seed alone), ``gaussian_noise`` returns that noise.
"""

from __future__ import annotations

import math
import struct

import llvmlite.ir as ir
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic, overload

from dropkit.kernels._hugepages import empty_like
from dropkit.kernels._numba import CACHE_DIR, numba
from dropkit.kernels.cpu import (
    _B,
    _FUSE,
    _H,
    _K0,
    _K1,
    _N,
    _NARGS,
    _OUT,
    _R,
    _T,
    _TASKS,
    _X,
    BLOCK,
    _address,
    _array,
    _chunks,
    _fields,
    _keep_block,
    _pack_block,
    _philox10,
    _run,
    _Task,
    dropout_backward_bits,
    threshold,
)

__all__ = [
    "alpha_backward",
    "alpha_forward",
    "apply_byte_mask",
    "dropblock_keep",
    "gaussian_apply",
    "gaussian_mul",
    "gaussian_noise",
    "row_affine",
    "threshold",
]

_jit = numba.njit(cache=CACHE_DIR is not None, nogil=True)


@_jit
def _paint_blocks(keep, k0, k1, t, bd, bh, bw, b0, b1):
    # keep: (M, D, H, W) uint8, 1 where not yet painted. Every seed position j of the
    # (M, Dv, Hv, Wv) grid in Philox blocks [b0, b1) whose flag is 0 (word < t) zeroes
    # keep[m, z:z+bd, y:y+bh, x:x+bw]. Threads painting other blocks may write zeros into the same
    # bytes: the stores are idempotent, so the mask is the union of the blocks whatever the order.
    m_, d_, h_, w_ = keep.shape
    dv, hv, wv = d_ - bd + 1, h_ - bh + 1, w_ - bw + 1
    per_map = dv * hv * wv
    n = m_ * per_map
    flags = np.empty(BLOCK, np.uint8)
    for b in range(b0, b1):
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


# The tasks below run on the launcher of kernels/cpu.py (torch's OpenMP team above its size
# threshold; chunks of whole blocks, so the result does not depend on the number of threads). Their
# records reuse the fields of dropout's: what each field holds is said at each task.


def _task_paint(record):
    # X: the address of an int64 array (M, D, H, W, bd, bh, bw); OUT: the byte mask; N: the number
    # of seed positions (M * Dv * Hv * Wv); T: the threshold.
    a = numba.carray(record, _NARGS, np.int64)
    dims = numba.carray(_address(a[_X]), 7, np.int64)
    keep = numba.carray(_address(a[_OUT]), (dims[0], dims[1], dims[2], dims[3]), np.uint8)
    k0, k1, t = np.uint64(a[_K0]), np.uint64(a[_K1]), np.uint64(a[_T])
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        _paint_blocks(keep, k0, k1, t, dims[4], dims[5], dims[6], b0, b1)
        b0, b1, nblocks = _chunks(record, a)


_TASKS[("dropblock_paint", 1)] = _Task(("dropblock_paint", 1), _task_paint)


@_jit
def _count_ones(flat):
    # the number of ones of a 0/1 byte array (torch's int64 sum of a uint8 tensor is far slower)
    kept = 0
    for i in range(flat.size):
        kept += flat[i]
    return kept


@_jit
def _apply_bytes(x, keep, out, s, c_, s_, shared, b0, b1):
    # x, out: (n,), the flat (N, C, S); keep: the flat (N, Ck, S), Ck = C or 1 when `shared` (one
    # pattern for all channels). out = x * (s or 0) over the elements of blocks [b0, b1): one
    # product per element, a branch-free select.
    zero = s - s
    i, stop = b0 * BLOCK, min(b1 * BLOCK, x.size)
    while i < stop:
        if shared:  # a run within one (n, c) row of S elements, its mask row n's
            row = i // s_
            end = min(stop, (row + 1) * s_)
            k0 = (row // c_) * s_ + (i - row * s_)
        else:
            end, k0 = stop, i
        a, o, k = x[i:end], out[i:end], keep[k0 : k0 + (end - i)]
        for r in range(end - i):
            o[r] = a[r] * (s if k[r] else zero)
        i = end


@_jit
def _run_bytes(record, a, x, keep, out, s):
    b0, b1, nblocks = _chunks(record, a)
    while b0 < nblocks:
        _apply_bytes(x, keep, out, s, a[_T], a[_H], a[_FUSE] != 0, b0, b1)
        b0, b1, nblocks = _chunks(record, a)


# X: x; B: the byte mask; OUT: out; N: x's size; H: S; T: C; FUSE: shared; S: the multiplier.


def _task_bytes_f32(record):
    a, s, _, _, _, _ = _fields(record)
    n_keep = a[_N] // a[_T] if a[_FUSE] else a[_N]
    keep = numba.carray(_address(a[_B]), n_keep, np.uint8)
    x, out = _array(a, _X, np.float32), _array(a, _OUT, np.float32)
    _run_bytes(record, a, x, keep, out, np.float32(s))


def _task_bytes_f64(record):
    a, s, _, _, _, _ = _fields(record)
    n_keep = a[_N] // a[_T] if a[_FUSE] else a[_N]
    keep = numba.carray(_address(a[_B]), n_keep, np.uint8)
    x, out = _array(a, _X, np.float64), _array(a, _OUT, np.float64)
    _run_bytes(record, a, x, keep, out, s)


for _size, _fn in ((4, _task_bytes_f32), (8, _task_bytes_f64)):
    _TASKS[("byte_mask", _size)] = _Task(("byte_mask", _size), _fn)


def dropblock_keep(
    maps: int,
    size: tuple[int, ...],
    block: tuple[int, ...],
    gamma: float,
    seed: int,
    threads: int | None = None,
) -> tuple[torch.Tensor, int]:
    """The byte keep-mask ``(maps, *size)`` (1 = keep) and its number of ones, for ``seed``.

    ``size``, ``block``: 2 or 3 spatial sizes (block fits the map). ``0 <= gamma < 1``.
    ``threads``: torch's intra-op thread count when None (the mask is the same for any number).
    """
    size3 = (1, *size) if len(size) == 2 else tuple(size)
    block3 = (1, *block) if len(block) == 2 else tuple(block)
    keep = torch.ones((maps, *size3), dtype=torch.uint8)
    if gamma == 0.0 or keep.numel() == 0:
        return keep.view(maps, *size), keep.numel()
    dims = torch.tensor([maps, *size3, *block3], dtype=torch.int64)
    n = maps * math.prod(s - b + 1 for s, b in zip(size3, block3, strict=True))
    ptr = keep.data_ptr()
    args = (dims.data_ptr(), 0, 0, ptr, 0, n, 0, seed, threshold(gamma), 1.0, False)
    _run("dropblock_paint", *args, 1, threads)
    return keep.view(maps, *size), int(_count_ones(keep.numpy().reshape(-1)))


def apply_byte_mask(
    x: torch.Tensor, keep: torch.Tensor, s: float, threads: int | None = None
) -> torch.Tensor:
    """``x * (s if keep else 0)`` for contiguous float32/float64 ``x`` of shape (N, C, ...) and a
    contiguous byte mask (N, C or 1, ...) of the same spatial size; ``s`` is rounded to ``x``'s
    dtype."""
    out = empty_like(x)  # huge pages for large outputs, as dropout's (kernels/_hugepages.py)
    n = x.numel()
    if n == 0:
        return out
    c = x.shape[1]
    spatial = n // (x.shape[0] * c)
    shared = keep.shape[1] == 1 and c > 1
    ptrs = (x.data_ptr(), 0, keep.data_ptr(), out.data_ptr(), 0)
    _run("byte_mask", *ptrs, n, spatial, 0, c, float(s), shared, x.element_size(), threads)
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
def _alpha_fwd(x, out, bits, k0, k1, t, a, b, c, b0, b1):
    # x, out: (n,), not overlapping; bits: ((n + 7) // 8,) packed keep flags (bit j of byte q =
    # element 8q + j). Blocks [b0, b1).
    n = x.size
    zero = a - a
    keep = np.empty(BLOCK, np.uint8)
    for blk in range(b0, b1):
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
def _run_alpha(record, f, x, out, bits, k0, k1, t, a, b, c):
    b0, b1, nblocks = _chunks(record, f)
    while b0 < nblocks:
        _alpha_fwd(x, out, bits, k0, k1, t, a, b, c, b0, b1)
        b0, b1, nblocks = _chunks(record, f)


# X: x; OUT: out; BITS: the mask; S: a; R and B: the bits of b and c (float64).


def _task_alpha_f32(record):
    a, s, bits, k0, k1, t = _fields(record)
    f = numba.carray(record, _NARGS, np.float64)
    x, out = _array(a, _X, np.float32), _array(a, _OUT, np.float32)
    fb, fc = np.float32(f[_R]), np.float32(f[_B])
    _run_alpha(record, a, x, out, bits, k0, k1, t, np.float32(s), fb, fc)


def _task_alpha_f64(record):
    a, s, bits, k0, k1, t = _fields(record)
    f = numba.carray(record, _NARGS, np.float64)
    x, out = _array(a, _X, np.float64), _array(a, _OUT, np.float64)
    _run_alpha(record, a, x, out, bits, k0, k1, t, s, f[_R], f[_B])


for _size, _fn in ((4, _task_alpha_f32), (8, _task_alpha_f64)):
    _TASKS[("alpha", _size)] = _Task(("alpha", _size), _fn)


def _float_word(v: float) -> int:
    # the int64 whose bits are the float64 v (a record field that a task reads as a float)
    return struct.unpack("<q", struct.pack("<d", v))[0]


def _np_dtype(t: torch.Tensor):
    return np.float32 if t.dtype == torch.float32 else np.float64


def alpha_forward(
    x: torch.Tensor, seed: int, p: float, a: float, b: float, c: float, threads: int | None = None
):
    """``(out, bits)``: ``out = x * (a or 0) + (b or c)`` for the mask of ``seed`` (contiguous
    float32/float64 ``x``; ``a``, ``b``, ``c`` are rounded to its dtype). ``threads``: torch's
    intra-op thread count when None (the result is the same for any number)."""
    out = empty_like(x)
    n = x.numel()
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8)
    if n:
        ptrs = (x.data_ptr(), _float_word(b), _float_word(c), out.data_ptr(), bits.data_ptr())
        args = (*ptrs, n, 0, seed, threshold(p), float(a), False)
        _run("alpha", *args, x.element_size(), threads)
    return out, bits


def alpha_backward(
    grad: torch.Tensor, bits: torch.Tensor, a: float, threads: int | None = None
) -> torch.Tensor:
    """``grad * (a if kept else 0)`` from the packed mask of :func:`alpha_forward`: dropout's
    backward from its bits, with the multiplier ``a``."""
    grad = grad.contiguous()
    gin = empty_like(grad)
    if grad.numel():
        dropout_backward_bits(grad, gin, bits, float(a), threads)
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


# ---- Gaussian dropout: standard normals from the Philox stream (Box-Muller), in the kernel --------
#
# The words of counter c (the layout of _keep_block: offsets j, Q+j, 2Q+j, 3Q+j of block b) make two
# Box-Muller pairs, (w0, w1) -> (z0, z1) and (w2, w3) -> (z2, z3):
#
#     z0 = sqrt(-2 ln u) cos(theta),   z1 = sqrt(-2 ln u) sin(theta),
#
# u a uniform in (0, 1] from the first word, theta = 2 pi (w + 1/2) / 2**32 from the second. Each
# dtype computes in its own precision (float32 in eight lanes per AVX2 register, float64 in four)
# with our own straight-line log, sin and cos: numba has no vector math library here, and a call to
# math.log would keep the loop scalar. The polynomials use fused multiply-adds (llvm.fma, exactly
# rounded on every machine, so the numbers do not depend on the CPU). The angle is reduced exactly
# from the word's bits: octant o (top 3 bits) and phi in (0, pi/4) from the rest.
#
# float32: u = (float32(w0 >> 1) + 1/4) / 2**31 (|z| <= sqrt(66 ln 2) = 6.77); phi from 23 bits.
# float64: u = (w0 + 1/2) / 2**32 exactly (|z| <= 6.66); phi from 29 bits.
# The noise of an element is ``1 + std * z`` in the data's dtype (std rounded to it, a product and a
# sum, as the plain path's ``eps * std + 1``); the op multiplies by it.

# error_model="numpy": float division without numba's zero check (a branch that keeps the loop
# scalar); every divisor below is at least 1.7.
_jit_np = numba.njit(cache=CACHE_DIR is not None, nogil=True, error_model="numpy")
_inline_np = numba.njit(cache=CACHE_DIR is not None, inline="always", error_model="numpy")


@intrinsic
def _f64_bits(typingctx, bits):
    # the float64 whose bits are the uint64 `bits`
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@intrinsic
def _bits_f64(typingctx, value):
    # the bits of a float64, as a uint64
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    # a * b + c rounded once (llvm.fma: the hardware instruction where there is one)
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, a, a), codegen


# float32 works on the 32-bit words in 32-bit lanes: numba widens integer arithmetic to 64 bits, so
# the integer steps of the float32 path are written as LLVM IR here (eight lanes per AVX2 register).
_I32, _F32 = ir.IntType(32), ir.FloatType()


def _i32(v):
    return ir.Constant(_I32, v)


@intrinsic
def _u31_f32(typingctx, word):
    # float32(word >> 1) for a uint32 word (a signed conversion: vcvtdq2ps)
    def codegen(context, builder, signature, args):
        return builder.sitofp(builder.lshr(args[0], _i32(1)), _F32)

    return types.float32(types.uint32), codegen


@intrinsic
def _split32(typingctx, value):
    # (m, e) with value = m * 2**e, m in [sqrt(1/2), sqrt(2)), for a positive normal float32: the
    # exponent field taken after adding the distance from sqrt(1/2) to 1 to the bits
    def codegen(context, builder, signature, args):
        ix = builder.add(builder.bitcast(args[0], _I32), _i32(0x3F800000 - 0x3F3504F3))
        e = builder.sitofp(builder.sub(builder.ashr(ix, _i32(23)), _i32(127)), _F32)
        m = builder.add(builder.and_(ix, _i32(0x007FFFFF)), _i32(0x3F3504F3))
        return context.make_tuple(builder, signature.return_type, (builder.bitcast(m, _F32), e))

    return types.UniTuple(types.float32, 2)(types.float32), codegen


def _octant_ir(builder, word):
    # word = o (3 bits) | low (29 bits): (low reflected for odd o, odd as all-ones mask, k)
    o = builder.lshr(word, _i32(29))
    odd = builder.sub(_i32(0), builder.and_(o, _i32(1)))
    low = builder.xor(
        builder.and_(word, _i32((1 << 29) - 1)), builder.and_(odd, _i32((1 << 29) - 1))
    )
    k = builder.and_(builder.lshr(builder.add(o, _i32(1)), _i32(1)), _i32(3))
    return low, odd, k


@intrinsic
def _phi_unit32(typingctx, word):
    # 1 + (l >> 6) / 2**23 in [1, 2) for the (reflected) low 29 bits l of the angle word
    def codegen(context, builder, signature, args):
        low, _, _ = _octant_ir(builder, args[0])
        return builder.bitcast(builder.or_(builder.lshr(low, _i32(6)), _i32(0x3F800000)), _F32)

    return types.float32(types.uint32), codegen


def _rotate_ir(builder, word, cs, sn, ity, fty):
    # (cos, sin) of k pi/2 + (-phi if odd else phi) from cos(phi), sin(phi): sign flips and a swap
    # on the bits (ity: the integer type of fty's width)
    _, odd, k = _octant_ir(builder, word)
    width = ity.width
    sign = ir.Constant(ity, 1 << (width - 1))
    if width != 32:
        odd, k = builder.sext(odd, ity), builder.zext(k, ity)
    one = ir.Constant(ity, 1)
    c = builder.bitcast(cs, ity)
    s = builder.xor(builder.bitcast(sn, ity), builder.and_(odd, sign))
    swap = builder.icmp_unsigned("!=", builder.and_(k, one), ir.Constant(ity, 0))
    a, b = builder.select(swap, s, c), builder.select(swap, c, s)
    top = ir.Constant(ity, width - 1)
    neg_c = builder.shl(builder.and_(builder.xor(k, builder.lshr(k, one)), one), top)  # k = 1, 2
    neg_s = builder.shl(builder.lshr(k, one), top)  # k = 2, 3
    return builder.bitcast(builder.xor(a, neg_c), fty), builder.bitcast(builder.xor(b, neg_s), fty)


@intrinsic
def _rotate(typingctx, word, cs, sn):
    # _rotate_ir for float32 or float64 (cs, sn) and a uint32 angle word
    if not (cs == sn and cs in (types.float32, types.float64)):
        return None
    fty, ity = (_F32, _I32) if cs == types.float32 else (ir.DoubleType(), ir.IntType(64))

    def codegen(context, builder, signature, args):
        pair = _rotate_ir(builder, args[0], args[1], args[2], ity, fty)
        return context.make_tuple(builder, signature.return_type, pair)

    return types.UniTuple(cs, 2)(types.uint32, cs, cs), codegen


_U1 = np.uint64(1)
_S20, _S23, _S29, _S52 = (np.uint64(v) for v in (20, 23, 29, 52))
_LOW29 = np.uint64((1 << 29) - 1)

# float64 constants: the bits of 1.0, the mantissa mask, the bits of 2**52
_D_ONE, _D_MANT, _D_MAGIC, _D_SQRTH = (
    np.uint64(0x3FF0000000000000),
    np.uint64(0x000FFFFFFFFFFFFF),
    np.uint64(0x4330000000000000),
    np.uint64(0x3FE6A09E667F3BCD),  # the bits of sqrt(1/2)
)
# ln(1 + f) = 2 atanh(s), s = f / (2 + f), |s| <= 3 - 2 sqrt(2) for m = 1 + f in [sqrt(1/2), sqrt(2)]:
# 2 s (1 + s^2/3 + s^4/5 + ...); float64 keeps the terms to s^18 (relative error below 2e-17),
# float32 those to s^8 (below 3e-9).
_DL = tuple(1.0 / (2 * k + 1) for k in range(1, 10))
# Taylor series on [0, pi/4]: float64 sin to phi^15, cos to phi^16; float32 sin to phi^9, cos to
# phi^10 (truncation below 1e-16 and 2e-9 relative).
_DS = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 8))
_DC = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(1, 9))
_FL = tuple(np.float32(v) for v in _DL[:4])
_FS = tuple(np.float32(v) for v in _DS[:4])
_FC = tuple(np.float32(v) for v in _DC[:5])
(_DL1, _DL2, _DL3, _DL4, _DL5, _DL6, _DL7, _DL8, _DL9) = _DL
(_DS1, _DS2, _DS3, _DS4, _DS5, _DS6, _DS7) = _DS
(_DC1, _DC2, _DC3, _DC4, _DC5, _DC6, _DC7, _DC8) = _DC
(_FL1, _FL2, _FL3, _FL4) = _FL
(_FS1, _FS2, _FS3, _FS4) = _FS
(_FC1, _FC2, _FC3, _FC4, _FC5) = _FC
_D_HALF_ULP32, _D_HALF_ULP29 = 2.0**-33, 2.0**-30
_D_TWO52, _D_LN2, _D_QPI = 2.0**52, math.log(2.0), math.pi / 4
_F1, _F2, _FM2 = np.float32(1.0), np.float32(2.0), np.float32(-2.0)
_F_QUARTER, _F_2M31, _F_HALF_ULP23 = np.float32(0.25), np.float32(2.0**-31), np.float32(2.0**-24)
_F_LN2, _F_QPI = np.float32(math.log(2.0)), np.float32(math.pi / 4)


@_inline_np
def _radius64(word):
    # sqrt(-2 ln u), u = (w + 1/2) / 2**32 (exact), for a uint32 word
    w = np.uint64(word)
    u = (_f64_bits(_D_ONE | (w << _S20)) - 1.0) + _D_HALF_ULP32
    # u = m * 2**e with m in [sqrt(1/2), sqrt(2)): the exponent field taken after adding the
    # distance from sqrt(1/2) to 1 to the bits
    ix = _bits_f64(u) + (_D_ONE - _D_SQRTH)
    e = _f64_bits(_D_MAGIC | (ix >> _S52)) - _D_TWO52 - 1023.0
    m = _f64_bits((ix & _D_MANT) + _D_SQRTH)
    f = m - 1.0
    s = f / (2.0 + f)
    t = s * s
    p = _fma(t, _DL9, _DL8)
    p = _fma(t, p, _DL7)
    p = _fma(t, p, _DL6)
    p = _fma(t, p, _DL5)
    p = _fma(t, p, _DL4)
    p = _fma(t, p, _DL3)
    p = _fma(t, p, _DL2)
    p = _fma(t, p, _DL1)
    s2 = s + s
    log_u = _fma(e, _D_LN2, _fma(s2 * t, p, s2))
    return np.sqrt(-2.0 * log_u)


@_inline_np
def _radius32(w):
    # sqrt(-2 ln u), u = (float32(w >> 1) + 1/4) / 2**31, in float32 (w: a uint32 word)
    u = (_u31_f32(w) + _F_QUARTER) * _F_2M31
    m, e = _split32(u)
    f = m - _F1
    s = f / (_F2 + f)
    t = s * s
    p = _fma(t, _FL4, _FL3)
    p = _fma(t, p, _FL2)
    p = _fma(t, p, _FL1)
    s2 = s + s
    log_u = _fma(e, _F_LN2, _fma(s2 * t, p, s2))
    return np.sqrt(_FM2 * log_u)


@_inline_np
def _cos_sin64(word):
    # (cos, sin) of theta = 2 pi (w + 1/2) / 2**32 for a uint32 word: octant o (top 3 bits), phi in
    # (0, pi/4) from the low 29 bits (reflected for odd o: theta = (o + 1) pi/4 - phi)
    w = np.uint64(word)
    low = (w & _LOW29) ^ ((_ZERO - ((w >> _S29) & _U1)) & _LOW29)
    phi = ((_f64_bits(_D_ONE | (low << _S23)) - 1.0) + _D_HALF_ULP29) * _D_QPI
    t = phi * phi
    sp = _fma(t, _DS7, _DS6)
    sp = _fma(t, sp, _DS5)
    sp = _fma(t, sp, _DS4)
    sp = _fma(t, sp, _DS3)
    sp = _fma(t, sp, _DS2)
    sp = _fma(t, sp, _DS1)
    sn = _fma(phi * t, sp, phi)
    cp = _fma(t, _DC8, _DC7)
    cp = _fma(t, cp, _DC6)
    cp = _fma(t, cp, _DC5)
    cp = _fma(t, cp, _DC4)
    cp = _fma(t, cp, _DC3)
    cp = _fma(t, cp, _DC2)
    cp = _fma(t, cp, _DC1)
    cs = _fma(t, cp, 1.0)
    return _rotate(word, cs, sn)


@_inline_np
def _cos_sin32(w):
    phi = ((_phi_unit32(w) - _F1) + _F_HALF_ULP23) * _F_QPI
    t = phi * phi
    sp = _fma(t, _FS4, _FS3)
    sp = _fma(t, sp, _FS2)
    sp = _fma(t, sp, _FS1)
    sn = _fma(phi * t, sp, phi)
    cp = _fma(t, _FC5, _FC4)
    cp = _fma(t, cp, _FC3)
    cp = _fma(t, cp, _FC2)
    cp = _fma(t, cp, _FC1)
    cs = _fma(t, cp, _F1)
    return _rotate(w, cs, sn)


def _radius(w, like):
    """sqrt(-2 ln u) of a word in ``like``'s float type (compiled code only)."""
    raise NotImplementedError  # pragma: no cover - the overload below replaces it


def _cos_sin(w, like):
    """(cos, sin) of a word's angle in ``like``'s float type (compiled code only)."""
    raise NotImplementedError  # pragma: no cover - the overload below replaces it


# The overloads pick the precision at compile time; each body stays one call, inlined by numba's own
# pass (an overload body with conditional expressions, inlined itself, trips numba's SSA checks).
@overload(_radius, inline="always", jit_options={"error_model": "numpy"})
def _radius_impl(w, like):
    if like == types.float32:
        return lambda w, like: _radius32(w)
    return lambda w, like: _radius64(w)


@overload(_cos_sin, inline="always", jit_options={"error_model": "numpy"})
def _cos_sin_impl(w, like):
    if like == types.float32:
        return lambda w, like: _cos_sin32(w)
    return lambda w, like: _cos_sin64(w)


@_inline_np
def _words_block(blk, k0, k1, words):
    # words: (B,) uint32 <- element r's Philox word (the layout of _keep_block)
    base = np.uint64(blk) * np.uint64(_Q)
    base_lo = base & _LO32
    hi = base >> _S32
    for j in range(_Q):
        cnt = (base_lo + np.uint64(j)) & _LO32
        w0, w1, w2, w3 = _philox10(cnt, hi, _ZERO, _ZERO, k0, k1)
        words[j] = w0
        words[_Q + j] = w1
        words[2 * _Q + j] = w2
        words[3 * _Q + j] = w3


@_inline_np
def _noise_half(words, h, radius, noise, std, one):
    # noise[2hQ : 2hQ + 2Q] <- 1 + std * z for the pairs (words[2hQ + j], words[(2h+1)Q + j]). Two
    # loops (radii, then angles): each keeps its constants in registers. radius: (Q,) scratch.
    wa, wb = words[2 * h * _Q : (2 * h + 1) * _Q], words[(2 * h + 1) * _Q : (2 * h + 2) * _Q]
    na, nb = noise[2 * h * _Q : (2 * h + 1) * _Q], noise[(2 * h + 1) * _Q : (2 * h + 2) * _Q]
    for j in range(_Q):
        radius[j] = _radius(wa[j], one)
    for j in range(_Q):
        c, s = _cos_sin(wb[j], one)
        na[j] = one + std * (radius[j] * c)
        nb[j] = one + std * (radius[j] * s)


@_inline_np
def _noise_block(words, radius, noise, std, one):
    # noise: (B,) of the data's dtype <- 1 + std * z for the normals of the words of a block: words
    # j and Q + j are a pair, and 2Q + j and 3Q + j. A loop apart from the generator's: in one, the
    # generator's 64-bit lanes and the float math would not fit the registers.
    for h in range(2):  # a loop, not two calls: one copy of the inlined code
        _noise_half(words, h, radius, noise, std, one)


def _gauss_kernels(keep: bool):
    # The kernels of one pass, out = x * noise, that also write the noise to `nz` when `keep` (a
    # constant of the compiled code: the other variant has no store and no branch for it).

    @_inline_np
    def half(words, h, radius, src, dst, nz, start, std, one):
        # as _noise_half, applying the noise: dst = src * noise over the half's 2Q elements
        wa, wb = words[2 * h * _Q : (2 * h + 1) * _Q], words[(2 * h + 1) * _Q : (2 * h + 2) * _Q]
        a0 = start + 2 * h * _Q
        sa, sb = src[a0 : a0 + _Q], src[a0 + _Q : a0 + 2 * _Q]
        da, db = dst[a0 : a0 + _Q], dst[a0 + _Q : a0 + 2 * _Q]
        za, zb = nz[a0 : a0 + _Q], nz[a0 + _Q : a0 + 2 * _Q]
        for j in range(_Q):
            radius[j] = _radius(wa[j], one)
        for j in range(_Q):
            c, s = _cos_sin(wb[j], one)
            na = one + std * (radius[j] * c)
            nb = one + std * (radius[j] * s)
            da[j] = sa[j] * na
            db[j] = sb[j] * nb
            if keep:
                za[j] = na
                zb[j] = nb

    @_inline_np
    def block(words, radius, src, dst, nz, start, std, one):
        # A full block from `start`: dst = src * noise
        for h in range(2):
            half(words, h, radius, src, dst, nz, start, std, one)

    @_jit_np
    def mul(x, out, nz, k0, k1, std, one, b0, b1):
        # out = x * noise over blocks [b0, b1) (x, out: (n,), not overlapping; nz: (n,) gets the
        # noise when keep, else unused); std and one in the data's dtype
        n = x.size
        words = np.empty(BLOCK, np.uint32)
        radius = np.empty(_Q, x.dtype)
        noise = np.empty(BLOCK, x.dtype)
        for blk in range(b0, b1):
            start = blk * BLOCK
            _words_block(blk, k0, k1, words)
            if start + BLOCK <= n:
                block(words, radius, x, out, nz, start, std, one)
            else:
                _noise_block(words, radius, noise, std, one)
                xs, os = x[start:n], out[start:n]
                for r in range(xs.size):
                    os[r] = xs[r] * noise[r]
                if keep:
                    zs = nz[start:n]
                    for r in range(zs.size):
                        zs[r] = noise[r]

    # Run as tasks of the launcher of kernels/cpu.py (on torch's OpenMP team above its size
    # threshold), chunks of whole blocks: the result does not depend on the number of threads.
    @_jit_np
    def run(record, a, x, out, nz, k0, k1, std, one):
        b0, b1, nblocks = _chunks(record, a)
        while b0 < nblocks:
            mul(x, out, nz, k0, k1, std, one, b0, b1)
            b0, b1, nblocks = _chunks(record, a)

    return block, mul, run


_gauss_block, _gauss_mul, _run_gauss = _gauss_kernels(False)
_gauss_block_keep, _gauss_mul_keep, _run_gauss_keep = _gauss_kernels(True)

# The record's multiplier field carries std; its residual field the noise's address (0: not kept).


def _task_gauss_f32(record):
    a, s, _, k0, k1, _ = _fields(record)
    x, out = _array(a, _X, np.float32), _array(a, _OUT, np.float32)
    if a[_R]:
        nz = _array(a, _R, np.float32)
        _run_gauss_keep(record, a, x, out, nz, k0, k1, np.float32(s), np.float32(1.0))
    else:
        _run_gauss(record, a, x, out, x[:0], k0, k1, np.float32(s), np.float32(1.0))


def _task_gauss_f64(record):
    a, s, _, k0, k1, _ = _fields(record)
    x, out = _array(a, _X, np.float64), _array(a, _OUT, np.float64)
    if a[_R]:
        nz = _array(a, _R, np.float64)
        _run_gauss_keep(record, a, x, out, nz, k0, k1, s, 1.0)
    else:
        _run_gauss(record, a, x, out, x[:0], k0, k1, s, 1.0)


for _size, _fn in ((4, _task_gauss_f32), (8, _task_gauss_f64)):
    _TASKS[("gaussian", _size)] = _Task(("gaussian", _size), _fn)


@_jit_np
def _gauss_noise(out, k0, k1, std, one):
    # out: (n,) <- the noise, in out's dtype
    n = out.size
    words = np.empty(BLOCK, np.uint32)
    radius = np.empty(_Q, out.dtype)
    noise = np.empty(BLOCK, out.dtype)
    for blk in range((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        _words_block(blk, k0, k1, words)
        _noise_block(words, radius, noise, std, one)
        os = out[start : min(start + BLOCK, n)]
        for r in range(os.size):
            os[r] = noise[r]


def _key(seed: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)


def gaussian_mul(
    x: torch.Tensor, seed: int, std: float, threads: int | None = None, *, keep: bool = False
):
    """``x * noise`` for the noise of ``seed`` (:func:`gaussian_noise`), as a new tensor: Gaussian
    dropout's forward (``x`` the input) and backward (``x`` the output's gradient). ``x``:
    contiguous float32/float64; ``std`` is rounded to its dtype. ``threads``: torch's intra-op
    thread count when None (the result is the same for any number). ``keep``: return
    ``(out, noise)``, the noise written in the same pass (a backward from it is one product)."""
    out = empty_like(x)
    noise = empty_like(x) if keep else None
    n = x.numel()
    if n:
        nz = noise.data_ptr() if keep else 0
        args = (x.data_ptr(), nz, 0, out.data_ptr(), 0, n, 0, seed, 0, float(std), False)
        _run("gaussian", *args, x.element_size(), threads)
    return (out, noise) if keep else out


def gaussian_noise(numel: int, seed: int, std: float, dtype: torch.dtype) -> torch.Tensor:
    """The noise ``1 + std * z`` of ``seed`` for ``numel`` elements in memory order (``z`` the
    Box-Muller normals above), in ``dtype`` (float32 or float64): what :func:`gaussian_mul`
    multiplies by."""
    out = torch.empty(numel, dtype=dtype)
    if numel:
        d = _np_dtype(out)
        _gauss_noise(out.numpy(), *_key(seed), d(std), d(1.0))
    return out
