"""NumPy reference implementations: the test oracle for every dropkit op and kernel.

Each function takes the mask (or noise) explicitly, so a torch op and its reference can be fed the
same mask and compared exactly, forward and backward.
"""

from dropkit.reference.additive_noise import additive_noise_backward, additive_noise_forward
from dropkit.reference.alpha_dropout import (
    alpha_affine,
    alpha_dropout_backward,
    alpha_dropout_forward,
)
from dropkit.reference.concrete_dropout import (
    concrete_backward,
    concrete_forward,
    concrete_regularizer,
)
from dropkit.reference.dropblock import (
    clip_block,
    dropblock_backward,
    dropblock_forward,
    dropblock_gamma,
    dropblock_mask,
)
from dropkit.reference.dropconnect import (
    conv_forward,
    dropconnect_conv_forward,
    dropconnect_linear_backward,
    dropconnect_linear_forward,
    dropconnect_weight,
)
from dropkit.reference.dropout import dropout_backward, dropout_forward, sample_mask
from dropkit.reference.embedding_dropout import (
    embedding_dropout_backward,
    embedding_dropout_forward,
)
from dropkit.reference.gaussian_dropout import (
    gaussian_dropout_backward,
    gaussian_dropout_forward,
    gaussian_noise,
)
from dropkit.reference.locked_dropout import locked_dropout_backward, locked_dropout_forward
from dropkit.reference.philox import philox4x32_10, philox_keep_mask, philox_normal
from dropkit.reference.shared_dropout import (
    channel_dropout_forward,
    drop_path_forward,
    shared_dropout_backward,
    shared_dropout_forward,
    shared_mask_shape,
)
from dropkit.reference.variational_rnn import variational_rnn_forward
from dropkit.reference.weight_drop import weight_drop_backward, weight_drop_forward

__all__ = [
    "additive_noise_backward",
    "additive_noise_forward",
    "alpha_affine",
    "alpha_dropout_backward",
    "alpha_dropout_forward",
    "channel_dropout_forward",
    "concrete_backward",
    "concrete_forward",
    "concrete_regularizer",
    "conv_forward",
    "drop_path_forward",
    "clip_block",
    "dropblock_backward",
    "dropblock_forward",
    "dropblock_gamma",
    "dropblock_mask",
    "dropconnect_conv_forward",
    "dropconnect_linear_backward",
    "dropconnect_linear_forward",
    "dropconnect_weight",
    "dropout_backward",
    "dropout_forward",
    "embedding_dropout_backward",
    "embedding_dropout_forward",
    "gaussian_dropout_backward",
    "gaussian_dropout_forward",
    "gaussian_noise",
    "locked_dropout_backward",
    "locked_dropout_forward",
    "philox4x32_10",
    "philox_keep_mask",
    "philox_normal",
    "sample_mask",
    "shared_dropout_backward",
    "shared_dropout_forward",
    "shared_mask_shape",
    "variational_rnn_forward",
    "weight_drop_backward",
    "weight_drop_forward",
]
