"""The registry of stochastic layers: one table that every model utility reads.

``convert_dropout``, ``dropout_modules`` / ``get_dropout_p`` / ``set_dropout_p`` and
:func:`dropkit.uncertainty.mc_mode` / ``mc_predict`` find the stochastic parts of a model here and
nowhere else, so supporting a new library is one entry. An entry (:class:`StochasticLayer`) says:

* ``kind``: ``"layer"``, a module that is random in training (``nn.Dropout``, timm's ``DropPath``,
  torchvision's ``StochasticDepth``, ...); or ``"gate"``, a module whose own ``training`` flag
  switches dropout that runs *functionally* inside its ``forward`` (Hugging Face attention passing
  ``dropout=self.dropout.p if self.training else 0.0`` to SDPA, timm's fused ``Attention``, timm's
  ``F.dropout`` classifier heads, ``nn.MultiheadAttention``, ``nn.LSTM(dropout=...)``). Monte-Carlo
  mode sets the ``training`` flag of both kinds, and of nothing else (BatchNorm stays in eval).
* how to read and write its drop rate ``p`` (``None`` where the rate lives in a child layer, e.g. a
  BERT self-attention reads ``self.dropout.p`` of its child ``nn.Dropout``), or, for a module with
  several rates (BART's and Whisper's ``dropout``, ``activation_dropout`` and ``layerdrop``,
  torchvision Swin's ``attention_dropout`` and ``dropout``), the names of its rate attributes: each
  rate is then read and set under its own name, and the module drops if any of them is non-zero;
* what ``convert_dropout(model, to="dropkit")`` turns it into, if anything;
* whether it is multiplicative (``output = input * mask(shape)``, the mask independent of the input),
  which Monte-Carlo's consistent masks need.

fastai's ``RNNDropout``, ``EmbeddingDropout`` and ``WeightDropout`` (AWD-LSTM) are registered too.
Third-party classes are matched by their import path (``"timm.layers.drop.DropPath"``), so dropkit
never imports timm, torchvision or transformers. Users add their own with
:func:`register_stochastic_layer`; any module carrying dropkit's ``_Stochastic`` marker is a layer
with rate attribute ``p``.

A module no entry names may still be random in training (a library class dropkit does not list
yet). :func:`dropkit.nn.audit_stochastic` and ``mc_predict`` find such modules by their behaviour
(:mod:`dropkit.nn.discovery`) and record them on the module: :func:`stochastic_layer` then returns
an entry with ``found_by="behaviour"`` and no rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from dropkit._validation import _check_bool
from dropkit.nn._base import _Stochastic

__all__ = [
    "StochasticLayer",
    "Unconvertible",
    "register_stochastic_layer",
    "stochastic_layer",
    "stochastic_layers",
    "unregister_stochastic_layer",
]

KINDS = ("layer", "gate")


class Unconvertible(Exception):
    """Raised by a converter for a module whose settings dropkit cannot express; the message says why.

    ``convert_dropout`` leaves that module as it is and reports it.
    """


@dataclasses.dataclass(frozen=True)
class StochasticLayer:
    """How dropkit handles one class of stochastic module (see the module docstring).

    ``rate_names``: for a module with several rates, the attributes that may hold one (those
    present as numbers on a module are its rates); None for a module with one rate (``get_p`` /
    ``set_p``) or none. ``found_by``: ``"name"`` for an entry of the registry, ``"behaviour"`` for
    a module the behaviour probe found random in training (no rate known).
    """

    name: str
    kind: str = "layer"
    get_p: Callable[[nn.Module], float | None] | None = None
    set_p: Callable[[nn.Module, float], None] | None = None
    to_dropkit: Callable[[nn.Module], nn.Module] | None = None
    multiplicative: bool = False
    rate_names: tuple[str, ...] | None = None
    found_by: str = "name"

    def p(self, module: nn.Module) -> float | None:
        """The module's drop rate (the largest, for a module with several), or None where it has
        none of its own."""
        if self.rate_names is not None:
            rates = self.rates(module)
            return max(rates.values()) if rates else None
        return None if self.get_p is None else self.get_p(module)

    def rates(self, module: nn.Module) -> dict[str, float]:
        """Each rate of ``module`` under its own name: ``{"": p}`` for a module with one rate,
        ``{attribute: p, ...}`` for one with several, ``{}`` for none."""
        if self.rate_names is not None:
            return {
                n: float(getattr(module, n))
                for n in self.rate_names
                if _is_rate(getattr(module, n, None))
            }
        p = None if self.get_p is None else self.get_p(module)
        return {} if p is None else {"": float(p)}

    def set_rate(self, module: nn.Module, rate: str, p: float) -> None:
        """Set one rate (a name from :meth:`rates`) of ``module``."""
        if rate == "":
            if self.set_p is None:
                raise ValueError(f"{type(module).__name__} has no rate dropkit can set")
            self.set_p(module, p)
        elif self.rate_names is not None and rate in self.rate_names:
            setattr(module, rate, p)
        else:
            raise ValueError(f"{type(module).__name__} has no rate named {rate!r}")


def _attr(name: str) -> tuple[Callable, Callable]:
    def get(m: nn.Module) -> float | None:
        value = getattr(m, name, None)
        return float(value) if _is_rate(value) else None

    def set(m: nn.Module, p: float) -> None:
        setattr(m, name, p)

    get.attr = (
        name  # a plain attribute: set and read back exactly (the behaviour probe relies on it)
    )
    return get, set


def _attrs(*names: str) -> tuple[Callable, Callable]:
    """A module with several float rates (``dropout``, ``activation_dropout``, ...): ``get`` gives
    the largest present, ``set`` sets every one present."""

    def present(m: nn.Module) -> list[str]:
        return [n for n in names if _is_rate(getattr(m, n, None))]

    def get(m: nn.Module) -> float | None:
        found = present(m)
        return max(float(getattr(m, n)) for n in found) if found else None

    def set(m: nn.Module, p: float) -> None:
        for n in present(m):
            setattr(m, n, p)

    return get, set


def _named(name: str, kind: str, names: tuple[str, ...], **kw) -> StochasticLayer:
    get, set = _attrs(*names)
    return StochasticLayer(name, kind, get, set, rate_names=names, **kw)


def _is_rate(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Exact classes (torch's, dropkit's, users'), import paths (third-party), and rules (families of
# third-party classes too many to list), looked up in that order.
_BY_CLASS: dict[type, StochasticLayer] = {}
_BY_PATH: dict[str, StochasticLayer] = {}
_RULES: list[tuple[Callable[[nn.Module], bool], StochasticLayer]] = []
_MARKED = StochasticLayer(
    "dropkit",
    "layer",
    lambda m: float(m.p) if hasattr(m, "p") else None,
    lambda m, p: setattr(m, "p", p),
)


# Where the behaviour probe (dropkit.nn.discovery) records, on a module's instance dict (not a
# submodule, buffer or state_dict entry; carried by copy.deepcopy), that it found it random in
# training although no entry names it.
FOUND_ATTR = "_dropkit_found"


@dataclasses.dataclass(frozen=True)
class _Found:
    entry: StochasticLayer
    active: bool  # its output changed between calls in training on the probe's input


def _mark_found(module: nn.Module, active: bool) -> None:
    kind = "gate" if next(module.children(), None) is not None else "layer"
    entry = StochasticLayer("found by behaviour", kind, found_by="behaviour")
    module.__dict__[FOUND_ATTR] = _Found(entry, active)


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_stochastic_layer(
    cls: type[nn.Module] | str,
    *,
    kind: str = "layer",
    p: str | tuple[str, ...] | tuple[Callable, Callable] | None = "p",
    to_dropkit: Callable[[nn.Module], nn.Module] | None = None,
    multiplicative: bool = False,
) -> StochasticLayer:
    """Teach dropkit's model utilities about a stochastic module class (yours or a library's).

    Args:
        cls: the class, or its import path ``"package.module.Class"`` (matched without importing
            it). Subclasses match too, except for conversion, which needs the exact class.
        kind: ``"layer"`` (random in training) or ``"gate"`` (its ``training`` flag switches dropout
            run functionally inside its forward, e.g. attention dropout). Default: ``"layer"``
        p: the name of the attribute holding the drop rate; a tuple of attribute names for a
            module with several rates (each read and set under its own name, e.g.
            ``("dropout", "activation_dropout")``); a ``(get, set)`` pair of functions
            ``get(module) -> float`` / ``set(module, p)``; or None if the module has no rate of its
            own. Default: ``"p"``
        to_dropkit: ``f(module) -> dropkit module`` used by ``convert_dropout``; may raise
            :class:`Unconvertible` with the reason. Default: None (never converted; reported)
        multiplicative: the layer computes ``input * mask`` with a mask independent of the input
            (needed by ``mc_predict(consistent=True)``). Default: False

    Returns the entry. Registering a class again replaces its entry.

    Example::

        >>> dropkit.nn.register_stochastic_layer(MyNoise, p="rate", multiplicative=True)
    """
    op = "register_stochastic_layer"
    if kind not in KINDS:
        raise ValueError(f"{op}: kind must be one of {KINDS}, but got {kind!r}")
    _check_bool(multiplicative, "multiplicative", op)
    names = None
    if isinstance(p, str):
        get, set = _attr(p)
    elif p is None:
        get = set = None
    elif isinstance(p, tuple) and len(p) == 2 and all(callable(f) for f in p):
        get, set = p
    elif isinstance(p, tuple) and p and all(isinstance(n, str) and n.isidentifier() for n in p):
        names = tuple(dict.fromkeys(p))
        get, set = _attrs(*names)
    else:
        raise TypeError(
            f"{op}: p must be an attribute name, a tuple of attribute names, a (get, set) pair of "
            f"functions or None, but got {type(p).__name__} {p!r}"
        )
    if to_dropkit is not None and not callable(to_dropkit):
        raise TypeError(f"{op}: to_dropkit must be callable, but got {type(to_dropkit).__name__}")
    if isinstance(cls, str):
        if "." not in cls:
            raise ValueError(
                f"{op}: cls must be an import path 'package.module.Class', got {cls!r}"
            )
        entry = StochasticLayer(cls, kind, get, set, to_dropkit, multiplicative, names)
        _BY_PATH[cls] = entry
    elif isinstance(cls, type) and issubclass(cls, nn.Module):
        entry = StochasticLayer(_path(cls), kind, get, set, to_dropkit, multiplicative, names)
        _BY_CLASS[cls] = entry
    else:
        raise TypeError(f"{op}: cls must be an nn.Module subclass or an import path, got {cls!r}")
    return entry


def unregister_stochastic_layer(cls: type[nn.Module] | str) -> None:
    """Remove an entry added by :func:`register_stochastic_layer` (KeyError if there is none)."""
    table = _BY_PATH if isinstance(cls, str) else _BY_CLASS
    if cls not in table:
        raise KeyError(f"unregister_stochastic_layer: {cls!r} is not registered")
    del table[cls]


def _lookup(module: nn.Module) -> tuple[StochasticLayer | None, bool]:
    """``(entry, exact)``; ``exact`` when the entry is for ``type(module)`` itself."""
    marked = isinstance(module, _Stochastic)
    for i, cls in enumerate(type(module).__mro__):
        if cls is nn.Module or (marked and not issubclass(cls, _Stochastic)):
            break  # a dropkit module is never matched by a torch base (VariationalLSTM: nn.LSTM)
        entry = _BY_CLASS.get(cls) or _BY_PATH.get(_path(cls))
        if entry is not None:
            return entry, i == 0
    for rule, entry in _RULES:
        if rule(module):
            return entry, True
    if marked:
        return _MARKED, False
    found = module.__dict__.get(FOUND_ATTR)
    if found is not None:
        return found.entry, False
    return None, False


def stochastic_layer(module: nn.Module) -> StochasticLayer | None:
    """The registry's entry for ``module``, or None if it is not a stochastic layer or gate (or
    a module the behaviour probe found random in training: ``found_by="behaviour"``)."""
    return _lookup(module)[0]


def stochastic_layers(
    model: nn.Module, *, kind: str | None = None
) -> list[tuple[str, nn.Module, StochasticLayer]]:
    """``(name, module, entry)`` for every registered module of ``model`` (itself included, name
    ``""``), in ``named_modules()`` order; ``kind`` keeps only layers or only gates."""
    out = []
    for name, m in model.named_modules():
        entry = stochastic_layer(m)
        if entry is not None and (kind is None or entry.kind == kind):
            out.append((name, m, entry))
    return out


# --------------------------------------------------------------------------------------------------
# The built-in entries.


def _builtin() -> None:
    # Imported here: the converters need dropkit's modules, which import nothing from this file.
    from dropkit.nn import _converters as c
    from dropkit.nn import (
        channel_dropout,
        drop_path,
        dropblock,
        dropout,
        gaussian_dropout,
        shared_dropout,
        variational_rnn,
        weight_drop,
    )

    for cls, to in c.TORCH_TO_DROPKIT.items():
        register_stochastic_layer(
            cls,
            to_dropkit=to,
            multiplicative=not issubclass(cls, (nn.AlphaDropout, nn.FeatureAlphaDropout)),
        )
    # dropkit's own multiplicative layers (the rest are found by their _Stochastic marker).
    for cls in (
        dropout.Dropout,
        channel_dropout.Dropout1d,
        channel_dropout.Dropout2d,
        channel_dropout.Dropout3d,
        drop_path.DropPath,
        dropblock.DropBlock2d,
        dropblock.DropBlock3d,
        gaussian_dropout.GaussianDropout,
        shared_dropout.SharedDropout,
    ):
        register_stochastic_layer(cls, multiplicative=True)
    # dropkit's recurrent layers: several rates each, read and set under their own names.
    rnn_rates = ("input_dropout", "dropout", "recurrent_dropout", "output_dropout")
    for cls in (variational_rnn.VariationalLSTM, variational_rnn.VariationalGRU):
        register_stochastic_layer(cls, p=rnn_rates)
    for cls in (weight_drop.WeightDropLSTM, weight_drop.WeightDropGRU):
        register_stochastic_layer(cls, p=("weight_dropout", "dropout"))
    # torch's own gates: dropout inside a fused or functional forward.
    register_stochastic_layer(nn.MultiheadAttention, kind="gate", p="dropout")
    register_stochastic_layer(nn.RNNBase, kind="gate", p=(_rnn_p, _rnn_set_p))
    for cls in (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder):
        # training=False selects the fused fast path, which skips the layer's dropout modules.
        register_stochastic_layer(cls, kind="gate", p=None)

    # timm (current and pre-0.9 import paths).
    for root in ("timm.layers", "timm.models.layers"):
        register_stochastic_layer(
            f"{root}.drop.DropPath", p="drop_prob", to_dropkit=c.timm_drop_path, multiplicative=True
        )
        register_stochastic_layer(
            f"{root}.drop.DropBlock2d",
            p="drop_prob",
            to_dropkit=c.timm_dropblock,
            multiplicative=False,
        )
        register_stochastic_layer(f"{root}.patch_dropout.PatchDropout", p="prob")
    # timm classifiers and layers that call F.dropout(x, self.drop_rate, training=self.training):
    # every such class of timm 1.0.31 (tests/interop/test_sources.py walks the installed timm).
    for path in TIMM_DROP_RATE_GATES:
        register_stochastic_layer(f"timm.models.{path}", kind="gate", p="drop_rate")

    # torchvision.
    register_stochastic_layer(
        "torchvision.ops.stochastic_depth.StochasticDepth",
        to_dropkit=c.tv_stochastic_depth,
        multiplicative=True,
    )
    for d in (2, 3):
        register_stochastic_layer(
            f"torchvision.ops.drop_block.DropBlock{d}d",
            to_dropkit=c.tv_dropblock,
            multiplicative=True,
        )
    # Swin's attention passes attention_dropout and dropout (projection) to a function with
    # training=self.training; DenseNet's layers call F.dropout(x, self.drop_rate, self.training).
    for path in (
        "swin_transformer.ShiftedWindowAttention",
        "swin_transformer.ShiftedWindowAttentionV2",
        "video.swin_transformer.ShiftedWindowAttention3d",
    ):
        register_stochastic_layer(
            f"torchvision.models.{path}", kind="gate", p=("attention_dropout", "dropout")
        )
    register_stochastic_layer("torchvision.models.densenet._DenseLayer", kind="gate", p="drop_rate")

    # fastai (AWD-LSTM): RNNDropout converts; EmbeddingDropout and WeightDropout wrap a module
    # (their state_dict keys differ from dropkit's, so they are read, set and sampled, not converted).
    fastai = "fastai.text.models.awdlstm"
    register_stochastic_layer(
        f"{fastai}.RNNDropout", to_dropkit=c.fastai_rnn_dropout, multiplicative=True
    )
    register_stochastic_layer(f"{fastai}.EmbeddingDropout", p="embed_p")
    register_stochastic_layer(f"{fastai}.WeightDropout", p="weight_p")

    # Families matched by rule. timm: every attention with a fused SDPA path gated by training.
    _RULES.append(
        (_is_timm_fused_attention, _named("timm fused attention", "gate", ("attn_drop_p",)))
    )
    # Hugging Face: modules that call dropout functionally, gated by their own training flag:
    # attention (eager and SDPA: dropout=self.dropout.p if self.training else 0.0) and layers
    # holding float rates (BART/Whisper/Llama style: self.dropout, self.attention_dropout, ...),
    # each rate under its own name; LayerDrop (``layerdrop``: skip a layer with that probability)
    # is one of them.
    _RULES.append((_is_hf_gate, _named("transformers functional dropout", "gate", HF_RATE_ATTRS)))


# Float attributes of transformers modules that hold a rate used as
# ``F.dropout(x, self.<attr>, self.training)`` or ``dropout=0.0 if not self.training else
# self.<attr>`` (every such attribute in transformers 5.25; tests/interop/test_sources.py).
HF_RATE_ATTRS = (
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "hidden_dropout",
    "layerdrop",
    "attn_dropout",
    "attn_drop",
    "dropout_p",
    "dropout_prob",
    "attn_dropout_p",
    "residual_dropout",
    "resid_pdrop",
    "embedding_dropout",
)
_HF_DROPOUT_CHILDREN = ("dropout", "attn_dropout", "attention_dropout")

# timm classes calling F.dropout(x, self.drop_rate, training=self.training) (timm 1.0.31).
TIMM_DROP_RATE_GATES = (
    "densenet.DenseLayer",
    "dpn.DPN",
    "efficientnet.EfficientNet",
    "fasternet.FasterNet",
    "ghostnet.GhostNet",
    "lcnetv2.LCNetV2",
    "lowformer.LowFormer",
    "mobilenetv3.MobileNetV3",
    "mobilenetv5.MobileNetV5",
    "rdnet.DenseBlock",
    "repghost.RepGhostNet",
    "resnet.ResNet",
    "senet.SENet",
    "shvit.SHViT",
    "starnet.StarNet",
    "xception.Xception",
)


def _rnn_p(m: nn.Module) -> float | None:
    # torch applies an RNN's dropout between stacked layers only: one layer has no rate.
    return float(m.dropout) if m.num_layers > 1 else None


def _rnn_set_p(m: nn.Module, p: float) -> None:
    if m.num_layers > 1:
        m.dropout = p


def _is_timm_fused_attention(m: nn.Module) -> bool:
    return type(m).__module__.startswith("timm.") and hasattr(m, "fused_attn")


def _is_hf_gate(m: nn.Module) -> bool:
    if not type(m).__module__.startswith("transformers."):
        return False
    if any(_is_rate(getattr(m, a, None)) for a in HF_RATE_ATTRS):
        return True
    return type(m).__name__.endswith("Attention") and any(
        isinstance(getattr(m, a, None), nn.modules.dropout._DropoutNd) for a in _HF_DROPOUT_CHILDREN
    )


_builtin()
