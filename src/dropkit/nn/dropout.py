"""``Dropout``: the module form of :func:`dropkit.functional.dropout`."""

from __future__ import annotations

import torch

from dropkit.functional.dropout import dropout
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["Dropout"]


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` in training; a drop-in for ``torch.nn.Dropout``.

    Training: survivors are scaled by 1/(1-p) (``scale="inverted"``) or left unscaled
    (``scale="classic"``). Eval: the inverted form returns its input unchanged (the same object); the
    classic form multiplies by the keep probability 1-p.

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 2014.

    Args:
        p: probability of an element being zeroed. Default: 0.5
        inplace: do the operation in place. Default: False
        scale: ``"inverted"`` or ``"classic"`` (keyword only). Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the masks (keyword only).

    Shape:
        - Input: ``(*)``, any shape. Output: the same shape.

    Example::

        >>> m = dropkit.nn.Dropout(p=0.2)
        >>> out = m(torch.randn(20, 16))
    """

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.dropout(
                input, self.p, self.training, self.inplace, self.scale, self.generator
            )
        return dropout(
            input, self.p, self.training, self.inplace, scale=self.scale, generator=self.generator
        )
