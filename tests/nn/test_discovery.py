"""Stochastic modules found by behaviour (dropkit.nn.discovery), and audit_stochastic.

Classes here stand for a library's classes no registry entry names: dropout run functionally in
forward, a batch-shared gate, noise that ignores the training flag.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.nn.discovery import _as_batch, _probe
from dropkit.uncertainty import NoDropoutError, dropout_layers, mc_mode, mc_predict


class Head(nn.Module):
    """A classifier whose head calls F.dropout(x, self.rate, self.training): unknown by name."""

    def __init__(self, rate: float = 0.5) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.fc = nn.Linear(16, 3)
        self.rate = rate

    def forward(self, x):
        return self.fc(nn.functional.dropout(self.body(x), self.rate, self.training))


class SkipLayers(nn.Module):
    """LayerDrop as Hugging Face writes it: one rand() per layer and forward, shared by the
    batch, behind a threshold of 0 (no draw at all then)."""

    def __init__(self, layerdrop: float = 0.5, n: int = 6) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(n))
        self.skip = layerdrop

    def forward(self, x):
        for layer in self.layers:
            if self.training and self.skip > 0 and torch.rand([]) < self.skip:
                continue
            x = x + torch.tanh(layer(x))
        return x


class AlwaysNoisy(nn.Module):
    """Noise in eval too: nothing mc_mode can switch."""

    def forward(self, x):
        return x + 0.1 * torch.randn_like(x)


class TestProbe:
    def test_functional_dropout_is_found_and_recorded(self):
        model = Head().eval()
        assert dnn.stochastic_layer(model) is None
        with pytest.raises(NoDropoutError, match="no stochastic layer was found in Head"):
            with mc_mode(model):
                pass
        found = _probe(model, _as_batch(torch.randn(2, 4), {}, "test"))
        assert found.sources() == [model]
        assert found.verdicts[model].active and not found.verdicts[model].shared
        entry = dnn.stochastic_layer(model)
        assert (entry.found_by, entry.kind, entry.rates(model)) == ("behaviour", "gate", {})
        with mc_mode(model):  # now switched, its BatchNorm child not
            assert model.training and not model.body[1].training

    def test_restores_flags_buffers_and_rngs(self):
        torch.manual_seed(0)
        model = Head()
        model.body[1].train()
        flags = [m.training for m in model.modules()]
        stats = [b.clone() for b in model.buffers()]
        g = torch.Generator().manual_seed(3)
        model.gen = g  # a generator the module holds is watched and restored too
        g_state = g.get_state()
        x = torch.randn(4, 4)
        torch.manual_seed(5)
        expected = torch.rand(4)
        torch.manual_seed(5)
        _probe(model, _as_batch(x, {}, "test"))
        assert torch.equal(torch.rand(4), expected)
        assert [m.training for m in model.modules()] == flags
        assert all(torch.equal(a, b) for a, b in zip(model.buffers(), stats, strict=True))
        assert torch.equal(g.get_state(), g_state)

    def test_deterministic_now_forgets_an_earlier_finding(self):
        model, x = Head().eval(), torch.randn(2, 4)
        _probe(model, _as_batch(x, {}, "test"))
        model.rate = 0.0  # F.dropout with p=0 draws nothing
        _probe(model, _as_batch(x, {}, "test"))
        assert dnn.stochastic_layer(model) is None

    def test_layerdrop_is_batch_shared_and_zero_threshold_is_not_a_source(self):
        x = torch.randn(3, 8)
        model = SkipLayers(0.5).eval()
        found = _probe(model, _as_batch(x, {}, "test"))
        assert found.shared() == [model]
        off = SkipLayers(0.0).eval()
        assert _probe(off, _as_batch(x, {}, "test")).sources() == []

    def test_keyword_inputs_and_unprobeable_modules(self):
        class Needs2(nn.Module):
            def forward(self, x, *, scale):
                return nn.functional.dropout(x * scale, 0.5, self.training)

        class Outer(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = Needs2()

            def forward(self, x):
                return self.inner(x, scale=2.0)

        model = Outer().eval()
        found = _probe(model, _as_batch(None, {"x": torch.randn(2, 5)}, "test"))
        assert model.inner in found.sources() and model not in found.sources()


class TestAudit:
    def test_lists_every_source_by_name_and_by_behaviour(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), Head(0.3), nn.Dropout(0.0))
        model.eval()
        audit = dnn.audit_stochastic(model, torch.randn(2, 4))
        rows = {s.name: s for s in audit}
        assert set(rows) == {"1", "2", "3"}
        assert (rows["1"].found_by, rows["1"].rates, rows["1"].active) == ("name", {"": 0.2}, True)
        assert rows["1"].controls == ("mc_mode", "set_dropout_p", "convert_dropout")
        head = rows["2"]
        assert (head.found_by, head.kind, head.rates, head.active) == (
            "behaviour",
            "gate",
            None,
            True,
        )
        assert head.controls == ("mc_mode",) and not head.controlled
        assert rows["3"].active is False
        text = str(audit)
        assert "unknown" in text and "2 found by name, 1 by behaviour; 2 active" in text

    def test_noise_in_eval_is_reported_not_switched(self):
        model = nn.Sequential(nn.Linear(3, 3), AlwaysNoisy()).eval()
        audit = dnn.audit_stochastic(model, torch.randn(2, 3))
        assert [(s.name, s.controls) for s in audit] == [("1", ())]
        assert "random in eval too" in audit[0].note
        with pytest.raises(NoDropoutError):  # nothing for mc_mode to switch
            mc_predict(model, torch.randn(2, 3), 2)

    def test_dropkit_and_multi_rate_modules(self):
        rnn = dnn.VariationalLSTM(
            3, 4, batch_first=True, recurrent_dropout=0.25, output_dropout=0.1
        )
        model = nn.Sequential()
        model.rnn = rnn
        model.forward = lambda x: rnn(x)[0]
        audit = dnn.audit_stochastic(model, torch.randn(2, 5, 3))
        (row,) = audit
        assert row.rates == {
            "input_dropout": 0.0,
            "dropout": 0.0,
            "recurrent_dropout": 0.25,
            "output_dropout": 0.1,
        }
        assert row.active and "set_generator" in row.controls

    def test_errors(self):
        with pytest.raises(TypeError, match="audit_stochastic: model must be a torch.nn.Module"):
            dnn.audit_stochastic("model", torch.randn(2))
        with pytest.raises(TypeError, match="audit_stochastic: inputs must be .* at least one"):
            dnn.audit_stochastic(nn.Linear(2, 2))


class TestReports:
    """get_dropout_p, set_dropout_p and convert_dropout name what was found by behaviour."""

    def _found(self):
        model = nn.Sequential(nn.Dropout(0.1), Head(0.4)).eval()
        dnn.audit_stochastic(model, torch.randn(2, 4))
        return model

    def test_get_and_set_warn_about_unknown_rates(self):
        model = self._found()
        with pytest.warns(dnn.UnknownRateWarning, match=r"1 module\(s\) found .*'1' \(Head\)"):
            assert dnn.get_dropout_p(model) == {"0": 0.1}
        with pytest.warns(dnn.UnknownRateWarning, match="register_stochastic_layer"):
            assert dnn.set_dropout_p(model, 0.2) == ["0"]
        assert model[1].rate == 0.4  # unknown: left as it was

    def test_convert_reports_it(self):
        model = self._found()
        with pytest.warns(dnn.ConversionWarning, match="1 x Head .*found random in training"):
            dnn.convert_dropout(model)
        assert type(model[0]) is dnn.Dropout and type(model[1]) is Head

    def test_registering_the_class_gives_its_rate(self):
        model = self._found()
        dnn.register_stochastic_layer(Head, kind="gate", p="rate")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert dnn.get_dropout_p(model) == {"0": 0.1, "1": 0.4}
        finally:
            dnn.unregister_stochastic_layer(Head)

    def test_found_modules_are_dropout_layers_of_mc_mode(self):
        model = self._found()
        assert dropout_layers(model) == [model[0], model[1]]
