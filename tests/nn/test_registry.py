"""The registry of stochastic layers: users' classes by class or import path, lookup rules."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.uncertainty import mc_mode, mc_predict


class Jitter(nn.Module):
    """A user's multiplicative noise layer with its rate in ``rate``."""

    def __init__(self, rate: float = 0.2) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.rate) / (1 - self.rate)


class FunctionalBlock(nn.Module):
    """Dropout inside forward, gated by this module's own flag (as HF attention); a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.bn, self.drop_rate = nn.Linear(4, 4), nn.BatchNorm1d(4), 0.4

    def forward(self, x):
        return nn.functional.dropout(self.bn(self.lin(x)), self.drop_rate, self.training)


@pytest.fixture
def registered():
    entries = [
        dnn.register_stochastic_layer(Jitter, p="rate", to_dropkit=lambda m: dnn.Dropout(m.rate)),
        dnn.register_stochastic_layer(f"{__name__}.FunctionalBlock", kind="gate", p="drop_rate"),
    ]
    yield entries
    dnn.unregister_stochastic_layer(Jitter)
    dnn.unregister_stochastic_layer(f"{__name__}.FunctionalBlock")


def test_unknown_layers_are_invisible_until_registered():
    model = nn.Sequential(Jitter(), FunctionalBlock())
    assert dnn.get_dropout_p(model) == {}
    assert dnn.stochastic_layer(model[0]) is None


def test_registered_layers_are_read_set_switched_and_converted(registered):
    model = nn.Sequential(Jitter(0.2), FunctionalBlock()).eval()
    assert dnn.get_dropout_p(model) == {"0": 0.2, "1": 0.4}
    assert [e.kind for _, _, e in dnn.stochastic_layers(model)] == ["layer", "gate"]
    assert dnn.set_dropout_p(model, 0.3) == ["0", "1"]
    assert model[0].rate == 0.3 and model[1].drop_rate == 0.3
    with mc_mode(model):
        assert model[0].training and model[1].training and not model[1].bn.training
    assert mc_predict(model, torch.randn(3, 4), 4).std(0).mean() > 0
    dnn.convert_dropout(model[:1])
    original = model[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnn.ConversionWarning)  # the gate keeps its class, hooked
        dnn.convert_dropout(model)
    assert type(model[0]) is dnn.Dropout and model[0].p == 0.3
    assert type(model[1]) is FunctionalBlock
    model[0].p = 0.25
    dnn.convert_dropout(model, to="original")
    assert model[0] is original and original.rate == 0.25


def test_subclass_matches_but_is_not_converted(registered):
    class Sub(Jitter):
        pass

    model = nn.Sequential(Sub(0.1))
    assert dnn.get_dropout_p(model) == {"0": 0.1}
    with pytest.warns(dnn.ConversionWarning, match="no dropkit counterpart"):
        dnn.convert_dropout(model)
    assert type(model[0]) is Sub


def test_dropkit_modules_are_not_matched_by_torch_bases():
    rnn = dnn.VariationalLSTM(3, 4, recurrent_dropout=0.2)
    entry = dnn.stochastic_layer(rnn)
    assert entry.name == "dropkit.nn.variational_rnn.VariationalLSTM" and entry.kind == "layer"
    assert dnn.stochastic_layer(dnn.GaussianNoise()).name == "dropkit"  # the _Stochastic marker


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"kind": "noise"}, ValueError, "kind must be one of"),
        ({"p": 3}, TypeError, "p must be an attribute name"),
        ({"to_dropkit": 3}, TypeError, "to_dropkit must be callable"),
        ({"multiplicative": 1}, TypeError, "multiplicative must be a bool"),
    ],
)
def test_register_errors(kwargs, err, match):
    with pytest.raises(err, match=f"register_stochastic_layer: {match}"):
        dnn.register_stochastic_layer(Jitter, **kwargs)


def test_register_rejects_bad_classes():
    with pytest.raises(TypeError, match="cls must be an nn.Module subclass"):
        dnn.register_stochastic_layer(int)
    with pytest.raises(ValueError, match="import path"):
        dnn.register_stochastic_layer("Jitter")
    with pytest.raises(KeyError, match="not registered"):
        dnn.unregister_stochastic_layer("a.b.C")


def _as_published(cls: type, module: str) -> type:
    """A stand-in with a peer's published import path (the registry matches paths, not objects)."""
    cls.__module__ = module
    return cls


class RNNDropout(nn.Module):
    """fastai's RNNDropout, as published in fastai.text.models.awdlstm."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.size(0), 1, *x.shape[2:]).bernoulli_(1 - self.p).div_(1 - self.p)
        return x * mask


_as_published(RNNDropout, "fastai.text.models.awdlstm")


@pytest.mark.parametrize("shape", [(4, 6, 3), (4, 6, 3, 2), (2, 5)])
def test_fastai_rnn_dropout_converts_to_shared_dropout_on_any_rank(shape):
    m = RNNDropout(0.4)
    assert dnn.get_dropout_p(nn.Sequential(m)) == {"0": 0.4}
    dk = dnn.convert_dropout(m)
    assert type(dk) is dnn.SharedDropout and dk.shared_axes == (1,) and dk.p == 0.4
    x = torch.randn(shape)
    out = dk.train()(x)
    kept = out != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # one mask along the sequence
    torch.testing.assert_close(out[kept], x[kept] / 0.6)
    back = dnn.convert_dropout(nn.Sequential(dk), to="original")
    assert back[0] is m


class TwoRates(nn.Module):
    """A library layer with two rates, as BART's: dropout and activation_dropout."""

    def __init__(self, dropout: float = 0.0, activation_dropout: float = 0.3) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 4)
        self.dropout, self.activation_dropout = dropout, activation_dropout

    def forward(self, x):
        h = nn.functional.dropout(torch.relu(self.fc1(x)), self.activation_dropout, self.training)
        return nn.functional.dropout(self.fc2(h), self.dropout, self.training)


@pytest.fixture
def two_rates():
    entry = dnn.register_stochastic_layer(
        TwoRates, kind="gate", p=("dropout", "activation_dropout")
    )
    yield entry
    dnn.unregister_stochastic_layer(TwoRates)


def test_every_rate_under_its_own_name(two_rates):
    # Before: only the first rate present was read: {"0": 0.0}, and MC sampling was refused.
    model = nn.Sequential(TwoRates(dropout=0.0, activation_dropout=0.3)).eval()
    assert dnn.get_dropout_p(model) == {"0.dropout": 0.0, "0.activation_dropout": 0.3}
    assert two_rates.rates(model[0]) == {"dropout": 0.0, "activation_dropout": 0.3}
    assert two_rates.p(model[0]) == 0.3  # active if any rate is non-zero
    out = mc_predict(model, torch.randn(3, 4), 4, seed=0)
    assert all(not torch.equal(out[i], out[j]) for i in range(4) for j in range(i))
    assert dnn.set_dropout_p(model, {"0.activation_dropout": 0.1}) == ["0.activation_dropout"]
    assert (model[0].dropout, model[0].activation_dropout) == (0.0, 0.1)
    assert dnn.set_dropout_p(model, 0.2) == ["0.dropout", "0.activation_dropout"]
    assert (model[0].dropout, model[0].activation_dropout) == (0.2, 0.2)


def test_rates_of_the_model_itself_and_single_rate_modules(two_rates):
    model = TwoRates(0.1, 0.2)
    assert dnn.get_dropout_p(model) == {"dropout": 0.1, "activation_dropout": 0.2}
    assert dnn.get_dropout_p(nn.Sequential(nn.Dropout(0.3))) == {"0": 0.3}


def test_a_value_a_module_refuses_changes_nothing():
    rnn = dnn.VariationalLSTM(3, 4, 2, recurrent_dropout=0.2)
    model = nn.Sequential(nn.Dropout(0.1), rnn)
    before = dnn.get_dropout_p(model)
    assert before["1.recurrent_dropout"] == 0.2  # dropkit's recurrent layers: each rate named
    with pytest.raises(ValueError, match=r"'1.input_dropout' \(VariationalLSTM\).*nothing changed"):
        dnn.set_dropout_p(model, 1.0)  # 1/(1-p) is undefined for the variational masks
    assert dnn.get_dropout_p(model) == before


def test_register_a_tuple_of_names_errors():
    with pytest.raises(TypeError, match="p must be an attribute name, a tuple of attribute names"):
        dnn.register_stochastic_layer(TwoRates, p=("dropout", 3))
