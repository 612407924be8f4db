"""``DropBlock2d`` and ``DropBlock3d``: the module form of :func:`dropkit.functional.dropblock`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import _check_bool, _check_size_tuple
from dropkit.functional.dropblock import dropblock2d, dropblock3d
from dropkit.nn._base import _DropoutNd
from dropkit.ops import torchscript as _torchscript

__all__ = ["DropBlock2d", "DropBlock3d"]


class _DropBlockNd(_DropoutNd):
    _spatial_dims: int
    _dropblock: staticmethod  # dropblock2d or dropblock3d (its checks name the input's rank)
    _scriptable = True

    def __init__(
        self,
        p: float = 0.1,
        inplace: bool = False,
        *,
        block_size: int | Sequence[int] = 7,
        share_channels: bool = False,
        clip_block_size: bool = False,
        scale_by_keep: bool = True,
        with_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, generator=generator)
        op = type(self).__name__
        self.block_size = _check_size_tuple(block_size, self._spatial_dims, op)
        self.share_channels = _check_bool(share_channels, "share_channels", op)
        self.clip_block_size = _check_bool(clip_block_size, "clip_block_size", op)
        self.scale_by_keep = _check_bool(scale_by_keep, "scale_by_keep", op)
        self.with_noise = _check_bool(with_noise, "with_noise", op)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            block: list[int] = []
            for b in self.block_size:
                block.append(b)
            return _torchscript.dropblock(
                input,
                self.p,
                self.training,
                self.inplace,
                block,
                self.share_channels,
                self.generator,
                self.scale_by_keep,
                self.with_noise,
                self.clip_block_size,
            )
        return self._dropblock(
            input,
            self.p,
            self.training,
            self.inplace,
            block_size=self.block_size,
            share_channels=self.share_channels,
            clip_block_size=self.clip_block_size,
            scale_by_keep=self.scale_by_keep,
            with_noise=self.with_noise,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        extra = f"{super().extra_repr()}, block_size={self.block_size}"
        extra += ", share_channels=True" if self.share_channels else ""
        extra += ", clip_block_size=True" if self.clip_block_size else ""
        extra += "" if self.scale_by_keep else ", scale_by_keep=False"
        return extra + (", with_noise=True" if self.with_noise else "")


class DropBlock2d(_DropBlockNd):
    """DropBlock on ``(N, C, H, W)`` feature maps: drop ``block_size`` squares, rescale the rest.

    Training: about a fraction ``p`` of units is zeroed in contiguous blocks; survivors are scaled by
    count/count_ones of the mask. Eval: identity.

    Paper: Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018.

    Args:
        p: target fraction of dropped units. Default: 0.1
        inplace: do the operation in place. Default: False
        block_size: int or (bh, bw), keyword only. Default: 7
        share_channels: one block pattern for all channels of a sample. Default: False
        clip_block_size: clip a block larger than the map to it (timm's rule) instead of
            raising. Default: False
        scale_by_keep: rescale the kept units by count/count_ones; False keeps them as they are
            (timm's option). Default: True
        with_noise: dropped units are standard-normal noise instead of zeros (timm's option; timm
            does not rescale then, i.e. ``scale_by_keep=False`` here). Default: False
        generator: optional ``torch.Generator`` (keyword only).

    Example::

        >>> out = dropkit.nn.DropBlock2d(0.1, block_size=3)(torch.randn(8, 16, 14, 14))
    """

    _spatial_dims = 2
    _dropblock = staticmethod(dropblock2d)


class DropBlock3d(_DropBlockNd):
    """DropBlock on ``(N, C, D, H, W)`` feature maps; see :class:`DropBlock2d`.

    Paper: Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018.
    """

    _spatial_dims = 3
    _dropblock = staticmethod(dropblock3d)
