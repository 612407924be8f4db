"""DropConnect: drop weights (connections), not activations.

Wan, Zeiler, Zhang, LeCun & Fergus, "Regularization of Neural Networks using DropConnect", ICML 2013.
In training each weight of a layer is zeroed with probability ``p`` (survivors scaled by 1/(1-p) in
the inverted convention), then the layer runs as usual. One mask per forward call (per batch) is the
default; ``per_sample=True`` draws an independent weight mask for every sample, as in the paper, at
the cost of a weight tensor per sample. Eval uses the mean weights: ``W`` (inverted) or ``(1-p) W``
(classic). (The paper's eval instead moment-matches a Gaussian; dropkit keeps the mean-network rule
every other dropout variant uses.)

Sampling is separate from applying: :func:`dropconnect_mask` draws the weight mask,
:func:`apply_dropconnect_linear` / :func:`apply_dropconnect_conv` run the layer with it.

Per-sample masks of at least 32768 weights in all (CPU, float32/float64, the fast-dropout switch on)
are drawn by dropout's Philox kernel on the N weight copies (the mask
:func:`dropkit.functional.fast_keep_mask` gives for shape ``(N, *weight.shape)`` and the seed
:func:`dropkit.functional.draw_seed` draws); the layer's values given that mask are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_rank,
    _check_scale,
)
from dropkit.functional.dropout import (
    _apply,
    _bernoulli_keep,
    _check_mask,
    _factor,
    dropout,
    sample_mask,
)
from dropkit.ops import family as _fast_family
from dropkit.ops import sharding as _sharding

__all__ = [
    "dropconnect_mask",
    "apply_dropconnect_linear",
    "apply_dropconnect_conv",
    "dropconnect_linear",
    "dropconnect_conv",
]

_CONV = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def dropconnect_mask(
    weight_shape: Sequence[int],
    p: float,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A keep-mask for a weight: shape ``weight_shape``, or ``(batch_size, *weight_shape)``."""
    shape = tuple(weight_shape) if batch_size is None else (batch_size, *weight_shape)
    return sample_mask(shape, p, device=device, generator=generator)


def _weight_mask(input, weight, batch, p, generator):
    # dropconnect_mask's draw, made with input.new_empty so that under torch.func.vmap over the
    # input each sample gets its own weight mask (randomness="different")
    shape = tuple(weight.shape) if batch is None else (batch, *weight.shape)
    mask = input.new_empty(shape, dtype=torch.bool, device=weight.device)
    return _bernoulli_keep(mask, p, generator)


def _masked_weight(weight, mask, p, scale):
    # (out, in, *k) per batch or (N, out, in, *k) per sample; exactly apply_mask's arithmetic.
    return _apply(weight, mask, p, scale, False)


def _fast_per_sample(weight: torch.Tensor, batch: int | None, p: float) -> bool:
    # per-sample masks of at least NOISE_MIN_NUMEL weights: dropout's Philox kernel draws them
    # (smaller ones keep torch's generator and the masks dropconnect_mask draws)
    if batch is None or not 0.0 < p < 1.0:
        return False
    numel = batch * weight.numel()
    return numel >= _fast_family.NOISE_MIN_NUMEL and _fast_family.applies(weight, numel)


def _fast_weights(weight, batch, p, scale, generator):
    # (N, out, in, *k): dropout of N copies of the weight, the mask that
    # fast_keep_mask((N, *weight.shape), p, seed) gives; the plain path's values given that mask
    # (contiguous first: the kernel works in memory order, and the expanded view's puts N last)
    copies = weight.expand(batch, *weight.shape).contiguous()
    fn = _ContiguousGrad if _fast_family.graph(copies) else _ContiguousGradJvp
    return fn.apply(dropout(copies, p, scale=scale, generator=generator))


class _ContiguousGrad(torch.autograd.Function):
    # Identity whose backward hands on a contiguous gradient. The product's gradient with respect
    # to the weight copies can arrive transposed, and dropout's fast backward (main at 1c55050)
    # applies its mask in the gradient's memory order rather than the forward's.
    @staticmethod
    def forward(x):
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


class _ContiguousGradJvp(_ContiguousGrad):
    # with forward-mode AD, for eager mode (dynamo does not trace an autograd function with a jvp)
    @staticmethod
    def jvp(ctx, x_t):
        return x_t.view_as(x_t)


def _eval_weight(weight: torch.Tensor, p: float, scale: str) -> torch.Tensor:
    return weight if scale == "inverted" or p == 0.0 else weight * _factor(1.0 - p, weight)


def _linear(input, weight, bias):
    if weight.dim() == 2:
        return F.linear(input, weight, bias)
    # per-sample weights (N, out, in); input (N, *, in) -> (N, *, out)
    out = torch.einsum("n...i,noi->n...o", input, weight)
    return out if bias is None else out + bias


def _check_linear_args(input, weight, bias, op):
    _check_float_tensor(input, op)
    _check_float_tensor(weight, op, "weight")
    _check_rank(weight, (2,), op, "a Linear weight is (out_features, in_features)", "weight")
    if bias is not None:
        _check_float_tensor(bias, op, "bias")


@_sharding.rule()
def apply_dropconnect_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor,
    p: float,
    *,
    scale: str = "inverted",
) -> torch.Tensor:
    """``linear(input, weight * mask * s, bias)``; a ``(N, out, in)`` mask gives per-sample weights.

    ``s = 1/(1-p)`` (inverted) or 1 (classic). With a per-sample mask the input must be
    ``(N, *, in)``.
    """
    op = "apply_dropconnect_linear"
    _check_linear_args(input, weight, bias, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    if isinstance(mask, torch.Tensor) and mask.dim() == 3:
        _check_mask(mask, weight.expand(mask.shape[0], *weight.shape), op)
        if input.dim() < 2 or input.shape[0] != mask.shape[0]:
            raise ValueError(
                f"{op}: a per-sample mask of shape {tuple(mask.shape)} needs an input of shape "
                f"(N={mask.shape[0]}, *, in), but got {tuple(input.shape)}"
            )
    else:
        _check_mask(mask, weight, op)
    return _linear(input, _masked_weight(weight, mask, p, scale), bias)


@_sharding.rule()
def dropconnect_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float = 0.5,
    training: bool = True,
    *,
    per_sample: bool = False,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A linear layer with DropConnect on its weight (see the module docstring).

    Paper: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.

    Args:
        input: ``(*, in)`` (``(N, *, in)`` when ``per_sample``) floating-point tensor.
        weight: ``(out, in)``; bias: ``(out,)`` or None (never dropped).
        p: probability of a weight being zeroed. Default: 0.5
        training: drop weights if True; else use the mean weights. Default: True
        per_sample: one weight mask per sample (dimension 0) instead of one per call. Default: False
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> w, b = torch.randn(10, 20), torch.zeros(10)
        >>> y = dropkit.functional.dropconnect_linear(torch.randn(4, 20), w, b, p=0.3)
    """
    op = "dropconnect_linear"
    _check_linear_args(input, weight, bias, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    _check_bool(per_sample, "per_sample", op)
    _check_generator(generator, weight.device, op)
    if not training:
        return F.linear(input, _eval_weight(weight, p, scale), bias)
    batch = _batch_size(input, per_sample, 2, op)
    if _fast_per_sample(weight, batch, p):
        return _linear(input, _fast_weights(weight, batch, p, scale, generator), bias)
    mask = _weight_mask(input, weight, batch, p, generator)
    return _linear(input, _masked_weight(weight, mask, p, scale), bias)


def _batch_size(input, per_sample, min_rank, op):
    if not per_sample:
        return None
    if input.dim() < min_rank:
        raise ValueError(
            f"{op}: per_sample=True needs a batched input (dimension 0 is the sample), but got "
            f"a {input.dim()}-D input of shape {tuple(input.shape)}"
        )
    return input.shape[0]


def _conv(input, weight, bias, stride, padding, dilation, groups, per_sample):
    # weight (out, in/g, *k), or (N, out, in/g, *k) per sample.
    if not per_sample:
        return _CONV[weight.dim()](input, weight, bias, stride, padding, dilation, groups)
    n, out_ch = weight.shape[:2]
    # Per-sample weights as one grouped conv: (N, C, *s) -> (1, N*C, *s) with N*groups groups,
    # weights (N*out, in/g, *k); output (1, N*out, *s') -> (N, out, *s').
    flat_w = weight.reshape(n * out_ch, *weight.shape[2:])
    flat_b = None if bias is None else bias.repeat(n)
    out = _CONV[flat_w.dim()](
        input.reshape(1, -1, *input.shape[2:]),
        flat_w,
        flat_b,
        stride,
        padding,
        dilation,
        groups * n,
    )
    return out.reshape(n, out_ch, *out.shape[2:])


def _check_conv_args(input, weight, bias, op):
    _check_float_tensor(input, op)
    _check_float_tensor(weight, op, "weight")
    _check_rank(weight, (3, 4, 5), op, "a conv weight is (out, in/groups, *kernel)", "weight")
    n = weight.dim() - 2
    _check_rank(
        input, (n + 2,), op, f"a conv{n}d DropConnect layer takes batched (N, C, *spatial) input"
    )
    if bias is not None:
        _check_float_tensor(bias, op, "bias")


@_sharding.rule()
def apply_dropconnect_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor,
    p: float,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    scale: str = "inverted",
) -> torch.Tensor:
    """``convNd(input, weight * mask * s, bias, ...)``; a mask with a leading batch dimension
    ``(N, out, in/groups, *kernel)`` gives per-sample weights. N is 1, 2 or 3 from ``weight``.
    """
    op = "apply_dropconnect_conv"
    _check_conv_args(input, weight, bias, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    per_sample = isinstance(mask, torch.Tensor) and mask.dim() == weight.dim() + 1
    if per_sample:
        _check_mask(mask, weight.expand(input.shape[0], *weight.shape), op)
    else:
        _check_mask(mask, weight, op)
    w = _masked_weight(weight, mask, p, scale)
    return _conv(input, w, bias, stride, padding, dilation, groups, per_sample)


@_sharding.rule()
def dropconnect_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float = 0.5,
    training: bool = True,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    per_sample: bool = False,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A 1-D/2-D/3-D convolution (chosen by ``weight``'s rank) with DropConnect on its weight.

    Arguments after ``training`` are ``torch.nn.functional.convNd``'s, plus ``per_sample``,
    ``scale`` and ``generator`` as in :func:`dropconnect_linear`. Per-sample masks run as one
    grouped convolution over the batch.

    Paper: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """
    op = "dropconnect_conv"
    _check_conv_args(input, weight, bias, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    _check_bool(per_sample, "per_sample", op)
    _check_generator(generator, weight.device, op)
    if not training:
        w = _eval_weight(weight, p, scale)
        return _conv(input, w, bias, stride, padding, dilation, groups, False)
    batch = _batch_size(input, per_sample, 1, op)
    if _fast_per_sample(weight, batch, p):
        w = _fast_weights(weight, batch, p, scale, generator)
        return _conv(input, w, bias, stride, padding, dilation, groups, per_sample)
    mask = _weight_mask(input, weight, batch, p, generator)
    w = _masked_weight(weight, mask, p, scale)
    return _conv(input, w, bias, stride, padding, dilation, groups, per_sample)
