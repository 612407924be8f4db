"""The dropout family's operators: alpha dropout, Gaussian dropout and DropBlock on numba kernels.

When the kernels (:mod:`dropkit.kernels.cpu_family`) replace the plain path: the same switch and
threshold as dropout's fast path (:func:`dropkit.set_fast_dropout`, its ``min_numel``), a CPU
float32/float64 strided tensor with at least ``min_numel`` elements (:func:`applies`). Under
``torch.func.vmap`` the plain path runs (it is batched as torch ops, with vmap's randomness modes); so
it does for forward-mode AD inside graphs, everywhere when numba cannot be imported, and for ONNX
export (the plain path exports as ONNX operators). Eager forward-mode AD and ``torch.func.grad`` /
``jvp`` take the kernels (the operators have ``jvp`` rules). The seed is one draw from torch's
generator, as for dropout (:mod:`dropkit.random.draws`).

Every operator is defined once with all of its rules (:mod:`dropkit.ops.registry`), and each is a
linear map of its first argument with a mask or noise fixed by a seed, so its backward and its jvp
apply the same map (its own or its ``*_mask`` twin's):

* ``dropkit::alpha_dropout(input, seed, p, a, b, c) -> (out, bits)``: kept units ``a * x + b``,
  dropped ones ``c``; and ``dropkit::alpha_mask(grad, bits, a)``: ``grad * (a or 0)``.
* ``dropkit::gaussian_mul(input, seed, std)``: ``input * (1 + std * z)`` for the Philox normals ``z``
  of ``seed``, its own backward (the noise regenerated from the seed: nothing per element is kept).
* ``dropkit::gaussian_apply(input, eps, std)``: the same with torch's normals ``eps`` (small tensors).
* ``dropkit::dropblock(input, seed, gamma, block, share_channels, scale_by_keep) -> (out, keep, s)``
  and ``dropkit::byte_mask(input, keep, s)``: ``x * (s if keep else 0)``, its backward.
* ``dropkit::row_affine(input, mult, offset)``: ``x * mult + offset`` with one value per
  ``(sample, channel)`` row: feature alpha dropout with torch's mask.
"""

from __future__ import annotations

import torch

from dropkit.ops import _torch, cpu
from dropkit.ops import switch as _fast
from dropkit.ops.registry import define, eager
from dropkit.random import draws

__all__ = [
    "NOISE_MIN_NUMEL",
    "alpha",
    "applies",
    "byte_mask",
    "dropblock",
    "dropblock_keep",
    "gaussian",
    "gaussian_torch_noise",
    "graph",
    "kernels",
    "row_affine",
]

# Alpha dropout's fast path starts at this many elements (or dropout's min_numel if larger): below
# it the op keeps torch's generator, so that alpha_dropout matches torch.nn.functional.alpha_dropout
# under the same seed on small tensors as before (the fixed cost of an autograd function is a
# large part of a call this small anyway).
NOISE_MIN_NUMEL = 1 << 15

_DTYPES = (torch.float32, torch.float64)
_module = None
_failed = False
_in_onnx_export = torch.onnx.is_in_onnx_export


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
    """Whether a family op runs in the graph lane (the library ops) for ``input``."""
    return not eager(input)


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
        and cpu.INSTALLED
    ):
        return False
    if graph(input):
        # the kernels are loaded when an op first runs; ONNX export takes the plain path; the ops
        # have no forward-mode AD formula in graphs; a DTensor takes the plain path (its shards
        # draw their slice of the global noise there)
        return not _in_onnx_export() and not _torch.forward_ad() and not _torch.is_dtensor(input)
    return (_torch.transforms() is None or not _torch.vmap_active()) and kernels() is not None


def _seed(input: torch.Tensor, generator):
    """The seed of one call: an opaque operator in graphs, a Python int eagerly (the same draw)."""
    if graph(input):
        return draws.graph_seed(input, generator)
    if _torch.transforms() is not None:  # torch.func.grad / jvp: an out-of-place draw, same value
        return int(draws.seed_tensor(generator))
    return draws.draw_seed(generator)


def _rounded(value: float, dtype: torch.dtype) -> float:
    return torch.tensor(value, dtype=dtype).item()


def _contiguous_fake(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


def _save(ctx, *items) -> None:
    """Tensors through save_for_backward; the rest (Python numbers) as ``ctx.values``."""
    ctx.save_for_backward(*(t for t in items if isinstance(t, torch.Tensor)))
    ctx.values = tuple(v for v in items if not isinstance(v, torch.Tensor))


def _linear_rules(name: str, apply_op, params: int):
    """setup_context, backward and jvp of an op ``out = L(input)`` whose every other argument is a
    constant of ``L``: backward and jvp apply ``apply_op`` (``L`` itself, or its ``*_mask`` twin)
    with the saved arguments. ``params``: how many arguments follow the input."""

    def setup(ctx, inputs, output):
        _save(ctx, *inputs[1:])
        ctx.args = inputs[1:]  # for jvp (no cycle: none has a grad_fn)
        ctx.kinds = tuple(isinstance(a, torch.Tensor) for a in inputs[1:])

    def rebuild(ctx):
        tensors, values = iter(ctx.saved_tensors), iter(ctx.values)
        return [next(tensors) if k else next(values) for k in ctx.kinds]

    def backward(ctx, grad):
        return apply_op()(grad, *rebuild(ctx)), *((None,) * params)

    def jvp(ctx, input_t, *_):
        return apply_op()(input_t, *ctx.args)

    setup.__qualname__ = backward.__qualname__ = f"{name} rules"
    return setup, backward, jvp


def _vmap_each(op, params: int):
    """The vmap rule of a linear op: the op on each sample (unbatched arguments shared)."""

    def rule(info, in_dims, *args):
        results = []
        for b in range(info.batch_size):
            sample = [
                a if d is None else a.select(d, b) for a, d in zip(args, in_dims, strict=False)
            ]
            results.append(op()(*sample))
        first = results[0]
        if isinstance(first, tuple):
            outs = tuple(torch.stack(o) for o in zip(*results, strict=True))
            return outs, (0,) * len(outs)
        return torch.stack(results), 0

    return rule


# ---- alpha dropout -------------------------------------------------------------------------------------
# a, b, c (a kept unit's multiplier and offset, the value of a dropped unit) come unrounded: the op
# rounds them to the data's dtype.


def _alpha_impl(
    input: torch.Tensor, seed: torch.Tensor, p: float, a: float, b: float, c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    ra, rb, rc = (_rounded(v, input.dtype) for v in (a, b, c))
    return kernels().alpha_forward(input.contiguous(), int(seed), p, ra, rb, rc)


def _alpha_fake(input, seed, p, a, b, c):
    return _contiguous_fake(input), input.new_empty((input.numel() + 7) // 8, dtype=torch.uint8)


def _alpha_mask_impl(grad: torch.Tensor, bits: torch.Tensor, a: float) -> torch.Tensor:
    return kernels().alpha_backward(grad.contiguous(), bits, _rounded(a, grad.dtype))


_mask_setup, _mask_backward, _mask_jvp = _linear_rules("alpha_mask", lambda: alpha_mask, 2)
alpha_mask = define(
    "alpha_mask",
    _alpha_mask_impl,
    fake=lambda grad, bits, a: _contiguous_fake(grad),
    setup_context=_mask_setup,
    backward=_mask_backward,
    jvp=_mask_jvp,
    vmap=_vmap_each(lambda: alpha_mask, 2),
)


def _alpha_setup(ctx, inputs, output):
    bits = output[1]
    ctx.mark_non_differentiable(bits)
    ctx.save_for_backward(bits)
    ctx.a = inputs[3]
    ctx.bits = bits  # for jvp (no cycle: bits has no grad_fn)


def _alpha_backward(ctx, grad_out, _grad_bits=None):
    (bits,) = ctx.saved_tensors
    return alpha_mask(grad_out, bits, ctx.a), None, None, None, None, None


def _alpha_jvp(ctx, input_t, *_):
    return alpha_mask(input_t, ctx.bits, ctx.a), None


alpha_dropout_op = define(
    "alpha_dropout",
    _alpha_impl,
    fake=_alpha_fake,
    setup_context=_alpha_setup,
    backward=_alpha_backward,
    jvp=_alpha_jvp,
    vmap=_vmap_each(lambda: alpha_dropout_op, 5),
)


def alpha(
    input: torch.Tensor, p: float, abc: tuple[float, float, float], generator
) -> torch.Tensor:
    """Alpha dropout through the kernel (``applies`` holds); ``abc``: the kept units' multiplier and
    offset and the dropped units' value, unrounded."""
    out, _ = alpha_dropout_op(input, _seed(input, generator), p, *abc)
    return out


def _row_affine_impl(input: torch.Tensor, mult: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    return kernels().row_affine(input, mult, offset)


def _row_shape(input: torch.Tensor) -> list[int]:
    return [*input.shape[:2], *([1] * (input.dim() - 2))]


def _row_setup(ctx, inputs, output):
    input, mult, _ = inputs
    ctx.save_for_backward(mult)
    ctx.shape = _row_shape(input)
    ctx.mult = mult  # for jvp (no cycle: mult has no grad_fn)


def _row_backward(ctx, grad):
    (mult,) = ctx.saved_tensors
    return grad * mult.view(ctx.shape), None, None


row_affine = define(
    "row_affine",
    _row_affine_impl,
    fake=lambda input, mult, offset: torch.empty_like(input),
    setup_context=_row_setup,
    backward=_row_backward,
    jvp=lambda ctx, input_t, *_: input_t * ctx.mult.view(ctx.shape),
)


# ---- Gaussian dropout ------------------------------------------------------------------------------------


def _gaussian_mul_impl(input: torch.Tensor, seed: torch.Tensor, std: float) -> torch.Tensor:
    return kernels().gaussian_mul(input.contiguous(), int(seed), std)


_g_setup, _g_backward, _g_jvp = _linear_rules("gaussian_mul", lambda: gaussian_mul, 2)
gaussian_mul = define(
    "gaussian_mul",
    _gaussian_mul_impl,
    fake=lambda input, seed, std: _contiguous_fake(input),
    setup_context=_g_setup,
    backward=_g_backward,
    jvp=_g_jvp,
    vmap=_vmap_each(lambda: gaussian_mul, 2),
)


def gaussian(input: torch.Tensor, std: float, generator) -> torch.Tensor:
    """Gaussian dropout (noise ``1 + std * z`` of one seed) through the kernel."""
    return gaussian_mul(input, _seed(input, generator), std)


def _gaussian_apply_impl(input: torch.Tensor, eps: torch.Tensor, std: float) -> torch.Tensor:
    # forms the noise 1 + std * eps in place over eps, then applies it
    return kernels().gaussian_apply(input, eps, std)


def _gaussian_apply_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])  # now the noise
    ctx.noise = inputs[1]  # for jvp (no cycle: the noise has no grad_fn)


def _gaussian_apply_backward(ctx, grad):
    (noise,) = ctx.saved_tensors
    return grad * noise, None, None


gaussian_apply = define(
    "gaussian_apply",
    _gaussian_apply_impl,
    fake=lambda input, eps, std: torch.empty_like(input),
    mutates_args=("eps",),
    eager_setup=_gaussian_apply_setup,
    backward=_gaussian_apply_backward,
    jvp=lambda ctx, input_t, *_: input_t * ctx.noise,
)


def gaussian_torch_noise(input: torch.Tensor, std: float, generator) -> torch.Tensor:
    """Gaussian dropout with torch's own normal draws (the plain path's noise) formed into the noise
    and applied in one pass (eager lane only)."""
    eps = draws.randn(input.shape, input.dtype, input.device, generator)
    return gaussian_apply.eager(input, eps, std)


# ---- DropBlock ---------------------------------------------------------------------------------------------


def dropblock_keep(shape, gamma: float, block: tuple[int, ...], share_channels: bool, seed: int):
    """DropBlock's byte keep-mask ``(N, C or 1, *size)`` for ``seed`` and the rescaling ``s`` (a
    Python float): ``count(M) / count_ones(M)`` in float64 (exact integer counts), 0 if all dropped."""
    n, c, size = shape[0], shape[1], tuple(shape[2:])
    maps = n * (1 if share_channels else c)
    if _torch.transforms() is None:
        keep, kept = kernels().dropblock_keep(maps, size, block, gamma, seed)
    else:  # torch.func.grad / jvp: a plain tensor for the kernel (the mask is no function of x)
        with _torch.outside_transforms():
            keep, kept = kernels().dropblock_keep(maps, size, block, gamma, seed)
    expand = c if share_channels else 1
    total, ones = keep.numel() * expand, kept * expand
    s = total / ones if ones > 0 else 0.0
    return keep.view(n, c // expand, *size), s


def _byte_mask_impl(input: torch.Tensor, keep: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    # s: a Python float eagerly, a 0-d float64 tensor in graphs (dropblock's third output)
    return kernels().apply_byte_mask(input.contiguous(), keep, float(s))


_b_setup, _b_backward, _b_jvp = _linear_rules("byte_mask", lambda: byte_mask, 2)
byte_mask = define(
    "byte_mask",
    _byte_mask_impl,
    fake=lambda input, keep, s: _contiguous_fake(input),
    setup_context=_b_setup,
    backward=_b_backward,
    jvp=_b_jvp,
    vmap=_vmap_each(lambda: byte_mask, 2),
)


def _dropblock_impl(
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


def _dropblock_fake(input, seed, gamma, block, share_channels, scale_by_keep):
    shape = (input.shape[0], 1 if share_channels else input.shape[1], *input.shape[2:])
    keep = input.new_empty(shape, dtype=torch.uint8)
    return _contiguous_fake(input), keep, input.new_empty((), dtype=torch.float64)


def _dropblock_setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(output[1], output[2])
    ctx.keep, ctx.s = output[1], output[2]  # for jvp (no cycle: neither has a grad_fn)


def _dropblock_backward(ctx, grad_out, _grad_keep=None, _grad_s=None):
    keep, s = ctx.saved_tensors
    return byte_mask(grad_out, keep, s), None, None, None, None, None


dropblock_op = define(
    "dropblock",
    _dropblock_impl,
    fake=_dropblock_fake,
    setup_context=_dropblock_setup,
    backward=_dropblock_backward,
    jvp=lambda ctx, x_t, *_: (byte_mask(x_t, ctx.keep, ctx.s), None, None),
)


def dropblock(
    input: torch.Tensor,
    gamma: float,
    block: tuple[int, ...],
    share_channels: bool,
    scale_by_keep: bool,
    generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DropBlock through the kernels: ``(out, byte keep-mask)``."""
    seed = _seed(input, generator)
    out, keep, _ = dropblock_op(input, seed, gamma, list(block), share_channels, scale_by_keep)
    return out, keep
