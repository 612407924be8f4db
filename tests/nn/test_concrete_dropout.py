"""dropkit.nn.ConcreteDropout: a learned drop rate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dnn


def test_forward_is_the_functional_op_then_the_layer():
    layer = nn.Linear(6, 2)
    cd = dnn.ConcreteDropout(0.2, layer, generator=torch.Generator().manual_seed(1))
    x = torch.randn(4, 6)
    dropped = DF.concrete_dropout(x, cd.p_logit, 0.1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(cd(x), layer(dropped), rtol=0, atol=0)
    assert cd.p == pytest.approx(0.2)
    torch.testing.assert_close(cd.eval()(x), layer(x), rtol=0, atol=0)


def test_regularizer_and_model_sum():
    layer = nn.Linear(6, 2)
    cd = dnn.ConcreteDropout(0.3, layer, weight_regularizer=1e-2, dropout_regularizer=1e-3)
    with pytest.raises(RuntimeError, match="call the module once first"):
        cd.regularizer()
    cd(torch.randn(5, 6))
    expected = DF.concrete_regularizer(
        cd.p_logit, list(layer.parameters()), 6, weight_regularizer=1e-2, dropout_regularizer=1e-3
    )
    torch.testing.assert_close(cd.regularizer(), expected)
    model = nn.Sequential(cd, nn.ReLU(), dnn.ConcreteDropout(0.1))
    model(torch.randn(5, 6))
    total = dnn.concrete_regularization(model)
    torch.testing.assert_close(total, cd.regularizer() + model[2].regularizer())


@pytest.mark.parametrize("dropout_regularizer, moves", [(0.0, "down"), (1.0, "up")])
def test_p_is_learned_through_the_relaxation(dropout_regularizer, moves):
    # The data term alone prefers less noise (p falls); a strong entropy term pulls p up towards
    # 1/2. Either way p moves only because gradients flow through the relaxed mask into p_logit.
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = x[:, :1] + 0.5 * torch.randn(128, 1)
    cd = dnn.ConcreteDropout(
        0.2, nn.Linear(16, 1), weight_regularizer=0.0, dropout_regularizer=dropout_regularizer
    )
    opt = torch.optim.Adam(cd.parameters(), lr=0.05)
    for _ in range(60):
        loss = (cd(x) - y).pow(2).mean() + cd.regularizer()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert cd.p < 0.1 if moves == "down" else cd.p > 0.3


def test_p_assignment_and_errors():
    cd = dnn.ConcreteDropout(0.1)
    cd.p = 0.4
    assert cd.p == pytest.approx(0.4)
    assert repr(cd) == "ConcreteDropout(p=0.4, temperature=0.1)"
    with pytest.raises(ValueError, match=r"has to be in \[0, 1\)"):
        cd.p = 1.0
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        dnn.ConcreteDropout(0.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        dnn.ConcreteDropout(0.1, temperature=-1.0)


def test_torch_jit_script_records_the_input_size_and_matches_eager():
    # Before: RuntimeError "dropkit.nn.ConcreteDropout does not support torch.jit.script".
    torch.manual_seed(0)
    eager = dnn.ConcreteDropout(0.2, layer=torch.nn.Linear(6, 3))
    scripted = torch.jit.script(eager)
    assert scripted.input_dim is None
    x = torch.randn(4, 6)
    torch.manual_seed(1)
    expected = eager(x)
    torch.manual_seed(1)
    torch.testing.assert_close(scripted(x), expected, rtol=0, atol=0)  # the same noise draw
    assert scripted.input_dim == 6
    scripted.eval()
    torch.testing.assert_close(scripted(x), eager.eval()(x), rtol=0, atol=0)
    alone = torch.jit.script(dnn.ConcreteDropout(0.3))  # no layer
    assert alone(torch.ones(2, 5, 3)).shape == (2, 5, 3) and alone.input_dim == 15
