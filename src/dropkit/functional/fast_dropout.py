"""The fast path of :func:`dropkit.functional.dropout` on CPU, and the switch that controls it.

``dropout`` calls the fast path by itself when it applies: a CPU tensor of float32, float64, float16 or
bfloat16 with at least ``min_numel`` elements, ``0 < p < 1``, in training. Everything else, and
everything while the switch is off, takes the plain path, which stays the definition of correct.

How it differs from the plain path:

* The mask comes from a counter-based generator (Philox4x32-10, numba kernels in
  :mod:`dropkit.kernels.cpu`), keyed by a 63-bit seed drawn from torch's generator (``generator=`` or
  the global one). ``torch.manual_seed`` and ``generator=`` reproduce runs, but the masks differ from
  the ones ``torch.nn.functional.dropout`` (and the plain path) draw from the same seed. The mask of
  element ``i`` (in memory order) depends only on the seed and ``i``: not on the number of threads.
  :func:`draw_seed` and :func:`fast_keep_mask` give the mask a call used, for tests and debugging.
* Backward keeps either a bit-packed mask (``save="bits"``, 1 bit per element, the default) or nothing
  (``save="seed"``: the mask is regenerated from the seed in backward), where PyTorch's CPU dropout
  keeps a mask of the input's dtype (4 bytes per element for float32).
* Values are identical to the plain path given the same mask: the multiplier is ``s`` or ``0`` in the
  input's dtype and each output is one product (float16/bfloat16 go through float32, where the product
  of two half-precision numbers is exact, then round once). NaN and Inf behave as in the plain path:
  a dropped NaN or Inf gives NaN.

The switch: :func:`set_fast_dropout`, the :func:`use_fast_dropout` context manager, and the
environment variables ``DROPKIT_FAST_DROPOUT=0`` (off at import), ``DROPKIT_FAST_DROPOUT_SAVE``
(``bits`` or ``seed``) and ``DROPKIT_FAST_DROPOUT_MIN_NUMEL``.

Under ``torch.compile`` the fast path is a ``torch.library`` custom op (``dropkit::philox_dropout``)
with a fake implementation, so the graph does not break.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from dropkit._validation import _check_bool, _check_generator, _check_p

__all__ = [
    "draw_seed",
    "fast_dropout_enabled",
    "fast_keep_mask",
    "set_fast_dropout",
    "use_fast_dropout",
]

SAVE_MODES = ("bits", "seed")
# Below this many elements the plain path is as fast (see docs/benchmarks.md: the fixed cost of the
# fast path, about 20-30 us per forward+backward, is more than what its generator saves).
DEFAULT_MIN_NUMEL = 4096

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NATIVE = {torch.float32: np.float32, torch.float64: np.float64}


@dataclasses.dataclass
class _Settings:
    enabled: bool
    save: str
    min_numel: int


def _check_save(save: object, op: str) -> str:
    if save not in SAVE_MODES:
        raise ValueError(f"{op}: save must be one of {SAVE_MODES}, but got {save!r}")
    return save  # type: ignore[return-value]


def _check_min_numel(value: object, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: min_numel must be a positive int, but got {value!r}")
    return value


def _settings_from_env() -> _Settings:
    op = "dropkit (environment)"
    enabled = os.environ.get("DROPKIT_FAST_DROPOUT", "1").strip().lower()
    if enabled not in ("0", "1", "false", "true", "off", "on", ""):
        raise ValueError(f"{op}: DROPKIT_FAST_DROPOUT must be 0 or 1, but got {enabled!r}")
    save = _check_save(os.environ.get("DROPKIT_FAST_DROPOUT_SAVE", "bits"), op)
    min_numel = os.environ.get("DROPKIT_FAST_DROPOUT_MIN_NUMEL", str(DEFAULT_MIN_NUMEL))
    try:
        min_numel_int = int(min_numel)
    except ValueError:
        min_numel_int = -1
    return _Settings(
        enabled=enabled not in ("0", "false", "off"),
        save=save,
        min_numel=_check_min_numel(min_numel_int, op),
    )


_settings = _settings_from_env()


def set_fast_dropout(
    enabled: bool = True, *, save: str | None = None, min_numel: int | None = None
) -> None:
    """Turn the fast CPU path of ``dropout`` (and ``dropout_add``, ``bias_dropout_add``) on or off.

    Args:
        enabled: use the fast path where it applies.
        save: what backward keeps: ``"bits"`` (a 1-bit mask) or ``"seed"`` (nothing; the mask is
            regenerated). Unchanged when None.
        min_numel: smallest tensor (in elements) that takes the fast path. Unchanged when None.
    """
    op = "set_fast_dropout"
    _check_bool(enabled, "enabled", op)
    new_save = _settings.save if save is None else _check_save(save, op)
    new_min = _settings.min_numel if min_numel is None else _check_min_numel(min_numel, op)
    _settings.enabled, _settings.save, _settings.min_numel = enabled, new_save, new_min


def fast_dropout_enabled() -> bool:
    """Whether the fast path is on (it is still used only where it applies)."""
    return _settings.enabled


@contextlib.contextmanager
def use_fast_dropout(
    enabled: bool = True, *, save: str | None = None, min_numel: int | None = None
) -> Iterator[None]:
    """Context manager form of :func:`set_fast_dropout`; the previous settings come back on exit.

    Example::

        >>> with dropkit.use_fast_dropout(False):  # the plain path: torch's own masks
        ...     y = dropkit.functional.dropout(x, 0.5)
    """
    old = dataclasses.replace(_settings)
    set_fast_dropout(enabled, save=save, min_numel=min_numel)
    try:
        yield
    finally:
        _settings.enabled, _settings.save, _settings.min_numel = (
            old.enabled,
            old.save,
            old.min_numel,
        )


# ---- kernels: imported on first use, so `import dropkit` does not pay for numba -------------------

_kernels_module = None
_kernels_failed = False
_empty_like = torch.empty_like  # replaced by the huge-page version when the kernels load
# Checked without importing numba; a numba that is present but fails to import turns the fast path
# off at the first call (eager) instead.
_HAVE_NUMBA = importlib.util.find_spec("numba") is not None


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


def _applies(input: torch.Tensor, p: float) -> bool:
    """Whether ``dropout`` takes a fast path for ``input``: numba on CPU, Triton on CUDA."""
    if input.is_cuda:  # Triton kernels: functional/_fast_cuda.py
        from dropkit.functional import _fast_cuda

        return _fast_cuda.applies(input, p)
    # Cheapest tests first: this runs on every call of dropout.
    if not (
        _settings.enabled
        and 0.0 < p < 1.0
        and input.is_cpu
        and input.dtype in _DTYPES
        and input.numel() >= _settings.min_numel
        and _HAVE_NUMBA
    ):
        return False
    if _kernels_module is not None and _custom_ops_available:
        return True  # a path both eager and under torch.compile (is_compiling costs a call)
    if torch.compiler.is_compiling():
        return _custom_ops_available
    return _kernels() is not None


def draw_seed(generator: torch.Generator | None = None) -> int:
    """The 63-bit seed the fast path draws for one call: one draw from ``generator`` (or torch's
    global CPU generator), so ``torch.manual_seed`` reproduces it."""
    _check_generator(generator, torch.device("cpu"), "draw_seed")
    return _draw_seed(generator)


_SEED_END = 2**63 - 1
_seed_buffers = threading.local()


def _draw_seed(generator: torch.Generator | None) -> int:
    # torch.randint(0, _SEED_END, ()) without a new tensor per call: the same value from the same
    # generator state, about a third of the cost. One buffer per thread, read through a NumPy view
    # (tensor.item() would be a second operator call).
    buffers = getattr(_seed_buffers, "pair", None)
    if buffers is None:
        # a normal tensor even when the first call runs under inference_mode (an inference tensor
        # could not be updated in place outside it)
        with torch.inference_mode(False):
            tensor = torch.empty((), dtype=torch.int64)
        buffers = _seed_buffers.pair = (tensor, tensor.numpy())
    buffers[0].random_(0, _SEED_END, generator=generator)
    return int(buffers[1])


def _seed_tensor(generator: torch.Generator | None) -> torch.Tensor:
    # Under torch.compile (dynamo traces randint but not random_): the same draw as _draw_seed.
    return torch.randint(0, _SEED_END, (), generator=generator, dtype=torch.int64)


# ---- memory order --------------------------------------------------------------------------------


def _memory_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation that lists ``t``'s dims from the largest stride down; None if contiguous."""
    if t.is_contiguous():
        return None
    return tuple(sorted(range(t.dim()), key=lambda d: -t.stride(d)))


def _to_memory_order(t: torch.Tensor, perm: tuple[int, ...] | None) -> torch.Tensor:
    # A contiguous tensor whose flat order is `t`'s memory order: a view for dense tensors
    # (contiguous, channels_last, transposed, ...), a copy for others (slices with gaps).
    return t.contiguous() if perm is None else t.permute(perm).contiguous()


def _from_memory_order(t: torch.Tensor, perm: tuple[int, ...] | None) -> torch.Tensor:
    if perm is None:
        return t
    inverse = [0] * len(perm)
    for i, d in enumerate(perm):
        inverse[d] = i
    return t.permute(inverse)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _NATIVE else torch.float32


@functools.lru_cache(maxsize=64)
def _scale_scalar(s: float, dtype: torch.dtype) -> float:
    # The multiplier rounded once to the input's dtype (the kernels compute in the compute dtype).
    return torch.tensor(s, dtype=dtype).item()


# ---- forward and backward on tensors -------------------------------------------------------------
# These run on every call, so the common case (a contiguous float32/float64 tensor) is tested first
# and takes the fewest steps: the kernels read the tensors' memory directly.


def _prepare(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """(a contiguous tensor of the compute dtype whose flat order is ``t``'s memory order, perm)."""
    if t.is_contiguous() and t.dtype in _NATIVE:
        return t, None
    perm = _memory_order(t)
    tp = _to_memory_order(t, perm)
    cdtype = _compute_dtype(t.dtype)
    return (tp if tp.dtype == cdtype else tp.to(cdtype)), perm


def _finish(out: torch.Tensor, dtype: torch.dtype, perm: tuple[int, ...] | None) -> torch.Tensor:
    out = out if out.dtype == dtype else out.to(dtype)
    return out if perm is None else _from_memory_order(out, perm)


def _forward(
    input: torch.Tensor, seed: int, p: float, s: float, save_bits: bool, out_buffer=None
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...] | None]:
    """Returns (output with the input's strides where the input is dense, packed mask, perm).

    ``out_buffer``: write the output there (in place over the input: the two-pass kernels)."""
    k = _kernels()
    xc, perm = _prepare(input)
    n = xc.numel()
    outc = _empty_like(xc) if out_buffer is None else out_buffer
    bits = torch.empty((n + 7) // 8 if save_bits else 0, dtype=torch.uint8)
    sc = _scale_scalar(s, input.dtype)
    k.forward_tensor(
        xc, outc, bits if save_bits else None, n, seed, k.threshold(p), sc, out_buffer is None
    )
    return _finish(outc, input.dtype, perm), bits, perm


def _backward(
    grad: torch.Tensor,
    bits: torch.Tensor | None,
    seed: int,
    p: float,
    s: float,
    perm: tuple[int, ...] | None,
) -> torch.Tensor:
    k = _kernels()
    if perm is None and grad.is_contiguous() and grad.dtype in _NATIVE:
        gc = grad
    else:
        perm = perm if perm is not None else _memory_order(grad)
        gp = _to_memory_order(grad, perm)
        cdtype = _compute_dtype(grad.dtype)
        gc = gp if gp.dtype == cdtype else gp.to(cdtype)
    gin = _empty_like(gc)
    saved = bits if bits is not None and bits.numel() else None
    sc = _scale_scalar(s, grad.dtype)
    k.backward_tensor(gc, gin, saved, gc.numel(), seed, k.threshold(p), sc)
    return _finish(gin, grad.dtype, perm)


class _ApplyMask(torch.autograd.Function):
    """``grad -> grad * m * s`` for the mask of a seed: dropout's backward, computed by ``fn`` (the CPU
    or the CUDA path's ``_backward``). Linear in its input with the same mask, so it is its own
    backward (gradients of any order work)."""

    @staticmethod
    def forward(ctx, grad, bits, seed, p, s, perm, fn):
        ctx.args = (bits, seed, p, s, perm, fn)
        return fn(grad, bits, seed, p, s, perm)

    @staticmethod
    def backward(ctx, gg):
        return _ApplyMask.apply(gg, *ctx.args), None, None, None, None, None, None


def _mask_grad(ctx, grad: torch.Tensor, backward) -> torch.Tensor:
    """``grad * m * s`` for the mask the forward drew (``ctx``: seed, p, s, perm, save_bits, and the
    saved bits), through the CPU or the CUDA path's ``backward``; differentiable under
    ``create_graph=True``."""
    bits = ctx.saved_tensors[0] if ctx.save_bits else None
    if torch.is_grad_enabled():  # create_graph=True: keep the backward differentiable
        return _ApplyMask.apply(grad, bits, ctx.seed, ctx.p, ctx.s, ctx.perm, backward)
    return backward(grad, bits, ctx.seed, ctx.p, ctx.s, ctx.perm)


def _residual_backward(ctx, grad: torch.Tensor, backward) -> tuple:
    """Gradients of ``(input, bias, residual, seed, p, s, save_bits)`` for the fused
    ``dropout(input [+ bias]) + residual`` functions of the CPU and CUDA paths."""
    grad_x = _mask_grad(ctx, grad, backward)
    # bias was broadcast along all leading dims: its gradient sums them. (rows, H) -> (H,)
    grad_bias = grad_x.reshape(-1, grad_x.shape[-1]).sum(0) if ctx.has_bias else None
    return grad_x, grad_bias, grad, None, None, None, None


class _PhiloxDropout(torch.autograd.Function):
    # forward and backward run once per dropout layer and step, so the common case (a contiguous
    # float32/float64 tensor) is written out here; everything else goes through _forward/_backward.

    @staticmethod
    def forward(ctx, input, seed, p, s, save_bits):
        if input.is_contiguous() and input.dtype in _NATIVE:
            k = _kernels_module
            n = input.numel()
            out = _empty_like(input)
            bits = torch.empty((n + 7) // 8 if save_bits else 0, dtype=torch.uint8)
            # s as a Python float: the kernel rounds it to float32 for float32 data, once
            k.forward_tensor(
                input, out, bits if save_bits else None, n, seed, k.threshold(p), s, True
            )
            perm = None
        else:
            out, bits, perm = _forward(input, seed, p, s, save_bits)
        ctx.state = (seed, p, s, perm, save_bits)
        if save_bits:
            ctx.save_for_backward(bits)
        return out

    @staticmethod
    def backward(ctx, grad):
        seed, p, s, perm, save_bits = ctx.state
        bits = ctx.saved_tensors[0] if save_bits else None
        if torch.is_grad_enabled():  # create_graph=True: keep the backward differentiable
            gin = _ApplyMask.apply(grad, bits, seed, p, s, perm, _backward)
        elif perm is None and grad.is_contiguous() and grad.dtype in _NATIVE:
            k = _kernels_module
            gin = _empty_like(grad)
            k.backward_tensor(grad, gin, bits, grad.numel(), seed, k.threshold(p), s)
        else:
            gin = _backward(grad, bits, seed, p, s, perm)
        return gin, None, None, None, None


# ---- torch.library custom ops (torch.compile) ----------------------------------------------------

_custom_ops_available = hasattr(torch.library, "custom_op")


def _define_custom_ops(name: str, forward, backward):
    """Register ``dropkit::{name}`` and ``dropkit::{name}_backward`` (fakes, autograd); returns the first.

    ``forward(input, seed, p, s, save_bits) -> (out, bits, perm)`` and
    ``backward(grad, bits, seed, p, s) -> grad_input`` take the seed as a tensor. The CPU and CUDA
    paths both use this.
    """

    @torch.library.custom_op(f"dropkit::{name}", mutates_args=())
    def op(
        input: torch.Tensor, seed: torch.Tensor, p: float, s: float, save_bits: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, bits, _ = forward(input, seed, p, s, save_bits)
        if out.stride() != torch.empty_like(input).stride():
            out = torch.empty_like(input).copy_(out)  # the layout the fake promises
        return out, bits

    @op.register_fake
    def _(input, seed, p, s, save_bits):
        nbytes = (input.numel() + 7) // 8 if save_bits else 0
        return torch.empty_like(input), input.new_empty(nbytes, dtype=torch.uint8)

    @torch.library.custom_op(f"dropkit::{name}_backward", mutates_args=())
    def backward_op(
        grad: torch.Tensor, bits: torch.Tensor, seed: torch.Tensor, p: float, s: float
    ) -> torch.Tensor:
        gin = backward(grad, bits, seed, p, s)
        if gin.stride() != torch.empty_like(grad).stride():
            gin = torch.empty_like(grad).copy_(gin)
        return gin

    @backward_op.register_fake
    def _(grad, bits, seed, p, s):
        return torch.empty_like(grad)

    def setup_context(ctx, inputs, output):
        _, seed, p, s, _ = inputs
        ctx.save_for_backward(output[1], seed)
        ctx.p, ctx.s = p, s

    def op_backward(ctx, grad_out, grad_bits):
        bits, seed = ctx.saved_tensors
        return backward_op(grad_out, bits, seed, ctx.p, ctx.s), None, None, None, None

    op.register_autograd(op_backward, setup_context=setup_context)
    return op


if _custom_ops_available:
    _define_custom_ops(
        "philox_dropout",
        lambda input, seed, p, s, save_bits: _forward(input, int(seed), p, s, save_bits),
        lambda grad, bits, seed, p, s: _backward(grad, bits, int(seed), p, s, _memory_order(grad)),
    )


def _dropout_fast(
    input: torch.Tensor, p: float, s: float, inplace: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """Dropout through the kernels. The caller has checked the arguments and that it applies."""
    save_bits = _settings.save == "bits"
    if input.is_cuda:  # Triton kernels: functional/_fast_cuda.py
        from dropkit.functional import _fast_cuda

        return _fast_cuda.dropout(input, p, s, inplace, generator, save_bits)
    if torch.compiler.is_compiling():
        out, _ = torch.ops.dropkit.philox_dropout(input, _seed_tensor(generator), p, s, save_bits)
        return input.copy_(out) if inplace else out
    seed = _draw_seed(generator)
    if inplace:
        needs_grad = torch.is_grad_enabled() and input.requires_grad
        if not needs_grad and input.dtype in _NATIVE and _memory_order_is_dense(input):
            perm = _memory_order(input)
            _forward(input, seed, p, s, False, out_buffer=_to_memory_order(input, perm))
            return input
        return input.copy_(_PhiloxDropout.apply(input, seed, p, s, save_bits))
    return _PhiloxDropout.apply(input, seed, p, s, save_bits)


def _memory_order_is_dense(t: torch.Tensor) -> bool:
    perm = _memory_order(t)
    return perm is None or t.permute(perm).is_contiguous()


def fast_keep_mask(
    shape_or_like: torch.Tensor | Sequence[int], p: float, seed: int
) -> torch.Tensor:
    """The keep-mask (bool, True = keep) the fast path draws for ``seed``.

    Given a tensor, the mask has its shape and follows its memory order (a channels_last tensor gets
    the mask of its memory order); given a shape, the mask is that of a contiguous tensor.
    Use with :func:`draw_seed` on an identically seeded generator to get the mask of a call::

        >>> out = dropkit.functional.dropout(x, 0.5, generator=torch.Generator().manual_seed(0))
        >>> seed = draw_seed(torch.Generator().manual_seed(0))
        >>> mask = fast_keep_mask(x, 0.5, seed)  # out == apply_mask(x, mask, 0.5)
    """
    p = _check_p(p, "fast_keep_mask")
    k = _kernels()
    if k is None:
        raise RuntimeError("fast_keep_mask: numba could not be imported; the fast path is off")
    like = shape_or_like if isinstance(shape_or_like, torch.Tensor) else None
    shape = torch.Size(like.shape if like is not None else shape_or_like)
    perm = _memory_order(like) if like is not None else None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"fast_keep_mask: seed must be an int in [0, 2**64), but got {seed!r}")
    if p == 1.0:
        flat = torch.zeros(shape.numel(), dtype=torch.bool)
    else:
        flat = torch.from_numpy(k.keep_mask(shape.numel(), p, seed).copy())
    if perm is None:
        return flat.view(shape)
    permuted = torch.Size(shape[d] for d in perm)
    return _from_memory_order(flat.view(permuted), perm)
