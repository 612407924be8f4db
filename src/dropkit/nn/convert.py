"""Model utilities: swap torch dropout modules for dropkit's and back; get and set drop rates.

``convert_dropout(model, to="dropkit")`` replaces every ``torch.nn`` dropout module (Dropout,
Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout) by its dropkit counterpart with the same ``p``,
``inplace`` and train/eval mode; ``to="torch"`` goes back. Dropout modules hold no parameters or
buffers, so ``state_dict()`` is unchanged either way. One behaviour differs on purpose: dropkit's
``Dropout2d``/``Dropout3d`` refuse the ambiguous 3-D/4-D input torch's silently reinterpret.

``get_dropout_p`` / ``set_dropout_p`` read and write ``p`` of every dropout-like module: torch's, and
every dropkit module marked random in training (including DropConnect layers and parametrizations
and concrete dropout, whose learned rate is reset).
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.dropout import _DropoutNd as _TorchDropoutNd

from dropkit._validation import _check_p
from dropkit.nn._base import _Stochastic
from dropkit.nn.alpha_dropout import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.channel_dropout import Dropout1d, Dropout2d, Dropout3d
from dropkit.nn.concrete_dropout import ConcreteDropout
from dropkit.nn.dropout import Dropout

__all__ = ["convert_dropout", "dropout_modules", "get_dropout_p", "set_dropout_p"]

# torch class -> dropkit class; exact types only (a subclass may carry behaviour of its own).
_PAIRS: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (nn.Dropout, Dropout),
    (nn.Dropout1d, Dropout1d),
    (nn.Dropout2d, Dropout2d),
    (nn.Dropout3d, Dropout3d),
    (nn.AlphaDropout, AlphaDropout),
    (nn.FeatureAlphaDropout, FeatureAlphaDropout),
)
_TO_DROPKIT = dict(_PAIRS)
_TO_TORCH = {dk: th for th, dk in _PAIRS}


def _to_dropkit(module: nn.Module, name: str) -> nn.Module:
    return _TO_DROPKIT[type(module)](module.p, module.inplace)


def _to_torch(module: nn.Module, name: str) -> nn.Module:
    lost = []
    if getattr(module, "scale", "inverted") != "inverted":
        lost.append(f"scale={module.scale!r}")
    if module.generator is not None:
        lost.append("a generator")
    if getattr(module, "batched", None) is not None:
        lost.append(f"batched={module.batched}")
    if lost:
        raise ValueError(
            f"convert_dropout: '{name}' ({type(module).__name__}) has {', '.join(lost)}, which "
            f"torch's {_TO_TORCH[type(module)].__name__} cannot express; the conversion would not "
            "be lossless"
        )
    return _TO_TORCH[type(module)](module.p, module.inplace)


def convert_dropout(model: nn.Module, to: str = "dropkit") -> nn.Module:
    """Replace every torch dropout module of ``model`` by dropkit's (``to="dropkit"``) or back
    (``to="torch"``), in place; returns ``model`` (or the replacement if ``model`` itself is one).

    Modules without a counterpart (DropBlock, DropConnect, ...) are left alone. Converting to torch
    refuses a dropkit module whose settings torch cannot express (classic scale, a generator,
    ``batched``), naming it. Hooks registered on the replaced dropout modules are not carried over.

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.3))
        >>> net = convert_dropout(net)  # net[1] is now dropkit.nn.Dropout(p=0.3)
    """
    if to not in ("dropkit", "torch"):
        raise ValueError(f"convert_dropout: to must be 'dropkit' or 'torch', but got {to!r}")
    table, make = (_TO_DROPKIT, _to_dropkit) if to == "dropkit" else (_TO_TORCH, _to_torch)

    def replace(module: nn.Module, name: str) -> nn.Module:
        new = make(module, name or "<model>")
        new.train(module.training)
        return new

    if type(model) in table:
        return replace(model, "")
    # Collect first, then swap: never mutate a module tree while iterating it. A module reachable
    # under several names is replaced by one new module everywhere (sharing is kept).
    targets = [
        (n, m) for n, m in model.named_modules(remove_duplicate=False) if n and type(m) in table
    ]
    new: dict[int, nn.Module] = {}
    for name, module in targets:
        if id(module) not in new:
            new[id(module)] = replace(module, name)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new[id(module)])
    return model


def dropout_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every module of ``model`` with a drop rate ``p``: torch's dropout
    modules and dropkit's random-in-training ones (DropConnect parametrizations included).
    """
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (_TorchDropoutNd, _Stochastic)) and hasattr(m, "p")
    ]


def get_dropout_p(model: nn.Module) -> dict[str, float]:
    """``{module name: p}`` for every dropout module of ``model`` (see :func:`dropout_modules`)."""
    return {name: float(m.p) for name, m in dropout_modules(model)}


def set_dropout_p(model: nn.Module, p: float) -> list[str]:
    """Set the drop rate of every dropout module of ``model`` to ``p``; returns their names.

    ``p`` is checked once here, and again by each module that validates its own (so a value one of
    them cannot take, e.g. p=1 for Gaussian dropout, raises before anything is changed).
    """
    p = _check_p(p, "set_dropout_p")
    modules = dropout_modules(model)
    for name, m in modules:
        if isinstance(m, ConcreteDropout) and p == 0.0:
            raise ValueError(
                f"set_dropout_p: '{name}' (ConcreteDropout) needs p in (0, 1); nothing changed"
            )
        if isinstance(m, _Stochastic) and p == 1.0 and getattr(m, "_allow_one", True) is False:
            raise ValueError(
                f"set_dropout_p: '{name}' ({type(m).__name__}) is undefined at p=1; nothing changed"
            )
    for _, m in modules:
        m.p = p
    return [name for name, _ in modules]
