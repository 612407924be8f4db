"""NumPy reference for shared-mask-axes, channel and DropPath dropout, given an explicit mask.

The torch ops broadcast a mask with size-1 axes; these references take the *small* mask (one entry
per channel, per sample, ...) and expand it by explicit indexing, a different route to the same
numbers.
"""

from __future__ import annotations

import itertools

import numpy as np

from dropkit._validation import _check_p, _check_scale, _keep_scale
from dropkit.reference._checks import _check_float_array

__all__ = [
    "shared_mask_shape",
    "shared_dropout_forward",
    "shared_dropout_backward",
    "channel_dropout_forward",
    "drop_path_forward",
]


def shared_mask_shape(shape: tuple[int, ...], shared_axes) -> tuple[int, ...]:
    """``shape`` with 1 on every axis in ``shared_axes`` (negative indices allowed)."""
    axes = {
        a % len(shape) for a in ((shared_axes,) if isinstance(shared_axes, int) else shared_axes)
    }
    return tuple(1 if d in axes else s for d, s in enumerate(shape))


def _expand(mask: np.ndarray, shape: tuple[int, ...], op: str) -> np.ndarray:
    """Expand a mask with size-1 axes to ``shape`` entry by entry (no broadcasting)."""
    if mask.dtype != np.bool_ or mask.ndim != len(shape):
        raise TypeError(f"{op}: mask must be a bool array of rank {len(shape)}")
    if any(m not in (1, s) for m, s in zip(mask.shape, shape, strict=True)):
        raise ValueError(f"{op}: mask of shape {mask.shape} does not fit the input's shape {shape}")
    full = np.empty(shape, dtype=bool)
    for idx in itertools.product(*(range(s) for s in shape)):
        full[idx] = mask[tuple(0 if m == 1 else i for i, m in zip(idx, mask.shape, strict=True))]
    return full


def shared_dropout_forward(
    x: np.ndarray,
    mask: np.ndarray,
    p: float,
    *,
    scale: str = "inverted",
    training: bool = True,
) -> np.ndarray:
    """``x * expand(mask) * s`` in training; ``x`` (inverted) or ``x * (1-p)`` (classic) in eval.

    ``mask`` has the input's rank with size 1 on the shared axes.
    """
    op = "reference.shared_dropout_forward"
    p = _check_p(p, op, allow_one=False)
    scale = _check_scale(scale, op)
    x = _check_float_array(x, op)
    if not training:
        return x.copy() if scale == "inverted" else x * x.dtype.type(1.0 - p)
    full = _expand(mask, x.shape, op)
    return x * (full.astype(x.dtype) * x.dtype.type(_keep_scale(p, scale)))


def shared_dropout_backward(
    grad_out: np.ndarray, mask: np.ndarray, p: float, *, scale: str = "inverted"
) -> np.ndarray:
    """Gradient of :func:`shared_dropout_forward` in training: the same expanded mask and scale."""
    return shared_dropout_forward(grad_out, mask, p, scale=scale)


def channel_dropout_forward(
    x: np.ndarray,
    channel_mask: np.ndarray,
    p: float,
    *,
    spatial_dims: int,
    scale: str = "inverted",
) -> np.ndarray:
    """Channel dropout in training: ``channel_mask`` is ``(N, C)`` or ``(C,)`` (x's leading axes);
    channel ``c`` of sample ``n`` is multiplied by ``s`` or 0 as a whole.
    """
    op = "reference.channel_dropout_forward"
    p = _check_p(p, op, allow_one=False)
    x = _check_float_array(x, op)
    if channel_mask.shape != x.shape[: x.ndim - spatial_dims]:
        raise ValueError(
            f"{op}: channel_mask {channel_mask.shape} must be x.shape[:-{spatial_dims}]"
        )
    s = x.dtype.type(_keep_scale(p, _check_scale(scale, op)))
    out = np.empty_like(x)
    for idx in np.ndindex(*channel_mask.shape):
        out[idx] = x[idx] * (s if channel_mask[idx] else x.dtype.type(0))
    return out


def drop_path_forward(
    x: np.ndarray,
    sample_mask: np.ndarray,
    p: float,
    *,
    scale: str = "inverted",
    scale_by_keep: bool = True,
) -> np.ndarray:
    """DropPath in training: sample ``n`` is multiplied by ``s`` if ``sample_mask[n]`` else 0;
    ``s = 1`` with ``scale_by_keep=False`` (eval is then the identity)."""
    op = "reference.drop_path_forward"
    p = _check_p(p, op, allow_one=False)
    x = _check_float_array(x, op)
    if sample_mask.shape != x.shape[:1]:
        raise ValueError(
            f"{op}: sample_mask must have shape ({x.shape[0]},), got {sample_mask.shape}"
        )
    s = x.dtype.type(_keep_scale(p, _check_scale(scale, op)) if scale_by_keep else 1.0)
    return np.stack([x[n] * (s if keep else x.dtype.type(0)) for n, keep in enumerate(sample_mask)])
