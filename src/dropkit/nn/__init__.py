"""Modules: each a thin shell whose ``forward`` calls one op of :mod:`dropkit.functional`."""

from dropkit.nn.alpha_dropout import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.channel_dropout import Dropout1d, Dropout2d, Dropout3d
from dropkit.nn.concrete_dropout import ConcreteDropout, concrete_regularization
from dropkit.nn.convert import (
    ConversionWarning,
    GeneratorWarning,
    UnknownRateWarning,
    convert_dropout,
    dropout_modules,
    get_dropout_p,
    set_dropout_p,
    set_generator,
)
from dropkit.nn.discovery import StochasticAudit, StochasticSource, audit_stochastic
from dropkit.nn.drop_path import DropPath
from dropkit.nn.dropblock import DropBlock2d, DropBlock3d
from dropkit.nn.dropconnect import (
    DropConnect,
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    add_dropconnect,
    remove_dropconnect,
)
from dropkit.nn.dropout import Dropout
from dropkit.nn.embedding_dropout import EmbeddingDropout
from dropkit.nn.gaussian_dropout import GaussianDropout
from dropkit.nn.gaussian_noise import GaussianNoise
from dropkit.nn.locked_dropout import LockedDropout
from dropkit.nn.registry import (
    StochasticLayer,
    Unconvertible,
    register_stochastic_layer,
    stochastic_layer,
    stochastic_layers,
    unregister_stochastic_layer,
)
from dropkit.nn.shared_alpha_dropout import SharedAlphaDropout
from dropkit.nn.shared_dropout import SharedDropout
from dropkit.nn.variational_rnn import VariationalGRU, VariationalLSTM
from dropkit.nn.weight_drop import WeightDropGRU, WeightDropLSTM

__all__ = [
    "add_dropconnect",
    "AlphaDropout",
    "audit_stochastic",
    "concrete_regularization",
    "ConversionWarning",
    "ConcreteDropout",
    "convert_dropout",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnect",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectLinear",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "dropout_modules",
    "DropPath",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "GeneratorWarning",
    "get_dropout_p",
    "LockedDropout",
    "register_stochastic_layer",
    "remove_dropconnect",
    "set_dropout_p",
    "set_generator",
    "SharedAlphaDropout",
    "SharedDropout",
    "stochastic_layer",
    "StochasticAudit",
    "StochasticLayer",
    "stochastic_layers",
    "StochasticSource",
    "Unconvertible",
    "UnknownRateWarning",
    "unregister_stochastic_layer",
    "VariationalGRU",
    "VariationalLSTM",
    "WeightDropGRU",
    "WeightDropLSTM",
]
