"""dropkit.nn.GaussianDropout."""

from __future__ import annotations

import pytest
import torch

import dropkit.functional as DF
import dropkit.nn as dnn


def test_forward_eval_repr():
    x = torch.randn(5, 6)
    m = dnn.GaussianDropout(0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(
        m(x), DF.gaussian_dropout(x, 0.3, generator=torch.Generator().manual_seed(1))
    )
    assert m.eval()(x) is x
    assert repr(m) == "GaussianDropout(p=0.3, inplace=False)"


def test_p_one_is_refused_at_construction_and_assignment():
    with pytest.raises(
        ValueError, match=r"GaussianDropout: dropout probability has to be in \[0, 1\)"
    ):
        dnn.GaussianDropout(1.0)
    m = dnn.GaussianDropout(0.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        m.p = 1.0
