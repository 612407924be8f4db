"""dropkit.nn.LockedDropout: the module form of locked_dropout."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit.nn._base import _DropoutNd


def test_forward_is_the_functional_op():
    x = torch.randn(4, 6, 8)
    m = dnn.LockedDropout(0.3, batch_first=True, generator=torch.Generator().manual_seed(1))
    expected = DF.locked_dropout(
        x, 0.3, batch_first=True, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(m(x), expected)
    assert isinstance(m, _DropoutNd)


def test_eval_identity_and_packed():
    m = dnn.LockedDropout(0.5).eval()
    x = torch.randn(5, 2, 3)
    assert m(x) is x
    packed = pack_padded_sequence(x, [5, 3])
    assert torch.equal(m.train()(packed).batch_sizes, packed.batch_sizes)


def test_repr_and_validation():
    assert (
        repr(dnn.LockedDropout(0.3, batch_first=True))
        == "LockedDropout(p=0.3, inplace=False, batch_first=True)"
    )
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.LockedDropout(1.2)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        dnn.LockedDropout(0.2, batch_first="yes")
