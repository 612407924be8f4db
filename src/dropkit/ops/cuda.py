"""The CUDA backend of the fast path: Triton kernels (:mod:`dropkit.kernels.gpu`) on tensors.

The GPU twin of :mod:`dropkit.ops.cpu`, with the same functions (``available``,
``forward``, ``backward``, ``fused_applies``, ``residual``), behind the same operator
(:mod:`dropkit.ops.dropout`), with the same contract (the Philox mask of element ``i`` in memory
order, :mod:`dropkit.reference.philox`) and the same values as the plain path given the mask.

What differs from the CPU backend: the seed is drawn from the device's generator as a 1-element
int64 tensor that stays on the device (``torch.randint(..., device=input.device,
generator=generator)``; ``torch.cuda.manual_seed`` reproduces runs) and the kernels read it from
there, so a call never waits for the GPU. Backward keeps that tensor (8 bytes per call, held on the
autograd context, not as a saved tensor) and, with ``save="bits"``, the 1-bit mask.

Layouts as on CPU: dense tensors of any stride order are processed in memory order and the output
keeps the input's strides; tensors with gaps are copied to a dense layout first. The fused residual
kernel takes contiguous tensors of one dtype (any of the four), a same-shape residual and a bias of
the last dimension's size.

The functions also run on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``),
which is how the tests check them without a GPU.
"""

from __future__ import annotations

import importlib.util

import torch

from dropkit.ops import switch as _fast

__all__: list[str] = []  # private: reached through dropkit.ops.dropout

NAME = "cuda"
INSTALLED = importlib.util.find_spec("triton") is not None
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


def available() -> bool:
    return INSTALLED and _kernels() is not None


def _seed_on(seed, device: torch.device) -> torch.Tensor:
    # The kernels read a 1-element int64 tensor on the data's device.
    if isinstance(seed, torch.Tensor) and seed.device == device and seed.dim() == 1:
        return seed
    return torch.as_tensor(seed, dtype=torch.int64, device=device).reshape(1)


def forward(
    input: torch.Tensor, seed, p: float, s: float, save_bits: bool, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    perm = _fast._memory_order(input)
    xp = _fast._to_memory_order(input, perm)
    # in place: each element is read and written by the same program, any dtype
    direct = inplace and xp.data_ptr() == input.data_ptr()
    out = xp if direct else torch.empty_like(xp)
    seed = _seed_on(seed, input.device)
    bits = _kernels().dropout_forward(
        xp, out, seed, p, _fast._scale_scalar(s, input.dtype), save_bits
    )
    if direct:
        return input, bits
    out = _fast._from_memory_order(out, perm)
    return (input.copy_(out) if inplace else out), bits


def backward(
    grad: torch.Tensor,
    bits: torch.Tensor | None,
    seed,
    p: float,
    s: float,
    perm: tuple[int, ...] | None,
) -> torch.Tensor:
    # The mask is indexed by the forward input's memory order: bring grad to that order first.
    # (perm None: the forward input was contiguous, so grad goes to C order, whatever its layout)
    gp = _fast._to_memory_order(grad, perm)
    gin = torch.empty_like(gp)
    sr = _fast._scale_scalar(s, grad.dtype)
    if bits is not None and bits.numel():
        _kernels().dropout_backward_bits(gp, gin, bits, sr)
    else:
        _kernels().dropout_backward_seed(gp, gin, _seed_on(seed, grad.device), p, sr)
    return _fast._from_memory_order(gin, perm)


def fused_applies(input: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor) -> bool:
    tensors = (input, residual) if bias is None else (input, residual, bias)
    return (
        all(t.dtype == input.dtype and t.device == input.device for t in tensors)
        and all(t.is_contiguous() for t in tensors)
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
    k = _kernels()
    out = torch.empty_like(input)
    sr = _fast._scale_scalar(s, input.dtype)
    seed = _seed_on(seed, input.device)
    if bias is None:
        bits = k.dropout_add_forward(input, residual, out, seed, p, sr, save_bits)
    else:
        bits = k.bias_dropout_add_forward(input, bias, residual, out, seed, p, sr, save_bits)
    return out, bits
