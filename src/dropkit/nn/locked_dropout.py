"""``LockedDropout``: the module form of :func:`dropkit.functional.locked_dropout`."""

from __future__ import annotations

import torch

from dropkit._validation import _check_bool
from dropkit.functional.locked_dropout import locked_dropout
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["LockedDropout"]


class LockedDropout(_DropoutNd):
    """Variational dropout for sequences: one mask per sequence, the same at every time step.

    Training: features of each sequence are zeroed with probability ``p`` at all its steps, survivors
    scaled by 1/(1-p). Eval: the identity (``scale="classic"``: times 1-p). Put it on the inputs and
    outputs of RNN layers (AWD-LSTM's ``LockedDropout``).

    Paper: Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
    Networks", NeurIPS 2016.

    Args:
        p: probability that a feature of a sequence is zeroed. Default: 0.5
        inplace: do the operation in place. Default: False
        batch_first: ``(N, T, H)`` input if True, ``(T, N, H)`` if False, as in ``torch.nn.LSTM``
            (keyword only). Default: False
        scale: ``"inverted"`` or ``"classic"`` (keyword only). Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the masks (keyword only).

    Shape:
        - Input: ``(T, N, H)``, ``(N, T, H)`` with ``batch_first=True``, ``(T, H)``, or a
          ``PackedSequence``. Output: the same.

    Example::

        >>> m = dropkit.nn.LockedDropout(0.3, batch_first=True)
        >>> out = m(torch.randn(8, 35, 400))
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        batch_first: bool = False,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, scale=scale, generator=generator)
        self.batch_first = _check_bool(batch_first, "batch_first", type(self).__name__)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", batch_first=True" if self.batch_first else "")

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # (a PackedSequence is taken too, in eager: TorchScript compiles the Tensor signature)
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.locked_dropout(
                input,
                self.p,
                self.training,
                self.inplace,
                self.batch_first,
                self.scale,
                self.generator,
            )
        return locked_dropout(
            input,
            self.p,
            self.training,
            self.inplace,
            batch_first=self.batch_first,
            scale=self.scale,
            generator=self.generator,
        )
