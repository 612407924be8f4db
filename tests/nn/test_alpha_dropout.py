"""dropkit.nn.AlphaDropout / FeatureAlphaDropout as drop-ins for torch's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.nn as dnn


@pytest.mark.parametrize(
    "ours, theirs, shape",
    [
        (dnn.AlphaDropout, nn.AlphaDropout, (64, 32)),
        (dnn.FeatureAlphaDropout, nn.FeatureAlphaDropout, (8, 16, 4, 4)),
    ],
)
def test_repr_and_output_match_torch(ours, theirs, shape):
    assert repr(ours(0.2)) == repr(theirs(0.2))
    x = torch.randn(shape, dtype=torch.float64)
    torch.manual_seed(5)
    expected = theirs(0.2)(x)
    torch.manual_seed(5)
    torch.testing.assert_close(ours(0.2)(x), expected)
    assert ours(0.2).eval()(x) is x


def test_selu_network_in_training_keeps_unit_variance():
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        lin = nn.Linear(128, 128)
        nn.init.normal_(lin.weight, std=128**-0.5)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.SELU(), dnn.AlphaDropout(0.1)]
    out = nn.Sequential(*layers)(torch.randn(4096, 128))
    assert abs(out.mean().item()) < 0.1 and abs(out.var().item() - 1) < 0.15


def test_p_one_refused():
    with pytest.raises(ValueError, match="AlphaDropout"):
        dnn.AlphaDropout(1.0)
