"""The CUDA fast path of ``dropout``, ``dropout_add`` and ``bias_dropout_add``: Triton kernels.

The GPU twin of the CPU fast path in :mod:`dropkit.functional.fast_dropout`, with the same contract
(the Philox mask of element ``i`` in memory order, :mod:`dropkit.reference.philox`), the same switch
(``use_fast_dropout``, ``save="bits"`` or ``"seed"``, ``min_numel``) and the same values as the plain
path given the mask. It applies to CUDA tensors of float32, float64, float16 or bfloat16 with
``0 < p < 1`` in training, when triton can be imported.

What differs from the CPU path: the seed is drawn from the device's generator as a 1-element int64
tensor that stays on the device (``torch.randint(..., device=input.device, generator=generator)``;
``torch.cuda.manual_seed`` reproduces runs) and the kernels read it from there, so a call never
waits for the GPU. Backward keeps that tensor (8 bytes per call, held on the autograd context, not
as a saved tensor) and, with ``save="bits"``, the 1-bit mask.

Layouts as on CPU: dense tensors of any stride order are processed in memory order and the output
keeps the input's strides; tensors with gaps are copied to a dense layout first. The fused residual
ops take the kernels for contiguous tensors of one dtype (any of the four), a same-shape residual
and a bias of the last dimension's size; everything else runs the unfused composition.

Under ``torch.compile`` the path is the custom op ``dropkit::triton_dropout`` (with a fake and an
autograd formula); the fused ops run the composition there.

The functions here are called on CUDA tensors by the public ops; they also run on CPU tensors when
Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how the tests check them without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

from dropkit._validation import _keep_scale
from dropkit.functional import fast_dropout as _fast

__all__: list[str] = []  # private: reached through dropout, dropout_add and bias_dropout_add

_HAVE_TRITON = importlib.util.find_spec("triton") is not None
_kernels_module = None
_kernels_failed = False


def _kernels():
    """The Triton kernel module, or None when triton cannot be imported (the plain path is used)."""
    global _kernels_module, _kernels_failed
    if _kernels_module is None and not _kernels_failed:
        try:
            from dropkit.kernels import gpu
        except ImportError:
            _kernels_failed = True
        else:
            _kernels_module = gpu
    return _kernels_module


def applies(input: torch.Tensor, p: float) -> bool:
    """Whether ``dropout`` takes the Triton path for ``input`` (the caller checked the arguments)."""
    settings = _fast._settings
    if not (
        settings.enabled
        and _HAVE_TRITON
        and 0.0 < p < 1.0
        and input.device.type == "cuda"
        and input.dtype in _fast._DTYPES
        and input.numel() >= settings.min_numel
    ):
        return False
    if torch.compiler.is_compiling():
        return _custom_ops_available
    return _kernels() is not None


def draw_seed(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """The seed of one call: a 1-element int64 tensor on ``device``, one draw from ``generator`` (or
    the device's default generator). No synchronisation: the value stays on the device."""
    return torch.randint(0, 2**63 - 1, (1,), device=device, generator=generator, dtype=torch.int64)


@functools.lru_cache(maxsize=64)
def _rounded(s: float, dtype: torch.dtype) -> float:
    # The multiplier rounded once to the input's dtype (exact as a float32 for float16/bfloat16).
    return torch.tensor(s, dtype=dtype).item()


# ---- forward and backward on tensors -------------------------------------------------------------


def _forward(
    input: torch.Tensor,
    seed: torch.Tensor,
    p: float,
    s: float,
    save_bits: bool,
    out_buffer: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...] | None]:
    """Returns (output with the input's strides where the input is dense, packed mask, perm)."""
    perm = _fast._memory_order(input)
    xp = _fast._to_memory_order(input, perm)
    out = torch.empty_like(xp) if out_buffer is None else out_buffer  # in place: the input itself
    bits = _kernels().dropout_forward(xp, out, seed, p, _rounded(s, input.dtype), save_bits)
    return _fast._from_memory_order(out, perm), bits, perm


def _backward(
    grad: torch.Tensor,
    bits: torch.Tensor | None,
    seed: torch.Tensor,
    p: float,
    s: float,
    perm: tuple[int, ...] | None,
) -> torch.Tensor:
    # The mask is indexed by the forward input's memory order: bring grad to that order first.
    gp = _fast._to_memory_order(grad, perm)
    gin = torch.empty_like(gp)
    sr = _rounded(s, grad.dtype)
    if bits is not None and bits.numel():
        _kernels().dropout_backward_bits(gp, gin, bits, sr)
    else:
        _kernels().dropout_backward_seed(gp, gin, seed, p, sr)
    return _fast._from_memory_order(gin, perm)


class _TritonDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, seed, p, s, save_bits):
        out, bits, perm = _forward(input, seed, p, s, save_bits)
        # The seed (8 bytes per call) rides on the context; only the mask is a saved tensor.
        ctx.seed, ctx.p, ctx.s, ctx.perm, ctx.save_bits = seed, p, s, perm, save_bits
        if save_bits:
            ctx.save_for_backward(bits)
        return out

    @staticmethod
    def backward(ctx, grad):
        return _fast._mask_grad(ctx, grad, _backward), None, None, None, None


class _TritonDropoutAdd(torch.autograd.Function):
    """``dropout(input [+ bias]) + residual`` in one pass; contiguous operands of one dtype."""

    @staticmethod
    def forward(ctx, input, bias, residual, seed, p, s, save_bits):
        k = _kernels()
        out = torch.empty_like(input)
        sr = _rounded(s, input.dtype)
        if bias is None:
            bits = k.dropout_add_forward(input, residual, out, seed, p, sr, save_bits)
        else:
            bits = k.bias_dropout_add_forward(input, bias, residual, out, seed, p, sr, save_bits)
        ctx.seed, ctx.p, ctx.s, ctx.perm, ctx.save_bits = seed, p, s, None, save_bits
        ctx.has_bias = bias is not None
        if save_bits:
            ctx.save_for_backward(bits)
        return out

    @staticmethod
    def backward(ctx, grad):
        return _fast._residual_backward(ctx, grad, _backward)


# ---- torch.library custom ops (torch.compile): dropkit::triton_dropout and its backward -------------

_custom_ops_available = _fast._custom_ops_available

if _custom_ops_available:
    _fast._define_custom_ops(
        "triton_dropout",
        _forward,
        lambda grad, bits, seed, p, s: _backward(grad, bits, seed, p, s, _fast._memory_order(grad)),
    )


# ---- entry points (the public ops have checked the arguments and that the path applies) ----------


def dropout(
    input: torch.Tensor,
    p: float,
    s: float,
    inplace: bool,
    generator: torch.Generator | None,
    save_bits: bool,
) -> torch.Tensor:
    """Dropout through the Triton kernels; ``s`` is the keep multiplier (1/(1-p) or 1)."""
    if torch.compiler.is_compiling():
        seed = draw_seed(generator, input.device)
        out, _ = torch.ops.dropkit.triton_dropout(input, seed, p, s, save_bits)
        return input.copy_(out) if inplace else out
    seed = draw_seed(generator, input.device)
    if inplace:
        needs_grad = torch.is_grad_enabled() and input.requires_grad
        if not needs_grad and _fast._memory_order_is_dense(input):
            # each element is read and written by the same program: safe in place, any dtype
            buffer = _fast._to_memory_order(input, _fast._memory_order(input))
            _forward(input, seed, p, s, False, out_buffer=buffer)
            return input
        return input.copy_(_TritonDropout.apply(input, seed, p, s, save_bits))
    return _TritonDropout.apply(input, seed, p, s, save_bits)


def fused_applies(
    input: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, p: float
) -> bool:
    """Whether ``dropout_add`` / ``bias_dropout_add`` take the one-pass kernel for these operands."""
    tensors = (input, residual) if bias is None else (input, residual, bias)
    return (
        all(t.dtype == input.dtype and t.device == input.device for t in tensors)
        and all(t.is_contiguous() for t in tensors)
        and residual.shape == input.shape
        and (bias is None or (input.dim() >= 1 and bias.shape == input.shape[-1:]))
        and not torch.compiler.is_compiling()
        and applies(input, p)
    )


def residual_dropout(
    input: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    p: float,
    scale: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``dropout(input [+ bias]) + residual`` for a CUDA input: the fused kernel where it applies,
    else the composition (whose ``dropout`` may take the Triton path on its own)."""
    if fused_applies(input, bias, residual, p):
        seed = draw_seed(generator, input.device)
        save_bits = _fast._settings.save == "bits"
        s = _keep_scale(p, scale)
        return _TritonDropoutAdd.apply(input, bias, residual, seed, p, s, save_bits)
    from dropkit.functional.dropout import dropout as _dropout  # dropout.py imports this module

    x = input if bias is None else input + bias
    return _dropout(x, p, True, False, scale=scale, generator=generator) + residual
