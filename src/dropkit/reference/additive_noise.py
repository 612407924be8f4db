"""NumPy reference for additive Gaussian noise (Keras's GaussianNoise), given explicit draws."""

from __future__ import annotations

import numpy as np

from dropkit.reference._checks import _check_float_array

__all__ = ["additive_noise_forward", "additive_noise_backward"]


def additive_noise_forward(
    x: np.ndarray, eps: np.ndarray, std: float, *, training: bool = True
) -> np.ndarray:
    """``x + std * eps`` in training (``std`` rounded once to the dtype), ``x`` in eval."""
    op = "reference.additive_noise_forward"
    x = _check_float_array(x, op)
    if not training:
        return x.copy()
    eps = _check_float_array(eps, op, "eps")
    return x + eps * x.dtype.type(std)


def additive_noise_backward(grad_out: np.ndarray) -> np.ndarray:
    """The gradient passes unchanged: ``d(x + noise)/dx = 1``."""
    return _check_float_array(grad_out, "reference.additive_noise_backward", "grad_out").copy()
