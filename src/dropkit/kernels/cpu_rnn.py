"""numba CPU kernels for the element-wise part of one LSTM step, forward and backward, run on torch's
OpenMP team (:mod:`dropkit.kernels._openmp`).

:mod:`dropkit.ops.rnn` runs a variational LSTM's recurrence as one matrix product per step plus the
element-wise work of that step. Done with torch's operators, that work is nine calls in forward and
five in backward on tensors of ``N * H`` elements (8K for N=32, H=256): below torch's grain size, so
each runs on one core, and the calls' own cost is as large as their arithmetic (issue 24). Here each
step's element-wise work is one call that reads every input once and splits the rows of the batch
between the threads of torch's team.

Per step, with ``pre`` the pre-activations (N, 4H) in torch's gate order (i, f, g, o):

* forward: ``i, f, o = sigmoid(.)``, ``g = tanh(.)``, ``c' = f * c + i * g``, ``h = o * tanh(c')``,
  and the next step's masked input ``h * mult``; the activated gates, ``c'``, ``tanh(c')`` and ``h``
  are written where the backward finds them.
* backward: ``dh = d_out + d_in * mult`` (``d_in``: the gradient that the next step's product sent
  back), ``dc += dh * o * (1 - tanh(c')**2)``, the gradient of the four pre-activations, and
  ``dc *= f`` for the step before.

Precision: float64 calls libm's ``exp`` and ``tanh`` (correctly rounded to within an ulp, as torch's
own float64 ``sigmoid``/``tanh``). float32 has no vector math library in numba, and a call per
element would keep the loop scalar, so ``exp`` is the Cephes polynomial (range reduction by ln 2,
degree 6; relative error below 2 ulp) written out here so that the loop vectorises; ``sigmoid(x) =
1 / (1 + exp(-x))`` and ``tanh(x) = 1 - 2 / (exp(2x) + 1)``, with the odd Cephes polynomial below
``|x| = 0.625`` where that form would lose relative precision. ``tests/kernels/test_cpu_rnn.py``
bounds both against float64 at every binary exponent from 2**-40 to 2**7 and where they saturate.
"""

from __future__ import annotations

import ctypes
import math
import struct
import threading
import weakref

import llvmlite.ir as ir
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic, overload

from dropkit.kernels._hugepages import empty
from dropkit.kernels._numba import CACHE_DIR, numba
from dropkit.kernels._openmp import runtime
from dropkit.kernels.cpu import _address, _fetch_add

__all__ = [
    "empty",
    "lstm_step_backward",
    "lstm_step_forward",
    "sigmoid",
    "tanh",
    "transposed",
]

_CACHE = CACHE_DIR is not None
# error_model="numpy": divisions without numba's zero check (a branch that keeps the loop scalar);
# every divisor below is at least 1
_jit = numba.njit(cache=_CACHE, nogil=True, error_model="numpy")
# helpers: compiled apart and inlined by LLVM (numba's own inlining of the conditional expressions
# below trips its SSA checks)
_inline = numba.njit(cache=_CACHE, error_model="numpy")
_inline_ir = numba.njit(cache=_CACHE, error_model="numpy", inline="always")

# ---- float32 exp, sigmoid and tanh, written to vectorise --------------------------------------------

_F32 = ir.FloatType()


@intrinsic
def _pow2_f32(typingctx, n):
    # 2**n for a float32 holding an integer in [-126, 127]: the exponent bits, built directly
    def codegen(context, builder, signature, args):
        k = builder.fptosi(args[0], ir.IntType(32))
        k = builder.shl(builder.add(k, ir.Constant(ir.IntType(32), 127)), ir.Constant(k.type, 23))
        return builder.bitcast(k, _F32)

    return types.float32(types.float32), codegen


_LOG2E = np.float32(1.44269504088896341)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_MAX, _EXP_MIN = np.float32(87.5), np.float32(-87.0)  # 2**n stays a normal float32
_E0, _E1, _E2, _E3, _E4, _E5 = (np.float32(v) for v in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))  # fmt: skip
_T0, _T1, _T2, _T3, _T4 = (np.float32(v) for v in (
    -5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
    -3.33332819422e-1))  # fmt: skip
_HALF, _ONE, _TWO = np.float32(0.5), np.float32(1.0), np.float32(2.0)
_TANH_SMALL = np.float32(0.625)


@_inline
def _exp32(x):
    # (comparisons, not min/max: a NaN passes through them)
    x = _EXP_MAX if x > _EXP_MAX else x
    x = _EXP_MIN if x < _EXP_MIN else x
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    y = _E0
    y = y * r + _E1
    y = y * r + _E2
    y = y * r + _E3
    y = y * r + _E4
    y = y * r + _E5
    y = y * (r * r) + r + _ONE
    return y * _pow2_f32(n)


@_inline
def _sigmoid32(x):
    return _ONE / (_ONE + _exp32(-x))


@_inline
def _tanh32(x):
    big = _ONE - _TWO / (_exp32(_TWO * abs(x)) + _ONE)
    big = big if x >= 0 else -big
    z = x * x
    y = _T0
    y = y * z + _T1
    y = y * z + _T2
    y = y * z + _T3
    y = y * z + _T4
    small = x + x * z * y
    return small if abs(x) < _TANH_SMALL else big


@_inline
def _sigmoid64(x):
    return 1.0 / (1.0 + math.exp(-x))


def _sig(x):
    """sigmoid in ``x``'s precision (compiled code only)."""
    raise NotImplementedError  # pragma: no cover - the overload below replaces it


def _th(x):
    """tanh in ``x``'s precision (compiled code only)."""
    raise NotImplementedError  # pragma: no cover - the overload below replaces it


@overload(_sig, inline="always", jit_options={"error_model": "numpy"})
def _sig_impl(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    return lambda x: _sigmoid64(x)


@overload(_th, inline="always", jit_options={"error_model": "numpy"})
def _th_impl(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


@_jit
def _map_sigmoid(x, out):
    for i in range(x.size):
        out[i] = _sig(x[i])


@_jit
def _map_tanh(x, out):
    for i in range(x.size):
        out[i] = _th(x[i])


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The kernels' sigmoid of a contiguous float32/float64 CPU tensor (for tests)."""
    out = torch.empty_like(x)
    _map_sigmoid(x.detach().numpy().reshape(-1), out.numpy().reshape(-1))
    return out


def tanh(x: torch.Tensor) -> torch.Tensor:
    """The kernels' tanh of a contiguous float32/float64 CPU tensor (for tests)."""
    out = torch.empty_like(x)
    _map_tanh(x.detach().numpy().reshape(-1), out.numpy().reshape(-1))
    return out


_HAS_NEXT, _HAS_MULT = 1, 2  # the flags of a step: write h_next; multiply by mult

# ---- one step, on rows r0:r1 ---------------------------------------------------------------------


@_inline_ir
def _sig_gate(pre, xg, bias, out):
    # out = sigmoid((xg + bias) + pre), on (H,) slices
    for j in range(out.size):
        out[j] = _sig((xg[j] + bias[j]) + pre[j])


@_inline_ir
def _tanh_gate(pre, xg, bias, out):
    for j in range(out.size):
        out[j] = _th((xg[j] + bias[j]) + pre[j])


@_jit
def _forward_rows(pre, xg, bias, c, c_new, gates, tanh_c, out, h_next, mult, r0, r1, flags):
    # pre, xg, gates: (N, 4H); bias: (4H,); c, c_new, tanh_c, out, h_next, mult: (N, H). The
    # pre-activation is (xg + bias) + pre. Every loop runs over range(H) on (H,) slices: an index
    # that numba cannot prove non-negative (a range from 2H to 3H) gets a wraparound check that
    # keeps the loop from vectorising (gathers, 2.6x slower).
    hid = c.shape[1]
    has_next, has_mult = (flags & _HAS_NEXT) != 0, (flags & _HAS_MULT) != 0
    h2, h3 = 2 * hid, 3 * hid
    for r in range(r0, r1):
        p, x, gt = pre[r], xg[r], gates[r]
        _sig_gate(p[:h2], x[:h2], bias[:h2], gt[:h2])  # i, f
        _tanh_gate(p[h2:h3], x[h2:h3], bias[h2:h3], gt[h2:h3])  # g
        _sig_gate(p[h3:], x[h3:], bias[h3:], gt[h3:])  # o
        i, f, g, o = gt[:hid], gt[hid:h2], gt[h2:h3], gt[h3:]
        cr, cn, tc, o_r = c[r], c_new[r], tanh_c[r], out[r]
        for j in range(hid):
            cv = f[j] * cr[j] + i[j] * g[j]
            cn[j] = cv
            t = _th(cv)
            tc[j] = t
            o_r[j] = o[j] * t
        if has_next:
            hn = h_next[r]
            if has_mult:
                m = mult[r]
                for j in range(hid):
                    hn[j] = o_r[j] * m[j]
            else:
                for j in range(hid):
                    hn[j] = o_r[j]


@_jit
def _backward_rows(gates, c, tanh_c, d_out, d_in, mult, dc, d_pre, r0, r1, has_mult, one):
    # gates, d_pre: (N, 4H); c (the cell state the step started from), tanh_c, d_out, d_in, mult,
    # dc: (N, H). dc: d(loss)/d(c') in, d(loss)/d(c) out. (H,) slices, as in _forward_rows.
    hid = c.shape[1]
    h2, h3 = 2 * hid, 3 * hid
    for r in range(r0, r1):
        gt, dp = gates[r], d_pre[r]
        i, f, g, o = gt[:hid], gt[hid:h2], gt[h2:h3], gt[h3:]
        di, df, dg, do_ = dp[:hid], dp[hid:h2], dp[h2:h3], dp[h3:]
        cr, tc, dout, din, m, dcr = c[r], tanh_c[r], d_out[r], d_in[r], mult[r], dc[r]
        for j in range(hid):
            dh = dout[j] + (din[j] * m[j] if has_mult else din[j])
            t = tc[j]
            d = dcr[j] + dh * (o[j] * (one - t * t))
            di[j] = d * (g[j] * (i[j] * (one - i[j])))
            df[j] = d * (cr[j] * (f[j] * (one - f[j])))
            dg[j] = d * (i[j] * (one - g[j] * g[j]))
            do_[j] = dh * (t * (o[j] * (one - o[j])))
            dcr[j] = d * f[j]


# ---- tasks on torch's OpenMP team ----------------------------------------------------------------
#
# A task receives a pointer to a record of int64 fields (below). The rows of the batch are cut into
# NCHUNKS chunks, taken in turn with an atomic fetch-and-add on NEXT (the scheme of
# dropkit.kernels.cpu): every row is computed by exactly one thread, whatever the number of threads.

_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _ROWS, _HID, _FLAGS, _NCHUNKS, _NEXT = range(15)
_NFIELDS = 15
_RECORD = struct.Struct(f"<{_NFIELDS}q")


@_inline
def _rows(record, a):
    size = (a[_ROWS] + a[_NCHUNKS] - 1) // a[_NCHUNKS]
    r0 = _fetch_add(record, _NEXT, 1) * size
    return r0, min(a[_ROWS], r0 + size)


@_inline
def _mat(a, field, cols, dtype):
    return numba.carray(_address(a[field]), (a[_ROWS], cols), dtype)


def _forward_task(dtype):
    def task(record):
        a = numba.carray(record, _NFIELDS, np.int64)
        n, h = a[_ROWS], a[_HID]
        pre, xg, gates = (
            _mat(a, _A0, 4 * h, dtype),
            _mat(a, _A1, 4 * h, dtype),
            _mat(a, _A5, 4 * h, dtype),
        )
        bias = numba.carray(_address(a[_A2]), 4 * h, dtype)
        c, c_new, tanh_c = _mat(a, _A3, h, dtype), _mat(a, _A4, h, dtype), _mat(a, _A6, h, dtype)
        out = _mat(a, _A7, h, dtype)
        flags = a[_FLAGS]
        h_next = _mat(a, _A8, h, dtype) if flags & _HAS_NEXT else out
        mult = _mat(a, _A9, h, dtype) if flags & _HAS_MULT else out
        r0, r1 = _rows(record, a)
        while r0 < n:
            _forward_rows(pre, xg, bias, c, c_new, gates, tanh_c, out, h_next, mult, r0, r1, flags)
            r0, r1 = _rows(record, a)

    return task


def _backward_task(dtype):
    def task(record):
        a = numba.carray(record, _NFIELDS, np.int64)
        n, h = a[_ROWS], a[_HID]
        gates, d_pre = _mat(a, _A0, 4 * h, dtype), _mat(a, _A7, 4 * h, dtype)
        c, tanh_c, d_out = _mat(a, _A1, h, dtype), _mat(a, _A2, h, dtype), _mat(a, _A3, h, dtype)
        d_in, dc = _mat(a, _A4, h, dtype), _mat(a, _A6, h, dtype)
        has_mult = (a[_FLAGS] & _HAS_MULT) != 0
        mult = _mat(a, _A5, h, dtype) if has_mult else dc
        one = dtype(1)
        r0, r1 = _rows(record, a)
        while r0 < n:
            _backward_rows(gates, c, tanh_c, d_out, d_in, mult, dc, d_pre, r0, r1, has_mult, one)
            r0, r1 = _rows(record, a)

    return task


_BUILDERS = {"forward": _forward_task, "backward": _backward_task}
_COMPILED: dict[tuple[str, int], tuple[int, object, object]] = {}


def _compiled(name: str, itemsize: int):
    found = _COMPILED.get((name, itemsize))
    if found is None:
        dtype = np.float32 if itemsize == 4 else np.float64
        cf = numba.cfunc(types.void(types.voidptr), cache=_CACHE, nogil=True)(
            _BUILDERS[name](dtype)
        )
        found = (cf.address, ctypes.CFUNCTYPE(None, ctypes.c_void_p)(cf.address), cf)
        _COMPILED[(name, itemsize)] = found
    return found


_buffers = threading.local()

# Below this many elements per thread (N * H) a step runs on the calling thread alone: a parallel
# region costs a few microseconds, the element-wise work of 4K elements about as much.
MIN_PER_THREAD = 4096


def _launch(name, tensors, rows, hid, flags, itemsize, threads):
    address, call, _ = _compiled(name, itemsize)
    if threads is None:
        threads = torch.get_num_threads()
    threads = max(1, min(threads, rows, rows * hid // MIN_PER_THREAD))
    omp = runtime() if threads > 1 else None
    if omp is None:
        threads = 1
    buffer = getattr(_buffers, "record", None)
    if buffer is None:
        raw = ctypes.create_string_buffer(_RECORD.size)
        buffer = _buffers.record = (raw, ctypes.addressof(raw))
    raw, record = buffer
    ptrs = [0 if t is None else t.data_ptr() for t in tensors]
    _RECORD.pack_into(raw, 0, *ptrs, rows, hid, flags, threads, 0)
    if omp is None:
        call(record)
    else:
        omp.GOMP_parallel(address, record, threads, 0)


def lstm_step_forward(
    pre, xg, bias, c, c_new, gates, tanh_c, out, h_next, mult, threads=None
) -> None:
    """One forward step into the given buffers (all contiguous, one dtype, float32/float64): the
    pre-activations are ``(xg + bias) + pre`` (``xg`` (N, 4H) the input part, ``bias`` (4H,),
    ``pre`` (N, 4H) the recurrent product); ``c`` (N, H) the cell state the step starts from.
    Writes ``gates`` (N, 4H) activated, ``c_new``, ``tanh_c``, ``out`` (N, H) and, unless None,
    ``h_next = out * mult`` (``out`` where ``mult`` is None)."""
    rows, hid = c.shape
    flags = (_HAS_NEXT if h_next is not None else 0) | (_HAS_MULT if mult is not None else 0)
    tensors = (pre, xg, bias, c, c_new, gates, tanh_c, out, h_next, mult)
    _launch("forward", tensors, rows, hid, flags, pre.element_size(), threads)


def lstm_step_backward(gates, c, tanh_c, d_out, d_in, mult, dc, d_pre, threads=None) -> None:
    """One backward step (all contiguous, one dtype): ``gates`` (N, 4H), ``c``, ``tanh_c`` from
    forward; ``d_out`` the gradient of this step's output, ``d_in`` the gradient that reached this
    step's output through the next step's product (times ``mult`` unless None); ``dc`` holds
    d(loss)/d(c') and becomes d(loss)/d(c); writes ``d_pre`` (N, 4H)."""
    rows, hid = c.shape
    flags = _HAS_MULT if mult is not None else 0
    tensors = (gates, c, tanh_c, d_out, d_in, mult, dc, d_pre, None, None)
    _launch("backward", tensors, rows, hid, flags, gates.element_size(), threads)


_scratch = threading.local()


def transposed(x: torch.Tensor, slot: int, version: int | None = None) -> torch.Tensor:
    """``x.t().contiguous()`` for a 2-D CPU tensor, in a scratch buffer of this thread that the next
    call with the same ``slot`` overwrites: for operands that die with the product they feed. A
    fresh buffer of a few MB costs a page fault per 4 KiB on its first write, more than the copy
    itself (docs/benchmarks.md, issue 24); each thread keeps its largest buffer per slot.

    ``version``: ``x``'s version counter. A call with the very tensor of the slot's last call and
    the same version (not written since) returns that transpose without copying again: the
    gradient of a layer's gates is transposed for the recurrent weight's gradient and then, in
    the next backward node, for the input weight's."""
    slots = getattr(_scratch, "slots", None)
    if slots is None:
        slots = _scratch.slots = {}
    key = (slot, x.dtype)
    buf, source, last_version, last = slots.get(key, (None, None, None, None))
    if version is not None and source is not None and source() is x and version == last_version:
        return last
    numel = x.numel()
    if buf is None or buf.numel() < numel:
        buf = empty((numel,), x.dtype)
    out = buf[:numel].view(x.shape[1], x.shape[0]).copy_(x.t())
    slots[key] = (buf, weakref.ref(x), version, out)
    return out
