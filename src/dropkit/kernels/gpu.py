"""Triton kernels for element-wise dropout keyed by Philox4x32-10: the GPU twin of ``kernels.cpu``.

Same contract as :mod:`dropkit.reference.philox` and the numba kernels: element ``i`` (in memory
order) lies in block ``b = i // BLOCK`` at offset ``r = i % BLOCK``; it is kept when word
``r // (BLOCK // 4)`` of ``philox(counter = b * BLOCK // 4 + r % (BLOCK // 4), key = seed)`` is at least
``t = round(p * 2**32)``. One program handles one block, so the mask does not depend on the launch.

The generator is Philox4x32-10 written out with ``tl.umulhi`` (the Random123 rounds and constants,
key ``(seed mod 2**32, seed div 2**32)``). Triton's own ``tl.philox`` computes the same words with
32-bit counters (``tests/kernels/test_gpu.py`` checks both against the published known-answer
vectors); dropkit keeps its own copy because Triton's library functions are decorated when triton is
imported and cannot be switched to the interpreter afterwards (the kernels use only builtins and
their own helpers, so that the tests can run them interpreted whatever imported triton first).

The seed is read from a 1-element int64 tensor on the device, so a call never waits for the device
(no ``.item()``); the threshold and the multiplier are kernel arguments (the multiplier travels as its
bit pattern: Triton passes Python floats as float32, which would round a float64 multiplier).

Arithmetic is that of the plain path: the multiplier is ``s`` (kept) or ``0`` (dropped) and each output
is one product (``NaN * 0`` is NaN). float16 and bfloat16 are computed in float32, where the product of
two half-precision numbers is exact, and rounded once to nearest-even; the fused kernels round to the
dtype after every operation, as the unfused ops do, and are launched with ``enable_fp_fusion=False`` so
that ``x * m + r`` is not contracted into a fused multiply-add (one rounding instead of two).
bfloat16 goes through its bit pattern (int16) and is rounded with integer arithmetic, the rule torch
uses, so that the same code is exact in Triton's CPU interpreter too.

The bit-packed mask has one bit per element: bit ``j`` of byte ``q`` is element ``8q + j``; 1 = keep
(the layout of ``kernels.cpu``). Kernels work on a ``(BLOCK // 32, 8)`` tile per quarter block: row
``q`` holds the 8 elements of one mask byte.

Importing this module imports triton. With ``TRITON_INTERPRET=1`` set before the import, the kernels
run on CPU tensors in Triton's interpreter (slow: for tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dropkit.reference.philox import BLOCK

__all__ = [
    "BLOCK",
    "bias_dropout_add_forward",
    "dropout_add_forward",
    "dropout_backward_bits",
    "dropout_backward_seed",
    "dropout_forward",
    "interpreted",
    "keep_mask",
    "philox4x32_10",
]

_Q = BLOCK // 4  # counters per block (one Philox call feeds four elements)
_ROWS = _Q // 8  # mask bytes per quarter block
# The same as constants inside kernels (Triton reads only constexpr globals).
_BLOCK_C = tl.constexpr(BLOCK)
_Q_C = tl.constexpr(_Q)
_ROWS_C = tl.constexpr(_ROWS)
_BYTES_C = tl.constexpr(BLOCK // 8)  # mask bytes per block
# Philox4x32 multipliers and Weyl key increments (Random123).
_M0 = tl.constexpr(0xD2511F53)
_M1 = tl.constexpr(0xCD9E8D57)
_W0 = tl.constexpr(0x9E3779B9)
_W1 = tl.constexpr(0xBB67AE85)
_SUM = tl.standard._sum_combine  # see _pack
_SCALARS = ["t", "s_bits"]  # values that change from call to call: no recompilation per value


# ---- device helpers -------------------------------------------------------------------------------


@triton.jit
def _philox_round(c0, c1, c2, c3, k0, k1):
    # uint32 words; the products wrap to their low halves, umulhi gives the high halves.
    return (
        tl.umulhi(c2, _M1) ^ c1 ^ k0,
        c2 * _M1,
        tl.umulhi(c0, _M0) ^ c3 ^ k1,
        c0 * _M0,
    )


@triton.jit
def _philox(c0, c1, c2, c3, k0, k1):
    # Philox4x32-10 on uint32 tensors, key (k0, k1) uint32 scalars.
    for _ in tl.static_range(9):
        c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
        k0 = k0 + _W0
        k1 = k1 + _W1
    return _philox_round(c0, c1, c2, c3, k0, k1)


@triton.jit
def _key(seed):
    # A 64-bit seed (int64 bits) -> the key words (low, high).
    seed = seed.to(tl.uint64, bitcast=True)
    return (seed & 0xFFFFFFFF).to(tl.uint32), (seed >> 32).to(tl.uint32)


@triton.jit
def _tile():
    # (ROWS, 8) offsets 0.._Q-1 in row-major order: row q = the 8 elements of one mask byte.
    rows = tl.arange(0, _ROWS_C)[:, None]
    cols = tl.arange(0, 8)[None, :]
    return rows * 8 + cols


@triton.jit
def _keep_words(seed_ptr, b, t):
    # Keep flags of block b (int64) as four (ROWS, 8) tiles: the words of one counter go to
    # offsets j, Q + j, 2Q + j, 3Q + j of the block.
    ctr = b * _Q_C + _tile()  # (ROWS, 8) int64
    c0 = (ctr & 0xFFFFFFFF).to(tl.uint32)
    c1 = (ctr >> 32).to(tl.uint32)
    zero = tl.full((_ROWS_C, 8), 0, tl.uint32)
    k0, k1 = _key(tl.load(seed_ptr))
    w0, w1, w2, w3 = _philox(c0, c1, zero, zero, k0, k1)
    t32 = t.to(tl.uint32)
    return w0 >= t32, w1 >= t32, w2 >= t32, w3 >= t32


@triton.jit
def _pack(keep):
    # (ROWS, 8) flags -> (ROWS,) mask bytes, bit j of a byte = column j. tl.reduce with Triton's
    # sum combiner rather than tl.sum: library jit functions cannot be switched to the interpreter,
    # and the interpreter sums with NumPy when it sees this combiner (any other runs element-wise).
    weights = 1 << tl.arange(0, 8)[None, :]
    return tl.reduce(keep.to(tl.int32) * weights, 1, _SUM).to(tl.uint8)


@triton.jit
def _unpack(byte):
    # (ROWS,) mask bytes -> (ROWS, 8) keep flags.
    return ((byte.to(tl.int32)[:, None] >> tl.arange(0, 8)[None, :]) & 1) != 0


@triton.jit
def _load(ptr, offs, valid, BF16: tl.constexpr):
    # Load in the compute dtype: float32 for float16/bfloat16 (exact), else the dtype itself.
    if BF16:  # ptr holds bfloat16 bit patterns as int16
        bits = tl.load(ptr + offs, mask=valid, other=0).to(tl.uint16, bitcast=True).to(tl.uint32)
        v = (bits << 16).to(tl.float32, bitcast=True)
    else:
        v = tl.load(ptr + offs, mask=valid, other=0)
        if v.dtype == tl.float16:
            v = v.to(tl.float32)
    return v


@triton.jit
def _bf16_bits(v):
    # float32 -> bfloat16 bit pattern, rounded to nearest even (NaN stays a quiet NaN).
    bits = v.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return tl.where(v != v, 0x7FC0, rounded).to(tl.uint16)


@triton.jit
def _round(v, BF16: tl.constexpr, HALF: tl.constexpr):
    # v rounded to the storage dtype and back to the compute dtype (an op boundary of the
    # unfused composition); identity for float32/float64.
    if BF16:
        v = (_bf16_bits(v).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    elif HALF:
        v = v.to(tl.float16).to(tl.float32)
    return v


@triton.jit
def _store(ptr, offs, v, valid, BF16: tl.constexpr):
    if BF16:
        tl.store(ptr + offs, _bf16_bits(v).to(tl.int16, bitcast=True), mask=valid)
    else:
        tl.store(ptr + offs, v.to(ptr.dtype.element_ty), mask=valid)


@triton.jit
def _scale(s_bits, F64: tl.constexpr):
    # The multiplier from its bit pattern (int64 for float64, int32 otherwise).
    if F64:
        s = s_bits.to(tl.int64).to(tl.float64, bitcast=True)
    else:
        s = s_bits.to(tl.int32).to(tl.float32, bitcast=True)
    return s


@triton.jit
def _quarter(b, k, n):
    # Element offsets (int64) of quarter k of block b as a (ROWS, 8) tile, and which exist.
    offs = b * _BLOCK_C + k * _Q_C + _tile()
    return offs, offs < n


@triton.jit
def _save_bits(bits_ptr, b, k, keep, n):
    q = b * _BYTES_C + k * _ROWS_C + tl.arange(0, _ROWS_C)
    tl.store(bits_ptr + q, _pack(keep), mask=q < (n + 7) // 8)


@triton.jit
def _dropout_quarter(src, dst, bits_ptr, b, k, keep, n, s, SAVE_BITS, BF16):
    offs, valid = _quarter(b, k, n)
    x = _load(src, offs, valid, BF16)
    _store(dst, offs, x * tl.where(keep, s, 0.0), valid, BF16)
    if SAVE_BITS:
        _save_bits(bits_ptr, b, k, keep, n)


# ---- kernels: one program per block of BLOCK elements ---------------------------------------------


@triton.jit(do_not_specialize=_SCALARS)
def _dropout_fwd(
    x_ptr,
    out_ptr,
    bits_ptr,
    seed_ptr,
    n,
    t,
    s_bits,
    SAVE_BITS: tl.constexpr,
    BF16: tl.constexpr,
    F64: tl.constexpr,
):
    # out = x * (s or 0); also the backward from the seed (src = grad, dst = grad_input).
    b = tl.program_id(0).to(tl.int64)
    s = _scale(s_bits, F64)
    k0, k1, k2, k3 = _keep_words(seed_ptr, b, t)
    _dropout_quarter(x_ptr, out_ptr, bits_ptr, b, 0, k0, n, s, SAVE_BITS, BF16)
    _dropout_quarter(x_ptr, out_ptr, bits_ptr, b, 1, k1, n, s, SAVE_BITS, BF16)
    _dropout_quarter(x_ptr, out_ptr, bits_ptr, b, 2, k2, n, s, SAVE_BITS, BF16)
    _dropout_quarter(x_ptr, out_ptr, bits_ptr, b, 3, k3, n, s, SAVE_BITS, BF16)


@triton.jit
def _bwd_bits_quarter(g_ptr, gin_ptr, bits_ptr, b, k, n, s, BF16):
    q = b * _BYTES_C + k * _ROWS_C + tl.arange(0, _ROWS_C)
    keep = _unpack(tl.load(bits_ptr + q, mask=q < (n + 7) // 8, other=0))
    offs, valid = _quarter(b, k, n)
    g = _load(g_ptr, offs, valid, BF16)
    _store(gin_ptr, offs, g * tl.where(keep, s, 0.0), valid, BF16)


@triton.jit(do_not_specialize=["s_bits"])
def _dropout_bwd_bits(g_ptr, gin_ptr, bits_ptr, n, s_bits, BF16: tl.constexpr, F64: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    s = _scale(s_bits, F64)
    _bwd_bits_quarter(g_ptr, gin_ptr, bits_ptr, b, 0, n, s, BF16)
    _bwd_bits_quarter(g_ptr, gin_ptr, bits_ptr, b, 1, n, s, BF16)
    _bwd_bits_quarter(g_ptr, gin_ptr, bits_ptr, b, 2, n, s, BF16)
    _bwd_bits_quarter(g_ptr, gin_ptr, bits_ptr, b, 3, n, s, BF16)


@triton.jit
def _residual_quarter(
    x_ptr,
    bias_ptr,
    res_ptr,
    out_ptr,
    bits_ptr,
    b,
    k,
    keep,
    n,
    h,
    col0,
    s,
    SAVE_BITS,
    HAS_BIAS,
    BF16,
    HALF,
):
    # out = round(round(round(x + bias) * m) + res): each op rounded as in the unfused composition.
    offs, valid = _quarter(b, k, n)
    x = _load(x_ptr, offs, valid, BF16)
    if HAS_BIAS:
        col = (col0 + k * _Q_C + _tile()) % h  # col0 = (b * BLOCK) % h < h: int32 suffices
        x = _round(x + _load(bias_ptr, col, valid, BF16), BF16, HALF)
    y = _round(x * tl.where(keep, s, 0.0), BF16, HALF)
    _store(out_ptr, offs, y + _load(res_ptr, offs, valid, BF16), valid, BF16)
    if SAVE_BITS:
        _save_bits(bits_ptr, b, k, keep, n)


@triton.jit(do_not_specialize=_SCALARS)
def _residual_fwd(
    x_ptr,
    bias_ptr,
    res_ptr,
    out_ptr,
    bits_ptr,
    seed_ptr,
    n,
    h,
    t,
    s_bits,
    SAVE_BITS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BF16: tl.constexpr,
    HALF: tl.constexpr,
    F64: tl.constexpr,
):
    # out = dropout(x [+ bias]) + res; bias (h,) runs along the last dimension.
    b = tl.program_id(0).to(tl.int64)
    s = _scale(s_bits, F64)
    col0 = ((b * _BLOCK_C) % h).to(tl.int32)
    k0, k1, k2, k3 = _keep_words(seed_ptr, b, t)
    _residual_quarter(
        x_ptr,
        bias_ptr,
        res_ptr,
        out_ptr,
        bits_ptr,
        b,
        0,
        k0,
        n,
        h,
        col0,
        s,
        SAVE_BITS,
        HAS_BIAS,
        BF16,
        HALF,
    )
    _residual_quarter(
        x_ptr,
        bias_ptr,
        res_ptr,
        out_ptr,
        bits_ptr,
        b,
        1,
        k1,
        n,
        h,
        col0,
        s,
        SAVE_BITS,
        HAS_BIAS,
        BF16,
        HALF,
    )
    _residual_quarter(
        x_ptr,
        bias_ptr,
        res_ptr,
        out_ptr,
        bits_ptr,
        b,
        2,
        k2,
        n,
        h,
        col0,
        s,
        SAVE_BITS,
        HAS_BIAS,
        BF16,
        HALF,
    )
    _residual_quarter(
        x_ptr,
        bias_ptr,
        res_ptr,
        out_ptr,
        bits_ptr,
        b,
        3,
        k3,
        n,
        h,
        col0,
        s,
        SAVE_BITS,
        HAS_BIAS,
        BF16,
        HALF,
    )


@triton.jit
def _keep_quarter(keep_ptr, b, k, keep, n):
    offs, valid = _quarter(b, k, n)
    tl.store(keep_ptr + offs, keep.to(tl.uint8), mask=valid)


@triton.jit(do_not_specialize=["t"])
def _keep_mask(keep_ptr, seed_ptr, n, t):
    b = tl.program_id(0).to(tl.int64)
    k0, k1, k2, k3 = _keep_words(seed_ptr, b, t)
    _keep_quarter(keep_ptr, b, 0, k0, n)
    _keep_quarter(keep_ptr, b, 1, k1, n)
    _keep_quarter(keep_ptr, b, 2, k2, n)
    _keep_quarter(keep_ptr, b, 3, k3, n)


@triton.jit
def _philox_many(ctr_ptr, key_ptr, out_ptr, m, BLOCK_M: tl.constexpr, TL_PHILOX: tl.constexpr):
    # ctr: (m, 4), key: (m,) 64-bit keys k0 + 2**32 k1, out: (m, 4); words held in int64.
    i = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    valid = i < m
    c0 = tl.load(ctr_ptr + 4 * i, mask=valid, other=0).to(tl.uint32)
    c1 = tl.load(ctr_ptr + 4 * i + 1, mask=valid, other=0).to(tl.uint32)
    c2 = tl.load(ctr_ptr + 4 * i + 2, mask=valid, other=0).to(tl.uint32)
    c3 = tl.load(ctr_ptr + 4 * i + 3, mask=valid, other=0).to(tl.uint32)
    key = tl.load(key_ptr + i, mask=valid, other=0)
    if TL_PHILOX:  # Triton's own generator, for comparison
        w0, w1, w2, w3 = tl.philox(key, c0, c1, c2, c3)
    else:
        k0, k1 = _key(key)
        w0, w1, w2, w3 = _philox(c0, c1, c2, c3, k0, k1)
    tl.store(out_ptr + 4 * i, w0.to(tl.int64), mask=valid)
    tl.store(out_ptr + 4 * i + 1, w1.to(tl.int64), mask=valid)
    tl.store(out_ptr + 4 * i + 2, w2.to(tl.int64), mask=valid)
    tl.store(out_ptr + 4 * i + 3, w3.to(tl.int64), mask=valid)


# ---- Python wrappers: argument preparation only (no checks: callers validate) ----------------------


def interpreted() -> bool:
    """Whether these kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return type(_dropout_fwd).__name__ == "InterpretedFunction"


def _threshold(p: float) -> int:
    # P(drop) = t / 2**32. The fast path serves 0 < p < 1 only, so t < 2**32 fits a uint32.
    return min(int(round(p * 2.0**32)), 2**32 - 1)


def _view(t: torch.Tensor) -> torch.Tensor:
    # bfloat16 travels as its bit pattern (see the module docstring).
    return t.view(torch.int16) if t.dtype == torch.bfloat16 else t


def _scale_bits(s: float, dtype: torch.dtype) -> int:
    """The bit pattern of ``s`` in the compute dtype (float64 for float64, else float32).

    ``s`` must already be rounded to ``dtype`` (so the float32 value of a half ``s`` is exact)."""
    if dtype == torch.float64:
        return int(torch.tensor(s, dtype=torch.float64).view(torch.int64))
    return int(torch.tensor(s, dtype=torch.float32).view(torch.int32))


def _flags(dtype: torch.dtype) -> dict[str, bool]:
    return {"BF16": dtype == torch.bfloat16, "F64": dtype == torch.float64}


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


def _bits_buffer(like: torch.Tensor, save_bits: bool) -> torch.Tensor:
    n = (like.numel() + 7) // 8 if save_bits else 0
    return torch.empty(n, dtype=torch.uint8, device=like.device)


def _seed_tensor(seed: torch.Tensor | int, device: torch.device) -> torch.Tensor:
    if isinstance(seed, torch.Tensor):
        return seed
    # an int in [0, 2**64): the int64 with the same bits
    return torch.tensor([seed - 2**64 if seed >= 2**63 else seed], dtype=torch.int64, device=device)


def dropout_forward(
    x: torch.Tensor, out: torch.Tensor, seed: torch.Tensor, p: float, s: float, save_bits: bool
) -> torch.Tensor:
    """``out[i] = x[i] * (s if keep[i] else 0)``; returns the packed mask (empty if not saved).

    ``x`` and ``out`` are contiguous tensors of one float dtype on one device (``out`` may be ``x``),
    taken in memory order; ``seed`` is a 1-element int64 tensor there; ``s`` is already rounded to
    the dtype.
    """
    n = x.numel()
    bits = _bits_buffer(x, save_bits)
    if n:
        _dropout_fwd[_grid(n)](
            _view(x),
            _view(out),
            bits,
            seed,
            n,
            _threshold(p),
            _scale_bits(s, x.dtype),
            SAVE_BITS=save_bits,
            **_flags(x.dtype),
        )
    return bits


def dropout_backward_seed(
    g: torch.Tensor, gin: torch.Tensor, seed: torch.Tensor, p: float, s: float
) -> None:
    """``gin = g * m * s`` regenerating the mask from the seed."""
    dropout_forward(g, gin, seed, p, s, False)


def dropout_backward_bits(g: torch.Tensor, gin: torch.Tensor, bits: torch.Tensor, s: float) -> None:
    """``gin = g * m * s`` reading the mask from the packed bits."""
    n = g.numel()
    if n:
        _dropout_bwd_bits[_grid(n)](
            _view(g), _view(gin), bits, n, _scale_bits(s, g.dtype), **_flags(g.dtype)
        )


def _residual(x, bias, res, out, seed, p, s, save_bits) -> torch.Tensor:
    n = x.numel()
    bits = _bits_buffer(x, save_bits)
    if n:
        h = bias.numel() if bias is not None else 1
        _residual_fwd[_grid(n)](
            _view(x),
            _view(bias) if bias is not None else x,  # x: an unused placeholder pointer
            _view(res),
            _view(out),
            bits,
            seed,
            n,
            h,
            _threshold(p),
            _scale_bits(s, x.dtype),
            SAVE_BITS=save_bits,
            HAS_BIAS=bias is not None,
            HALF=x.dtype == torch.float16,
            enable_fp_fusion=False,
            **_flags(x.dtype),
        )
    return bits


def dropout_add_forward(x, res, out, seed: torch.Tensor, p: float, s: float, save_bits: bool):
    """``out = x * m + res`` (two roundings) with the same mask as :func:`dropout_forward`."""
    return _residual(x, None, res, out, seed, p, s, save_bits)


def bias_dropout_add_forward(
    x, bias, res, out, seed: torch.Tensor, p: float, s: float, save_bits: bool
):
    """``out = (x + bias) * m + res``; ``bias`` (H,) runs along the last (fastest) dimension."""
    return _residual(x, bias, res, out, seed, p, s, save_bits)


def keep_mask(
    numel: int, p: float, seed: torch.Tensor | int, device: torch.device | str = "cuda"
) -> torch.Tensor:
    """The kernels' keep-mask (bool, True = keep) for ``numel`` elements in memory order.

    ``seed`` is a 1-element int64 tensor on ``device`` or an int in [0, 2**64).
    """
    device = torch.device(device)
    keep = torch.empty(numel, dtype=torch.uint8, device=device)
    if numel:
        _keep_mask[_grid(numel)](keep, _seed_tensor(seed, device), numel, _threshold(p))
    return keep.view(torch.bool)


def philox4x32_10(
    counter, key, device: torch.device | str = "cuda", *, triton_philox: bool = False
) -> torch.Tensor:
    """The kernels' Philox4x32-10 on a batch: ``counter`` (m, 4), ``key`` (m, 2) 32-bit words ->
    (m, 4) int64 tensor of 32-bit words. ``triton_philox=True`` runs Triton's ``tl.philox`` instead."""
    c = torch.as_tensor(counter, dtype=torch.int64).reshape(-1, 4).to(device).contiguous()
    k = torch.as_tensor(key, dtype=torch.int64).reshape(-1, 2).expand(len(c), 2)
    # the 64-bit key k0 + 2**32 k1 as the int64 with the same bits
    key64 = ((k[:, 1] << 32) | (k[:, 0] & 0xFFFFFFFF)).to(device).contiguous()
    out = torch.empty_like(c)
    m = len(c)
    if m:
        _philox_many[(triton.cdiv(m, 64),)](c, key64, out, m, BLOCK_M=64, TL_PHILOX=triton_philox)
    return out
