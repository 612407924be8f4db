"""NumPy reference for embedding (word-type) dropout, given an explicit ``(V,)`` row mask."""

from __future__ import annotations

import numpy as np

from dropkit._validation import _check_p, _check_scale, _keep_scale
from dropkit.reference._checks import _check_bool_mask, _check_float_array

__all__ = ["embedding_dropout_backward", "embedding_dropout_forward"]


def _row_multiplier(weight_rows: int, mask: np.ndarray, p: float, scale: str, dtype, op: str):
    mask = _check_bool_mask(mask, (weight_rows,), op)
    return mask.astype(dtype) * dtype.type(_keep_scale(p, scale))  # (V,)


def embedding_dropout_forward(
    indices: np.ndarray, weight: np.ndarray, mask: np.ndarray, p: float, *, scale: str = "inverted"
) -> np.ndarray:
    """``weight[indices] * m[indices]`` where ``m[v] = mask[v] * s``: every occurrence of a dropped
    word is the zero vector."""
    op = "reference.embedding_dropout_forward"
    p, scale = _check_p(p, op, allow_one=False), _check_scale(scale, op)
    weight = _check_float_array(weight, op, "weight")
    mult = _row_multiplier(weight.shape[0], mask, p, scale, weight.dtype, op)
    return (weight * mult[:, None])[indices]


def embedding_dropout_backward(
    indices: np.ndarray,
    grad_out: np.ndarray,
    mask: np.ndarray,
    p: float,
    num_embeddings: int,
    *,
    padding_idx: int | None = None,
    scale: str = "inverted",
) -> np.ndarray:
    """Gradient with respect to the weight: each row sums the gradients of its occurrences, times
    that row's multiplier; the ``padding_idx`` row gets none."""
    op = "reference.embedding_dropout_backward"
    p, scale = _check_p(p, op, allow_one=False), _check_scale(scale, op)
    grad_out = _check_float_array(grad_out, op, "grad_out")
    grad = np.zeros((num_embeddings, grad_out.shape[-1]), dtype=grad_out.dtype)
    flat = indices.reshape(-1)
    rows = grad_out.reshape(-1, grad_out.shape[-1])
    for k in range(flat.size):  # in index order, one row at a time
        if flat[k] != padding_idx:
            grad[flat[k]] += rows[k]
    return grad * _row_multiplier(num_embeddings, mask, p, scale, grad.dtype, op)[:, None]
