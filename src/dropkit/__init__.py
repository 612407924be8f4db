"""dropkit: dropout for PyTorch.

Every variant in one drop-in API (:mod:`dropkit.nn`, :mod:`dropkit.functional`), a NumPy oracle
(:mod:`dropkit.reference`) and an experiment lab (the ``dropkit`` command).
"""

import torch.fx as _fx

from dropkit import functional, nn, reference, uncertainty
from dropkit.functional import (
    apply_mask,
    dropout,
    fast_dropout_enabled,
    sample_mask,
    set_fast_dropout,
    use_fast_dropout,
)
from dropkit.nn import (
    AlphaDropout,
    ConcreteDropout,
    DropBlock2d,
    DropBlock3d,
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    DropPath,
    FeatureAlphaDropout,
    GaussianDropout,
    SharedDropout,
    add_dropconnect,
    convert_dropout,
    get_dropout_p,
    remove_dropconnect,
    set_dropout_p,
)

__version__ = "0.1.0"

# dropkit.dropout & co. are the functional ops: wrapped for torch.fx here too (see dropkit.functional)
for _name in ("apply_mask", "dropout", "sample_mask"):
    _fx.wrap(_name)
del _name

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectLinear",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "SharedDropout",
    "add_dropconnect",
    "convert_dropout",
    "get_dropout_p",
    "remove_dropconnect",
    "set_dropout_p",
    "__version__",
    "apply_mask",
    "dropout",
    "fast_dropout_enabled",
    "functional",
    "nn",
    "reference",
    "sample_mask",
    "set_fast_dropout",
    "use_fast_dropout",
    "uncertainty",
]
