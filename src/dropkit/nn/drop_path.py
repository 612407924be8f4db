"""``DropPath``: stochastic depth as a module."""

from __future__ import annotations

import torch

from dropkit._validation import _check_bool
from dropkit.functional.drop_path import _check_mode, _training_scale, drop_path
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["DropPath"]


class DropPath(_DropoutNd):
    """Drop a residual branch for whole samples: ``x + DropPath(p)(f(x))``.

    Training: per sample, the branch output is zeroed with probability ``p`` or scaled by 1/(1-p)
    (inverted; 1 for classic). Eval: identity (inverted) or times 1-p (classic). Use
    :func:`dropkit.functional.drop_path_rates` for the paper's linearly increasing rates.

    Paper: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.

    Args:
        p: probability of dropping the branch for a sample. Default: 0.1
        inplace, scale, generator: as in :class:`dropkit.nn.Dropout`.
        mode: ``"row"`` (one draw per sample) or ``"batch"`` (one for the whole batch, as
            torchvision's ``StochasticDepth(mode="batch")``), keyword only. Default: ``"row"``
        scale_by_keep: rescale survivors by 1/(1-p) in training; False (timm's option) leaves
            them unscaled, eval stays the identity (with ``scale="inverted"`` only), keyword
            only. Default: True

    Shape:
        - Input: ``(N, *)``. Output: the same shape.

    Example::

        >>> rates = dropkit.functional.drop_path_rates(0.2, num_blocks=4)
        >>> paths = [dropkit.nn.DropPath(p) for p in rates]
    """

    def __init__(
        self,
        p: float = 0.1,
        inplace: bool = False,
        *,
        scale: str = "inverted",
        mode: str = "row",
        scale_by_keep: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, scale=scale, generator=generator)
        op = type(self).__name__
        self.mode = _check_mode(mode, op)
        self.scale_by_keep = _check_bool(scale_by_keep, "scale_by_keep", op)
        _training_scale(self.scale, self.scale_by_keep, True, op)  # the combination's check

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        extra = extra if self.mode == "row" else f"{extra}, mode={self.mode!r}"
        return extra if self.scale_by_keep else f"{extra}, scale_by_keep=False"

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.drop_path(
                input,
                self.p,
                self.training,
                self.inplace,
                self.scale,
                self.generator,
                self.mode,
                self.scale_by_keep,
            )
        return drop_path(
            input,
            self.p,
            self.training,
            self.inplace,
            scale=self.scale,
            mode=self.mode,
            scale_by_keep=self.scale_by_keep,
            generator=self.generator,
        )
