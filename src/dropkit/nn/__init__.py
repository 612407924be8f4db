"""Modules: each a thin shell whose ``forward`` calls one op of :mod:`dropkit.functional`."""

from dropkit.nn.dropout import Dropout
from dropkit.nn.embedding_dropout import EmbeddingDropout
from dropkit.nn.locked_dropout import LockedDropout
from dropkit.nn.variational_rnn import VariationalGRU, VariationalLSTM
from dropkit.nn.weight_drop import WeightDropGRU, WeightDropLSTM

__all__ = [
    "Dropout",
    "EmbeddingDropout",
    "LockedDropout",
    "VariationalGRU",
    "VariationalLSTM",
    "WeightDropGRU",
    "WeightDropLSTM",
]
