"""Model utilities: convert a model's stochastic layers to dropkit's and back; get and set drop rates.

Every function here reads the registry of stochastic layers (:mod:`dropkit.nn.registry`): torch's
dropout modules, dropkit's, timm's ``DropPath``/``DropBlock2d``, torchvision's ``StochasticDepth`` and
DropBlock, Hugging Face attention and hidden dropout, and whatever users register.

``convert_dropout(model, to="dropkit")`` replaces every layer with a dropkit counterpart (torch's
Dropout family, timm's DropPath/DropBlock2d, torchvision's StochasticDepth/DropBlock) by it, with the
same rate, ``inplace`` and train/eval mode; ``to="original"`` puts back the modules it replaced (the
peers' classes included, with the rates set since) and ``to="torch"`` gives torch's own classes. The
dropout layers hold no parameters or buffers, so ``state_dict()`` is unchanged either way and loads
into the original library's model. What is left unconverted is reported, never skipped silently.
One behaviour differs on purpose: dropkit's ``Dropout2d``/``Dropout3d`` refuse the ambiguous
3-D/4-D input torch's silently reinterpret.

``get_dropout_p`` / ``set_dropout_p`` read and write the rate of every registered module that has one
(``set_dropout_p`` also keeps a Hugging Face model's config in sync, so ``save_pretrained`` and
``from_pretrained`` keep the rates).
"""

from __future__ import annotations

import warnings

from torch import nn

from dropkit._validation import _check_bool, _check_p
from dropkit.nn import _converters
from dropkit.nn._base import _Stochastic
from dropkit.nn.concrete_dropout import ConcreteDropout
from dropkit.nn.registry import Unconvertible, _lookup, stochastic_layer, stochastic_layers

__all__ = [
    "ConversionWarning",
    "convert_dropout",
    "dropout_modules",
    "get_dropout_p",
    "set_dropout_p",
]

_TO_TORCH = _converters.DROPKIT_TO_TORCH
_TARGETS = ("dropkit", "torch", "original")


class ConversionWarning(UserWarning):
    """``convert_dropout`` left stochastic modules of the model unconverted (the message lists them)."""


def _to_torch(module: nn.Module, name: str) -> nn.Module:
    if type(module) not in _TO_TORCH:
        raise Unconvertible(f"{type(module).__name__} has no torch counterpart")
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


def _to_original(module: nn.Module, name: str) -> nn.Module | None:
    origin = module.__dict__.get("_dropkit_origin")
    if origin is None:
        return None  # not put there by convert_dropout: already the original
    back = module.__dict__.get("_dropkit_origin_p")
    if back is not None:
        back(origin, float(module.p))
    else:
        entry = stochastic_layer(origin)
        if entry is not None and entry.set_p is not None:
            entry.set_p(origin, float(module.p))
    if getattr(module, "mode", None) in ("row", "batch") and hasattr(origin, "mode"):
        origin.mode = module.mode
    if hasattr(origin, "inplace") and hasattr(module, "inplace"):
        origin.inplace = module.inplace
    return origin


def _to_dropkit(module: nn.Module, name: str) -> nn.Module | None:
    """The dropkit replacement, or None for a module that is dropkit's already; Unconvertible if
    there is none."""
    if isinstance(module, _Stochastic):
        return None
    entry, exact = _lookup(module)
    if entry.kind == "gate":
        raise Unconvertible(
            "its dropout runs functionally inside its forward (a gate): nothing to replace; "
            "mc_mode and set_dropout_p still handle it"
        )
    if entry.to_dropkit is None or not exact:
        raise Unconvertible("no dropkit counterpart is registered for this class")
    new = entry.to_dropkit(module)
    # Kept outside the module tree (no submodule, no state_dict entry) for to="original".
    object.__setattr__(new, "_dropkit_origin", module)
    if entry.to_dropkit is _converters.timm_dropblock:
        object.__setattr__(new, "_dropkit_origin_p", _converters.timm_dropblock_back)
    return new


def convert_dropout(model: nn.Module, to: str = "dropkit", *, strict: bool = False) -> nn.Module:
    """Replace the stochastic layers of ``model`` by dropkit's (``to="dropkit"``), by the modules
    they replaced (``to="original"``) or by torch's (``to="torch"``), in place; returns ``model``
    (or the replacement if ``model`` itself is one).

    Converted: torch's Dropout family, timm's ``DropPath`` (``drop_prob``) and ``DropBlock2d``
    (``couple_channels`` becomes ``share_channels``, ``p = drop_prob * gamma_scale``),
    torchvision's ``StochasticDepth(mode="row")`` and ``DropBlock2d/3d``, and registered classes
    with a converter. Every other stochastic module (a setting dropkit cannot express, a gate whose
    dropout is functional such as Hugging Face attention, a dropkit module with no torch
    counterpart) is left as it is and listed in a :class:`ConversionWarning`, or a ``ValueError``
    with ``strict=True`` (raised before anything is changed). Converting to torch refuses a dropkit
    module whose settings torch cannot express (classic scale, a generator, ``batched``), naming
    it. Hooks registered on replaced modules are not carried over.

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.3))
        >>> net = convert_dropout(net)  # net[1] is now dropkit.nn.Dropout(p=0.3)
    """
    if to not in _TARGETS:
        raise ValueError(f"convert_dropout: to must be one of {_TARGETS}, but got {to!r}")
    _check_bool(strict, "strict", "convert_dropout")
    make = {"dropkit": _to_dropkit, "torch": _to_torch, "original": _to_original}[to]

    def candidate(m: nn.Module) -> bool:
        if to == "dropkit":
            return stochastic_layer(m) is not None
        return isinstance(m, _Stochastic)

    # Collect first, then swap: never mutate a module tree while iterating it. A module reachable
    # under several names is replaced by one new module everywhere (sharing is kept).
    named = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if candidate(m)]
    new: dict[int, nn.Module | None] = {}
    left: dict[int, tuple[str, nn.Module, str]] = {}
    for name, module in named:
        if id(module) in new or id(module) in left:
            continue
        try:
            replacement = make(module, name or "<model>")
        except Unconvertible as e:
            left[id(module)] = (name or "<model>", module, str(e))
            continue
        if replacement is not None:
            replacement.train(module.training)
        new[id(module)] = replacement
    if left:
        _report(list(left.values()), to, strict)
    for name, module in named:
        replacement = new.get(id(module))
        if replacement is None:
            continue
        if not name:
            return replacement
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, replacement)
    return model


def _report(left: list[tuple[str, nn.Module, str]], to: str, strict: bool) -> None:
    by_reason: dict[tuple[str, str], list[str]] = {}
    for name, module, reason in left:
        by_reason.setdefault((type(module).__name__, reason), []).append(name)
    lines = []
    for (cls, reason), names in by_reason.items():
        shown = ", ".join(f"'{n}'" for n in names[:3]) + (", ..." if len(names) > 3 else "")
        lines.append(f"  {len(names)} x {cls} ({shown}): {reason}")
    msg = f"convert_dropout(to={to!r}) left {len(left)} stochastic module(s) as they were:\n"
    msg += "\n".join(lines)
    if strict:
        raise ValueError(msg + "\nnothing was changed (strict=True)")
    warnings.warn(msg, ConversionWarning, stacklevel=3)


def dropout_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every registered stochastic module of ``model`` with a drop rate of
    its own: torch's and dropkit's dropout modules (DropConnect parametrizations included), the
    peers' (timm's DropPath, torchvision's StochasticDepth, ...) and gates holding a float rate (a
    Hugging Face ``attention_dropout``, timm's ``drop_rate`` head). See
    :mod:`dropkit.nn.registry`."""
    return [(n, m) for n, m, entry in stochastic_layers(model) if entry.p(m) is not None]


def get_dropout_p(model: nn.Module) -> dict[str, float]:
    """``{module name: p}`` for every dropout module of ``model`` (see :func:`dropout_modules`)."""
    return {
        n: float(entry.p(m)) for n, m, entry in stochastic_layers(model) if entry.p(m) is not None
    }


# Hugging Face config keys that hold a drop rate (``hidden_dropout_prob``, ``attn_pdrop``, ...).
def _is_config_rate(key: str, value: object) -> bool:
    return (
        ("dropout" in key or "pdrop" in key)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    )


def _is_hf_config(value: object) -> bool:
    return type(value).__module__.startswith("transformers.") and hasattr(value, "to_dict")


def _hf_configs(model: nn.Module) -> list[object]:
    """Every distinct Hugging Face config held by a module of ``model``, sub-configs included."""
    seen: dict[int, object] = {}
    stack = [getattr(m, "config", None) for m in model.modules()]
    while stack:
        c = stack.pop()
        if _is_hf_config(c) and id(c) not in seen:
            seen[id(c)] = c
            stack += [v for v in vars(c).values() if _is_hf_config(v)]
    return list(seen.values())


def set_dropout_p(model: nn.Module, p: float) -> list[str]:
    """Set the drop rate of every dropout module of ``model`` to ``p``; returns their names.

    ``p`` is checked once here, and again by each module that validates its own (so a value one of
    them cannot take, e.g. p=1 for Gaussian dropout, raises before anything is changed). A Hugging
    Face model's config (and its sub-configs) gets the same rate in every float ``*dropout*`` and
    ``*pdrop*`` key (``hidden_dropout_prob``, ``attention_probs_dropout_prob``, ``resid_pdrop``,
    ``embd_pdrop``, ``attn_pdrop``, ``attention_dropout``, ...), so ``save_pretrained`` /
    ``from_pretrained`` keep it.
    """
    p = _check_p(p, "set_dropout_p")
    found = [(n, m, e) for n, m, e in stochastic_layers(model) if e.p(m) is not None]
    for name, m, _ in found:
        if isinstance(m, ConcreteDropout) and p == 0.0:
            raise ValueError(
                f"set_dropout_p: '{name}' (ConcreteDropout) needs p in (0, 1); nothing changed"
            )
        if isinstance(m, _Stochastic) and p == 1.0 and getattr(m, "_allow_one", True) is False:
            raise ValueError(
                f"set_dropout_p: '{name}' ({type(m).__name__}) is undefined at p=1; nothing changed"
            )
    for _, m, entry in found:
        if entry.set_p is not None:
            entry.set_p(m, p)
    for config in _hf_configs(model):
        for key, value in list(vars(config).items()):
            if _is_config_rate(key, value):
                setattr(config, key, p)
    return [name for name, _, _ in found]
