"""``Dropout1d``/``Dropout2d``/``Dropout3d``: channel dropout modules, drop-ins for torch's."""

from __future__ import annotations

import torch

from dropkit._validation import _check_bool
from dropkit.functional.channel_dropout import channel_dropout
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["Dropout1d", "Dropout2d", "Dropout3d"]


class _ChannelDropout(_DropoutNd):
    _spatial_dims: int
    __constants__ = [*_DropoutNd.__constants__, "_spatial_dims"]  # read by the TorchScript branch

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        batched: bool | None = None,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, scale=scale, generator=generator)
        if batched is not None:
            _check_bool(batched, "batched", type(self).__name__)
        self.batched = batched

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra if self.batched is None else f"{extra}, batched={self.batched}"

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.channel_dropout(
                input,
                self.p,
                self.training,
                self.inplace,
                self._spatial_dims,
                self.batched,
                self.scale,
                self.generator,
            )
        return channel_dropout(
            input,
            self.p,
            self.training,
            self.inplace,
            spatial_dims=self._spatial_dims,
            batched=self.batched,
            scale=self.scale,
            generator=self.generator,
        )


class Dropout1d(_ChannelDropout):
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input; drop-in for ``torch.nn.Dropout1d``.

    Training: each channel kept with probability 1-p and scaled by 1/(1-p) (inverted) or 1
    (classic). Eval: identity (inverted) or times 1-p (classic).

    Paper: Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.

    Args:
        p: probability of a channel being zeroed. Default: 0.5
        inplace: do the operation in place. Default: False
        batched: None (infer from the rank), True or False (keyword only).
        scale, generator: as in :class:`dropkit.nn.Dropout`.

    Example::

        >>> out = dropkit.nn.Dropout1d(0.2)(torch.randn(8, 16, 100))
    """

    _spatial_dims = 1


class Dropout2d(_ChannelDropout):
    """Zero whole channels of ``(N, C, H, W)`` input, or ``(C, H, W)`` with ``batched=False``.

    Drop-in for ``torch.nn.Dropout2d`` on 4-D input. A 3-D input is refused unless ``batched=False``
    is given: torch reads it as ``(N, C, L)``, an unbatched image is ``(C, H, W)``, and dropkit will
    not guess. Training/eval and arguments as in :class:`Dropout1d`.

    Paper: Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.

    Example::

        >>> out = dropkit.nn.Dropout2d(0.2)(torch.randn(8, 16, 28, 28))
        >>> out = dropkit.nn.Dropout2d(0.2, batched=False)(torch.randn(16, 28, 28))
    """

    _spatial_dims = 2


class Dropout3d(_ChannelDropout):
    """Zero whole channels of ``(N, C, D, H, W)`` input, or ``(C, D, H, W)`` with ``batched=False``.

    Drop-in for ``torch.nn.Dropout3d`` on 5-D input; a 4-D input needs ``batched=False``. See
    :class:`Dropout2d`.

    Paper: Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.
    """

    _spatial_dims = 3
