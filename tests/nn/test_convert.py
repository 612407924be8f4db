"""Model utilities: torch <-> dropkit dropout modules, losslessly; get/set every drop rate."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import dropkit.nn as dnn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Dropout2d(0.1),
        nn.Identity(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16),
        nn.SELU(),
        nn.AlphaDropout(0.05),
        nn.Dropout(0.3, inplace=True),
        nn.Linear(16, 3),
        nn.FeatureAlphaDropout(0.2),
    )


def _same_state(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_is_lossless():
    model = _model()
    model[1].running_var.mul_(2)
    state = copy.deepcopy(model.state_dict())
    x = torch.randn(5, 1, 4, 4)
    expected = model.eval()(x)
    model[2].train()  # a mixed train/eval mode is kept module by module

    dnn.convert_dropout(model, to="dropkit")
    kinds = [type(m) for m in model]
    assert kinds[2] is dnn.Dropout2d and kinds[7] is dnn.AlphaDropout and kinds[8] is dnn.Dropout
    assert kinds[10] is dnn.FeatureAlphaDropout
    assert model[8].inplace and model[2].training and not model[8].training
    assert _same_state(model.state_dict(), state)
    torch.manual_seed(3)
    ours = model(x)

    dnn.convert_dropout(model, to="torch")
    assert [type(m) for m in model] == [type(m) for m in _model()]
    assert _same_state(model.state_dict(), state)
    torch.manual_seed(3)
    assert torch.equal(model(x), ours)  # same masks under the same seed
    assert torch.equal(model.eval()(x), expected)


def test_same_training_outputs_as_torch_under_the_same_seed():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.4), nn.Linear(8, 8), nn.Dropout(0.2))
    x = torch.randn(32, 8)
    torch.manual_seed(1)
    expected = model(x)
    dnn.convert_dropout(model)
    torch.manual_seed(1)
    assert torch.equal(model(x), expected)


def test_root_module_and_untouched_modules():
    assert type(dnn.convert_dropout(nn.Dropout(0.2))) is dnn.Dropout
    back = dnn.convert_dropout(dnn.Dropout3d(0.15, inplace=True), to="torch")
    assert type(back) is nn.Dropout3d and back.p == 0.15 and back.inplace
    block = dnn.DropBlock2d(0.1, block_size=3)
    with pytest.warns(dnn.ConversionWarning, match=r"1 x DropBlock2d \('<model>'\): .*no torch"):
        assert dnn.convert_dropout(block, to="torch") is block  # no torch counterpart: left alone
    with pytest.raises(ValueError, match="(?s)DropBlock2d.*nothing was changed"):
        dnn.convert_dropout(nn.Sequential(block), to="torch", strict=True)


def test_refuses_a_lossy_conversion():
    model = nn.Sequential(dnn.Dropout(0.2, scale="classic"))
    with pytest.raises(ValueError, match=r"'0' \(Dropout\) has scale='classic'.*not be lossless"):
        dnn.convert_dropout(model, to="torch")
    with pytest.raises(ValueError, match="batched=False"):
        dnn.convert_dropout(nn.Sequential(dnn.Dropout2d(0.2, batched=False)), to="torch")
    with pytest.raises(ValueError, match="to must be one of .*'keras'"):
        dnn.convert_dropout(model, to="keras")


def test_get_and_set_every_drop_rate():
    model = nn.Sequential(
        nn.Dropout(0.1),
        dnn.DropConnectLinear(4, 4, p=0.2),
        nn.Linear(4, 4),
        dnn.ConcreteDropout(0.3),
        dnn.DropBlock2d(0.4, block_size=1),
        dnn.GaussianDropout(0.5),
    )
    dnn.add_dropconnect(model[2], p=0.25)
    rates = dnn.get_dropout_p(model)
    assert rates == pytest.approx(
        {"0": 0.1, "1": 0.2, "2.parametrizations.weight.0": 0.25, "3": 0.3, "4": 0.4, "5": 0.5}
    )
    names = dnn.set_dropout_p(model, 0.35)
    assert names == list(rates)
    assert dnn.get_dropout_p(model) == pytest.approx(dict.fromkeys(rates, 0.35))


def test_set_refuses_before_changing_anything():
    model = nn.Sequential(nn.Dropout(0.1), dnn.GaussianDropout(0.2))
    with pytest.raises(
        ValueError, match="'1' \\(GaussianDropout\\) is undefined at p=1; nothing changed"
    ):
        dnn.set_dropout_p(model, 1.0)
    assert dnn.get_dropout_p(model) == {"0": 0.1, "1": 0.2}
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.set_dropout_p(model, 1.5)


def test_a_shared_dropout_module_stays_shared():
    drop = nn.Dropout(0.3)
    model = nn.Sequential(nn.Linear(4, 4), drop, nn.Linear(4, 4), drop)
    dnn.convert_dropout(model)
    assert type(model[1]) is dnn.Dropout and model[1] is model[3]


def test_every_random_dropkit_module_carries_the_stochastic_marker():
    # MC dropout and these utilities find random layers through the marker; none may be missed.
    from dropkit.nn._base import _Stochastic

    random_modules = [
        dnn.Dropout(0.1),
        dnn.SharedDropout(0.1, shared_axes=1),
        dnn.Dropout1d(0.1),
        dnn.Dropout2d(0.1),
        dnn.Dropout3d(0.1),
        dnn.DropPath(0.1),
        dnn.GaussianDropout(0.1),
        dnn.AlphaDropout(0.1),
        dnn.FeatureAlphaDropout(0.1),
        dnn.DropBlock2d(0.1),
        dnn.DropBlock3d(0.1),
        dnn.DropConnectLinear(2, 2),
        dnn.DropConnectConv1d(2, 2, 1),
        dnn.DropConnectConv2d(2, 2, 1),
        dnn.DropConnect(0.1),
        dnn.ConcreteDropout(0.1),
    ]
    exported = {n for n in dnn.__all__ if isinstance(getattr(dnn, n), type)}
    assert {type(m).__name__ for m in random_modules} <= exported
    assert all(isinstance(m, _Stochastic) for m in random_modules)
    assert len(dnn.dropout_modules(nn.Sequential(*random_modules))) == len(random_modules)


def test_back_to_the_original_modules_with_the_rates_set_since():
    drop, native = nn.Dropout(0.3), dnn.DropPath(0.2)
    model = nn.Sequential(nn.Linear(4, 4), drop, native)
    dnn.convert_dropout(model)
    assert type(model[1]) is dnn.Dropout and model[2] is native
    dnn.set_dropout_p(model, 0.4)
    dnn.convert_dropout(model, to="original")  # dropkit's own DropPath stays, silently
    assert model[1] is drop and drop.p == 0.4 and model[2] is native
    assert dnn.convert_dropout(dnn.Dropout(0.1), to="original").p == 0.1


class TestSetGenerator:
    """dropkit.nn.set_generator (issue 21, item 4): one generator for every dropkit layer."""

    def _model(self):
        torch.manual_seed(0)
        return nn.Sequential(
            dnn.Dropout(0.3),
            dnn.DropPath(0.2),
            dnn.DropConnectLinear(6, 6, p=0.2),
            dnn.VariationalLSTM(6, 6, batch_first=True, recurrent_dropout=0.2),
            dnn.ConcreteDropout(0.1),
            dnn.WeightDropGRU(6, 6, weight_dropout=0.2),
        )

    def test_sets_every_dropkit_layer_and_replays(self):
        model = self._model()
        names = dnn.set_generator(model, torch.Generator().manual_seed(5))
        assert names == ["0", "1", "2", "3", "4", "5"]
        g = model[0].generator
        assert all(m.generator is g for m in model)
        x = torch.randn(2, 6)

        def run():
            model.train()
            g.manual_seed(5)
            torch.manual_seed(123)  # the global RNG does not matter
            return model[2](model[1](model[0](x)))

        first = run()
        torch.manual_seed(0)
        torch.rand(7)
        assert torch.equal(run(), first)
        assert dnn.set_generator(model, None) == names and model[0].generator is None

    def test_reports_layers_that_take_no_generator(self):
        model = nn.Sequential(
            nn.Dropout(0.3), dnn.Dropout(0.2), nn.MultiheadAttention(4, 2, dropout=0.1)
        )
        g = torch.Generator()
        with pytest.warns(dnn.GeneratorWarning) as caught:
            assert dnn.set_generator(model, g) == ["1"]
        text = str(caught[0].message)
        assert "2 stochastic module(s) take no generator" in text
        assert "1 x Dropout ('0'): takes no generator: convert_dropout first" in text
        assert "MultiheadAttention ('2'): its dropout runs inside its forward" in text
        model[1].generator = None
        with pytest.raises(ValueError, match=r"nothing was changed \(strict=True\)"):
            dnn.set_generator(model, g, strict=True)
        assert model[1].generator is None
        with pytest.warns(dnn.ConversionWarning, match="MultiheadAttention"):
            dnn.convert_dropout(model)
        with pytest.warns(dnn.GeneratorWarning, match="1 stochastic module"):
            assert dnn.set_generator(model, g) == ["0", "1"]
        with warnings.catch_warnings():  # rate 0: it draws nothing, nothing to report
            warnings.simplefilter("error")
            model[2].dropout = 0.0
            dnn.set_generator(model, g)

    def test_errors(self):
        with pytest.raises(TypeError, match="set_generator: generator must be a torch.Generator"):
            dnn.set_generator(nn.Dropout(), 3)
        with pytest.raises(TypeError, match="strict must be a bool"):
            dnn.set_generator(nn.Dropout(), None, strict=1)
