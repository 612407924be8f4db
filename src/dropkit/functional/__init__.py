"""Functional ops. Every op takes ``(input, p, training, inplace, *, ..., generator)``."""

from dropkit.functional.dropout import apply_mask, dropout, sample_mask

__all__ = ["apply_mask", "dropout", "sample_mask"]
