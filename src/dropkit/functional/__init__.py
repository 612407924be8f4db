"""Functional ops. Every op takes ``(input, p, training, inplace, *, ..., generator)``."""

from dropkit.functional.dropout import apply_mask, dropout, sample_mask
from dropkit.functional.embedding_dropout import embedding_dropout
from dropkit.functional.locked_dropout import locked_dropout, locked_mask_shape
from dropkit.functional.variational_rnn import RNNMasks, sample_rnn_masks, variational_rnn
from dropkit.functional.weight_drop import weight_drop

__all__ = [
    "RNNMasks",
    "apply_mask",
    "dropout",
    "embedding_dropout",
    "locked_dropout",
    "locked_mask_shape",
    "sample_mask",
    "sample_rnn_masks",
    "variational_rnn",
    "weight_drop",
]
