"""NumPy reference implementations: the test oracle for every dropkit op and kernel.

Each function takes the mask explicitly, so a torch op and its reference can be fed the same mask and
compared exactly, forward and backward.
"""

from dropkit.reference.dropout import dropout_backward, dropout_forward, sample_mask
from dropkit.reference.philox import philox4x32_10, philox_keep_mask

__all__ = [
    "dropout_backward",
    "dropout_forward",
    "philox4x32_10",
    "philox_keep_mask",
    "sample_mask",
]
