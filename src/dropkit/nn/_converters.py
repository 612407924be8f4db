"""Converters between the peers' stochastic layers and dropkit's, for the registry.

Each ``f(module) -> dropkit module`` maps the peer's argument names onto dropkit's one vocabulary
(``p`` is the drop probability) and raises ``Unconvertible`` for a setting dropkit cannot express, so
that the conversion stays lossless: eval outputs are identical (every one of these is the identity
in eval) and training draws from the same distribution. None of them imports the peer's library:
they read the module's attributes.
"""

from __future__ import annotations

from torch import nn

from dropkit.nn.alpha_dropout import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.channel_dropout import Dropout1d, Dropout2d, Dropout3d
from dropkit.nn.drop_path import DropPath
from dropkit.nn.dropblock import DropBlock2d, DropBlock3d
from dropkit.nn.dropout import Dropout
from dropkit.nn.shared_dropout import SharedDropout

# torch class -> dropkit class; exact types only (a subclass may carry behaviour of its own).
TORCH_PAIRS: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (nn.Dropout, Dropout),
    (nn.Dropout1d, Dropout1d),
    (nn.Dropout2d, Dropout2d),
    (nn.Dropout3d, Dropout3d),
    (nn.AlphaDropout, AlphaDropout),
    (nn.FeatureAlphaDropout, FeatureAlphaDropout),
)
DROPKIT_TO_TORCH = {dk: th for th, dk in TORCH_PAIRS}


def _unconvertible(reason: str):
    from dropkit.nn.registry import Unconvertible

    return Unconvertible(reason)


def _torch(dk_cls):
    def convert(m: nn.Module) -> nn.Module:
        return dk_cls(m.p, m.inplace)

    return convert


TORCH_TO_DROPKIT = {th: _torch(dk) for th, dk in TORCH_PAIRS}


def timm_drop_path(m: nn.Module) -> nn.Module:
    """timm ``DropPath(drop_prob, scale_by_keep)``: per-sample Bernoulli(1-p), scaled by 1/(1-p),
    or unscaled with ``scale_by_keep=False`` (dropkit's option of that name; eval is the identity
    either way)."""
    return DropPath(float(m.drop_prob), scale_by_keep=bool(getattr(m, "scale_by_keep", True)))


def timm_dropblock(m: nn.Module) -> nn.Module:
    """timm ``DropBlock2d``: ``couple_channels`` is dropkit's ``share_channels``; ``gamma_scale``
    multiplies the seed rate, i.e. the fraction dropped, so dropkit's ``p = drop_prob * gamma_scale``
    (the origin keeps ``gamma_scale`` for the way back); blocks are clipped to the map, as timm's.
    ``with_noise`` and ``scale_by_keep`` keep their names; timm never rescales when it adds noise,
    so ``with_noise=True`` converts with ``scale_by_keep=False``."""
    with_noise = bool(getattr(m, "with_noise", False))
    scale_by_keep = bool(getattr(m, "scale_by_keep", True)) and not with_noise
    if not isinstance(m.block_size, int):
        raise _unconvertible(f"block_size={m.block_size!r} is not an int")
    p = float(m.drop_prob) * float(getattr(m, "gamma_scale", 1.0))
    if not 0.0 <= p <= 1.0:
        raise _unconvertible(f"drop_prob * gamma_scale = {p} is not a probability")
    return DropBlock2d(
        p,
        bool(getattr(m, "inplace", False)),
        block_size=m.block_size,
        share_channels=bool(getattr(m, "couple_channels", True)),
        clip_block_size=True,  # timm clips a block larger than the map
        scale_by_keep=scale_by_keep,
        with_noise=with_noise,
    )


def timm_dropblock_back(origin: nn.Module, p: float) -> None:
    origin.drop_prob = p / float(getattr(origin, "gamma_scale", 1.0))


def tv_stochastic_depth(m: nn.Module) -> nn.Module:
    """torchvision ``StochasticDepth(p, mode)`` is dropkit's ``DropPath(p, mode=mode)``."""
    if m.mode not in ("row", "batch"):
        raise _unconvertible(f"mode={m.mode!r} is neither 'row' nor 'batch'")
    return DropPath(float(m.p), mode=m.mode)


def tv_dropblock(m: nn.Module) -> nn.Module:
    """torchvision ``DropBlock2d/3d(p, block_size, inplace, eps)``: independent blocks per channel
    (dropkit's ``share_channels=False``), the same gamma and count/count_ones rescaling."""
    cls = DropBlock3d if type(m).__name__ == "DropBlock3d" else DropBlock2d
    return cls(float(m.p), bool(m.inplace), block_size=int(m.block_size), share_channels=False)


def fastai_rnn_dropout(m: nn.Module) -> nn.Module:
    """fastai ``RNNDropout(p)``: one mask per sample and feature, shared along dimension 1 (the
    sequence), for an input of any rank: dropkit's ``SharedDropout(p, shared_axes=1)``."""
    return SharedDropout(float(m.p), shared_axes=1)


# How to write a dropkit module's (possibly changed) rate back into the module it came from.
BACK = {"timm_dropblock": timm_dropblock_back}
