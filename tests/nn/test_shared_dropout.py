"""dropkit.nn.SharedDropout: a thin shell over shared_dropout."""

from __future__ import annotations

import pytest
import torch

import dropkit.functional as DF
import dropkit.nn as dnn


def test_forward_is_the_functional_op_and_repr():
    m = dnn.SharedDropout(0.3, shared_axes=(1,), generator=torch.Generator().manual_seed(2))
    x = torch.randn(4, 5, 6)
    expected = DF.shared_dropout(x, 0.3, shared_axes=1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(m(x), expected)
    assert repr(m) == "SharedDropout(p=0.3, inplace=False, shared_axes=(1,))"


def test_negative_axes_serve_several_ranks():
    m = dnn.SharedDropout(0.5, shared_axes=-1)
    for shape in [(4, 10), (2, 3, 10)]:
        kept = m(torch.ones(shape)) != 0
        assert torch.equal(kept, kept[..., :1].expand_as(kept))


def test_eval_and_p_validation():
    m = dnn.SharedDropout(0.5, shared_axes=1).eval()
    x = torch.randn(2, 3)
    assert m(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        m.p = 1.2
    with pytest.raises(ValueError, match="repeated"):
        dnn.SharedDropout(0.5, shared_axes=(1, 1))
    with pytest.raises(TypeError, match="must hold ints"):
        dnn.SharedDropout(0.5, shared_axes=(1, "2"))
    with pytest.raises(ValueError, match="out of range for a 2-D input"):
        dnn.SharedDropout(0.5, shared_axes=(2,))(torch.ones(2, 3))
