"""Standard (element-wise) dropout: Hinton et al. 2012, Srivastava et al. 2014.

Sampling a mask and applying it are separate steps. ``sample_mask`` draws which units survive;
``apply_mask`` multiplies by the mask and the convention's scale. ``dropout`` is the two in sequence.
Every variant and kernel in dropkit is built so it can be fed the same mask as the NumPy reference
(``dropkit.reference``) and compared with it exactly.

Two conventions, one expected output:

* ``scale="inverted"`` (the default, PyTorch's): survivors are multiplied by 1/(1-p) in training, so
  inference is the identity.
* ``scale="classic"`` (the 2012/2014 papers): training leaves survivors unscaled and inference
  multiplies every unit by the keep probability 1-p.

In both, E[train output] = eval output.

NaN and Inf: dropout multiplies, as ``torch.nn.Dropout`` does, so a NaN or Inf input stays NaN where
it is dropped (NaN * 0 = NaN). Finite inputs give finite outputs for every p in [0, 1]; at p=1 the
output is all zeros.

Fast path: on CPU, for large enough float tensors, ``dropout`` hands the work to numba kernels with a
counter-based generator (see :mod:`dropkit.functional.fast_dropout`). Same values given the same mask,
a 1-bit (or no) saved mask, reproducible from torch's seed, but not torch's masks;
``dropkit.use_fast_dropout(False)`` restores the plain path described here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_scale,
    _keep_scale,
)
from dropkit.ops import dropout as _ops
from dropkit.ops import sharding as _sharding
from dropkit.random import draws as _random

__all__ = ["sample_mask", "apply_mask", "dropout"]

_is_compiling = torch.compiler.is_compiling
_in_onnx_export = torch.onnx.is_in_onnx_export


def _bernoulli_keep(
    mask: torch.Tensor, p: float, generator: torch.Generator | None
) -> torch.Tensor:
    # mask is a bool buffer; True = the unit is kept, with probability 1-p. Use the return value
    # (under torch.compile it is a new tensor: random/draws.py).
    return _random.bernoulli_(mask, 1.0 - p, generator)


def sample_mask(
    shape: Sequence[int] | torch.Size,
    p: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a keep-mask: a bool tensor of ``shape`` whose entries are True with probability 1-p.

    Randomness comes from ``generator`` or, when it is None, from torch's global RNG for ``device``,
    so ``torch.manual_seed`` reproduces a run.

    Args:
        shape: shape of the mask. Use size-1 dimensions to share one draw along them (e.g.
            ``(N, C, 1, 1)`` drops whole channels of an ``(N, C, H, W)`` input).
        p: probability that an entry is dropped (False).
        device: where to create the mask. Default: the current default device.
        generator: optional ``torch.Generator`` on that device.
    """
    p = _check_p(p, "sample_mask")
    try:
        shape = torch.Size(shape)
    except TypeError as err:
        raise TypeError(
            f"sample_mask: shape must be a sequence of ints, but got {shape!r}"
        ) from err
    if any(s < 0 for s in shape):
        raise ValueError(f"sample_mask: shape must not have negative sizes, but got {tuple(shape)}")
    device = torch.device(device) if device is not None else torch.empty(0).device
    _check_generator(generator, device, "sample_mask")
    return _bernoulli_keep(torch.empty(shape, dtype=torch.bool, device=device), p, generator)


def _factor(value: float, like: torch.Tensor) -> torch.Tensor:
    # A 0-d tensor of the input's dtype, so the scale is rounded once, straight to that dtype
    # (a Python scalar would go through float32 first for half types).
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _check_mask(mask: object, input: torch.Tensor, op: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"{op}: mask must be a bool tensor (True = keep), but got {got}")
    if mask.device != input.device:
        raise ValueError(f"{op}: mask is on '{mask.device}' but the input is on '{input.device}'")
    try:
        broadcast = torch.broadcast_shapes(mask.shape, input.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != input.shape:
        raise ValueError(
            f"{op}: mask of shape {tuple(mask.shape)} does not broadcast to the input's shape "
            f"{tuple(input.shape)}"
        )
    return mask


def _apply(
    input: torch.Tensor, mask: torch.Tensor, p: float, scale: str, inplace: bool
) -> torch.Tensor:
    # multiplier = mask * s with s = 1/(1-p) (inverted) or 1 (classic): exactly s or 0 in the
    # input's dtype, so out = input * multiplier is one correctly rounded product per element.
    multiplier = mask * _factor(_keep_scale(p, scale, input.dtype), input)
    return input.mul_(multiplier) if inplace else input * multiplier


@_sharding.rule()
def apply_mask(
    input: torch.Tensor,
    mask: torch.Tensor,
    p: float,
    *,
    scale: str = "inverted",
    inplace: bool = False,
) -> torch.Tensor:
    """Apply a keep-mask drawn with drop probability ``p`` to ``input`` (training behaviour).

    ``out = input * mask * s`` where ``s = 1/(1-p)`` for ``scale="inverted"`` and ``s = 1`` for
    ``scale="classic"``. The mask may have size-1 dimensions; it is broadcast to the input's shape.
    Differentiable: the gradient is ``grad_out * mask * s``.
    """
    _check_float_tensor(input, "apply_mask")
    p = _check_p(p, "apply_mask")
    scale = _check_scale(scale, "apply_mask")
    _check_bool(inplace, "inplace", "apply_mask")
    _check_mask(mask, input, "apply_mask")
    return _apply(input, mask, p, scale, inplace)


def _eval(input: torch.Tensor, p: float, scale: str, inplace: bool) -> torch.Tensor:
    """Inference: the identity (inverted) or multiplication by the keep probability (classic)."""
    if scale == "inverted" or p == 0.0:
        return input
    keep = _factor(1.0 - p, input)
    return input.mul_(keep) if inplace else input * keep


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero each element of ``input`` independently with probability ``p`` during training.

    Drop-in for ``torch.nn.functional.dropout``. In training, survivors are scaled by 1/(1-p)
    (``scale="inverted"``) or left as they are (``scale="classic"``). In eval the inverted form returns
    ``input`` itself and the classic form returns ``input * (1-p)``.

    On CPU, float tensors of at least 4096 elements take the fast path (numba kernels, a 1-bit saved
    mask; :mod:`dropkit.functional.fast_dropout`): same values given its mask, reproducible from
    torch's seed, but masks that differ from PyTorch's. ``dropkit.use_fast_dropout(False)`` turns it off.

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 2014.

    Args:
        input: floating-point tensor of any shape.
        p: probability of an element being zeroed. Default: 0.5
        training: apply dropout if True. Default: True
        inplace: do the operation in place. Default: False
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the mask (default: torch's global RNG).

    Example::

        >>> x = torch.randn(4, 8)
        >>> y = dropkit.functional.dropout(x, p=0.2)
        >>> (y == 0).float().mean()  # about 0.2
    """
    _check_float_tensor(input, "dropout")
    p = _check_p(p, "dropout")
    scale = _check_scale(scale, "dropout")
    if type(training) is not bool or type(inplace) is not bool:  # two cheap tests per call
        _check_bool(training, "training", "dropout")
        _check_bool(inplace, "inplace", "dropout")
    if not training:
        return _eval(input, p, scale, inplace)
    if generator is not None:
        _check_generator(generator, input.device, "dropout")
    if p == 0.0:
        return input if inplace else input.clone()
    fast = _ops.dropout(input, p, _keep_scale(p, scale, input.dtype), inplace, generator)
    if fast is not None:  # the fast path applied
        return fast
    if type(input) is not torch.Tensor and _sharding.is_dtensor(input):
        # each shard's slice of the global mask (ops/sharding.py)
        out = _sharding.plain_dropout(
            input, p, lambda x, keep: _apply(x, keep, p, scale, False), generator
        )
        return input.copy_(out) if inplace else out
    # empty_like keeps the input's layout (channels_last stays channels_last).
    if _is_compiling() and not _in_onnx_export():
        # an opaque draw: compiled code draws the masks eager code draws
        keep = _ops.keep_mask(input, p, generator)
    else:  # random/draws.py: an explicit generator goes through dropkit.random.checkpoint
        keep = _bernoulli_keep(torch.empty_like(input, dtype=torch.bool), p, generator)
    return _apply(input, keep, p, scale, inplace)
