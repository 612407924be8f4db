"""NumPy reference for standard dropout, given an explicit mask: the oracle the torch ops match.

Written for clarity, not speed. Each function computes, in the array's own dtype, exactly what the
torch op computes: the multiplier ``mask * s`` (s = 1/(1-p) or 1, rounded once to the dtype), then one
product per element.
"""

from __future__ import annotations

import numpy as np

from dropkit._validation import _check_p, _check_scale, _keep_scale
from dropkit.reference._checks import _check_bool_mask, _check_float_array

__all__ = ["sample_mask", "dropout_forward", "dropout_backward"]


def sample_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator) -> np.ndarray:
    """A bool keep-mask: True with probability 1-p, drawn from ``rng``."""
    p = _check_p(p, "reference.sample_mask", allow_one=False)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"reference.sample_mask: rng must be a numpy.random.Generator, got {type(rng).__name__}"
        )
    return rng.random(shape) >= p


def _multiplier(mask: np.ndarray, p: float, scale: str, dtype: np.dtype) -> np.ndarray:
    return mask.astype(dtype) * dtype.type(_keep_scale(p, scale))


def dropout_forward(
    x: np.ndarray,
    mask: np.ndarray,
    p: float,
    *,
    scale: str = "inverted",
    training: bool = True,
) -> np.ndarray:
    """Dropout forward pass.

    Training: ``x * mask / (1-p)`` (inverted) or ``x * mask`` (classic).
    Inference: ``x`` (inverted) or ``x * (1-p)`` (classic); the mask is not used.

    Raises:
        ValueError: p outside [0, 1) or not finite; a mask that does not broadcast to ``x``.
        TypeError: p not a real number; x not a floating array; mask not a bool array.
    """
    op = "reference.dropout_forward"
    p = _check_p(p, op, allow_one=False)
    scale = _check_scale(scale, op)
    x = _check_float_array(x, op)
    if not training:
        return x.copy() if scale == "inverted" else x * x.dtype.type(1.0 - p)
    mask = _check_bool_mask(mask, x.shape, op)
    return x * _multiplier(mask, p, scale, x.dtype)


def dropout_backward(
    grad_out: np.ndarray,
    mask: np.ndarray,
    p: float,
    *,
    scale: str = "inverted",
    training: bool = True,
) -> np.ndarray:
    """Gradient of :func:`dropout_forward` with respect to ``x``: the same mask and scale."""
    op = "reference.dropout_backward"
    p = _check_p(p, op, allow_one=False)
    scale = _check_scale(scale, op)
    grad_out = _check_float_array(grad_out, op, "grad_out")
    if not training:
        return grad_out.copy() if scale == "inverted" else grad_out * grad_out.dtype.type(1.0 - p)
    mask = _check_bool_mask(mask, grad_out.shape, op)
    return grad_out * _multiplier(mask, p, scale, grad_out.dtype)
