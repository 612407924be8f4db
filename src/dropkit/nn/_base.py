"""The private base every dropkit dropout module derives from: ``p`` is checked once, here."""

from __future__ import annotations

import torch
from torch import nn

from dropkit._validation import _check_bool, _check_p, _check_scale

# torch.fx's default ``Tracer.is_leaf_module`` (and the tracers built on it: torchvision's feature
# extraction, FX quantization) keeps a module as one ``call_module`` node when ``m.__module__`` starts
# with "torch.nn", which is how torch's own dropout modules stay leaves. Every dropkit module gets that
# prefix on the *instance* (``__dict__`` shadows the class attribute; the class, and so pickling,
# ``type(m).__module__`` and ``repr`` are untouched), followed by its real module in brackets.
# "torch.nn[" and not "torch.nn.": torch.compile's Dynamo treats "torch.nn." modules as torch's own
# built-ins (it would not trace into their forward).
_FX_LEAF_PREFIX = "torch.nn"


def _fx_leaf_name(cls: type) -> str:
    return f"{_FX_LEAF_PREFIX}[{cls.__module__}]"


class _Stochastic:
    """Marker for every dropkit module whose training-mode forward is random (any kind of dropout,
    DropConnect, noise). Monte-Carlo dropout and the model utilities find layers through it; modules
    that cannot derive from ``_DropoutNd`` (e.g. a DropConnect ``nn.Linear``) mix it in directly.

    It also makes every dropkit module a leaf for ``torch.fx.symbolic_trace`` (see
    ``_FX_LEAF_PREFIX``), so a traced graph holds ``call_module`` nodes that keep the module's
    ``training`` flag, generator and fast path, as for ``torch.nn.Dropout``; and it is where
    ``torch.jit.script`` support is decided (:meth:`__prepare_scriptable__`).
    """

    # Set by modules whose forward has a TorchScript branch (``if torch.jit.is_scripting(): ...``).
    _scriptable: bool = False
    # Said in the error when a module cannot be scripted: why, and what to do instead.
    _not_scriptable_why: str = "its forward runs Python the TorchScript compiler cannot compile"

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self.__dict__["__module__"] = _fx_leaf_name(cls)
        return self

    def __prepare_scriptable__(self):
        """Called by ``torch.jit.script`` before it compiles this module: the module itself when its
        forward has a TorchScript branch, else a clear error naming dropkit and the ways out."""
        if type(self)._scriptable:
            return self
        name = f"dropkit.nn.{type(self).__name__}"
        raise RuntimeError(
            f"{name} does not support torch.jit.script: {self._not_scriptable_why}. Use "
            "torch.compile, torch.export or torch.jit.trace (a traced module replays the masks of "
            "the example call) instead; scriptable dropkit modules are listed in "
            "docs/pytorch_contracts.md"
        )


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
