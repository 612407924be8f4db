"""NumPy reference for weight-drop (DropConnect on a weight), given an explicit mask.

A weight-dropped RNN is the plain RNN run with ``weight_drop_forward(w_hh, mask, p)`` in place of
each ``w_hh``: feed that to :func:`dropkit.reference.variational_rnn_forward` with no masks.
"""

from __future__ import annotations

import numpy as np

from dropkit.reference.dropout import dropout_backward, dropout_forward

__all__ = ["weight_drop_backward", "weight_drop_forward"]


def weight_drop_forward(weight: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """``weight * mask / (1-p)``: one mask for the whole batch and every time step."""
    return dropout_forward(weight, mask, p)


def weight_drop_backward(grad_weight_dropped: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """Gradient reaching the weight from the gradient of its dropped copy: the same mask and scale."""
    return dropout_backward(grad_weight_dropped, mask, p)
