"""The fast path's one home: the operator, its registrations, and the choice of a backend.

``dropout`` calls :func:`dropout` here (and ``dropout_add`` / ``bias_dropout_add`` call
:func:`residual_dropout`), which returns None where the fast path does not apply; nothing here
calls back up. Below this module
are the backends, one per device type, with one interface (see :mod:`dropkit.functional._fast_cpu`):
:mod:`~dropkit.functional._fast_cpu` (numba) and :mod:`~dropkit.functional._fast_cuda` (Triton);
and :mod:`~dropkit.functional.fast_dropout` (the switch, the seeds, memory order).

The operator, defined once for every backend:

* ``dropkit::philox_dropout(input, seed, p, s, save_bits) -> (out, bits)``: ``out = input * m * s``
  for the Philox mask ``m`` of ``seed``; ``bits`` is the packed mask (empty with ``save_bits=False``).
* ``dropkit::philox_dropout_(input!, seed, p, s)``: the same, in place (``mutates_args``).
* ``dropkit::philox_dropout_backward(grad, bits, seed, p, s)``: ``grad * m * s``.
* ``dropkit::philox_seed(like, generator_key)``: one seed draw, from the generator behind
  ``generator_key`` (0: the default generator of ``like``'s device), opaque to compilers, so that
  compiled code draws exactly the seeds eager code draws.

Two lanes run it:

* Eager (a plain tensor, no compiler, no dispatch mode): the autograd functions below, called
  directly. They are the operator's autograd formula, with ``setup_context``, ``jvp`` (forward-mode
  AD: the tangent goes through the same mask) and ``vmap`` (one kernel call per sample), so
  autograd, torch.func and forward AD all work, at the cost of one ``Function.apply`` per call.
  In place, ``mark_dirty`` makes autograd bump the version counter and refuse what torch refuses
  (leaves that require grad, inference tensors outside ``inference_mode``).
* Graphs (torch.compile, torch.export, fake tensors, tensor subclasses): the ``torch.library`` ops,
  with fake kernels and autograd registrations, so tracing sees one opaque call per dropout.

ONNX export takes the plain path (``applies`` is False there), which exports as ONNX ops; see
docs/fast_dropout.md for the whole table of PyTorch features.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch

from dropkit.functional import _checkpoint_rng, _fast_cpu, _fast_cuda
from dropkit.functional import fast_dropout as _fast

__all__: list[str] = []  # private: reached through dropout, dropout_add and bias_dropout_add

_DTYPES = _fast._DTYPES
_interpreters = torch._C._functorch.peek_interpreter_stack
_dispatch_modes = torch._C._len_torch_dispatch_stack
_is_compiling = torch.compiler.is_compiling
_in_onnx_export = torch.onnx.is_in_onnx_export
_jit_tracing = torch._C._get_tracing_state
_BACKENDS = {"cpu": _fast_cpu, "cuda": _fast_cuda}


def _backend_for(device_type: str):
    return _BACKENDS[device_type]


def applies(input: torch.Tensor, p: float) -> bool:
    """Whether ``dropout`` takes the fast path for ``input`` (the caller checked the arguments)."""
    # Cheapest tests first: this runs on every call of dropout.
    settings = _fast._current()
    if not (
        settings.enabled
        and 0.0 < p < 1.0
        and input.dtype in _DTYPES
        and input.numel() >= settings.min_numel
    ):
        return False
    if input.is_cpu:
        backend = _fast_cpu
    elif input.is_cuda:
        backend = _fast_cuda
    else:
        return False
    if _is_compiling():
        # the kernels are loaded when the op first runs; ONNX export takes the plain path, which
        # exports as ONNX operators
        return backend.INSTALLED and not _in_onnx_export()
    if _jit_tracing():  # torch.jit.trace (and the TorchScript-based ONNX exporter): plain path
        return False
    return backend._kernels_module is not None or backend.available()


def _eager(input: torch.Tensor) -> bool:
    # is_compiling first: dynamo cannot trace the dispatch-mode query
    return not _is_compiling() and type(input) is torch.Tensor and not _dispatch_modes()


# ---- the eager lane: autograd functions ------------------------------------------------------------


def _vmap_loop(fn, info, in_dims, args):
    """``fn`` on each sample of a batch (an input without a batch dim is shared by all samples);
    returns the outputs stacked along dim 0."""
    results = []
    for b in range(info.batch_size):
        sample = [a if d is None else a.select(d, b) for a, d in zip(args, in_dims, strict=True)]
        results.append(fn(*sample))
    outs = tuple(torch.stack(o) for o in zip(*results, strict=True))
    return outs, (0,) * len(outs)


class _ApplyMask(torch.autograd.Function):
    """``grad -> grad * m * s`` for the mask of a seed: dropout's backward, through the backend.
    Linear in its input with the same mask, so it is its own backward and its own jvp (gradients of
    any order work)."""

    @staticmethod
    def forward(grad, bits, seed, p, s, perm, backend):
        return backend.backward(grad, bits, seed, p, s, perm)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[1:]

    @staticmethod
    def backward(ctx, gg):
        return _ApplyMask.apply(gg, *ctx.args), None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, grad_t, *_):
        return _ApplyMask.apply(grad_t, *ctx.args)

    @staticmethod
    def vmap(info, in_dims, grad, bits, seed, p, s, perm, backend):
        def one(g, b, sd):
            return (_ApplyMask.apply(g, b, sd, p, s, perm, backend),)

        outs, dims = _vmap_loop(one, info, in_dims[:3], (grad, bits, seed))
        return outs[0], dims[0]


def _plain(t: torch.Tensor) -> bool:
    return type(t) is torch.Tensor and _interpreters() is None


def _mask_grad(grad, bits, seed, p, s, perm, backend) -> torch.Tensor:
    if not _plain(grad):  # torch.func
        return _ApplyMask.apply(grad, bits, seed, p, s, perm, backend)
    if torch.is_grad_enabled():  # create_graph=True: keep the backward differentiable
        return _mask_apply(grad, bits, seed, p, s, perm, backend)
    return backend.backward(grad, bits, seed, p, s, perm)


# The packed mask is not an output of the functions below (a second output costs autograd more work
# on every call): ``forward`` puts it in ``box``, a fresh _Box passed as the last argument, and
# ``setup_context`` takes it from there. (Not a list: torch.func would copy a list, as a pytree.)


class _Box:
    __slots__ = ("bits",)


class _Dropout(torch.autograd.Function):
    """``philox_dropout(input, seed, p, s, save_bits)`` in the eager lane; returns ``out``."""

    @staticmethod
    def forward(input, seed, p, s, save_bits, backend, box):
        out, bits = backend.forward(input, seed, p, s, save_bits)
        box.bits = bits
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, seed, p, s, save_bits, backend, box = inputs
        ctx.args = (seed, p, s, _fast._memory_order(input), backend)
        # no bits under vmap (the rule below): backward regenerates each sample's mask from its seed
        bits = getattr(box, "bits", None) if save_bits else None
        if bits is not None:
            ctx.save_for_backward(bits)
        ctx.bits = bits  # for jvp (no cycle: bits has no grad_fn)

    @staticmethod
    def backward(ctx, grad):
        bits = ctx.saved_tensors[0] if ctx.bits is not None else None
        seed, p, s, perm, backend = ctx.args
        if type(grad) is torch.Tensor and _interpreters() is None and not torch.is_grad_enabled():
            gin = backend.backward(grad, bits, seed, p, s, perm)  # the common case, directly
        else:
            gin = _mask_grad(grad, bits, seed, p, s, perm, backend)
        return gin, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, input_t, *_):
        return _ApplyMask.apply(input_t, ctx.bits, *ctx.args)

    @staticmethod
    def vmap(info, in_dims, input, seed, p, s, save_bits, backend, box):
        def one(x, sd):
            return (_Dropout.apply(x, sd, p, s, save_bits, backend, _Box()),)

        outs, dims = _vmap_loop(one, info, in_dims[:2], (input, seed))
        return outs[0], dims[0]


class _DropoutInplace(torch.autograd.Function):
    """``input *= m * s`` in the eager lane; ``mark_dirty`` tells autograd about the write."""

    @staticmethod
    def forward(input, seed, p, s, save_bits, backend, box):
        out, bits = backend.forward(input, seed, p, s, save_bits, inplace=True)
        box.bits = bits
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        _Dropout.setup_context(ctx, inputs, output)

    backward = _Dropout.backward

    @staticmethod
    def jvp(ctx, input_t, *_):
        # in place, as the forward: the tangent of the input becomes that of the output
        return input_t.copy_(_ApplyMask.apply(input_t, ctx.bits, *ctx.args))

    @staticmethod
    def vmap(info, in_dims, input, seed, p, s, save_bits, backend, box):
        if in_dims[0] is None:
            raise RuntimeError(
                "dropkit.functional.dropout(inplace=True) under torch.func.vmap: the input has no "
                "batch dimension, so it cannot hold a different mask per sample; use inplace=False"
            )
        for b in range(info.batch_size):
            sd = seed if in_dims[1] is None else seed.select(in_dims[1], b)
            _DropoutInplace.apply(input.select(in_dims[0], b), sd, p, s, save_bits, backend, _Box())
        return input, in_dims[0]


class _ResidualDropout(torch.autograd.Function):
    """``dropout(input [+ bias]) + residual`` in one pass (the backends' fused kernels)."""

    @staticmethod
    def forward(input, bias, residual, seed, p, s, save_bits, backend, box):
        out, bits = backend.residual(input, bias, residual, seed, p, s, save_bits)
        box.bits = bits
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, bias, _, seed, p, s, save_bits, backend, box = inputs
        ctx.args = (seed, p, s, None, backend)
        ctx.shape = input.shape
        ctx.has_bias = bias is not None
        ctx.save_bits = save_bits
        if save_bits:
            ctx.save_for_backward(box.bits)
        ctx.bits = box.bits if save_bits else None  # for jvp (no cycle: bits has no grad_fn)

    @staticmethod
    def backward(ctx, grad):
        bits = ctx.saved_tensors[0] if ctx.save_bits else None
        grad_x = _mask_grad(grad, bits, *ctx.args)
        # bias was broadcast along all leading dims: its gradient sums them. (rows, H) -> (H,)
        grad_bias = grad_x.reshape(-1, grad_x.shape[-1]).sum(0) if ctx.has_bias else None
        return grad_x, grad_bias, grad, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, input_t, bias_t, residual_t, *_):
        # out = m * s * (input + bias) + residual: the tangents go through the same mask
        t = input_t
        if bias_t is not None:
            t = bias_t.expand(ctx.shape) if t is None else t + bias_t
        out = None if t is None else _ApplyMask.apply(t.contiguous(), ctx.bits, *ctx.args)
        if residual_t is not None:
            out = residual_t if out is None else out + residual_t
        return out


# Function.apply binds the arguments with inspect.signature on every call when setup_context is
# defined (about 10 us), then calls the C++ apply unless a torch.func transform is active. Outside
# transforms the eager lane calls the C++ apply itself (all arguments are passed, none defaulted).
_mask_apply = super(torch.autograd.Function, _ApplyMask).apply
_dropout_apply = super(torch.autograd.Function, _Dropout).apply
_inplace_apply = super(torch.autograd.Function, _DropoutInplace).apply
_residual_apply = super(torch.autograd.Function, _ResidualDropout).apply


# ---- the graph lane: torch.library ops ---------------------------------------------------------------

_SEED_END = 2**63 - 1
# Generators named in compiled graphs, by key (their id): the key is a constant of the graph.
_generators: weakref.WeakValueDictionary[int, torch.Generator] = weakref.WeakValueDictionary()


def _generator_key(generator: torch.Generator | None) -> int:
    # Run (not traced) by dynamo; its result is a constant of the graph.
    if generator is None:
        return 0
    _generators[id(generator)] = generator
    return id(generator)


# What torch._dynamo.assume_constant_result does, without importing torch._dynamo (seconds, and it
# imports triton) when dropkit is imported.
_generator_key._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _generator_of(key: int) -> torch.Generator | None:
    if key == 0:
        return None
    try:
        return _generators[key]
    except KeyError:
        raise RuntimeError(
            "dropkit::philox_seed: the torch.Generator this graph was compiled with no longer "
            "exists; compile again with a live generator (or pass generator=None)"
        ) from None


def _with_layout(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # The layout the fake promises (empty_like's): copy where a backend returned another one.
    # empty_like keeps the strides of a contiguous ``like``: the common case needs no allocation
    # to compare with.
    if like.is_contiguous() and out.stride() == like.stride():
        return out
    expected = torch.empty_like(like)
    return out if out.stride() == expected.stride() else expected.copy_(out)


# torch.library.custom_op and register_fake came with torch 2.4; with torch 2.3 there are no graph
# ops, and under torch.compile / torch.export dropout takes the plain path.
_LIBRARY_OPS = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake")

if _LIBRARY_OPS:

    @torch.library.custom_op(
        "dropkit::philox_seed", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
    )
    def _philox_seed(like: torch.Tensor, generator_key: int) -> torch.Tensor:
        generator = _generator_of(generator_key)
        if like.is_cuda:
            return _fast_cuda.draw_seed(generator, like.device).reshape(())
        return torch.tensor(_fast._draw_seed(generator), dtype=torch.int64)

    @_philox_seed.register_fake
    def _(like, generator_key):
        return like.new_empty((), dtype=torch.int64)

    @torch.library.custom_op("dropkit::philox_dropout", mutates_args=())
    def _philox_dropout(
        input: torch.Tensor, seed: torch.Tensor, p: float, s: float, save_bits: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, bits = _backend_for(input.device.type).forward(input, seed, p, s, save_bits)
        return _with_layout(out, input), bits

    @_philox_dropout.register_fake
    def _(input, seed, p, s, save_bits):
        nbytes = (input.numel() + 7) // 8 if save_bits else 0
        return torch.empty_like(input), input.new_empty(nbytes, dtype=torch.uint8)

    @torch.library.custom_op("dropkit::philox_dropout_", mutates_args=("input",))
    def _philox_dropout_(input: torch.Tensor, seed: torch.Tensor, p: float, s: float) -> None:
        _backend_for(input.device.type).forward(input, seed, p, s, False, inplace=True)

    @_philox_dropout_.register_fake
    def _(input, seed, p, s):
        return None

    @torch.library.custom_op("dropkit::philox_dropout_backward", mutates_args=())
    def _philox_dropout_backward(
        grad: torch.Tensor,
        bits: torch.Tensor,
        seed: torch.Tensor,
        p: float,
        s: float,
        perm: Optional[list[int]] = None,  # noqa: UP045 (torch.library's schema inference)
        input: Optional[torch.Tensor] = None,  # noqa: UP045
    ) -> torch.Tensor:
        # perm: the forward input's memory order (None: contiguous), which indexes the mask; the
        # gradient may arrive in another layout. input: the forward's input where its producer
        # keeps it anyway (see _setup_dropout); the kernels do not read it.
        backend = _backend_for(grad.device.type)
        order = tuple(perm) if perm else None
        return _with_layout(backend.backward(grad, bits, seed, p, s, order), grad)

    @_philox_dropout_backward.register_fake
    def _(grad, bits, seed, p, s, perm=None, input=None):
        return torch.empty_like(grad)

    def _perm_of(t: torch.Tensor) -> list[int] | None:
        order = _fast._memory_order(t)
        return None if order is None else list(order)

    def _kept_by_producer(t: torch.Tensor) -> bool:
        # Whether the autograd node that made ``t`` saves its own result (ReLU, softmax, sigmoid,
        # tanh, ...): then ``t`` stays alive for backward whatever dropout saves.
        fn = t.grad_fn
        return fn is not None and hasattr(type(fn), "_saved_result")

    def _setup_dropout(ctx, inputs, output):
        input, seed, p, s, _ = inputs
        # The input goes to the backward op (which does not read it) when its producer keeps it
        # anyway, so saving it costs no memory. Under torch.compile this decides what the graph
        # keeps for the producer's backward: without it, AOT autograd's partitioner sees that
        # ReLU's output is needed by nothing but ReLU's backward and saves the bool mask
        # ``relu(x) <= 0`` instead, whose vectorised CPU code inductor makes very slow on AVX2
        # machines (about 1.7 ms per 128x1024 tensor, docs/benchmarks.md); with the input saved,
        # ReLU's backward reads it, as in eager mode and in the same model without dropout.
        kept = (input,) if _kept_by_producer(input) else ()
        ctx.save_for_backward(output[1], seed, *kept)
        ctx.p, ctx.s, ctx.perm = p, s, _perm_of(input)

    def _dropout_backward(ctx, grad_out, _grad_bits):
        bits, seed, *kept = ctx.saved_tensors
        gin = _philox_dropout_backward(
            grad_out, bits, seed, ctx.p, ctx.s, ctx.perm, kept[0] if kept else None
        )
        return gin, None, None, None, None

    def _setup_mask(ctx, inputs, output):
        _, bits, seed, p, s, perm, _ = inputs
        ctx.save_for_backward(bits, seed)
        ctx.p, ctx.s, ctx.perm = p, s, perm

    def _mask_backward(ctx, gg):
        bits, seed = ctx.saved_tensors
        gin = _philox_dropout_backward(gg, bits, seed, ctx.p, ctx.s, ctx.perm)
        return gin, None, None, None, None, None, None

    _philox_dropout.register_autograd(_dropout_backward, setup_context=_setup_dropout)
    _philox_dropout_backward.register_autograd(_mask_backward, setup_context=_setup_mask)

    @torch.library.custom_op(
        "dropkit::bernoulli_keep", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
    )
    def _bernoulli_keep(like: torch.Tensor, p: float, generator_key: int) -> torch.Tensor:
        mask = torch.empty_like(like, dtype=torch.bool)
        return mask.bernoulli_(1.0 - p, generator=_generator_of(generator_key))

    @_bernoulli_keep.register_fake
    def _(like, p, generator_key):
        return torch.empty_like(like, dtype=torch.bool)


def bernoulli_keep(input: torch.Tensor, p: float, generator: torch.Generator | None):
    """The plain path's keep-mask under torch.compile: the draw eager code makes (``bernoulli_`` on a
    bool tensor like ``input``), as one opaque op, so that compilers do not replace the generator."""
    if not _LIBRARY_OPS:
        return torch.empty_like(input, dtype=torch.bool).bernoulli_(1.0 - p, generator=generator)
    return _bernoulli_keep(input, p, _generator_key(generator))


def _dropout_graph(input, p, s, inplace, generator, save_bits) -> torch.Tensor | None:
    if not _LIBRARY_OPS:
        return None  # the plain path
    seed = _philox_seed(input, _generator_key(generator))
    if inplace and not (torch.is_grad_enabled() and input.requires_grad):
        _philox_dropout_(input, seed, p, s)
        return input
    out, _ = _philox_dropout(input, seed, p, s, save_bits)
    return input.copy_(out) if inplace else out


# ---- entry points (the public ops have checked the arguments and that the path applies) ------------


def _seed(backend, generator: torch.Generator | None, device: torch.device):
    if _interpreters() is not None:
        # torch.func: an out-of-place draw, so vmap's randomness modes apply (one seed per sample
        # for "different", one for all for "same", torch's error for "error")
        if backend is _fast_cuda:
            return backend.draw_seed(generator, device)
        return _fast._seed_tensor(generator)
    if generator is None:
        return backend.draw_seed(None, device)
    # an explicit generator: checkpoint's recomputation replays the forward's draw
    return _checkpoint_rng.draw(generator, lambda: backend.draw_seed(generator, device))


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


def dropout(
    input: torch.Tensor,
    p: float,
    s: float,
    inplace: bool,
    generator: torch.Generator | None,
    backend=None,
) -> torch.Tensor | None:
    """Dropout through the kernels, or None where the fast path does not apply (the caller then
    takes the plain path). ``s`` is the keep multiplier (1/(1-p) or 1); the caller has checked the
    arguments. ``backend``: given by tests, to run the Triton kernels on CPU tensors in Triton's
    interpreter whatever the settings (graphs always use the device's backend)."""
    # The same tests as applies(), written out: this runs on every call of dropout.
    settings = _fast._current()
    save_bits = settings.save == "bits"
    if backend is None:
        if not (
            settings.enabled
            and 0.0 < p < 1.0
            and input.dtype in _DTYPES
            and input.numel() >= settings.min_numel
        ):
            return None
        if input.is_cpu:
            backend = _fast_cpu
        elif input.is_cuda:
            backend = _fast_cuda
        else:
            return None
        if _is_compiling():
            if not backend.INSTALLED or _in_onnx_export():
                return None
            return _dropout_graph(input, p, s, inplace, generator, save_bits)
        if _jit_tracing() or not (backend._kernels_module is not None or backend.available()):
            return None
    elif _is_compiling():
        return _dropout_graph(input, p, s, inplace, generator, save_bits)
    if type(input) is not torch.Tensor or _dispatch_modes():  # fake tensors, subclasses, modes
        return _dropout_graph(input, p, s, inplace, generator, save_bits)
    seed = _seed(backend, generator, input.device)
    plain = _interpreters() is None
    if inplace:
        _check_inplace(input)
        save_bits = save_bits and torch.is_grad_enabled() and input.requires_grad
        apply = _inplace_apply if plain else _DropoutInplace.apply
    else:
        apply = _dropout_apply if plain else _Dropout.apply
    return apply(input, seed, p, s, save_bits, backend, _Box())


def residual_dropout(
    input: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    p: float,
    s: float,
    generator: torch.Generator | None,
    backend=None,
) -> torch.Tensor | None:
    """``dropout(input [+ bias]) + residual`` through a fused kernel, or None where none applies
    (the caller then runs the composition, whose ``dropout`` may take the fast path by itself)."""
    if backend is None:
        if not (_eager(input) and _interpreters() is None):
            return None
        backend = _fast_cuda if input.is_cuda else _fast_cpu
    if not (backend.fused_applies(input, bias, residual) and applies(input, p)):
        return None
    save_bits = _fast._current().save == "bits"
    seed = _seed(backend, generator, input.device)
    return _residual_apply(input, bias, residual, seed, p, s, save_bits, backend, _Box())
