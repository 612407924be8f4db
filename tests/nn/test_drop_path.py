"""dropkit.nn.DropPath in a residual network with linearly increasing rates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dnn


class Block(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.f = nn.Linear(8, 8)
        self.drop_path = dnn.DropPath(p)

    def forward(self, x):
        return x + self.drop_path(self.f(x))


def test_forward_is_the_functional_op_and_repr():
    x = torch.randn(6, 4)
    m = dnn.DropPath(0.2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m(x), DF.drop_path(x, 0.2, generator=torch.Generator().manual_seed(0)))
    assert repr(m) == "DropPath(p=0.2, inplace=False)"


def test_stochastic_depth_network():
    rates = DF.drop_path_rates(0.5, 4)
    net = nn.Sequential(*(Block(p) for p in rates))
    assert [b.drop_path.p for b in net] == rates
    x = torch.randn(256, 8)
    net.eval()
    expected = x
    for b in net:
        expected = expected + b.f(expected)
    torch.testing.assert_close(net(x), expected)  # eval: every block present
    net.train()
    torch.manual_seed(0)
    # The last block (p = 0.5) is skipped for about half the samples: its output equals its input.
    h = net[:3](x)
    skipped = (net[3](h) == h).all(1).double().mean().item()
    assert 0.35 < skipped < 0.65


def test_scale_by_keep_false_module():
    x = torch.randn(6, 4)
    m = dnn.DropPath(0.5, scale_by_keep=False, generator=torch.Generator().manual_seed(0))
    expected = DF.drop_path(x, 0.5, scale_by_keep=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m(x), expected)
    assert repr(m) == "DropPath(p=0.5, inplace=False, scale_by_keep=False)"
    assert m.eval()(x) is x
    scripted = torch.jit.script(m.train())
    m.generator = torch.Generator().manual_seed(1)
    scripted.generator = torch.Generator().manual_seed(1)
    assert torch.equal(scripted(x), m(x))
    with pytest.raises(TypeError, match="DropPath: scale_by_keep must be a bool"):
        dnn.DropPath(0.1, scale_by_keep=None)
    with pytest.raises(ValueError, match="scale_by_keep=False goes with scale='inverted'"):
        dnn.DropPath(0.1, scale="classic", scale_by_keep=False)
