"""The CPU backend of the fast path: numba kernels (:mod:`dropkit.kernels.cpu`) on tensors.

One of the two backends behind the operators of :mod:`dropkit.ops.dropout` (the other is
:mod:`dropkit.ops.cuda`); both have the same functions (the seed of a call comes from
:mod:`dropkit.random.draws`: a Python int here, a device tensor there):

* ``available()``: whether the kernels can be imported (they are, on first use);
* ``forward(input, seed, p, s, save_bits, inplace)`` -> ``(out, bits)``: ``out`` has the input's
  strides where the input is dense; ``inplace`` writes into the input (the caller has checked it is
  dense in memory order);
* ``backward(grad, bits, seed, p, s, perm)`` -> ``grad * m * s`` for the mask of the forward whose
  input had memory order ``perm``;
* ``fused_applies(input, bias, residual)`` and ``residual(input, bias, residual, seed, p, s,
  save_bits)`` -> ``(out, bits)``: ``dropout(input [+ bias]) + residual`` in one pass.

No checks: the operator has checked the arguments and that the path applies.
"""

from __future__ import annotations

import importlib.util

import torch

from dropkit.ops import switch as _fast

__all__: list[str] = []  # private: reached through dropkit.ops.dropout

NAME = "cpu"
# Checked without importing numba; a numba that is present but fails to import turns the fast path
# off at the first call instead.
INSTALLED = importlib.util.find_spec("numba") is not None
_NATIVE = _fast._NATIVE

_kernels_module = None
_kernels_failed = False
_empty_like = torch.empty_like  # replaced by the huge-page version when the kernels load


def _kernels():
    """The numba kernel module, or None when numba cannot be imported (the plain path is used)."""
    global _kernels_module, _kernels_failed, _empty_like
    if _kernels_module is None and not _kernels_failed:
        try:
            from dropkit.kernels import _hugepages, cpu
        except ImportError:
            _kernels_failed = True
        else:
            _kernels_module, _empty_like = cpu, _hugepages.empty_like
    return _kernels_module


def available() -> bool:
    if _kernels_module is not None:
        return True
    return INSTALLED and _kernels() is not None


def _int(seed) -> int:
    return seed if type(seed) is int else int(seed)


def _prepare(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """(a contiguous tensor of the compute dtype whose flat order is ``t``'s memory order, perm)."""
    if t.is_contiguous() and t.dtype in _NATIVE:
        return t, None
    perm = _fast._memory_order(t)
    tp = _fast._to_memory_order(t, perm)
    cdtype = _fast._compute_dtype(t.dtype)
    return (tp if tp.dtype == cdtype else tp.to(cdtype)), perm


def _finish(out: torch.Tensor, dtype: torch.dtype, perm: tuple[int, ...] | None) -> torch.Tensor:
    out = out if out.dtype == dtype else out.to(dtype)
    return out if perm is None else _fast._from_memory_order(out, perm)


def forward(
    input: torch.Tensor, seed, p: float, s: float, save_bits: bool, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    k = _kernels_module or _kernels()  # loaded on first use (a graph may run first)
    seed = _int(seed)
    if input.is_contiguous() and input.dtype in _NATIVE:
        # the common case, in the fewest steps: the kernels read the tensors' memory directly
        n = input.numel()
        out = input if inplace else _empty_like(input)
        bits = torch.empty((n + 7) // 8 if save_bits else 0, dtype=torch.uint8)
        # s as a Python float: the kernel rounds it to float32 for float32 data, once
        k.forward_tensor(
            input, out, bits if save_bits else None, n, seed, k.threshold(p), s, not inplace
        )
        return out, bits
    xc, perm = _prepare(input)
    n = xc.numel()
    # in place over a dense input of a native dtype: xc is then a view of the input's memory
    direct = inplace and xc.dtype == input.dtype and xc.data_ptr() == input.data_ptr()
    outc = xc if direct else _empty_like(xc)
    bits = torch.empty((n + 7) // 8 if save_bits else 0, dtype=torch.uint8)
    sc = _fast._scale_scalar(s, input.dtype)
    k.forward_tensor(xc, outc, bits if save_bits else None, n, seed, k.threshold(p), sc, not direct)
    if direct:
        return input, bits
    out = _finish(outc, input.dtype, perm)
    return (input.copy_(out) if inplace else out), bits


def backward(
    grad: torch.Tensor,
    bits: torch.Tensor | None,
    seed,
    p: float,
    s: float,
    perm: tuple[int, ...] | None,
) -> torch.Tensor:
    k = _kernels_module or _kernels()  # loaded on first use (a graph may run first)
    seed = _int(seed)
    saved = bits if bits is not None and bits.numel() else None
    if perm is None and grad.is_contiguous() and grad.dtype in _NATIVE:
        gin = _empty_like(grad)
        k.backward_tensor(grad, gin, saved, grad.numel(), seed, k.threshold(p), s)
        return gin
    # The mask is indexed by the forward input's memory order: bring grad to that order first.
    # (perm None: the forward input was contiguous, so grad goes to C order, whatever its layout)
    gp = _fast._to_memory_order(grad, perm)
    cdtype = _fast._compute_dtype(grad.dtype)
    gc = gp if gp.dtype == cdtype else gp.to(cdtype)
    gin = _empty_like(gc)
    sc = _fast._scale_scalar(s, grad.dtype)
    k.backward_tensor(gc, gin, saved, gc.numel(), seed, k.threshold(p), sc)
    return _finish(gin, grad.dtype, perm)


def fused_applies(input: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor) -> bool:
    tensors = (input, residual) if bias is None else (input, residual, bias)
    return (
        input.dtype in _NATIVE
        and all(t.dtype == input.dtype and t.is_contiguous() for t in tensors)
        and residual.shape == input.shape
        and (bias is None or (input.dim() >= 1 and bias.shape == input.shape[-1:]))
    )


def residual(
    input: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    seed,
    p: float,
    s: float,
    save_bits: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    k = _kernels_module or _kernels()  # loaded on first use (a graph may run first)
    out = _empty_like(input)
    n = input.numel()
    bits = torch.empty((n + 7) // 8 if save_bits else 0, dtype=torch.uint8)
    scale = _fast._scale_scalar(s, input.dtype)
    kept = bits if save_bits else None
    k.residual_tensor(input, bias, residual, out, kept, n, _int(seed), k.threshold(p), scale)
    return out, bits
