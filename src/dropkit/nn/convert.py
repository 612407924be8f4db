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

``get_dropout_p`` / ``set_dropout_p`` read and write every rate of every registered module that has
one; a module with several rates (BART's ``dropout``, ``activation_dropout`` and ``layerdrop``)
shows each under its own name (``"model.encoder.layers.0.activation_dropout"``). ``set_dropout_p``
also keeps a Hugging Face model's config in sync, so ``save_pretrained`` and ``from_pretrained``
keep the rates. ``set_generator`` gives every dropkit layer of a model one ``torch.Generator``.

Modules the behaviour probe found random in training (:mod:`dropkit.nn.discovery`) but no registry
entry names have no rate dropkit knows: every function here reports them (an
:class:`UnknownRateWarning`, or the ``ConversionWarning``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from dropkit._validation import _check_bool, _check_p
from dropkit.nn import _converters, _gate_dropout
from dropkit.nn._base import _Stochastic
from dropkit.nn.concrete_dropout import ConcreteDropout
from dropkit.nn.registry import (
    StochasticLayer,
    Unconvertible,
    _lookup,
    stochastic_layer,
    stochastic_layers,
)
from dropkit.random.ranks import RankStream

__all__ = [
    "ConversionWarning",
    "GeneratorWarning",
    "UnknownRateWarning",
    "convert_dropout",
    "dropout_modules",
    "get_dropout_p",
    "set_dropout_p",
    "set_generator",
]

_TO_TORCH = _converters.DROPKIT_TO_TORCH
_TARGETS = ("dropkit", "torch", "original")


class ConversionWarning(UserWarning):
    """``convert_dropout`` left stochastic modules of the model unconverted (the message lists them)."""


class UnknownRateWarning(UserWarning):
    """The model has modules found random in training by behaviour whose rate dropkit cannot read
    or set (the message lists them, with how to register their class)."""


class GeneratorWarning(UserWarning):
    """``set_generator`` left stochastic modules that take no generator (the message lists them)."""


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
    if entry.found_by == "behaviour":
        raise Unconvertible(
            "found random in training by behaviour, with no registry entry: nothing known to "
            "convert it to; register its class (dropkit.nn.register_stochastic_layer)"
        )
    if entry.kind == "gate":
        if _gate_dropout.applies(module):
            return None  # its functional dropout runs dropkit's once installed (_gate_dropout)
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
    with a converter. Gates whose dropout is a Python call inside their forward (Hugging Face
    attention, eager or SDPA; timm's fused attention and ``drop_rate`` heads) keep their class and
    get hooks under which, in training, that ``F.dropout`` / SDPA dropout runs dropkit's kernels
    (eval is untouched; ``to="original"`` or ``"torch"`` removes the hooks). Every other
    stochastic module (a setting dropkit cannot express, a gate whose dropout runs in C++ such as
    ``nn.MultiheadAttention``, a dropkit module with no torch
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
    (_gate_dropout.install if to == "dropkit" else _gate_dropout.uninstall)(model)
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
    return [(n, m) for n, m, entry in stochastic_layers(model) if entry.rates(m)]


def _key(name: str, rate: str) -> str:
    """The name of one rate: the module's name for its single rate, ``module.attribute`` for one
    of several."""
    if not rate:
        return name
    return f"{name}.{rate}" if name else rate


def _rates(model: nn.Module) -> list[tuple[str, str, nn.Module, StochasticLayer, str, float]]:
    """``(key, module name, module, entry, rate name, p)`` for every rate of ``model``."""
    return [
        (_key(n, r), n, m, e, r, p)
        for n, m, e in stochastic_layers(model)
        for r, p in e.rates(m).items()
    ]


def _warn_unknown(model: nn.Module, op: str) -> None:
    """An UnknownRateWarning for the modules found by behaviour (their rate is unknown)."""
    found = [(n, m) for n, m, e in stochastic_layers(model) if e.found_by == "behaviour"]
    if not found:
        return
    names = ", ".join(f"'{n or '<model>'}' ({type(m).__name__})" for n, m in found[:4])
    warnings.warn(
        f"{op}: {len(found)} module(s) found random in training by behaviour have no rate "
        f"dropkit can read or set: {names}{', ...' * (len(found) > 4)}. mc_mode switches them; "
        "to read and set their rate, register their class: "
        "dropkit.nn.register_stochastic_layer(cls, kind='gate', p='<rate attribute>')",
        UnknownRateWarning,
        stacklevel=3,
    )


def get_dropout_p(model: nn.Module) -> dict[str, float]:
    """``{name: p}`` for every rate of every stochastic module of ``model`` (see
    :func:`dropout_modules`).

    A module's single rate is named by the module (``"classifier.dropout"``, ``""`` for the model
    itself); a module with several rates (BART's and Whisper's layers: ``dropout``,
    ``activation_dropout``; their encoders' ``layerdrop``; Swin's ``attention_dropout``) names
    each ``"module.attribute"``. Modules found random in training by behaviour
    (:func:`dropkit.nn.audit_stochastic`, ``mc_predict``) but whose rate is unknown are listed in
    an :class:`UnknownRateWarning`.
    """
    _warn_unknown(model, "get_dropout_p")
    return {key: p for key, *_, p in _rates(model)}


# Hugging Face config keys that hold a drop rate (``hidden_dropout_prob``, ``attn_pdrop``,
# ``encoder_layerdrop``, ...).
def _is_config_rate(key: str, value: object) -> bool:
    return (
        ("dropout" in key or "pdrop" in key or "layerdrop" in key)
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


def _config_key(model: nn.Module, name: str, module: nn.Module, rate: str):
    """``(config, key)``: the Hugging Face config entry a named rate was built from, or None.

    transformers' layers copy their config's rates into float attributes of the same name, with
    two exceptions: an attention's ``dropout`` is the config's ``attention_dropout``, and an
    encoder's (decoder's) ``layerdrop`` is ``encoder_layerdrop`` (``decoder_layerdrop``). The
    config is the one held by the module or its nearest ancestor.
    """
    if not rate:
        return None
    config, path = None, name
    while config is None:
        holder = model.get_submodule(path) if path else model
        if _is_hf_config(getattr(holder, "config", None)):
            config = holder.config
        elif not path:
            return None
        else:
            path = path.rpartition(".")[0]
    key = rate
    if rate == "dropout" and "Attention" in type(module).__name__:
        key = "attention_dropout"
    elif rate == "layerdrop":
        side = next((s for s in ("encoder", "decoder") if s in type(module).__name__.lower()), "")
        key = f"{side}_layerdrop" if side and hasattr(config, f"{side}_layerdrop") else "layerdrop"
    return (config, key) if _is_config_rate(key, getattr(config, key, None)) else None


def set_dropout_p(model: nn.Module, p: float | Mapping[str, float]) -> list[str]:
    """Set the rates of ``model``'s stochastic modules; returns the names of the rates set.

    ``p`` is one rate for every rate of the model (LayerDrop included; see
    :func:`get_dropout_p`), or a dict ``{name: p}`` with names from :func:`get_dropout_p` to set
    only those, e.g. every activation dropout::

        rates = dropkit.nn.get_dropout_p(model)
        dropkit.nn.set_dropout_p(model, {k: 0.2 for k in rates if k.endswith("activation_dropout")})

    Each value is checked here, and by each module that validates its own; a value one of them
    cannot take (p=1 for Gaussian dropout, p=0 for ConcreteDropout) raises before anything is left
    changed. A Hugging Face model's config (and its sub-configs) is kept in sync: with one rate,
    every float ``*dropout*``, ``*pdrop*`` and ``*layerdrop`` key gets it (``hidden_dropout_prob``,
    ``attention_probs_dropout_prob``, ``attn_pdrop``, ``activation_dropout``,
    ``encoder_layerdrop``, ...); with a dict, the key each named float rate was built from
    (``activation_dropout``, ``attention_dropout`` for an attention's ``dropout``,
    ``encoder_layerdrop`` for an encoder's ``layerdrop``) once every rate built from it agrees,
    so ``save_pretrained`` / ``from_pretrained`` keep the rates. Modules found random by behaviour
    but with no known rate are listed in an :class:`UnknownRateWarning`.
    """
    op = "set_dropout_p"
    found = _rates(model)
    if isinstance(p, Mapping):
        wanted = {}
        for key, value in p.items():
            if not isinstance(key, str):
                raise TypeError(f"{op}: the names of p must be str, but got {key!r}")
            wanted[key] = _check_p(value, f"{op}: '{key}'")
        known = {row[0] for row in found}
        unknown = [k for k in wanted if k not in known]
        if unknown:
            raise ValueError(
                f"{op}: {len(unknown)} name(s) of p are not rates of the model: "
                f"{', '.join(repr(k) for k in unknown[:3])}{', ...' * (len(unknown) > 3)} "
                "(dropkit.nn.get_dropout_p(model) lists them); nothing changed"
            )
        targets = [(row, wanted[row[0]]) for row in found if row[0] in wanted]
    else:
        p = _check_p(p, op)
        targets = [(row, p) for row in found]
    for (key, _, m, _, _, _), value in targets:
        if isinstance(m, ConcreteDropout) and value == 0.0:
            raise ValueError(f"{op}: '{key}' (ConcreteDropout) needs p in (0, 1); nothing changed")
        if isinstance(m, _Stochastic) and value == 1.0 and getattr(m, "_allow_one", True) is False:
            raise ValueError(
                f"{op}: '{key}' ({type(m).__name__}) is undefined at p=1; nothing changed"
            )
    done = []
    try:
        for row, value in targets:
            _, _, m, entry, rate, _ = row
            entry.set_rate(m, rate, value)
            done.append(row)
    except (ValueError, TypeError) as e:  # a module refused its value: put back those set
        for _, _, m, entry, rate, old in done:
            entry.set_rate(m, rate, old)
        raise type(e)(f"{op}: '{row[0]}' ({type(row[2]).__name__}): {e}; nothing changed") from e
    if isinstance(p, Mapping):
        _sync_configs(model, targets, found)
    else:
        for config in _hf_configs(model):
            for key, value in list(vars(config).items()):
                if _is_config_rate(key, value):
                    setattr(config, key, p)
    _warn_unknown(model, op)
    return [row[0] for row, _ in targets]


def _sync_configs(model: nn.Module, targets, found) -> None:
    """After a per-name set: each config key gets the value of the rates built from it, when they
    all agree (a config holds one value per key)."""
    changed = {row[0] for row, _ in targets}
    groups: dict[tuple[int, str], tuple[object, list[str], list[float]]] = {}
    for key, name, m, entry, rate, _ in found:
        where = _config_key(model, name, m, rate)
        if where is None:
            continue
        config, ckey = where
        _, keys, values = groups.setdefault((id(config), ckey), (config, [], []))
        keys.append(key)
        values.append(entry.rates(m)[rate])
    for (_, ckey), (config, keys, values) in groups.items():
        if not changed.intersection(keys):
            continue
        if len(set(values)) == 1:
            setattr(config, ckey, values[0])
        else:
            warnings.warn(
                f"set_dropout_p: config.{ckey} cannot hold the different rates now set for "
                f"{len(keys)} module(s) built from it ({', '.join(sorted(set(map(str, values))))});"
                " it keeps its value, so save_pretrained / from_pretrained will not keep them",
                UserWarning,
                stacklevel=3,
            )


def set_generator(
    model: nn.Module, generator: torch.Generator | RankStream | None, *, strict: bool = False
) -> list[str]:
    """Give every stochastic layer of ``model`` that takes one the ``generator`` (or None: back to
    torch's global RNG), as :func:`set_dropout_p` sets rates; returns the names of the modules set.

    dropkit's layers take one (every module of :mod:`dropkit.nn`: ``Dropout``, ``DropPath``,
    ``DropConnect``, ``VariationalLSTM``/``GRU``, ``WeightDropLSTM``/``GRU``, ``ConcreteDropout``,
    ...); they then all draw, in call order, from that one generator. Stochastic modules that take
    none keep drawing from the global RNG and are listed in a :class:`GeneratorWarning`
    (``strict=True``: a ``ValueError`` before anything is changed): torch's and the peers' dropout
    layers (``convert_dropout(model)`` first gives dropkit's), gates whose dropout runs inside their
    forward (attention, LayerDrop) and modules found random by behaviour.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> dropkit.nn.set_generator(dropkit.nn.convert_dropout(model), g)
    """
    op = "set_generator"
    if generator is not None and not isinstance(generator, (torch.Generator, RankStream)):
        raise TypeError(
            f"{op}: generator must be a torch.Generator, a dropkit.random.RankStream or None, but "
            f"got {type(generator).__name__}"
        )
    _check_bool(strict, "strict", op)
    takes, refused = [], []
    for name, m, entry in stochastic_layers(model):
        if isinstance(m, _Stochastic) and hasattr(m, "generator"):
            takes.append((name, m))
            continue
        rates = entry.rates(m)
        if rates and not any(v > 0 for v in rates.values()):
            continue  # every rate 0: it draws nothing
        if entry.found_by == "behaviour":
            why = "found random by behaviour; it draws from the global RNG"
        elif entry.kind == "gate":
            why = "its dropout runs inside its forward and draws from the global RNG"
        elif entry.to_dropkit is not None:
            why = "takes no generator: convert_dropout first"
        else:
            why = "takes no generator and has no dropkit counterpart"
        refused.append((name or "<model>", m, why))
    if refused:
        by_reason: dict[tuple[str, str], list[str]] = {}
        for name, m, why in refused:
            by_reason.setdefault((type(m).__name__, why), []).append(name)
        lines = [
            f"  {len(names)} x {cls} ({', '.join(repr(n) for n in names[:3])}"
            f"{', ...' * (len(names) > 3)}): {why}"
            for (cls, why), names in by_reason.items()
        ]
        msg = f"{op}: {len(refused)} stochastic module(s) take no generator:\n" + "\n".join(lines)
        if strict:
            raise ValueError(msg + "\nnothing was changed (strict=True)")
        warnings.warn(msg, GeneratorWarning, stacklevel=2)
    for _, m in takes:
        m.generator = generator
    return [name for name, _ in takes]
