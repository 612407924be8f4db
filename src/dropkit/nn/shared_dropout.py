"""``SharedDropout``: the module form of :func:`dropkit.functional.shared_dropout`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import _check_dims
from dropkit.functional.shared_dropout import shared_dropout
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["SharedDropout"]


class SharedDropout(_DropoutNd):
    """Dropout with one mask draw shared along ``shared_axes`` (Keras's ``noise_shape``).

    Training: one Bernoulli(1-p) draw per index of the other axes, broadcast along the shared ones;
    survivors scaled by 1/(1-p) (inverted) or 1 (classic). Eval: identity (inverted) or times 1-p.

    Paper: Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.

    Args:
        p: probability of a draw being a drop. Default: 0.5
        inplace: do the operation in place. Default: False
        shared_axes: int or sequence of ints (keyword only), the axes that share a draw; negative
            indices count from the end, so one module serves inputs of several ranks.
        scale, generator: as in :class:`dropkit.nn.Dropout`.

    Example::

        >>> m = dropkit.nn.SharedDropout(0.3, shared_axes=1)  # (N, T, D): same mask every step
        >>> out = m(torch.randn(8, 20, 16))
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        shared_axes: Sequence[int] | int,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, scale=scale, generator=generator)
        # Types and repeats are checked now; the range against each input's rank.
        self.shared_axes = _check_dims(shared_axes, None, type(self).__name__)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shared_axes={self.shared_axes}"

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            axes: list[int] = []
            for d in self.shared_axes:
                axes.append(d)
            return _torchscript.shared_dropout(
                input, self.p, self.training, self.inplace, axes, self.scale, self.generator
            )
        return shared_dropout(
            input,
            self.p,
            self.training,
            self.inplace,
            shared_axes=self.shared_axes,
            scale=self.scale,
            generator=self.generator,
        )
