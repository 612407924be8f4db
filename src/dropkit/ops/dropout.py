"""Dropout's operators: the Philox kernels behind ``dropout``, ``dropout_add`` and ``bias_dropout_add``.

``dropkit.functional.dropout`` calls :func:`dropout` here (``dropout_add`` and ``bias_dropout_add``
call :func:`residual_dropout`); each returns None where the fast path does not apply and the caller
then takes the plain path. Below this module are the backends, one per device type with one interface
(:mod:`dropkit.ops.cpu`, numba; :mod:`dropkit.ops.cuda`, Triton), the switch
(:mod:`dropkit.ops.switch`) and the draws (:mod:`dropkit.random.draws`); nothing here calls back up.

The operators, each defined once with all of its rules (:mod:`dropkit.ops.registry`):

* ``dropkit::philox_dropout(input, seed, p, s, save_bits) -> (out, bits)``: ``out = input * m * s``
  for the Philox mask ``m`` of ``seed`` (element ``i`` in memory order); ``bits`` is the packed mask
  (empty with ``save_bits=False``: backward regenerates it from the seed).
* ``dropkit::philox_dropout_(input!, seed, p, s, save_bits) -> bits``: the same, in place.
* ``dropkit::philox_mask(grad, bits, seed, p, s, perm, input) -> grad * m * s``: the backward, linear in
  ``grad`` with the same mask, so it is its own backward and its own jvp (gradients of any order).
  ``perm`` is the forward input's memory order (the mask's index), ``input`` the forward's input
  where its producer keeps it anyway (the kernels do not read it; see ``_setup_dropout``).
* ``dropkit::residual_dropout(input, bias, residual, seed, p, s, save_bits) -> (out, bits)``:
  ``dropout(input [+ bias]) + residual`` in one pass.

A DTensor input goes to the sharding rule (:mod:`dropkit.ops.sharding`): each shard computes its part
of the one global mask. ONNX export takes the plain path (``applies`` is False there), which exports as
ONNX operators; docs/fast_dropout.md has the whole table of PyTorch features.
"""

from __future__ import annotations

import contextlib
import threading

import torch

from dropkit.ops import _torch, cpu, cuda, sharding, switch
from dropkit.ops.registry import define, eager
from dropkit.random import draws

__all__: list[str] = []  # private: reached through dropout, dropout_add and bias_dropout_add

_DTYPES = switch._DTYPES
_is_compiling = torch.compiler.is_compiling
_in_onnx_export = torch.onnx.is_in_onnx_export
_jit_tracing = torch.jit.is_tracing
_BACKENDS = {"cpu": cpu, "cuda": cuda}


_override = threading.local()  # .backend: tests' choice of a backend, whatever the device


def _backend_for(t: torch.Tensor):
    return getattr(_override, "backend", None) or _BACKENDS[t.device.type]


@contextlib.contextmanager
def using_backend(backend):
    """Run the operators on ``backend`` whatever the tensors' device, on the calling thread (tests:
    the Triton kernels on CPU tensors, in Triton's interpreter)."""
    previous = getattr(_override, "backend", None)
    _override.backend = backend
    try:
        yield
    finally:
        _override.backend = previous


def applies(input: torch.Tensor, p: float) -> bool:
    """Whether ``dropout`` takes the fast path for ``input`` (the caller checked the arguments); for a
    DTensor, decided on its global size, so a sharded tensor takes the path its whole would."""
    settings = switch._current()
    if not (
        settings.enabled
        and 0.0 < p < 1.0
        and input.dtype in _DTYPES
        and input.numel() >= settings.min_numel
    ):
        return False
    device = input.device.type
    backend = _BACKENDS.get(device)
    if backend is None:
        return False
    if _is_compiling():
        # the kernels are loaded when the op first runs; ONNX export takes the plain path, which
        # exports as ONNX operators
        return backend.INSTALLED and not _in_onnx_export()
    if _jit_tracing():  # torch.jit.trace (and the TorchScript-based ONNX exporter): plain path
        return False
    return backend._kernels_module is not None or backend.available()


def _with_layout(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # The layout torch's dropout gives (empty_like's: the input's strides where it is dense, else
    # contiguous), copying where a backend returned another one (an expanded input's memory order).
    # empty_like keeps the strides of a contiguous ``like``: the common case needs no allocation.
    if like.is_contiguous() and out.stride() == like.stride():
        return out
    expected = torch.empty_like(like)
    return out if out.stride() == expected.stride() else expected.copy_(out)


# ---- philox_mask: grad -> grad * m * s --------------------------------------------------------------


def _mask_impl(
    grad: torch.Tensor,
    bits: torch.Tensor,
    seed: torch.Tensor,
    p: float,
    s: float,
    perm: list[int] | None = None,
    input: torch.Tensor | None = None,
) -> torch.Tensor:
    order = tuple(perm) if perm else None
    saved = bits if bits.numel() else None
    return _with_layout(_backend_for(grad).backward(grad, saved, seed, p, s, order), grad)


def _mask_fake(grad, bits, seed, p, s, perm=None, input=None):
    return torch.empty_like(grad)


def _save(ctx, *tensors) -> None:
    # Tensors go through save_for_backward (version checks, checkpoint's hooks); a seed drawn as a
    # Python int (the eager lane on CPU) is kept as an attribute.
    ctx.seed_int = tensors[1] if type(tensors[1]) is int else None
    ctx.save_for_backward(*(t for t in tensors if type(t) is not int))


def _saved(ctx):
    saved = ctx.saved_tensors
    if ctx.seed_int is not None:
        return saved[0], ctx.seed_int, saved[1:]
    return saved[0], saved[1], saved[2:]


def _setup_mask(ctx, inputs, output):
    _, bits, seed, p, s, perm = inputs[:6]
    _save(ctx, bits, seed)
    ctx.p, ctx.s, ctx.perm = p, s, perm
    if type(bits) is torch.Tensor:
        ctx.bits, ctx.seed = bits, seed  # for jvp (no cycle: neither has a grad_fn)


def _mask_backward(ctx, gg):
    bits, seed, _ = _saved(ctx)
    return philox_mask(gg, bits, seed, ctx.p, ctx.s, ctx.perm, None), *((None,) * 6)


def _mask_jvp(ctx, grad_t, *_):
    return philox_mask(grad_t, ctx.bits, ctx.seed, ctx.p, ctx.s, ctx.perm, None)


def _vmap_loop(fn, info, in_dims, args):
    """``fn`` on each sample of a batch (an argument without a batch dim is shared by all samples);
    the outputs stacked along dim 0."""
    results = []
    for b in range(info.batch_size):
        sample = [a if d is None else a.select(d, b) for a, d in zip(args, in_dims, strict=False)]
        sample += list(args[len(in_dims) :])
        out = fn(*sample)
        results.append(out if isinstance(out, tuple) else (out,))
    outs = tuple(torch.stack(o) for o in zip(*results, strict=True))
    return outs, (0,) * len(outs)


def _mask_vmap(info, in_dims, grad, bits, seed, p, s, perm=None, input=None):
    def one(g, b, sd):
        return philox_mask(g, b, sd, p, s, perm, None)

    outs, dims = _vmap_loop(one, info, in_dims[:3], (grad, bits, seed))
    return outs[0], dims[0]


philox_mask = define(
    "philox_mask",
    _mask_impl,
    fake=_mask_fake,
    setup_context=_setup_mask,
    backward=_mask_backward,
    jvp=_mask_jvp,
    vmap=_mask_vmap,
)


# ---- philox_dropout: out = input * m * s --------------------------------------------------------------


def _dropout_impl(
    input: torch.Tensor, seed: torch.Tensor, p: float, s: float, save_bits: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    out, bits = _backend_for(input).forward(input, seed, p, s, save_bits)
    return _with_layout(out, input), bits


def _dropout_fake(input, seed, p, s, save_bits):
    nbytes = (input.numel() + 7) // 8 if save_bits else 0
    return torch.empty_like(input), input.new_empty(nbytes, dtype=torch.uint8)


def _kept_by_producer(t: torch.Tensor) -> bool:
    # Whether the autograd node that made ``t`` saves its own result (ReLU, softmax, sigmoid,
    # tanh, ...): then ``t`` stays alive for backward whatever dropout saves.
    fn = t.grad_fn
    return fn is not None and hasattr(type(fn), "_saved_result")


def _perm_of(t: torch.Tensor) -> list[int] | None:
    order = switch._memory_order(t)
    return None if order is None else list(order)


def _setup_dropout(ctx, inputs, output):
    input, seed, p, s, _ = inputs
    bits = output[1]
    # The input goes to the backward op (which does not read it) when its producer keeps it
    # anyway, so saving it costs no memory. Under torch.compile this decides what the graph
    # keeps for the producer's backward: without it, AOT autograd's partitioner sees that
    # ReLU's output is needed by nothing but ReLU's backward and saves the bool mask
    # ``relu(x) <= 0`` instead, whose vectorised CPU code inductor makes very slow on AVX2
    # machines (about 1.7 ms per 128x1024 tensor, docs/benchmarks.md); with the input saved,
    # ReLU's backward reads it, as in eager mode and in the same model without dropout.
    kept = (input,) if not eager(input) and _kept_by_producer(input) else ()
    _save(ctx, bits, seed, *kept)
    ctx.p, ctx.s, ctx.perm = p, s, _perm_of(input)
    if type(bits) is torch.Tensor:
        ctx.bits, ctx.seed = bits, seed  # for jvp (no cycle: neither has a grad_fn)


def _dropout_backward(ctx, grad_out, _grad_bits=None):
    bits, seed, kept = _saved(ctx)
    gin = philox_mask(grad_out, bits, seed, ctx.p, ctx.s, ctx.perm, kept[0] if kept else None)
    return gin, None, None, None, None


def _dropout_jvp(ctx, input_t, *_):
    return philox_mask(input_t, ctx.bits, ctx.seed, ctx.p, ctx.s, ctx.perm, None), None


def _dropout_vmap(info, in_dims, input, seed, p, s, save_bits):
    def one(x, sd):
        # no bits under vmap: backward regenerates each sample's mask from its seed
        out, bits = philox_dropout(x, sd, p, s, False)
        return out, bits

    return _vmap_loop(one, info, in_dims[:2], (input, seed))


philox_dropout = define(
    "philox_dropout",
    _dropout_impl,
    fake=_dropout_fake,
    setup_context=_setup_dropout,
    backward=_dropout_backward,
    jvp=_dropout_jvp,
    vmap=_dropout_vmap,
    sharding=sharding.philox_dropout,
)


# ---- philox_dropout_: input *= m * s --------------------------------------------------------------------


def _inplace_impl(
    input: torch.Tensor, seed: torch.Tensor, p: float, s: float, save_bits: bool
) -> torch.Tensor:
    _, bits = _backend_for(input).forward(input, seed, p, s, save_bits, inplace=True)
    return bits


def _inplace_eager(input, seed, p, s, save_bits):
    # the eager lane returns the input it wrote (marked dirty), the library op only the bits
    return input, _inplace_impl(input, seed, p, s, save_bits)


def _setup_inplace(ctx, inputs, output):
    ctx.mark_dirty(inputs[0])
    _setup_dropout(ctx, inputs, output)


def _inplace_jvp(ctx, input_t, *_):
    # in place, as the forward: the tangent of the input becomes that of the output
    return input_t.copy_(
        philox_mask(input_t, ctx.bits, ctx.seed, ctx.p, ctx.s, ctx.perm, None)
    ), None


def _inplace_vmap(info, in_dims, input, seed, p, s, save_bits):
    if in_dims[0] is None:
        raise RuntimeError(
            "dropkit.functional.dropout(inplace=True) under torch.func.vmap: the input has no "
            "batch dimension, so it cannot hold a different mask per sample; use inplace=False"
        )
    bits = []
    for b in range(info.batch_size):
        sd = seed if in_dims[1] is None else seed.select(in_dims[1], b)
        out = philox_dropout_(input.select(in_dims[0], b), sd, p, s, False)
        bits.append(out[1] if isinstance(out, tuple) else out)
    return (input, torch.stack(bits)), (in_dims[0], 0)


philox_dropout_ = define(
    "philox_dropout_",
    _inplace_impl,
    fake=lambda input, seed, p, s, save_bits: _dropout_fake(input, seed, p, s, save_bits)[1],
    mutates_args=("input",),
    eager_impl=_inplace_eager,
    eager_setup=_setup_inplace,
    backward=_dropout_backward,
    jvp=_inplace_jvp,
    vmap=_inplace_vmap,
)


# ---- residual_dropout: dropout(input [+ bias]) + residual ----------------------------------------------


def _residual_impl(
    input: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    seed: torch.Tensor,
    p: float,
    s: float,
    save_bits: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _backend_for(input).residual(input, bias, residual, seed, p, s, save_bits)


def _residual_fake(input, bias, residual, seed, p, s, save_bits):
    return _dropout_fake(input, seed, p, s, save_bits)


def _setup_residual(ctx, inputs, output):
    input, bias, _, seed, p, s, _ = inputs
    bits = output[1]
    _save(ctx, bits, seed)
    ctx.p, ctx.s, ctx.perm = p, s, None
    ctx.shape = input.shape
    ctx.has_bias = bias is not None
    if type(bits) is torch.Tensor:
        ctx.bits, ctx.seed = bits, seed  # for jvp (no cycle: neither has a grad_fn)


def _residual_backward(ctx, grad, _grad_bits=None):
    bits, seed, _ = _saved(ctx)
    grad_x = philox_mask(grad, bits, seed, ctx.p, ctx.s, None, None)
    # bias was broadcast along all leading dims: its gradient sums them. (rows, H) -> (H,)
    grad_bias = grad_x.reshape(-1, grad_x.shape[-1]).sum(0) if ctx.has_bias else None
    return grad_x, grad_bias, grad, None, None, None, None


def _residual_jvp(ctx, input_t, bias_t, residual_t, *_):
    # out = m * s * (input + bias) + residual: the tangents go through the same mask
    t = input_t
    if bias_t is not None:
        t = bias_t.expand(ctx.shape) if t is None else t + bias_t
    out = (
        None
        if t is None
        else philox_mask(t.contiguous(), ctx.bits, ctx.seed, ctx.p, ctx.s, None, None)
    )
    if residual_t is not None:
        out = residual_t if out is None else out + residual_t
    return out, None


residual = define(
    "residual_dropout",
    _residual_impl,
    fake=_residual_fake,
    setup_context=_setup_residual,
    backward=_residual_backward,
    jvp=_residual_jvp,
)


# ---- entry points (the public ops have checked the arguments) -------------------------------------------


def _seed(backend, generator, input: torch.Tensor):
    """The seed of one eager call: a Python int on CPU, a device tensor on an accelerator; under a
    torch.func transform an out-of-place draw, so vmap's randomness modes apply (one seed per sample
    for "different", one for all for "same", torch's error for "error")."""
    if backend is cuda:
        return draws.device_seed(generator, input.device)
    if _torch.transforms() is not None:
        return draws.seed_tensor(generator)
    return draws.draw_seed(generator)


def _check_inplace(input: torch.Tensor) -> None:
    # What autograd checks for torch's in-place ops, before the kernel writes (mark_dirty checks
    # only after forward has run). The messages are torch's.
    if input.is_inference() and not torch.is_inference_mode_enabled():
        raise RuntimeError(
            "Inplace update to inference tensor outside InferenceMode is not allowed. You can make "
            "a clone to get a normal tensor before doing inplace update. (dropkit: dropout with "
            "inplace=True)"
        )
    if input.requires_grad and input.is_leaf and torch.is_grad_enabled():
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation. "
            "(dropkit: dropout with inplace=True)"
        )


def _graph(input, p, s, inplace, generator, save_bits) -> torch.Tensor:
    seed = draws.graph_seed(input, generator)
    if inplace and not (torch.is_grad_enabled() and input.requires_grad):
        philox_dropout_(input, seed, p, s, save_bits)
        return input
    out, _ = philox_dropout(input, seed, p, s, save_bits)
    return input.copy_(out) if inplace else out


def dropout(
    input: torch.Tensor,
    p: float,
    s: float,
    inplace: bool,
    generator,
    backend=None,
) -> torch.Tensor | None:
    """Dropout through the kernels, or None where the fast path does not apply (the caller then
    takes the plain path). ``s`` is the keep multiplier (1/(1-p) or 1); the caller has checked the
    arguments. ``backend``: given by tests, to run the Triton kernels on CPU tensors in Triton's
    interpreter whatever the settings (graphs always use the device's backend)."""
    settings = switch._current()
    save_bits = settings.save == "bits"
    if backend is None:
        if not applies(input, p):
            return None
        if type(input) is not torch.Tensor:
            if sharding.is_dtensor(input):  # each shard's part of the global mask
                return sharding.dropout(input, p, s, inplace, generator, save_bits)
            return _graph(input, p, s, inplace, generator, save_bits)
        backend = _BACKENDS[input.device.type]
    if _is_compiling() or type(input) is not torch.Tensor or _torch.dispatch_modes():
        return _graph(input, p, s, inplace, generator, save_bits)
    if backend is not _BACKENDS.get(input.device.type):  # tests: Triton's interpreter on CPU
        with using_backend(backend):
            return _eager(input, p, s, inplace, generator, save_bits, backend)
    return _eager(input, p, s, inplace, generator, save_bits, backend)


def _eager(input, p, s, inplace, generator, save_bits, backend) -> torch.Tensor:
    seed = _seed(backend, generator, input)
    if inplace:
        _check_inplace(input)
        save_bits = save_bits and torch.is_grad_enabled() and input.requires_grad
        return philox_dropout_.eager(input, seed, p, s, save_bits)[0]
    return philox_dropout.eager(input, seed, p, s, save_bits)[0]


def residual_dropout(
    input: torch.Tensor,
    bias: torch.Tensor | None,
    residual_: torch.Tensor,
    p: float,
    s: float,
    generator,
    backend=None,
) -> torch.Tensor | None:
    """``dropout(input [+ bias]) + residual`` through a fused kernel, or None where none applies
    (the caller then runs the composition, whose ``dropout`` may take the fast path by itself)."""
    if backend is None:
        if not (eager(input) and _torch.transforms() is None):
            return None
        backend = _BACKENDS.get(input.device.type)
        if backend is None:
            return None
    if not (backend.fused_applies(input, bias, residual_) and applies(input, p)):
        return None
    save_bits = switch._current().save == "bits"
    seed = _seed(backend, generator, input)
    if backend is not _BACKENDS.get(input.device.type):  # tests: Triton's interpreter on CPU
        with using_backend(backend):
            return residual.eager(input, bias, residual_, seed, p, s, save_bits)[0]
    return residual.eager(input, bias, residual_, seed, p, s, save_bits)[0]


def keep_mask(input: torch.Tensor, p: float, generator) -> torch.Tensor:
    """The plain path's keep-mask under torch.compile: the draw eager code makes (``bernoulli_`` on a
    bool tensor like ``input``), as one opaque op, so that compilers do not replace the generator."""
    return draws.bernoulli(torch.empty_like(input, dtype=torch.bool), 1.0 - p, generator)
