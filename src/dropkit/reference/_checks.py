"""Array checks for the NumPy reference (the scalar checks are shared with the torch ops)."""

from __future__ import annotations

import numpy as np


def _check_float_array(x: object, op: str, name: str = "x") -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, but got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{op}: {name} must have a floating dtype, but got {x.dtype}")
    return x


def _check_bool_mask(mask: object, shape: tuple[int, ...], op: str) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"{op}: mask must be a bool numpy.ndarray (True = keep), but got {got}")
    try:
        broadcast = np.broadcast_shapes(mask.shape, shape)
    except ValueError:
        broadcast = None
    if broadcast != tuple(shape):
        raise ValueError(
            f"{op}: mask of shape {mask.shape} does not broadcast to the input's shape {shape}"
        )
    return mask
