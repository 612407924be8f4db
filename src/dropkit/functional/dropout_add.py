"""Fused residual dropout: ``dropout(x) + residual`` and ``dropout(x + bias) + residual``.

The transformer residual pattern. Each op is *defined* as its unfused composition (the plain path
below), with the same rounding after each step; on CPU the fast path computes it in one pass over
memory with the Philox kernels of :func:`dropkit.functional.dropout`, drawing exactly the mask that
``dropout`` would draw from the same generator state, and keeps only a 1-bit mask (or none) for
backward. The fused fast path needs float32/float64, contiguous tensors of one dtype, a residual of
the input's shape and a 1-D bias of the last dimension's size; other inputs take the composition
(whose ``dropout`` may still take its own fast path).
"""

from __future__ import annotations

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_scale,
    _keep_scale,
)
from dropkit.functional.dropout import _eval, dropout
from dropkit.ops import dropout as _ops
from dropkit.ops import sharding as _sharding

__all__ = ["bias_dropout_add", "dropout_add"]


def _check_operand(
    value: object, input: torch.Tensor, op: str, name: str = "residual"
) -> torch.Tensor:
    """A float tensor (residual or bias) that broadcasts with ``input``."""
    value = _check_float_tensor(value, op, name)
    try:
        torch.broadcast_shapes(input.shape, value.shape)
    except RuntimeError as err:
        raise ValueError(
            f"{op}: {name} of shape {tuple(value.shape)} does not broadcast with the input's "
            f"shape {tuple(input.shape)}"
        ) from err
    return value


@_sharding.rule("compose")
def dropout_add(
    input: torch.Tensor,
    residual: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``dropout(input, p, training) + residual`` in one pass on CPU.

    Args:
        input: floating-point tensor, e.g. a sublayer's output.
        residual: tensor added after dropout (broadcast to the input's shape if needed).
        p: probability of an element of ``input`` being zeroed. Default: 0.5
        training: apply dropout if True; else ``input`` (times 1-p for classic) plus ``residual``.
        scale: ``"inverted"`` or ``"classic"``, as in :func:`dropkit.functional.dropout`.
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> h = dropkit.functional.dropout_add(attn_out, x, p=0.1)  # x + dropout(attn_out)
    """
    op = "dropout_add"
    _check_float_tensor(input, op)
    residual = _check_operand(residual, input, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    if not training:
        return _eval(input, p, scale, False) + residual
    _check_generator(generator, input.device, op)
    fused = _ops.residual_dropout(
        input, None, residual, p, _keep_scale(p, scale, input.dtype), generator
    )
    if fused is not None:  # the one-pass kernel
        return fused
    return dropout(input, p, True, False, scale=scale, generator=generator) + residual


@_sharding.rule("compose")
def bias_dropout_add(
    input: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``dropout(input + bias, p, training) + residual`` in one pass on CPU.

    The pattern of a transformer block whose last linear layer leaves its bias to be added here.

    Args:
        input: floating-point tensor of shape ``(*, H)``.
        bias: tensor broadcast to the input, usually of shape ``(H,)``.
        residual: tensor added after dropout (broadcast to the input's shape if needed).
        p, training, scale, generator: as in :func:`dropout_add`.

    Example::

        >>> h = dropkit.functional.bias_dropout_add(x @ w.T, b, x, p=0.1)
    """
    op = "bias_dropout_add"
    _check_float_tensor(input, op)
    bias = _check_operand(bias, input, op, "bias")
    residual = _check_operand(residual, input, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    if not training:
        return _eval(input + bias, p, scale, False) + residual
    _check_generator(generator, input.device, op)
    fused = _ops.residual_dropout(
        input, bias, residual, p, _keep_scale(p, scale, input.dtype), generator
    )
    if fused is not None:  # the one-pass kernel
        return fused
    return dropout(input + bias, p, True, False, scale=scale, generator=generator) + residual
