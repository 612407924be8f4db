"""Modules: each a thin shell whose ``forward`` calls one op of :mod:`dropkit.functional`."""

from dropkit.nn.dropout import Dropout

__all__ = ["Dropout"]
