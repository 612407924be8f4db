"""NumPy reference implementations: the test oracle for every dropkit op and kernel.

Each function takes the mask explicitly, so a torch op and its reference can be fed the same mask and
compared exactly, forward and backward.
"""

from dropkit.reference.dropout import dropout_backward, dropout_forward, sample_mask
from dropkit.reference.embedding_dropout import (
    embedding_dropout_backward,
    embedding_dropout_forward,
)
from dropkit.reference.locked_dropout import locked_dropout_backward, locked_dropout_forward
from dropkit.reference.variational_rnn import variational_rnn_forward
from dropkit.reference.weight_drop import weight_drop_backward, weight_drop_forward

__all__ = [
    "dropout_backward",
    "dropout_forward",
    "embedding_dropout_backward",
    "embedding_dropout_forward",
    "locked_dropout_backward",
    "locked_dropout_forward",
    "sample_mask",
    "variational_rnn_forward",
    "weight_drop_backward",
    "weight_drop_forward",
]
