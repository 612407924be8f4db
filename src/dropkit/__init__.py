"""dropkit: dropout for PyTorch.

Every variant in one drop-in API (:mod:`dropkit.nn`, :mod:`dropkit.functional`), a NumPy oracle
(:mod:`dropkit.reference`) and an experiment lab (the ``dropkit`` command).
"""

from dropkit import functional, nn, reference, uncertainty
from dropkit.functional import apply_mask, dropout, sample_mask
from dropkit.nn import Dropout

__version__ = "0.1.0"

__all__ = [
    "Dropout",
    "__version__",
    "apply_mask",
    "dropout",
    "functional",
    "nn",
    "reference",
    "sample_mask",
    "uncertainty",
]
