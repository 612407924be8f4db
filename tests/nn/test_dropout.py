"""dropkit.nn.Dropout as a drop-in for torch.nn.Dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dnn


def test_repr_matches_torch():
    assert repr(dnn.Dropout(0.3)) == repr(nn.Dropout(0.3))
    assert repr(dnn.Dropout(0.3, inplace=True)) == repr(nn.Dropout(0.3, inplace=True))
    assert (
        repr(dnn.Dropout(0.3, scale="classic")) == "Dropout(p=0.3, inplace=False, scale='classic')"
    )


def test_eval_returns_input_itself():
    m = dnn.Dropout(0.5).eval()
    x = torch.randn(4, 4)
    assert m(x) is x


def test_classic_eval_scales_by_keep_probability():
    m = dnn.Dropout(0.2, scale="classic").eval()
    x = torch.randn(4, 4)
    torch.testing.assert_close(m(x), x * 0.8, rtol=0, atol=0)


def test_forward_is_the_functional_op():
    x = torch.randn(50, 50)
    m = dnn.Dropout(0.3, generator=torch.Generator().manual_seed(1))
    expected = DF.dropout(x, 0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(m(x), expected)


def test_same_output_as_torch_module_under_same_seed():
    x = torch.randn(64, 32)
    torch.manual_seed(0)
    theirs = nn.Dropout(0.4)(x)
    torch.manual_seed(0)
    ours = dnn.Dropout(0.4)(x)
    assert torch.equal(ours == 0, theirs == 0)


def test_inplace_module():
    x = torch.randn(10)
    out = dnn.Dropout(0.5, inplace=True)(x)
    assert out is x


def test_state_dict_and_train_eval_toggle():
    m = nn.Sequential(nn.Linear(3, 3), dnn.Dropout(0.5))
    assert (
        m.state_dict().keys() == nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).state_dict().keys()
    )
    m.eval()
    assert not m[1].training


@pytest.mark.parametrize("p", [-0.5, 1.01])
def test_bad_p_has_torchs_message(p):
    with pytest.raises(ValueError) as ours:
        dnn.Dropout(p)
    with pytest.raises(ValueError) as theirs:
        nn.Dropout(p)
    assert str(ours.value) == str(theirs.value)


def test_p_assignment_is_validated():
    m = dnn.Dropout(0.5)
    m.p = 0.25
    assert m.p == 0.25
    with pytest.raises(ValueError, match="between 0 and 1"):
        m.p = 2.0


def test_bad_inplace_and_scale():
    with pytest.raises(TypeError, match="inplace must be a bool"):
        dnn.Dropout(0.5, inplace="yes")
    with pytest.raises(ValueError, match="scale must be one of"):
        dnn.Dropout(0.5, scale="dropconnect")


def test_trains_under_autograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), dnn.Dropout(0.5), nn.Linear(16, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    first = None
    for _ in range(200):
        loss = nn.functional.mse_loss(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert nn.functional.mse_loss(model(x), y).item() < first
