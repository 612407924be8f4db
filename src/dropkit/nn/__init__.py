"""Modules: each a thin shell whose ``forward`` calls one op of :mod:`dropkit.functional`."""

from dropkit.nn.alpha_dropout import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.channel_dropout import Dropout1d, Dropout2d, Dropout3d
from dropkit.nn.concrete_dropout import ConcreteDropout, concrete_regularization
from dropkit.nn.convert import convert_dropout, dropout_modules, get_dropout_p, set_dropout_p
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
from dropkit.nn.gaussian_dropout import GaussianDropout
from dropkit.nn.shared_dropout import SharedDropout

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnect",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectLinear",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "SharedDropout",
    "add_dropconnect",
    "concrete_regularization",
    "convert_dropout",
    "dropout_modules",
    "get_dropout_p",
    "remove_dropconnect",
    "set_dropout_p",
]
