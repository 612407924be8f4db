"""Functional ops. Every op takes ``(input, p, training, inplace, *, ..., generator)``."""

from dropkit.functional.dropout import apply_mask, dropout, sample_mask
from dropkit.functional.dropout_add import bias_dropout_add, dropout_add
from dropkit.functional.fast_dropout import (
    draw_seed,
    fast_dropout_enabled,
    fast_keep_mask,
    set_fast_dropout,
    use_fast_dropout,
)

__all__ = [
    "apply_mask",
    "bias_dropout_add",
    "draw_seed",
    "dropout",
    "dropout_add",
    "fast_dropout_enabled",
    "fast_keep_mask",
    "sample_mask",
    "set_fast_dropout",
    "use_fast_dropout",
]
