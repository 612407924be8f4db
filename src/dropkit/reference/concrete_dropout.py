"""NumPy reference for concrete dropout (Gal, Hron & Kendall 2017), given explicit logistic noise.

Forward, the hand-derived gradient in the input and in the logit ``l`` of the drop probability, and
the regulariser. With ``z = (l + noise) / t`` and ``f = (1 - sigmoid(z)) / sigmoid(-l)``:
``out = x f`` and ``d f / d l = (1 - sigmoid(z)) (sigmoid(l) - sigmoid(z) / t) / sigmoid(-l)``.
"""

from __future__ import annotations

import numpy as np

from dropkit.reference._checks import _check_float_array

__all__ = ["concrete_forward", "concrete_backward", "concrete_regularizer"]


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def concrete_forward(x: np.ndarray, p_logit: float, noise: np.ndarray, temperature: float):
    """``x * (1 - sigmoid((l + noise) / t)) / (1 - sigmoid(l))``."""
    x = _check_float_array(x, "reference.concrete_forward")
    z = (p_logit + noise) / temperature
    return x * ((1.0 - _sigmoid(z)) / _sigmoid(-p_logit))


def concrete_backward(x, p_logit, noise, temperature, grad_out):
    """``(grad_x, grad_logit)`` of :func:`concrete_forward`."""
    sz = _sigmoid((p_logit + noise) / temperature)
    keep = 1.0 - sz
    grad_x = grad_out * keep / _sigmoid(-p_logit)
    dfdl = keep * (_sigmoid(p_logit) - sz / temperature) / _sigmoid(-p_logit)
    return grad_x, float(np.sum(grad_out * x * dfdl))


def concrete_regularizer(p_logit, weights, input_dim, weight_regularizer, dropout_regularizer):
    """``wr * sum ||W||^2 / (1 - p) + dr * K * (p log p + (1 - p) log(1 - p))``, ``p = sigmoid(l)``."""
    p = float(_sigmoid(p_logit))
    square = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in weights)
    neg_entropy = p * np.log(p) + (1 - p) * np.log(1 - p)
    return weight_regularizer * square / (1 - p) + dropout_regularizer * input_dim * neg_entropy
