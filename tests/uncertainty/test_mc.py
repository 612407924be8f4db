"""MC mode and mc_predict: exact toggling and restore, vectorised == looped, shared-mask layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.nn._base import _Stochastic
from dropkit.nn.discovery import _as_batch, _probe
from dropkit.uncertainty import (
    NoDropoutError,
    NoDropoutWarning,
    dropout_layers,
    is_dropout_layer,
    mc_mode,
    mc_predict,
)
from tests.conftest import Z


def assert_same_samples(a: torch.Tensor, b: torch.Tensor) -> None:
    """Same masks: identical zero pattern, values equal up to float64 rounding (a GEMM over c*B rows
    may block its sums differently from one over B rows, so bit equality is not promised)."""
    assert a.shape == b.shape
    assert torch.equal(a == 0, b == 0)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (a - b).abs().max()


class BatchMaskDropout(_Stochastic, nn.Module):
    """A random-in-training layer that draws ONE mask over the features for the whole batch
    (like DropConnect's default per-batch weight mask); has its own ``generator`` slot."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p, self.generator = p, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = torch.rand(x.shape[1:], generator=self.generator) >= self.p  # shared over dim 0
        return x * keep / (1 - self.p)


class Noise(_Stochastic, nn.Module):
    """A marked module that is not dropout: multiplicative Gaussian noise in training."""

    def forward(self, x):
        return x * (1 + 0.1 * torch.randn_like(x)) if self.training else x


def probe_shared(model: nn.Module, x: torch.Tensor) -> tuple[list[nn.Module], float]:
    """The modules mc_predict's probe finds sharing one draw across the batch, and bytes per row."""
    found = _probe(model, _as_batch(x, {}, "test"))
    return found.shared(), found.row_bytes


def zoo() -> nn.Sequential:
    return nn.Sequential(
        dnn.Dropout(0.1),
        nn.Linear(6, 8),
        nn.BatchNorm1d(8),
        nn.Dropout(0.2),
        nn.Unflatten(1, (2, 4)),
        nn.Dropout1d(0.3),
        nn.Flatten(),
        nn.AlphaDropout(0.1),
        nn.FeatureAlphaDropout(0.1),
        Noise(),
        nn.Linear(8, 3),
    )


class TestMCMode:
    def test_toggles_exactly_the_dropout_layers(self):
        model = zoo()
        extra = nn.ModuleList([nn.Dropout2d(0.1), nn.Dropout3d(0.1), nn.LayerNorm(3)])
        model.append(extra)
        # dropkit Dropout, torch Dropout/Dropout1d/AlphaDropout/FeatureAlphaDropout, a marked
        # non-dropout noise module, Dropout2d/3d; not Linear, BatchNorm, Unflatten, LayerNorm
        expected = {model[i] for i in (0, 3, 5, 7, 8, 9)} | {extra[0], extra[1]}
        assert set(dropout_layers(model)) == expected
        model.eval()
        model[2].train()  # a BatchNorm left in training by the user must go to eval in MC mode
        model[3].eval()
        before = {m: m.training for m in model.modules()}
        with mc_mode(model):
            for m in model.modules():
                assert m.training == (m in expected), type(m).__name__
        assert {m: m.training for m in model.modules()} == before

    def test_restores_on_exception(self):
        model = zoo().train()
        model[1].eval()
        before = [m.training for m in model.modules()]
        with pytest.raises(RuntimeError, match="boom"), mc_mode(model):
            raise RuntimeError("boom")
        assert [m.training for m in model.modules()] == before

    def test_batchnorm_uses_running_stats_and_is_not_updated(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Dropout(0.5))
        model.train()
        model(torch.randn(32, 4))  # some running statistics
        stats = model[1].running_mean.clone(), model[1].running_var.clone()
        x = torch.randn(10, 4)
        with mc_mode(model), torch.no_grad():
            bn_out = model[1](model[0](x))
            model(x)
        model.eval()
        with torch.no_grad():
            assert torch.equal(bn_out, model[1](model[0](x)))
        assert torch.equal(model[1].running_mean, stats[0])
        assert torch.equal(model[1].running_var, stats[1])

    def test_is_dropout_layer(self):
        assert is_dropout_layer(nn.Dropout()) and is_dropout_layer(dnn.Dropout())
        assert is_dropout_layer(BatchMaskDropout())
        assert not is_dropout_layer(nn.BatchNorm1d(3)) and not is_dropout_layer(nn.Linear(2, 2))

    def test_rejects_non_module(self):
        with pytest.raises(TypeError, match="mc_mode: model must be a torch.nn.Module"):
            with mc_mode("model"):
                pass


def conv_model() -> nn.Sequential:
    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout2d(0.3),
            nn.Flatten(),
            dnn.Dropout(0.5),
            nn.Linear(4 * 5 * 5, 3),
            nn.Dropout(0.2),  # last, so the zero pattern of the output shows its mask exactly
        )
        .double()
        .eval()
    )


class TestMCPredict:
    @pytest.mark.parametrize("chunk_size", [None, 1, 3, 7])
    def test_vectorised_equals_looped_with_seed(self, chunk_size):
        torch.manual_seed(0)
        model, x = conv_model(), torch.randn(6, 1, 5, 5, dtype=torch.float64)
        vec = mc_predict(model, x, 7, seed=11, chunk_size=chunk_size)
        loop = mc_predict(model, x, 7, seed=11, vectorize=False)
        assert vec.shape == (7, 6, 3)
        assert_same_samples(vec, loop)
        assert not torch.equal(vec[0], vec[1])  # the samples differ from each other

    def test_vectorised_equals_looped_with_generator(self):
        torch.manual_seed(1)
        model, x = zoo().double().eval(), torch.randn(5, 6, dtype=torch.float64)
        a = mc_predict(model, x, 9, generator=torch.Generator().manual_seed(3))
        b = mc_predict(model, x, 9, generator=torch.Generator().manual_seed(3), vectorize=False)
        assert_same_samples(a, b)

    def test_loop_sample_is_a_plain_seeded_forward(self):
        # sample t of the seeded loop is exactly model(x) in MC mode after manual_seed(seed + t)
        torch.manual_seed(2)
        model, x = conv_model(), torch.randn(4, 1, 5, 5, dtype=torch.float64)
        out = mc_predict(model, x, 3, seed=40)
        with mc_mode(model), torch.no_grad():
            torch.manual_seed(42)
            assert_same_samples(out[2], model(x))

    def test_same_seed_same_masks_across_calls(self):
        torch.manual_seed(3)
        model, x = conv_model(), torch.randn(4, 1, 5, 5, dtype=torch.float64)
        assert torch.equal(mc_predict(model, x, 5, seed=7), mc_predict(model, x, 5, seed=7))
        assert not torch.equal(mc_predict(model, x, 5, seed=7), mc_predict(model, x, 5, seed=8))

    def test_seeded_call_leaves_global_rng_and_flags(self):
        model = conv_model()
        model[1].train()
        flags = [m.training for m in model.modules()]
        x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        mc_predict(model, x, 4, seed=1)
        assert torch.equal(torch.rand(3), expected)
        assert [m.training for m in model.modules()] == flags

    def test_layer_generators_set_aside_and_restored(self):
        g = torch.Generator().manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), dnn.Dropout(0.5, generator=g)).double()
        state = g.get_state()
        x = torch.randn(5, 3, dtype=torch.float64)
        a = mc_predict(model, x, 6, seed=2)
        assert_same_samples(a, mc_predict(model, x, 6, seed=2, vectorize=False))
        assert model[1].generator is g and torch.equal(g.get_state(), state)

    def test_shared_mask_layer_detected_and_samples_independent(self):
        torch.manual_seed(4)
        model = nn.Sequential(nn.Linear(3, 64), BatchMaskDropout(0.5), nn.Linear(64, 2)).double()
        x = torch.randn(5, 3, dtype=torch.float64)
        shared, _ = probe_shared(model, x)
        assert shared == [model[1]]
        out = mc_predict(model, x, 8, chunk_size=8)  # unseeded, one chunk
        # each sample drew its own batch mask: no two samples identical
        flat = out.reshape(8, -1)
        assert all(not torch.equal(flat[i], flat[j]) for i in range(8) for j in range(i))
        # seeded: each sample block draws its batch mask from its own state, as the loop does
        seeded = mc_predict(model, x, 3, seed=9)
        assert_same_samples(seeded, mc_predict(model, x, 3, seed=9, vectorize=False))

    def test_per_row_layers_not_flagged_as_shared(self):
        model = zoo().eval()
        shared, row_bytes = probe_shared(model, torch.randn(4, 6))
        assert shared == []
        assert row_bytes > 0

    def test_dropout_statistics(self):
        # MC samples of a lone Dropout on ones: mean keep fraction 1-p per element
        p, t, b = 0.3, 200, 50
        out = mc_predict(nn.Sequential(dnn.Dropout(p)), torch.ones(b, 4), t, seed=0)
        kept = (out != 0).double().mean().item()
        n = t * b * 4
        assert abs(kept - (1 - p)) < Z * (p * (1 - p) / n) ** 0.5
        assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))

    def test_memory_budget_bounds_chunk(self):
        torch.manual_seed(6)
        model, x = conv_model(), torch.randn(3, 1, 5, 5, dtype=torch.float64)
        tiny = mc_predict(model, x, 5, seed=1, memory_budget=1)  # one sample per chunk
        assert_same_samples(tiny, mc_predict(model, x, 5, seed=1))

    def test_no_dropout_model_raises_or_warns(self):
        model, x = nn.Linear(3, 2), torch.randn(4, 3)
        with pytest.raises(NoDropoutError, match="no stochastic layer was found in Linear"):
            mc_predict(model, x, 3)
        with pytest.raises(NoDropoutError, match="no stochastic layer"), mc_mode(model):
            pass
        with pytest.warns(NoDropoutWarning, match="every Monte-Carlo sample would be identical"):
            out = mc_predict(model, x, 3, on_deterministic="warn")
        with torch.no_grad():
            assert torch.equal(out, model(x).expand(3, 4, 2))
        with pytest.raises(ValueError, match="on_deterministic must be one of"):
            mc_predict(model, x, 3, on_deterministic="loud")

    def test_all_rates_zero_raises(self):
        model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0), dnn.DropPath(0.0))
        with pytest.raises(NoDropoutError, match=r"all 2 stochastic modules have p=0 \('1'"):
            mc_predict(model, torch.randn(2, 3), 3)
        with pytest.raises(NoDropoutError, match="p=0"), mc_mode(model):
            pass

    @pytest.mark.parametrize(
        ("kwargs", "err", "match"),
        [
            ({"samples": 0}, ValueError, "mc_predict: samples must be a positive int"),
            ({"seed": 1, "generator": torch.Generator()}, ValueError, "seed or generator"),
            ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int"),
            ({"memory_budget": 0}, ValueError, "memory_budget must be a positive int"),
            ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ],
    )
    def test_errors(self, kwargs, err, match):
        with pytest.raises(err, match=match):
            mc_predict(nn.Linear(2, 2), torch.randn(3, 2), **kwargs)

    def test_error_types(self):
        with pytest.raises(TypeError, match="mc_predict: model must be"):
            mc_predict(lambda x: x, torch.randn(2))
        with pytest.raises(TypeError, match="mc_predict: inputs must be .* holding at least one"):
            mc_predict(nn.Linear(2, 2), [1.0, 2.0])
        with pytest.raises(TypeError, match="mc_predict: inputs must be a Tensor.*got str"):
            mc_predict(nn.Linear(2, 2), "x")
        with pytest.raises(ValueError, match="non-empty batch"):
            mc_predict(nn.Linear(2, 2), torch.randn(0, 2))


class Wrapper(_Stochastic, nn.Module):
    """A marked module holding dropout children (as a variational RNN might)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.drop = nn.Linear(4, 4), nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x))


def test_nested_dropout_layers_split_once():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 4), Wrapper(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    assert len(dropout_layers(model)) == 2
    assert_same_samples(
        mc_predict(model, x, 6, seed=3), mc_predict(model, x, 6, seed=3, vectorize=False)
    )


def test_embedding_dropout_is_detected_as_batch_shared():
    # EmbeddingDropout drops word types once per forward: a per-batch mask
    torch.manual_seed(8)
    model = nn.Sequential(
        dnn.EmbeddingDropout(50, 8, p=0.3), nn.Flatten(), nn.Linear(8 * 5, 2)
    ).double()
    x = torch.randint(50, (4, 5))
    shared, _ = probe_shared(model, x)
    assert shared == [model[0]]
    assert_same_samples(
        mc_predict(model, x, 6, seed=1), mc_predict(model, x, 6, seed=1, vectorize=False)
    )
    flat = mc_predict(model, x, 6, chunk_size=6).reshape(6, -1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(6) for j in range(i))


class LastStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = dnn.VariationalLSTM(
            3, 4, batch_first=True, recurrent_dropout=0.25, output_dropout=0.3
        )
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.rnn(x)[0][:, -1])


def test_rnn_returning_a_tuple_falls_back_to_the_loop():
    torch.manual_seed(9)
    model, x = LastStep().double(), torch.randn(5, 7, 3, dtype=torch.float64)
    assert dropout_layers(model) == [model.rnn]
    a = mc_predict(model, x, 4, seed=2)  # cannot split (output, state): loops, same samples
    assert torch.equal(a, mc_predict(model, x, 4, seed=2, vectorize=False))
    assert a.shape == (4, 5, 1) and a.std(0).mean() > 0


@pytest.mark.parametrize("samples", [1.5, None, "3", True, 3.0])
def test_samples_of_the_wrong_type_is_a_type_error(samples):
    # Before: ValueError for each of these; a wrong type is a TypeError, as in torch.
    with pytest.raises(TypeError, match=r"mc_predict: samples must be an int, but got"):
        mc_predict(nn.Linear(2, 2), torch.randn(3, 2), samples=samples)
