"""NumPy reference for locked (variational) dropout, given an explicit ``(N, H)`` mask."""

from __future__ import annotations

import numpy as np

from dropkit._validation import _check_p, _check_scale
from dropkit.reference._checks import _check_bool_mask, _check_float_array
from dropkit.reference.dropout import dropout_backward, dropout_forward

__all__ = ["locked_dropout_backward", "locked_dropout_forward"]


def _time_mask(x: np.ndarray, mask: np.ndarray, batch_first: bool, op: str) -> np.ndarray:
    # (N, H) -> (1, N, H) for time-first, (N, 1, H) for batch-first: the same mask at every step.
    if x.ndim != 3:
        raise ValueError(f"{op}: expected a 3D (T, N, H) or (N, T, H) array, but got {x.ndim}D")
    n = x.shape[0] if batch_first else x.shape[1]
    mask = _check_bool_mask(mask, (n, x.shape[2]), op)
    return mask[:, None, :] if batch_first else mask[None, :, :]


def locked_dropout_forward(
    x: np.ndarray,
    mask: np.ndarray,
    p: float,
    *,
    batch_first: bool = False,
    scale: str = "inverted",
    training: bool = True,
) -> np.ndarray:
    """``x[t, n, h] * mask[n, h] * s`` for every step t (s = 1/(1-p) or 1); eval as dropout."""
    op = "reference.locked_dropout_forward"
    p, scale = _check_p(p, op, allow_one=False), _check_scale(scale, op)
    x = _check_float_array(x, op)
    if not training:
        return dropout_forward(x, None, p, scale=scale, training=False)
    return dropout_forward(x, _time_mask(x, mask, batch_first, op), p, scale=scale)


def locked_dropout_backward(
    grad_out: np.ndarray,
    mask: np.ndarray,
    p: float,
    *,
    batch_first: bool = False,
    scale: str = "inverted",
) -> np.ndarray:
    """Gradient of :func:`locked_dropout_forward` with respect to ``x`` (training)."""
    op = "reference.locked_dropout_backward"
    grad_out = _check_float_array(grad_out, op, "grad_out")
    return dropout_backward(grad_out, _time_mask(grad_out, mask, batch_first, op), p, scale=scale)
