"""The private base every dropkit dropout module derives from: ``p`` is checked once, here."""

from __future__ import annotations

import torch
from torch import nn

from dropkit._validation import _check_bool, _check_p, _check_scale


class _Stochastic:
    """Marker for every dropkit module whose training-mode forward is random (any kind of dropout,
    DropConnect, noise). Monte-Carlo dropout and the model utilities find layers through it; modules
    that cannot derive from ``_DropoutNd`` (e.g. a DropConnect ``nn.Linear``) mix it in directly.
    """


class _DropoutNd(_Stochastic, nn.Module):
    """Holds ``p``, ``inplace``, ``scale`` and an optional ``generator``; gives one ``extra_repr``.

    Subclasses add a docstring and a one-line ``forward`` that calls their functional op with
    ``self.training``. ``p`` is a plain attribute, as in ``torch.nn``, so ``module.p = 0.3`` works;
    assignments are validated too.
    """

    __constants__ = ["p", "inplace", "scale"]
    # Variants undefined at p=1 (e.g. Gaussian noise with variance p/(1-p)) set this to False.
    _allow_one: bool = True

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        op = type(self).__name__
        self.p = _check_p(p, op, allow_one=self._allow_one)
        self.inplace = _check_bool(inplace, "inplace", op)
        self.scale = _check_scale(scale, op)
        self.generator = generator

    def __setattr__(self, name: str, value: object) -> None:
        if name == "p":
            value = _check_p(value, type(self).__name__, allow_one=self._allow_one)
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        extra = f"p={self.p}, inplace={self.inplace}"
        if self.scale != "inverted":
            extra += f", scale={self.scale!r}"
        return extra
