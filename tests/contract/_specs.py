"""The table of op specs the contract suite runs: one entry per public op and module.

A spec says how to build the op's inputs and call it; the contracts (``test_*.py`` here) take every
spec they apply to. A new op joins the suite by adding one spec (``test_every_public_name_has_a_spec``
fails until it does).

Inputs: ``inputs(dtype, large)`` returns the call's tensors. Floating-point tensors listed in
``grad`` are differentiated; bool tensors are masks, integer tensors indices. ``large`` asks for
an input large enough for the op's fast path where it has one (``fast=True``): dropout's 4096
elements, the noise kernels' ``_fast_family.NOISE_MIN_NUMEL`` (alpha and Gaussian dropout, per-sample
DropConnect), each op's own shape (``_x``'s ``large``). Keyword arguments
(p, the flags, generator) go through ``call(*tensors, **kwargs)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

import dropkit.functional as DF
import dropkit.nn as dnn

FAST_NUMEL = 8192  # above the fast path's 4096-element threshold
NOISE_NUMEL = (
    1 << 15
)  # _fast_family.NOISE_MIN_NUMEL: alpha/Gaussian noise's and DropConnect's kernels
NOISE_LARGE = (NOISE_NUMEL // 64, 64)


@dataclasses.dataclass
class OpSpec:
    name: str
    call: Callable[..., Any]  # call(*tensors, **kwargs) -> Tensor (first output of tuples)
    inputs: Callable[[torch.dtype, bool], tuple]  # (dtype, large) -> tensors
    grad: tuple[int, ...] = (0,)  # indices of the differentiable tensors
    random: bool = True  # draws from torch's generator
    generator: bool = True  # takes generator=
    p: str | None = "p"  # name of the drop-rate keyword (None: no scalar p)
    allow_one: bool = True  # p = 1 allowed
    inplace: bool = False  # takes inplace=
    training: bool = True  # takes training=
    flags: tuple[str, ...] = ()  # every bool keyword (TypeError for a non-bool)
    fast: bool = False  # has a fast path above the threshold
    kwargs: dict = dataclasses.field(default_factory=dict)  # defaults for every call
    vmap: bool = True  # elementwise in the batch: vmap applies
    label: str = ""  # a second spec of the same op with other kwargs (its options' code path)

    def __str__(self) -> str:
        return f"{self.name}[{self.label}]" if self.label else self.name

    def run(self, tensors, **kwargs):
        out = self.call(*tensors, **{**self.kwargs, **kwargs})
        return out[0] if isinstance(out, tuple) else out


def _op(name: str):
    """Call ``dropkit.functional.<name>`` looked up at call time: the name torch.fx wraps."""

    def call(*args, **kwargs):
        return getattr(DF, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _x(*shape, large=(FAST_NUMEL // 64, 64)):
    def make(dtype, large_variant):
        return (torch.randn(*(large if large_variant else shape), dtype=dtype),)

    return make


def _mask_for(shape):
    return torch.rand(shape, generator=torch.Generator().manual_seed(7)) > 0.4


def _lstm_weights(dtype, i=3, h=2):
    g = torch.Generator().manual_seed(3)
    return tuple(
        torch.randn(s, generator=g, dtype=dtype) * 0.5
        for s in ((4 * h, i), (4 * h, h), (4 * h,), (4 * h,))
    )


FLAGS = ("training", "inplace")
DROPBLOCK_LARGE = (2, 16, 16, 16)

FUNCTIONAL: list[OpSpec] = [
    OpSpec("dropout", _op("dropout"), _x(3, 8), inplace=True, flags=FLAGS, fast=True),
    OpSpec("dropout1d", _op("dropout1d"), _x(2, 8, 2), inplace=True, flags=(*FLAGS, "batched")),
    OpSpec("dropout2d", _op("dropout2d"), _x(2, 8, 1, 2), inplace=True, flags=(*FLAGS, "batched")),
    OpSpec(
        "dropout3d", _op("dropout3d"), _x(2, 8, 1, 1, 2), inplace=True, flags=(*FLAGS, "batched")
    ),
    OpSpec(
        "channel_dropout",
        _op("channel_dropout"),
        _x(2, 8, 1, 2),
        inplace=True,
        flags=(*FLAGS, "batched"),
        kwargs={"spatial_dims": 2},
    ),
    OpSpec(
        "shared_dropout",
        _op("shared_dropout"),
        _x(4, 2, 4),
        inplace=True,
        flags=FLAGS,
        kwargs={"shared_axes": 1},
    ),
    OpSpec(
        "drop_path",
        _op("drop_path"),
        _x(16, 2, 2),
        inplace=True,
        flags=(*FLAGS, "scale_by_keep"),
    ),
    OpSpec(
        "drop_path",
        _op("drop_path"),
        _x(16, 2, 2),
        inplace=True,
        kwargs={"scale_by_keep": False},
        label="unscaled",
    ),
    OpSpec(
        "locked_dropout",
        _op("locked_dropout"),
        _x(3, 2, 8),
        inplace=True,
        flags=(*FLAGS, "batch_first"),
    ),
    OpSpec(
        "alpha_dropout",
        _op("alpha_dropout"),
        _x(3, 8, large=NOISE_LARGE),
        inplace=True,
        flags=FLAGS,
        allow_one=False,
        fast=True,
    ),
    OpSpec(
        "feature_alpha_dropout",
        _op("feature_alpha_dropout"),
        _x(2, 8, 2, large=(16, 64, 8)),
        inplace=True,
        flags=FLAGS,
        allow_one=False,
        fast=True,
    ),
    OpSpec(
        "gaussian_dropout",
        _op("gaussian_dropout"),
        _x(3, 8, large=NOISE_LARGE),
        inplace=True,
        flags=FLAGS,
        allow_one=False,
        fast=True,
    ),
    OpSpec(
        "dropblock",
        _op("dropblock"),
        _x(2, 2, 4, 4, large=DROPBLOCK_LARGE),
        inplace=True,
        flags=(*FLAGS, "share_channels", "scale_by_keep", "with_noise"),
        kwargs={"block_size": 2},
        fast=True,
    ),
    OpSpec(
        "dropblock2d",
        _op("dropblock2d"),
        _x(2, 2, 4, 4, large=DROPBLOCK_LARGE),
        inplace=True,
        flags=(*FLAGS, "share_channels", "scale_by_keep", "with_noise"),
        kwargs={"block_size": 2},
        fast=True,
    ),
    OpSpec(
        "dropblock2d",
        _op("dropblock2d"),
        _x(2, 2, 4, 4, large=DROPBLOCK_LARGE),
        inplace=True,
        kwargs={"block_size": 2, "scale_by_keep": False, "with_noise": True},
        label="noise",
        fast=True,
    ),
    OpSpec(
        "dropblock3d",
        _op("dropblock3d"),
        _x(1, 2, 3, 3, 3, large=(2, 4, 8, 8, 16)),
        inplace=True,
        flags=(*FLAGS, "share_channels", "scale_by_keep", "with_noise"),
        kwargs={"block_size": 2},
        fast=True,
    ),
    OpSpec(
        "dropout_add",
        _op("dropout_add"),
        lambda dt, large: (*_x(4, 24)(dt, large), *_x(4, 24)(dt, large)),
        grad=(0, 1),
        flags=("training",),
        fast=True,
    ),
    OpSpec(
        "bias_dropout_add",
        _op("bias_dropout_add"),
        lambda dt, large: (
            *_x(4, 24)(dt, large),
            torch.randn(64 if large else 24, dtype=dt),
            *_x(4, 24)(dt, large),
        ),
        grad=(0, 1, 2),
        flags=("training",),
        fast=True,
    ),
    OpSpec(
        "embedding_dropout",
        _op("embedding_dropout"),
        lambda dt, large: (torch.arange(20).view(4, 5), torch.randn(20, 2, dtype=dt)),
        grad=(1,),
        flags=("training",),
    ),
    OpSpec("weight_drop", _op("weight_drop"), _x(6, 5), flags=("training",), allow_one=False),
    OpSpec(
        "dropconnect_linear",
        _op("dropconnect_linear"),
        lambda dt, large: (torch.randn(4, 5, dtype=dt), torch.randn(3, 5, dtype=dt), None),
        grad=(0, 1),
        flags=("training", "per_sample"),
    ),
    OpSpec(
        "dropconnect_linear",
        _op("dropconnect_linear"),
        lambda dt, large: (
            torch.randn(8 if large else 4, 64 if large else 5, dtype=dt),
            torch.randn(64 if large else 3, 64 if large else 5, dtype=dt),
            None,
        ),
        grad=(0, 1),
        kwargs={"per_sample": True},
        label="per_sample",  # N weight copies: dropout's kernel from NOISE_NUMEL weights
        fast=True,
    ),
    OpSpec(
        "dropconnect_conv",
        _op("dropconnect_conv"),
        lambda dt, large: (
            torch.randn(2, 1, 3, 3, dtype=dt),
            torch.randn(2, 1, 2, 2, dtype=dt),
            torch.randn(2, dtype=dt),
        ),
        grad=(0, 1, 2),
        flags=("training", "per_sample"),
        vmap=False,  # a batched conv weight: vmap of a conv over its weight is torch's rule
    ),
    OpSpec(
        "concrete_dropout",
        _op("concrete_dropout"),
        lambda dt, large: (torch.randn(4, 6, dtype=dt), torch.tensor(-1.0, dtype=dt)),
        grad=(0, 1),
        p=None,
        flags=("training",),
    ),
    OpSpec(
        "variational_rnn",
        lambda x, *ws, **kw: DF.variational_rnn(x, None, list(ws), **kw)[0],
        lambda dt, large: (torch.randn(3, 2, 3, dtype=dt), *_lstm_weights(dt)),
        grad=(0, 1, 2),
        p=None,
        flags=("training", "per_gate", "bidirectional", "batch_first"),
        kwargs={"input_dropout": 0.3, "recurrent_dropout": 0.3, "output_dropout": 0.3},
        vmap=False,  # a Python time loop over packed rows
    ),
    # ---- given the mask or noise: deterministic -------------------------------------------------
    OpSpec(
        "apply_mask",
        _op("apply_mask"),
        lambda dt, large: (torch.randn(4, 6, dtype=dt), _mask_for((4, 6))),
        random=False,
        generator=False,
        inplace=True,
        training=False,
        flags=("inplace",),
        kwargs={"p": 0.4},
    ),
    OpSpec(
        "apply_alpha_mask",
        _op("apply_alpha_mask"),
        lambda dt, large: (torch.randn(4, 6, dtype=dt), _mask_for((4, 6))),
        random=False,
        generator=False,
        inplace=True,
        training=False,
        flags=("inplace",),
        allow_one=False,
        kwargs={"p": 0.4},
    ),
    OpSpec(
        "apply_noise",
        _op("apply_noise"),
        lambda dt, large: (torch.randn(4, 6, dtype=dt), torch.randn(4, 6, dtype=dt)),
        grad=(0, 1),
        random=False,
        generator=False,
        p=None,
        inplace=True,
        training=False,
        flags=("inplace",),
    ),
    OpSpec(
        "apply_dropblock",
        _op("apply_dropblock"),
        lambda dt, large: (torch.randn(2, 2, 4, 4, dtype=dt), _mask_for((2, 2, 4, 4))),
        random=False,
        generator=False,
        p=None,
        inplace=True,
        training=False,
        flags=("inplace",),
    ),
    OpSpec(
        "apply_concrete",
        _op("apply_concrete"),
        lambda dt, large: (
            torch.randn(4, 6, dtype=dt),
            torch.tensor(-1.0, dtype=dt),
            torch.randn(4, 6, dtype=dt),
        ),
        grad=(0, 1, 2),
        random=False,
        generator=False,
        p=None,
        training=False,
    ),
    OpSpec(
        "apply_dropconnect_linear",
        _op("apply_dropconnect_linear"),
        lambda dt, large: (
            torch.randn(4, 5, dtype=dt),
            torch.randn(3, 5, dtype=dt),
            torch.randn(3, dtype=dt),
            _mask_for((3, 5)),
        ),
        grad=(0, 1, 2),
        random=False,
        generator=False,
        kwargs={"p": 0.4},
        training=False,
    ),
    OpSpec(
        "apply_dropconnect_conv",
        _op("apply_dropconnect_conv"),
        lambda dt, large: (
            torch.randn(2, 1, 3, 3, dtype=dt),
            torch.randn(2, 1, 2, 2, dtype=dt),
            None,
            _mask_for((2, 1, 2, 2)),
        ),
        grad=(0, 1),
        random=False,
        generator=False,
        kwargs={"p": 0.4},
        training=False,
        vmap=False,
    ),
    OpSpec(
        "additive_noise",
        _op("additive_noise"),
        _x(3, 8),
        p=None,
        inplace=True,
        flags=FLAGS,
        kwargs={"std": 0.5},
    ),
    OpSpec(
        "shared_alpha_dropout",
        _op("shared_alpha_dropout"),
        _x(4, 2, 4),
        inplace=True,
        flags=FLAGS,
        allow_one=False,
        kwargs={"shared_axes": 1},
    ),
    OpSpec(
        "concrete_regularizer",
        lambda pl, w: DF.concrete_regularizer(pl, [w], 10),
        lambda dt, large: (torch.tensor(-1.0, dtype=dt), torch.randn(3, 4, dtype=dt)),
        grad=(0, 1),
        random=False,
        generator=False,
        p=None,
        training=False,
    ),
]

# Samplers: they draw a mask or noise (no differentiable input); contracts: compile draws what eager
# draws, fx, finite half-precision noise, bool flags.
SAMPLERS: list[OpSpec] = [
    OpSpec("sample_mask", lambda: DF.sample_mask((4, 6), 0.5), lambda dt, large: ()),
    OpSpec(
        "sample_shared_mask",
        lambda: DF.sample_shared_mask((4, 6, 3), 0.5, 1),
        lambda dt, large: (),
    ),
    OpSpec("dropconnect_mask", lambda: DF.dropconnect_mask((3, 5), 0.5), lambda dt, large: ()),
    OpSpec(
        "dropblock_seeds",
        lambda **kw: DF.dropblock_seeds((2, 3, 6, 6), 0.3, 3, **kw),
        lambda dt, large: (),
        flags=("share_channels",),
    ),
    OpSpec(
        "gaussian_noise",
        lambda **kw: DF.gaussian_noise((4, 6), **{"p": 0.5, **kw}),
        lambda dt, large: (),
        allow_one=False,
    ),
    OpSpec("concrete_noise", lambda: DF.concrete_noise((4, 6)), lambda dt, large: (), p=None),
    OpSpec(
        "sample_rnn_masks",
        lambda **kw: DF.sample_rnn_masks("LSTM", 2, 3, 4, input_dropout=0.5, **kw).input[0],
        lambda dt, large: (),
        p=None,
        flags=("bidirectional", "per_gate"),
    ),
    OpSpec(
        "draw_seed",
        lambda: torch.tensor(DF.draw_seed()),
        lambda dt, large: (),
        p=None,
    ),
    OpSpec(
        "fast_keep_mask",
        lambda: DF.fast_keep_mask((4, 6), 0.5, 123),
        lambda dt, large: (),
        random=False,
        generator=False,
    ),
    OpSpec(
        "additive_noise_sample",
        lambda **kw: DF.additive_noise_sample(torch.zeros(4, 6), 0.5, **kw),
        lambda dt, large: (),
        p=None,
    ),
    OpSpec(
        "fast_gaussian_noise",
        lambda **kw: DF.fast_gaussian_noise((4, 6), **{"p": 0.5, **kw}, seed=123),
        lambda dt, large: (),
        random=False,
        generator=False,
        allow_one=False,
    ),
    OpSpec(
        "fast_dropblock_mask",
        lambda **kw: DF.fast_dropblock_mask((2, 3, 6, 6), 0.3, 3, 123, **kw),
        lambda dt, large: (),
        random=False,
        generator=False,
        allow_one=False,
        flags=("share_channels",),
    ),
    OpSpec(
        "dropblock_mask",
        lambda seeds: DF.dropblock_mask(seeds, 2),
        lambda dt, large: (_mask_for((2, 2, 4, 4)),),
        random=False,
        generator=False,
        p=None,
    ),
]

# Public names that are not tensor ops: nothing of PyTorch's machinery applies (they take and give
# Python numbers, shapes or settings). Each has its own unit tests in tests/functional/.
NOT_TENSOR_OPS = {
    "alpha_affine": "(a, b) floats for a p",
    "drop_path_rates": "a list of floats",
    "dropblock_gamma": "a float",
    "shared_mask_shape": "a torch.Size",
    "locked_mask_shape": "a shape tuple",
    "fast_dropout_enabled": "the fast-path switch",
    "set_fast_dropout": "the fast-path switch",
    "use_fast_dropout": "the fast-path switch",
    "RNNMasks": "a dataclass of masks",
}


# ---- modules -------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModuleSpec:
    name: str
    build: Callable[..., torch.nn.Module]  # build(**ctor_kwargs)
    inputs: Callable[[torch.dtype, bool], tuple]
    ctor_flags: tuple[str, ...] = ()  # bool constructor arguments
    p: str | None = "p"  # the drop-rate constructor argument
    allow_one: bool = True
    fast: bool = False
    grad: bool = True
    label: str = ""  # as OpSpec.label

    def __str__(self) -> str:
        return f"{self.name}[{self.label}]" if self.label else self.name

    def make(self, large: bool = False, **kwargs) -> torch.nn.Module:
        return self.build(large=large, **kwargs) if self.fast else self.build(**kwargs)

    def run(self, module, tensors):
        out = module(*tensors)
        return out[0] if isinstance(out, tuple) else out


def _sized(cls):
    """A module class as a fast spec's build (the large variant's input needs no other module)."""

    def build(large=False, **kw):
        return cls(**kw)

    return build


def _dropconnect_param(large=False, **kw):
    layer = torch.nn.Linear(128, 64) if large else torch.nn.Linear(5, 3)
    return dnn.add_dropconnect(layer, "weight", **{"p": 0.5, **kw})


MODULES: list[ModuleSpec] = [
    ModuleSpec(
        "Dropout", lambda large=False, **kw: dnn.Dropout(**kw), _x(4, 24), ("inplace",), fast=True
    ),
    ModuleSpec("Dropout1d", dnn.Dropout1d, _x(4, 6, 5), ("inplace", "batched")),
    ModuleSpec("Dropout2d", dnn.Dropout2d, _x(2, 6, 3, 3), ("inplace", "batched")),
    ModuleSpec("Dropout3d", dnn.Dropout3d, _x(2, 4, 2, 2, 3), ("inplace", "batched")),
    ModuleSpec(
        "SharedDropout",
        lambda **kw: dnn.SharedDropout(**{"shared_axes": 1, **kw}),
        _x(4, 5, 6),
        ("inplace",),
    ),
    ModuleSpec("DropPath", dnn.DropPath, _x(8, 3, 4), ("inplace", "scale_by_keep")),
    ModuleSpec(
        "DropPath",
        lambda **kw: dnn.DropPath(**{"scale_by_keep": False, **kw}),
        _x(8, 3, 4),
        label="unscaled",
    ),
    ModuleSpec("LockedDropout", dnn.LockedDropout, _x(5, 4, 6), ("inplace", "batch_first")),
    ModuleSpec(
        "AlphaDropout",
        _sized(dnn.AlphaDropout),
        _x(4, 24, large=NOISE_LARGE),
        ("inplace",),
        allow_one=False,
        fast=True,
    ),
    ModuleSpec(
        "FeatureAlphaDropout",
        _sized(dnn.FeatureAlphaDropout),
        _x(4, 6, 5, large=(16, 64, 8)),
        ("inplace",),
        allow_one=False,
        fast=True,
    ),
    ModuleSpec(
        "GaussianDropout",
        _sized(dnn.GaussianDropout),
        _x(4, 24, large=NOISE_LARGE),
        ("inplace",),
        allow_one=False,
        fast=True,
    ),
    ModuleSpec(
        "GaussianNoise",
        lambda **kw: dnn.GaussianNoise(**{"std": 0.5, **kw}),
        _x(4, 24),
        ("inplace",),
        p=None,
    ),
    ModuleSpec(
        "SharedAlphaDropout",
        lambda **kw: dnn.SharedAlphaDropout(**{"shared_axes": 1, **kw}),
        _x(4, 5, 6),
        ("inplace",),
        allow_one=False,
    ),
    ModuleSpec(
        "DropBlock2d",
        lambda large=False, **kw: dnn.DropBlock2d(**{"block_size": 3, "p": 0.3, **kw}),
        _x(2, 3, 6, 6, large=DROPBLOCK_LARGE),
        ("inplace", "share_channels", "scale_by_keep", "with_noise"),
        fast=True,
    ),
    ModuleSpec(
        "DropBlock2d",
        lambda large=False, **kw: dnn.DropBlock2d(
            **{"block_size": 3, "p": 0.3, "scale_by_keep": False, "with_noise": True, **kw}
        ),
        _x(2, 3, 6, 6, large=DROPBLOCK_LARGE),
        label="noise",
        fast=True,
    ),
    ModuleSpec(
        "DropBlock3d",
        lambda large=False, **kw: dnn.DropBlock3d(**{"block_size": 2, "p": 0.3, **kw}),
        _x(2, 2, 4, 4, 4, large=(2, 4, 8, 8, 16)),
        ("inplace", "share_channels", "scale_by_keep", "with_noise"),
        fast=True,
    ),
    ModuleSpec(
        "EmbeddingDropout",
        lambda **kw: dnn.EmbeddingDropout(5, 4, **{"p": 0.4, **kw}),
        lambda dt, large: (torch.tensor([[0, 3, 2], [3, 3, 1]]),),
        grad=False,  # an index input; the weight's gradient is checked by the functional spec
    ),
    ModuleSpec(
        "DropConnectLinear",
        lambda **kw: dnn.DropConnectLinear(5, 3, **{"p": 0.4, **kw}),
        lambda dt, large: (torch.randn(4, 5, dtype=dt),),
        ("per_sample",),
    ),
    ModuleSpec(
        "DropConnectLinear",
        lambda large=False, **kw: dnn.DropConnectLinear(
            *((64, 64) if large else (5, 3)), **{"p": 0.4, "per_sample": True, **kw}
        ),
        lambda dt, large: (torch.randn(8 if large else 4, 64 if large else 5, dtype=dt),),
        label="per_sample",  # N weight copies: dropout's kernel from NOISE_NUMEL weights
        fast=True,
    ),
    ModuleSpec(
        "DropConnectConv1d",
        lambda **kw: dnn.DropConnectConv1d(2, 3, 3, **{"p": 0.4, **kw}),
        lambda dt, large: (torch.randn(2, 2, 7, dtype=dt),),
        ("per_sample",),
    ),
    ModuleSpec(
        "DropConnectConv2d",
        lambda **kw: dnn.DropConnectConv2d(2, 3, 3, **{"p": 0.4, **kw}),
        lambda dt, large: (torch.randn(2, 2, 5, 5, dtype=dt),),
        ("per_sample",),
    ),
    ModuleSpec(
        "DropConnect",  # the parametrization, through add_dropconnect on a Linear
        _dropconnect_param,
        lambda dt, large: (torch.randn(4, 128 if large else 5, dtype=dt),),
        fast=True,
    ),
    ModuleSpec(
        "ConcreteDropout",
        lambda **kw: dnn.ConcreteDropout(**{"p": 0.3, **kw}),
        _x(4, 6),
        allow_one=False,
    ),
    ModuleSpec(
        "VariationalLSTM",
        lambda **kw: dnn.VariationalLSTM(
            3, 4, **{"recurrent_dropout": 0.3, "output_dropout": 0.3, **kw}
        ),
        lambda dt, large: (torch.randn(4, 2, 3, dtype=dt),),
        ("per_gate",),
        p="recurrent_dropout",
        allow_one=False,
    ),
    ModuleSpec(
        "VariationalGRU",
        lambda **kw: dnn.VariationalGRU(3, 4, **{"input_dropout": 0.3, **kw}),
        lambda dt, large: (torch.randn(4, 2, 3, dtype=dt),),
        ("per_gate",),
        p="input_dropout",
        allow_one=False,
    ),
    ModuleSpec(
        "WeightDropLSTM",
        lambda **kw: dnn.WeightDropLSTM(3, 4, **{"weight_dropout": 0.4, **kw}),
        lambda dt, large: (torch.randn(4, 2, 3, dtype=dt),),
        p="weight_dropout",
        allow_one=False,
    ),
    ModuleSpec(
        "WeightDropGRU",
        lambda **kw: dnn.WeightDropGRU(3, 4, **{"weight_dropout": 0.4, **kw}),
        lambda dt, large: (torch.randn(4, 2, 3, dtype=dt),),
        p="weight_dropout",
        allow_one=False,
    ),
]

# Public names of dropkit.nn that are model utilities, not modules.
NOT_MODULES = {
    "add_dropconnect": "registers the DropConnect parametrization (spec 'DropConnect')",
    "remove_dropconnect": "undoes add_dropconnect",
    "concrete_regularization": "sums ConcreteDropout regularizers",
    "convert_dropout": "swaps torch's dropout modules for dropkit's",
    "dropout_modules": "lists dropout-like modules",
    "get_dropout_p": "reads p",
    "set_dropout_p": "writes p",
    "ConversionWarning": "the warning convert_dropout gives for layers it leaves",
    "StochasticLayer": "a registry entry (nn/registry.py)",
    "Unconvertible": "convert_dropout's report of a layer it left",
    "register_stochastic_layer": "adds a layer class to the registry",
    "unregister_stochastic_layer": "removes one",
    "stochastic_layer": "the registry entry of a module",
    "stochastic_layers": "the registered entries",
    "set_generator": "sets the generator of every stochastic layer of a model",
    "audit_stochastic": "lists a model's sources of noise (nn/discovery.py)",
    "StochasticAudit": "audit_stochastic's result",
    "StochasticSource": "one row of that result",
    "UnknownRateWarning": "the warning for a source found random whose rate is unknown",
    "GeneratorWarning": "set_generator's report of layers that take no generator",
}


# Eager runs these through the fused recurrence (ops/rnn.py) and graphs through the
# step loop: the same masks, float32 sums in another order, so graph-vs-eager comparisons allow
# rounding (a different mask would differ by far more).
FUSED_EAGER = {"variational_rnn", "VariationalLSTM", "VariationalGRU"}


def same_values_tol(spec) -> dict:
    """assert_close tolerances for a graph's output against eager's: exact, but for FUSED_EAGER."""
    return {"rtol": 1e-5, "atol": 1e-6} if spec.name in FUSED_EAGER else {"rtol": 0, "atol": 0}


def by_name(specs):
    return {str(s): s for s in specs}


def large_variants(specs):
    """(spec, large) pairs: below the threshold for every spec, above it for fast-path ones."""
    return [(s, False) for s in specs] + [(s, True) for s in specs if s.fast]


def variant_id(pair) -> str:
    spec, large = pair
    return f"{spec}-{'fast' if large else 'plain'}"
