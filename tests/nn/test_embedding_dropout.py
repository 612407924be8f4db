"""dropkit.nn.EmbeddingDropout as a drop-in nn.Embedding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit.nn._base import _Stochastic


def test_state_dict_is_nn_embeddings_and_eval_is_lookup():
    plain = nn.Embedding(50, 4, padding_idx=0)
    ours = dnn.EmbeddingDropout(50, 4, padding_idx=0, p=0.2)
    ours.load_state_dict(plain.state_dict())
    assert list(ours.state_dict()) == list(plain.state_dict())
    idx = torch.randint(50, (6, 3))
    assert torch.equal(ours.eval()(idx), plain(idx))
    assert isinstance(ours, _Stochastic) and isinstance(ours, nn.Embedding)


def test_forward_is_the_functional_op():
    m = dnn.EmbeddingDropout(30, 4, p=0.3, generator=torch.Generator().manual_seed(2))
    idx = torch.randint(30, (5, 2))
    expected = DF.embedding_dropout(idx, m.weight, 0.3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(m(idx), expected)


def test_errors_and_repr():
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        dnn.EmbeddingDropout(10, 3, p=1.5)
    with pytest.raises(ValueError, match="EmbeddingDropout: max_norm is not supported"):
        dnn.EmbeddingDropout(10, 3, max_norm=1.0)
    m = dnn.EmbeddingDropout(10, 3, p=0.1)
    with pytest.raises(ValueError, match="but got -0.5"):
        m.p = -0.5
    assert repr(m) == "EmbeddingDropout(10, 3, p=0.1)"
