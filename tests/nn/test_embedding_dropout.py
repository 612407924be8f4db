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


def test_wraps_an_existing_embedding_sharing_its_weight():
    emb = torch.nn.Embedding(20, 4, padding_idx=0).eval()
    wrapped = dnn.EmbeddingDropout.from_embedding(emb, p=0.3)
    assert wrapped.weight is emb.weight and wrapped.padding_idx == 0 and not wrapped.training
    assert list(wrapped.state_dict()) == list(emb.state_dict())
    ids = torch.randint(20, (3, 5))
    assert torch.equal(wrapped(ids), emb(ids))
    out = wrapped.train()(ids)
    rows = out.ne(0).any(-1)  # a dropped word type is zero everywhere it occurs
    for w in ids.unique():
        assert rows[ids == w].all() or not rows[ids == w].any()
    with pytest.raises(ValueError, match="max_norm is not supported"):
        dnn.EmbeddingDropout.from_embedding(torch.nn.Embedding(5, 2, max_norm=1.0))
    with pytest.raises(TypeError, match="from_embedding: embedding must be an nn.Embedding"):
        dnn.EmbeddingDropout.from_embedding(torch.nn.Linear(2, 2))
