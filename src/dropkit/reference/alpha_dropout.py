"""NumPy reference for alpha dropout (Klambauer et al. 2017), given an explicit mask."""

from __future__ import annotations

import math

import numpy as np

from dropkit._validation import _check_p
from dropkit.reference._checks import _check_bool_mask, _check_float_array

__all__ = ["ALPHA_PRIME", "alpha_affine", "alpha_dropout_forward", "alpha_dropout_backward"]

# -lambda * alpha of SELU, written out from the paper's constants.
ALPHA_PRIME = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


def alpha_affine(p: float) -> tuple[float, float]:
    """``a = ((1-p)(1 + p alpha'^2))^-1/2`` and ``b = -a alpha' p`` (float64, evaluated in the
    same order as the torch op so the constants agree to the last bit)."""
    p = _check_p(p, "reference.alpha_affine", allow_one=False)
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * ALPHA_PRIME**2))
    return a, -a * ALPHA_PRIME * p


def alpha_dropout_forward(
    x: np.ndarray, mask: np.ndarray, p: float, *, training: bool = True
) -> np.ndarray:
    """Training: ``a * x + b`` where kept, ``a * alpha' + b`` where dropped, evaluated as
    ``x * m + o`` with ``m`` in {a, 0} and ``o`` in {b, a alpha' + b} rounded to x's dtype.
    Eval: ``x``.
    """
    op = "reference.alpha_dropout_forward"
    x = _check_float_array(x, op)
    p = _check_p(p, op, allow_one=False)
    if not training:
        return x.copy()
    mask = np.broadcast_to(_check_bool_mask(mask, x.shape, op), x.shape)
    a, b = alpha_affine(p)
    t = x.dtype.type
    mult = np.where(mask, t(a), t(0.0))
    offset = np.where(mask, t(b), t(a * ALPHA_PRIME + b))
    return x * mult + offset


def alpha_dropout_backward(grad_out: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """Gradient in training: ``grad_out * a`` where kept, 0 where dropped."""
    op = "reference.alpha_dropout_backward"
    grad_out = _check_float_array(grad_out, op, "grad_out")
    mask = np.broadcast_to(_check_bool_mask(mask, grad_out.shape, op), grad_out.shape)
    a, _ = alpha_affine(p)
    t = grad_out.dtype.type
    return grad_out * np.where(mask, t(a), t(0.0))
