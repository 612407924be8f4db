"""The dropout family's fast path: when its CPU kernels (:mod:`dropkit.kernels.cpu_family`) replace
the plain path, and the operators through which graphs call them.

The same switch and threshold as dropout's fast path (:func:`dropkit.set_fast_dropout`, its
``min_numel``): a CPU float32/float64 tensor with at least ``min_numel`` elements. Under
``torch.func.vmap`` the plain path runs (it is batched as torch ops, with vmap's randomness modes);
so it does for forward-mode AD inside graphs, everywhere when numba cannot be imported, and for ONNX
export (the plain path exports as ONNX operators). Eager forward-mode AD and ``torch.func.grad`` /
``jvp`` take the kernels (the ops' autograd functions have ``jvp`` and ``setup_context``). The seed is one draw from torch's generator, as for dropout
(:func:`dropkit.functional.draw_seed`).

Two lanes, as for dropout (:mod:`dropkit.functional._ops`):

* Eager (a plain tensor, no compiler, no dispatch mode): each op's own autograd function calls the
  kernel with a seed drawn as a Python int; :func:`direct` says whether its backward may call the
  kernel itself (no transform, no ``create_graph``).
* Graphs (torch.compile, torch.export, fake tensors, tensor subclasses; :func:`graph`): the
  ``torch.library`` ops below, with fake kernels and autograd registrations, so that a compiled
  graph calls the same kernel with the same seed (a graph tensor from ``dropkit::philox_seed``) and
  draws what eager draws:

  * ``dropkit::alpha_dropout(input, seed, p, a, b, c) -> (out, bits)`` and
    ``dropkit::alpha_dropout_backward(grad, bits, a)`` (``grad * (a or 0)`` from the 1-bit mask);
  * ``dropkit::gaussian_mul(input, seed, std)``: ``input * noise`` for the noise of ``seed``, its
    own backward (the noise regenerated from the seed);
  * ``dropkit::dropblock(input, seed, gamma, block, share_channels, scale_by_keep) -> (out, keep, s)``
    and ``dropkit::apply_byte_mask(input, keep, s)`` (its backward, and its own).
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as _fwad

from dropkit.functional import _checkpoint_rng, _fast_cpu, _ops
from dropkit.functional import fast_dropout as _fast

__all__ = ["NOISE_MIN_NUMEL", "applies", "apply", "direct", "draw_seed", "graph", "kernels"]

# Alpha dropout's fast path starts at this many elements (or dropout's min_numel if larger): below
# it the op keeps torch's generator, so that alpha_dropout matches torch.nn.functional.alpha_dropout
# under the same seed on small tensors as before (the fixed cost of an autograd function is a
# large part of a call this small anyway).
NOISE_MIN_NUMEL = 1 << 15

_DTYPES = (torch.float32, torch.float64)
_module = None
_failed = False
_is_compiling = torch.compiler.is_compiling
_dispatch_modes = torch._C._len_torch_dispatch_stack
_interpreters = torch._C._functorch.peek_interpreter_stack
_in_onnx_export = torch.onnx.is_in_onnx_export
_VMAP = torch._C._functorch.TransformType.Vmap


def kernels():
    """:mod:`dropkit.kernels.cpu_family`, or None when numba cannot be imported."""
    global _module, _failed
    if _module is None and not _failed:
        try:
            from dropkit.kernels import cpu_family
        except ImportError:
            _failed = True
        else:
            _module = cpu_family
    return _module


def graph(input: torch.Tensor) -> bool:
    """Whether a family op runs in the graph lane (through the ops below) for ``input``."""
    # is_compiling first: dynamo cannot trace the dispatch-mode query
    return _is_compiling() or type(input) is not torch.Tensor or bool(_dispatch_modes())


def applies(input: torch.Tensor, numel: int | None = None) -> bool:
    """Whether a family op takes its kernel for ``input`` (the op checks its own ``p``); ``numel``:
    the size the kernel works on when it is not ``input``'s (DropConnect's N weight copies)."""
    settings = _fast._current()  # the calling thread's switch
    if not (
        settings.enabled
        and input.is_cpu
        and input.dtype in _DTYPES
        and input.layout == torch.strided
        and (input.numel() if numel is None else numel) >= settings.min_numel
        and _fast_cpu.INSTALLED
    ):
        return False
    if graph(input):
        # the kernels are loaded when an op first runs; ONNX export takes the plain path; the ops
        # have no forward-mode AD formula
        return _ops._LIBRARY_OPS and not _in_onnx_export() and _fwad._current_level < 0
    return (_interpreters() is None or _no_vmap()) and kernels() is not None


def _no_vmap() -> bool:
    # no vmap among the active torch.func transforms (grad and jvp keep the kernels)
    return all(i.key() != _VMAP for i in torch._C._functorch.get_interpreter_stack() or ())


def apply(fn: type[torch.autograd.Function], *args):
    """``fn.apply(*args)`` in the eager lane; outside torch.func the C++ apply, called directly
    (Function.apply binds the arguments with inspect.signature on every call when setup_context is
    defined: about 10 us; as dropout's eager lane, functional/_ops.py)."""
    if _interpreters() is None:
        return super(torch.autograd.Function, fn).apply(*args)
    return fn.apply(*args)


def direct(grad: torch.Tensor) -> bool:
    """Whether an eager backward may call the kernel on ``grad`` itself (else it calls its
    differentiable autograd function: ``create_graph=True`` or torch.func)."""
    return type(grad) is torch.Tensor and _interpreters() is None and not torch.is_grad_enabled()


def draw_seed(generator: torch.Generator | None) -> int:
    """One 63-bit seed from ``generator`` (or torch's global CPU generator); a draw from an explicit
    generator is replayed by torch.utils.checkpoint's recomputation (functional/_checkpoint_rng.py)."""
    if _interpreters() is not None:  # torch.func.grad / jvp: an out-of-place draw, the same value
        draw = lambda: int(_fast._seed_tensor(generator))  # noqa: E731
    else:
        draw = lambda: _fast._draw_seed(generator)  # noqa: E731
    return draw() if generator is None else _checkpoint_rng.draw(generator, draw)


def _graph_seed(input: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # the draw draw_seed makes, as an opaque op of the graph (dropout's dropkit::philox_seed)
    return _ops._philox_seed(input, _ops._generator_key(generator))


def _rounded(value: float, dtype: torch.dtype) -> float:
    return torch.tensor(value, dtype=dtype).item()


def dropblock_keep(shape, gamma: float, block: tuple[int, ...], share_channels: bool, seed: int):
    """DropBlock's byte keep-mask ``(N, C or 1, *size)`` for ``seed`` and the rescaling ``s`` (a
    Python float): ``count(M) / count_ones(M)`` in float64 (exact integer counts), 0 if all dropped."""
    n, c, size = shape[0], shape[1], tuple(shape[2:])
    maps = n * (1 if share_channels else c)
    if _interpreters() is None:
        keep, kept = kernels().dropblock_keep(maps, size, block, gamma, seed)
    else:  # torch.func.grad / jvp: a plain tensor for the kernel (the mask is no function of x)
        from torch._functorch.pyfunctorch import temporarily_clear_interpreter_stack

        with temporarily_clear_interpreter_stack():
            keep, kept = kernels().dropblock_keep(maps, size, block, gamma, seed)
    expand = c if share_channels else 1
    total, ones = keep.numel() * expand, kept * expand
    s = total / ones if ones > 0 else 0.0
    return keep.view(n, c // expand, *size), s


def _empty_contiguous(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


if _ops._LIBRARY_OPS:
    # a, b, c (alpha dropout's multiplier of a kept unit, its offset, the value of a dropped
    # unit) come unrounded: the op rounds them to the data's dtype, as the eager lane does
    @torch.library.custom_op("dropkit::alpha_dropout", mutates_args=())
    def _alpha_dropout(
        input: torch.Tensor, seed: torch.Tensor, p: float, a: float, b: float, c: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ra, rb, rc = (_rounded(v, input.dtype) for v in (a, b, c))
        return kernels().alpha_forward(input.contiguous(), int(seed), p, ra, rb, rc)

    @_alpha_dropout.register_fake
    def _(input, seed, p, a, b, c):
        return _empty_contiguous(input), input.new_empty(
            (input.numel() + 7) // 8, dtype=torch.uint8
        )

    @torch.library.custom_op("dropkit::alpha_dropout_backward", mutates_args=())
    def _alpha_dropout_backward(grad: torch.Tensor, bits: torch.Tensor, a: float) -> torch.Tensor:
        return kernels().alpha_backward(grad, bits, _rounded(a, grad.dtype))

    @_alpha_dropout_backward.register_fake
    def _(grad, bits, a):
        return _empty_contiguous(grad)

    def _setup_alpha(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.a = inputs[3]

    def _alpha_backward(ctx, grad_out, _grad_bits):
        (bits,) = ctx.saved_tensors
        return _alpha_dropout_backward(grad_out, bits, ctx.a), None, None, None, None, None

    def _setup_alpha_grad(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.a = inputs[2]

    def _alpha_grad_backward(ctx, gg):
        (bits,) = ctx.saved_tensors
        return _alpha_dropout_backward(gg, bits, ctx.a), None, None

    _alpha_dropout.register_autograd(_alpha_backward, setup_context=_setup_alpha)
    _alpha_dropout_backward.register_autograd(_alpha_grad_backward, setup_context=_setup_alpha_grad)

    @torch.library.custom_op("dropkit::gaussian_mul", mutates_args=())
    def _gaussian_mul(input: torch.Tensor, seed: torch.Tensor, std: float) -> torch.Tensor:
        return kernels().gaussian_mul(input.contiguous(), int(seed), std)

    @_gaussian_mul.register_fake
    def _(input, seed, std):
        return _empty_contiguous(input)

    def _setup_gaussian(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.std = inputs[2]

    def _gaussian_backward(ctx, grad):
        (seed,) = ctx.saved_tensors
        return _gaussian_mul(grad, seed, ctx.std), None, None

    _gaussian_mul.register_autograd(_gaussian_backward, setup_context=_setup_gaussian)

    @torch.library.custom_op("dropkit::apply_byte_mask", mutates_args=())
    def _apply_byte_mask(input: torch.Tensor, keep: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return kernels().apply_byte_mask(input.contiguous(), keep, float(s))

    @_apply_byte_mask.register_fake
    def _(input, keep, s):
        return _empty_contiguous(input)

    @torch.library.custom_op("dropkit::dropblock", mutates_args=())
    def _dropblock(
        input: torch.Tensor,
        seed: torch.Tensor,
        gamma: float,
        block: list[int],
        share_channels: bool,
        scale_by_keep: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep, s = dropblock_keep(input.shape, gamma, tuple(block), share_channels, int(seed))
        s = s if scale_by_keep else 1.0
        out = kernels().apply_byte_mask(input.contiguous(), keep, s)
        return out, keep, torch.tensor(s, dtype=torch.float64)

    @_dropblock.register_fake
    def _(input, seed, gamma, block, share_channels, scale_by_keep):
        shape = (input.shape[0], 1 if share_channels else input.shape[1], *input.shape[2:])
        keep = input.new_empty(shape, dtype=torch.uint8)
        return _empty_contiguous(input), keep, input.new_empty((), dtype=torch.float64)

    def _setup_byte_mask(ctx, inputs, output):
        ctx.save_for_backward(inputs[1], inputs[2])

    def _byte_mask_backward(ctx, grad):
        keep, s = ctx.saved_tensors
        return _apply_byte_mask(grad, keep, s), None, None

    def _setup_dropblock(ctx, inputs, output):
        ctx.save_for_backward(output[1], output[2])

    def _dropblock_backward(ctx, grad_out, _grad_keep, _grad_s):
        keep, s = ctx.saved_tensors
        return _apply_byte_mask(grad_out, keep, s), None, None, None, None, None

    _apply_byte_mask.register_autograd(_byte_mask_backward, setup_context=_setup_byte_mask)
    _dropblock.register_autograd(_dropblock_backward, setup_context=_setup_dropblock)


def alpha_dropout(
    input: torch.Tensor, p: float, abc: tuple[float, float, float], generator
) -> torch.Tensor:
    """Alpha dropout through the kernel in the graph lane (``applies`` and ``graph`` hold); ``abc``:
    the kept units' multiplier and offset and the dropped units' value, unrounded."""
    out, _ = _alpha_dropout(input, _graph_seed(input, generator), p, *abc)
    return out


def gaussian_dropout(
    input: torch.Tensor, std: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Gaussian dropout (noise ``1 + std * z`` of one seed) in the graph lane."""
    return _gaussian_mul(input, _graph_seed(input, generator), std)


def dropblock(
    input: torch.Tensor,
    gamma: float,
    block: tuple[int, ...],
    share_channels: bool,
    scale_by_keep: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DropBlock in the graph lane: ``(out, byte keep-mask)``."""
    seed = _graph_seed(input, generator)
    out, keep, _ = _dropblock(input, seed, gamma, list(block), share_channels, scale_by_keep)
    return out, keep
