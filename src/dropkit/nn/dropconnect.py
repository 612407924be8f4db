"""DropConnect layers and a lossless way to add DropConnect to any module's weights.

Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.

* ``DropConnectLinear``, ``DropConnectConv1d``, ``DropConnectConv2d``: subclasses of the torch
  layers (same parameters, state_dict, repr fields) whose forward masks the weight in training.
* ``add_dropconnect(module, names=("weight",), p=...)``: registers a :class:`DropConnect`
  parametrization (``torch.nn.utils.parametrize``) on the chosen tensors of an existing module. The
  parameter objects, bias, stride/padding/groups and buffers are untouched, and ``state_dict()``
  keeps its keys (``weight``, not ``parametrizations.weight.original``) through a pair of state-dict
  hooks, so checkpoints load either way. ``remove_dropconnect`` undoes it exactly.

The parametrization draws one mask each time the weight is read, i.e. once per forward for layers
that read it once (Linear, ConvNd). Per-sample masks need the layer classes (``per_sample=True``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from dropkit._validation import _check_bool, _check_p, _check_scale
from dropkit.functional.dropconnect import dropconnect_conv, dropconnect_linear
from dropkit.functional.dropout import dropout
from dropkit.nn._base import _DropoutNd, _Stochastic
from dropkit.ops import sharding as _sharding
from dropkit.ops import torchscript as _torchscript

__all__ = [
    "DropConnect",
    "DropConnectLinear",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "add_dropconnect",
    "remove_dropconnect",
]


class _DropConnectLayer(_Stochastic):
    """Holds ``p`` (validated on assignment), ``per_sample``, ``scale`` and ``generator``."""

    def _init_dropconnect(self, p, per_sample, scale, generator):
        op = type(self).__name__
        self.p = p
        self.per_sample = _check_bool(per_sample, "per_sample", op)
        self.scale = _check_scale(scale, op)
        self.generator = generator

    def __setattr__(self, name: str, value: object) -> None:
        if name == "p":
            value = _check_p(value, type(self).__name__)
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        extra = f"{super().extra_repr()}, p={self.p}"
        if self.per_sample:
            extra += ", per_sample=True"
        if self.scale != "inverted":
            extra += f", scale={self.scale!r}"
        return extra


class DropConnectLinear(_DropConnectLayer, nn.Linear):
    """``nn.Linear`` whose weight is DropConnect-masked in training; eval uses the mean weight.

    Training: each weight is zeroed with probability ``p`` and survivors scaled by 1/(1-p)
    (inverted) or 1 (classic); one mask per forward, or per sample with ``per_sample=True``. The bias
    is not dropped. Eval: ``W`` (inverted) or ``(1-p) W`` (classic).

    Paper: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.

    Args:
        in_features, out_features, bias, device, dtype: as in ``torch.nn.Linear``.
        p: probability of a weight being zeroed (keyword only). Default: 0.5
        per_sample: one mask per sample (dimension 0 of the input). Default: False
        scale, generator: as in :class:`dropkit.nn.Dropout`.

    Example::

        >>> layer = dropkit.nn.DropConnectLinear(20, 10, p=0.3)
        >>> out = layer(torch.randn(4, 20))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        p: float = 0.5,
        per_sample: bool = False,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_dropconnect(p, per_sample, scale, generator)

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.dropconnect_linear(
                input,
                self.weight,
                self.bias,
                self.p,
                self.training,
                self.per_sample,
                self.scale,
                self.generator,
            )
        return dropconnect_linear(
            input,
            self.weight,
            self.bias,
            self.p,
            self.training,
            per_sample=self.per_sample,
            scale=self.scale,
            generator=self.generator,
        )


class _DropConnectConvNd(_DropConnectLayer):
    _not_scriptable_why = (
        "its forward overrides the convolution hook of torch's ConvNd with dropkit's Python op"
    )

    def _conv_forward(self, input, weight, bias):  # overrides torch's ConvNd hook
        padding = self.padding
        if self.padding_mode != "zeros":
            input = nn.functional.pad(
                input, self._reversed_padding_repeated_twice, mode=self.padding_mode
            )
            padding = 0
        return dropconnect_conv(
            input,
            weight,
            bias,
            self.p,
            self.training,
            stride=self.stride,
            padding=padding,
            dilation=self.dilation,
            groups=self.groups,
            per_sample=self.per_sample,
            scale=self.scale,
            generator=self.generator,
        )


class DropConnectConv1d(_DropConnectConvNd, nn.Conv1d):
    """``nn.Conv1d`` with DropConnect on its weight; see :class:`DropConnectLinear`.

    Takes ``torch.nn.Conv1d``'s arguments, then keyword-only ``p``, ``per_sample``, ``scale``,
    ``generator``. Input ``(N, C, L)``.

    Paper: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    def __init__(
        self,
        *args,
        p: float = 0.5,
        per_sample: bool = False,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_dropconnect(p, per_sample, scale, generator)


class DropConnectConv2d(_DropConnectConvNd, nn.Conv2d):
    """``nn.Conv2d`` with DropConnect on its weight; see :class:`DropConnectLinear`.

    Takes ``torch.nn.Conv2d``'s arguments, then keyword-only ``p``, ``per_sample``, ``scale``,
    ``generator``. Input ``(N, C, H, W)``.

    Paper: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.

    Example::

        >>> conv = dropkit.nn.DropConnectConv2d(3, 8, 3, padding=1, p=0.2)
        >>> out = conv(torch.randn(2, 3, 16, 16))
    """

    def __init__(
        self,
        *args,
        p: float = 0.5,
        per_sample: bool = False,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_dropconnect(p, per_sample, scale, generator)


class DropConnect(_DropoutNd):
    """The parametrization :func:`add_dropconnect` registers: ``weight -> dropout(weight, p)``.

    Follows its module's ``train()``/``eval()``: in eval the weight is the mean weight, ``W``
    (inverted) or ``(1-p) W`` (classic). Found by the model utilities and MC dropout like any
    dropkit dropout module.

    Paper: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    def __init__(
        self, p: float = 0.5, *, scale: str = "inverted", generator: torch.Generator | None = None
    ) -> None:
        super().__init__(p, False, scale=scale, generator=generator)
        self._param_order: tuple[str, ...] = ()

    def extra_repr(self) -> str:
        # No ``inplace``: a parametrization must not modify the tensor it is given.
        return f"p={self.p}" + (f", scale={self.scale!r}" if self.scale != "inverted" else "")

    _not_scriptable_why = (
        "it is a torch.nn.utils.parametrize parametrization (add_dropconnect), and "
        "parametrized modules are not scriptable; use DropConnectLinear for TorchScript"
    )

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return dropout(weight, self.p, self.training, scale=self.scale, generator=self.generator)


def _dropconnect_names(module: nn.Module) -> list[str]:
    plists = getattr(module, "parametrizations", None)
    if not isinstance(plists, nn.ModuleDict):
        return []
    return [
        n for n, plist in plists.items() if len(plist) == 1 and isinstance(plist[0], DropConnect)
    ]


def _save_hook(module, state_dict, prefix, local_metadata):
    # Rename ``parametrizations.<name>.original`` back to ``<name>`` and restore the key order the
    # unparametrized module has (its parameters first, in registration order).
    names = _dropconnect_names(module)
    if not names:
        return
    local = [k for k in state_dict if k.startswith(prefix)]
    items = {k: state_dict.pop(k) for k in local}
    for name in names:
        old = f"{prefix}parametrizations.{name}.original"
        if old in items:
            items[prefix + name] = items.pop(old)
    order = module.parametrizations[names[0]][0]._param_order
    first = [prefix + n for n in order if prefix + n in items]
    for key in first + [k for k in items if k not in first]:
        state_dict[key] = items[key]


def _load_hook(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    for name in _dropconnect_names(module):
        new = f"{prefix}parametrizations.{name}.original"
        if prefix + name in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(prefix + name)


_HOOKS_ATTR = "_dropkit_dropconnect_hooks"


def add_dropconnect(
    module: nn.Module,
    names: str | Iterable[str] = ("weight",),
    p: float = 0.5,
    *,
    scale: str = "inverted",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Add DropConnect to the tensors ``names`` of ``module`` in place, losslessly; returns it.

    Each named parameter gets a :class:`DropConnect` parametrization: reading ``module.weight``
    gives the masked weight in training and the mean weight in eval; the trained tensor stays the
    same ``nn.Parameter`` object (``module.parametrizations.weight.original``), so optimizers keep
    working. ``state_dict()`` keys and order are unchanged. Undo with :func:`remove_dropconnect`.

    Example::

        >>> conv = torch.nn.Conv2d(3, 8, 3)
        >>> add_dropconnect(conv, "weight", p=0.2)
        >>> remove_dropconnect(conv)
    """
    op = "add_dropconnect"
    if not isinstance(module, nn.Module):
        raise TypeError(f"{op}: module must be a torch.nn.Module, but got {type(module).__name__}")
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise ValueError(f"{op}: names must name at least one parameter")
    if len(set(names)) != len(names):
        raise ValueError(f"{op}: names has repeats: {names}")
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    existing = _dropconnect_names(module)
    order = (
        module.parametrizations[existing[0]][0]._param_order
        if existing
        else tuple(module._parameters)
    )
    for name in names:
        if parametrize.is_parametrized(module, name):
            raise ValueError(f"{op}: '{name}' of {type(module).__name__} is already parametrized")
        if not isinstance(module._parameters.get(name), nn.Parameter):
            have = [n for n, v in module._parameters.items() if v is not None]
            raise ValueError(
                f"{op}: {type(module).__name__} has no parameter '{name}' (it has {have})"
            )
    for name in names:
        dc = DropConnect(p, scale=scale, generator=generator)
        dc._param_order = order
        # Registration evaluates the parametrization once to check it, in the module's mode. With
        # the module's own flag (not its children's) briefly off, that check draws no mask, so the
        # generator (or the global RNG) is untouched until the first forward.
        training, module.training = module.training, False
        try:
            parametrize.register_parametrization(module, name, dc)
        finally:
            module.training = training
        dc.train(training)
    if not hasattr(module, _HOOKS_ATTR):
        handles = (
            module._register_state_dict_hook(_save_hook),
            module.register_load_state_dict_pre_hook(_load_hook),
            module.register_forward_pre_hook(_refuse_mixed_dtensor),
        )
        object.__setattr__(module, _HOOKS_ATTR, handles)
    return module


def _refuse_mixed_dtensor(module: nn.Module, args) -> None:
    # A DTensor input and plain weights: torch's layer would fail deep inside with "mixed
    # torch.Tensor and DTensor"; say what to do instead.
    if any(type(a) is not torch.Tensor and _sharding.is_dtensor(a) for a in args):
        weights = [module.parametrizations[n].original for n in _dropconnect_names(module)]
        if not all(_sharding.is_dtensor(w) for w in weights):
            _sharding.refuse(
                f"add_dropconnect ({type(module).__name__})",
                "the layer's weights are plain tensors: parallelize the layer so that they are "
                "DTensors too (DropConnect then masks each shard's part of the global weight)",
            )


def remove_dropconnect(module: nn.Module, names: str | Iterable[str] | None = None) -> nn.Module:
    """Remove the DropConnect added by :func:`add_dropconnect` (all of it, or ``names``).

    The module gets back its original class and its original parameter objects (the unmasked
    weights), so it is exactly as before ``add_dropconnect``.
    """
    op = "remove_dropconnect"
    present = _dropconnect_names(module)
    names = present if names is None else ((names,) if isinstance(names, str) else tuple(names))
    for name in names:
        if name not in present:
            raise ValueError(
                f"{op}: '{name}' of {type(module).__name__} has no DropConnect (it has {present})"
            )
    order = module.parametrizations[names[0]][0]._param_order if names else ()
    for name in names:
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    # remove_parametrizations re-registers each tensor last; restore the registration order.
    params = module._parameters
    ordered = [k for k in order if k in params] + [k for k in params if k not in order]
    items = {k: params[k] for k in ordered}
    params.clear()
    params.update(items)
    if not _dropconnect_names(module) and hasattr(module, _HOOKS_ATTR):
        for handle in getattr(module, _HOOKS_ATTR):
            handle.remove()
        object.__delattr__(module, _HOOKS_ATTR)
    return module
