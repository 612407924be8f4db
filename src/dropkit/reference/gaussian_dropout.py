"""NumPy reference for Gaussian dropout (Srivastava et al. 2014, §10), given explicit noise."""

from __future__ import annotations

import math

import numpy as np

from dropkit._validation import _check_p
from dropkit.reference._checks import _check_float_array

__all__ = ["gaussian_noise", "gaussian_dropout_forward", "gaussian_dropout_backward"]


def gaussian_noise(eps: np.ndarray, p: float) -> np.ndarray:
    """Turn standard normal draws ``eps`` into the multiplier ``1 + sqrt(p/(1-p)) * eps``.

    The standard deviation is rounded once to ``eps``'s dtype, then one product and one sum per
    element, as the torch sampler does.
    """
    op = "reference.gaussian_noise"
    p = _check_p(p, op, allow_one=False)
    eps = _check_float_array(eps, op, "eps")
    return eps * eps.dtype.type(math.sqrt(p / (1.0 - p))) + eps.dtype.type(1.0)


def gaussian_dropout_forward(x: np.ndarray, noise: np.ndarray, *, training: bool = True):
    """``x * noise`` in training, ``x`` in eval (the noise has mean 1)."""
    op = "reference.gaussian_dropout_forward"
    x = _check_float_array(x, op)
    if not training:
        return x.copy()
    return x * _check_float_array(noise, op, "noise")


def gaussian_dropout_backward(grad_out: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Gradient of :func:`gaussian_dropout_forward` in training: ``grad_out * noise``."""
    return gaussian_dropout_forward(grad_out, noise)
