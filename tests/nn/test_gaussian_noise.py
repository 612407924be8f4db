"""GaussianNoise module: the functional op with the module's flag; MC mode and the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit.uncertainty import mc_predict


def test_module_is_the_functional_op():
    x = torch.randn(4, 5)
    m = dnn.GaussianNoise(0.2, generator=torch.Generator().manual_seed(1))
    expected = DF.additive_noise(x, 0.2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(m(x), expected)
    assert m.eval()(x) is x
    assert repr(m) == "GaussianNoise(std=0.2, inplace=False)"
    with pytest.raises(ValueError, match="GaussianNoise: std must be a finite number >= 0"):
        dnn.GaussianNoise(-1.0)


def test_monte_carlo_sees_it_but_rates_do_not():
    model = nn.Sequential(nn.Linear(3, 3), dnn.GaussianNoise(0.3)).eval()
    assert dnn.get_dropout_p(model) == {}  # no drop probability
    out = mc_predict(model, torch.randn(2, 3), 4, seed=0)
    assert out.std(0).min() > 0
