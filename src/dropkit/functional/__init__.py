"""Functional ops. Every op takes ``(input, p, training, inplace, *, ..., generator)``.

Every function here is registered with ``torch.fx.wrap``: ``torch.fx.symbolic_trace`` records a call
of ``dropkit.functional.<op>`` (or ``dropkit.<op>``) as one ``call_function`` node that runs the op
(the tracer patches those names during a trace; a name imported elsewhere, ``from dropkit.functional
import dropout``, is not patched and the op says so). The ``training`` flag is then a constant of
the graph, as for ``torch.nn.functional.dropout``; the modules of :mod:`dropkit.nn` are leaves that
keep it.
"""

import torch.fx as _fx

from dropkit.functional.additive_noise import additive_noise, additive_noise_sample
from dropkit.functional.alpha_dropout import (
    alpha_affine,
    alpha_dropout,
    apply_alpha_mask,
    feature_alpha_dropout,
)
from dropkit.functional.channel_dropout import channel_dropout, dropout1d, dropout2d, dropout3d
from dropkit.functional.concrete_dropout import (
    apply_concrete,
    concrete_dropout,
    concrete_noise,
    concrete_regularizer,
)
from dropkit.functional.drop_path import drop_path, drop_path_rates
from dropkit.functional.dropblock import (
    apply_dropblock,
    dropblock,
    dropblock2d,
    dropblock3d,
    dropblock_gamma,
    dropblock_mask,
    dropblock_seeds,
    fast_dropblock_mask,
)
from dropkit.functional.dropconnect import (
    apply_dropconnect_conv,
    apply_dropconnect_linear,
    dropconnect_conv,
    dropconnect_linear,
    dropconnect_mask,
)
from dropkit.functional.dropout import apply_mask, dropout, sample_mask
from dropkit.functional.dropout_add import bias_dropout_add, dropout_add
from dropkit.functional.embedding_dropout import embedding_dropout
from dropkit.functional.fast_dropout import (
    draw_seed,
    fast_dropout_enabled,
    fast_keep_mask,
    set_fast_dropout,
    use_fast_dropout,
)
from dropkit.functional.gaussian_dropout import (
    apply_noise,
    fast_gaussian_noise,
    gaussian_dropout,
    gaussian_noise,
)
from dropkit.functional.locked_dropout import locked_dropout, locked_mask_shape
from dropkit.functional.shared_alpha_dropout import shared_alpha_dropout
from dropkit.functional.shared_dropout import sample_shared_mask, shared_dropout, shared_mask_shape
from dropkit.functional.variational_rnn import RNNMasks, sample_rnn_masks, variational_rnn
from dropkit.functional.weight_drop import weight_drop

__all__ = [
    "shared_alpha_dropout",
    "additive_noise",
    "additive_noise_sample",
    "alpha_affine",
    "alpha_dropout",
    "apply_alpha_mask",
    "apply_concrete",
    "apply_dropblock",
    "apply_dropconnect_conv",
    "apply_dropconnect_linear",
    "apply_mask",
    "apply_noise",
    "bias_dropout_add",
    "channel_dropout",
    "concrete_dropout",
    "concrete_noise",
    "concrete_regularizer",
    "draw_seed",
    "drop_path",
    "drop_path_rates",
    "dropblock",
    "dropblock2d",
    "dropblock3d",
    "dropblock_gamma",
    "dropblock_mask",
    "dropblock_seeds",
    "fast_dropblock_mask",
    "dropconnect_conv",
    "dropconnect_linear",
    "dropconnect_mask",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "dropout_add",
    "embedding_dropout",
    "fast_dropout_enabled",
    "fast_gaussian_noise",
    "fast_keep_mask",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "gaussian_noise",
    "locked_dropout",
    "locked_mask_shape",
    "RNNMasks",
    "sample_mask",
    "sample_rnn_masks",
    "sample_shared_mask",
    "set_fast_dropout",
    "shared_dropout",
    "shared_mask_shape",
    "use_fast_dropout",
    "variational_rnn",
    "weight_drop",
]

for _name in __all__:
    if _name[0].islower():  # functions (RNNMasks is a class)
        _fx.wrap(_name)
del _name
