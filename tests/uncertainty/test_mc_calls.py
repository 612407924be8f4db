"""mc_predict's calling conventions, output choice and layout, consistent masks, gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.uncertainty import NoDropoutError, mc_mode, mc_predict, to_baal_layout
from tests.conftest import Z


class TwoInputs(nn.Module):
    """``model(ids, mask=...)`` returning a dict, like a Hugging Face model."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.drop, self.head = nn.Embedding(10, 6), nn.Dropout(0.5), nn.Linear(6, 3)

    def forward(self, ids, mask=None, flag=True):
        h = self.drop(self.emb(ids))  # (B, L, 6)
        if mask is not None:
            h = h * mask.unsqueeze(-1)
        return {"logits": self.head(h.mean(1)), "hidden": h, "flag": flag}


def _inputs():
    torch.manual_seed(0)
    return torch.randint(10, (4, 5)), (torch.rand(4, 5) > 0.3).float()


class TestCallingConventions:
    def test_positional_keyword_and_dict_inputs_agree(self):
        model, (ids, mask) = TwoInputs().double().eval(), _inputs()
        ref = mc_predict(model, ids, 6, seed=3, vectorize=False, mask=mask)
        assert ref.shape == (6, 4, 3) and ref.std(0).mean() > 0
        for out in (
            mc_predict(model, ids, 6, seed=3, mask=mask),
            mc_predict(model, (ids, mask), 6, seed=3),
            mc_predict(model, {"ids": ids, "mask": mask}, 6, seed=3),
        ):
            torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)

    def test_unseeded_vectorised_keeps_rows_and_samples_apart(self):
        model, (ids, mask) = TwoInputs().double().eval(), _inputs()
        out = mc_predict(model, {"ids": ids, "mask": mask}, 8, chunk_size=8, flag=False)
        flat = out.reshape(8, -1)
        assert all(not torch.equal(flat[i], flat[j]) for i in range(8) for j in range(i))

    def test_output_choice(self):
        model, (ids, _) = TwoInputs().double().eval(), _inputs()
        hidden = mc_predict(model, ids, 3, seed=1, output="hidden")
        assert hidden.shape == (3, 4, 5, 6)
        picked = mc_predict(model, ids, 3, seed=1, output=lambda o: o["logits"][:, 0])
        torch.testing.assert_close(picked, mc_predict(model, ids, 3, seed=1)[..., 0])
        with pytest.raises(ValueError, match="output='nope' is not in the model's output"):
            mc_predict(model, ids, 2, output="nope")
        with pytest.raises(TypeError, match="selected output is a bool, not a Tensor"):
            mc_predict(model, ids, 2, output="flag")

    def test_tuple_output_samples_the_first_element(self):
        model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
        tup = lambda x: (model(x), x)  # noqa: E731
        wrapper = nn.Module()
        wrapper.m = model
        wrapper.forward = tup
        x = torch.randn(2, 3)
        torch.testing.assert_close(
            mc_predict(wrapper, x, 4, seed=0), mc_predict(model, x, 4, seed=0)
        )

    def test_errors_name_the_argument(self):
        model, (ids, mask) = TwoInputs().eval(), _inputs()
        with pytest.raises(ValueError, match=r"keyword input\(s\) \['mask'\] given twice"):
            mc_predict(model, {"ids": ids, "mask": mask}, 2, mask=mask)
        with pytest.raises(TypeError, match="output must be None, a key, an index or a function"):
            mc_predict(model, ids, 2, output=1.5)
        with pytest.raises(
            ValueError, match=r"returned a dict without 'logits' \(keys: \['scores'\]\)"
        ):
            mc_predict(DictNoLogits(), torch.randn(2, 3), 2)

    def test_baal_layout(self):
        s = torch.randn(5, 2, 3)
        assert to_baal_layout(s).shape == (2, 3, 5)
        assert torch.equal(to_baal_layout(s)[..., 4], s[4])
        with pytest.raises(ValueError, match="to_baal_layout"):
            to_baal_layout(torch.randn(3))


class DictNoLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return {"scores": self.drop(x)}


class TestConsistent:
    def test_same_networks_for_every_batch(self):
        torch.manual_seed(1)
        model = nn.Sequential(
            nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 8), dnn.DropPath(0.5), nn.Linear(8, 2)
        ).double()
        x = torch.randn(6, 4, dtype=torch.float64)
        whole = mc_predict(model, x, 7, seed=5, consistent=True)
        part = mc_predict(model, x[2:5], 7, seed=5, consistent=True, vectorize=False)
        torch.testing.assert_close(part, whole[:, 2:5], rtol=1e-12, atol=1e-12)
        other = mc_predict(model, x, 7, seed=6, consistent=True)
        assert not torch.allclose(other, whole)
        assert whole.std(0).mean() > 0

    def test_mask_is_shared_by_the_rows_of_a_sample(self):
        model = nn.Sequential(nn.Dropout(0.5))
        out = mc_predict(model, torch.ones(5, 40), 3, seed=0, consistent=True)
        assert torch.equal(out, out[:, :1].expand_as(out))

    def test_refuses_what_cannot_be_consistent(self):
        x = torch.randn(2, 4)
        with pytest.raises(ValueError, match="needs seed= or generator="):
            mc_predict(nn.Sequential(nn.Dropout()), x, 2, consistent=True)
        with pytest.raises(ValueError, match=r"'0' \(AlphaDropout\) cannot share one mask"):
            mc_predict(nn.Sequential(nn.AlphaDropout(0.2)), x, 2, seed=0, consistent=True)
        noisy = nn.Sequential(dnn.DropBlock2d(0.3, block_size=2, with_noise=True))  # not x * mask
        with pytest.raises(ValueError, match=r"'0' \(DropBlock2d\) cannot share one mask"):
            mc_predict(noisy, torch.ones(2, 3, 4, 4), 2, seed=0, consistent=True)


class TestGates:
    def test_multihead_attention_dropout_is_switched_on(self):
        torch.manual_seed(2)
        mha = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
        model = nn.Sequential()
        model.mha = mha
        model.forward = lambda x: mha(x, x, x, need_weights=False)[0]
        x = torch.randn(3, 5, 8)
        out = mc_predict(model, x, 4, seed=0)
        assert out.std(0).mean() > 0
        torch.testing.assert_close(out, mc_predict(model, x, 4, seed=0, vectorize=False))
        assert dnn.get_dropout_p(model) == {"mha": 0.5}

    def test_lstm_dropout_between_layers_and_batchnorm_stays_eval(self):
        lstm, single, bn = nn.LSTM(3, 4, 2, dropout=0.3), nn.LSTM(3, 4), nn.BatchNorm1d(3)
        model = nn.ModuleList([lstm, single, bn]).eval()
        assert dnn.get_dropout_p(model) == {"0": pytest.approx(0.3)}
        with mc_mode(model):
            assert lstm.training and single.training and not bn.training
        with pytest.raises(Exception, match="p=0"), mc_mode(nn.ModuleList([single, bn])):
            pass


def test_batch_shared_layer_is_found_by_the_probe_even_when_it_drops_everything():
    # DropPath(mode="batch") draws once per forward: the probe must flag it although a draw may
    # zero the whole probe batch; then every sample of a chunk gets its own decision.
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 3), dnn.DropPath(0.5, mode="batch"))
    out = mc_predict(model, torch.randn(4, 3) + 5, 64, chunk_size=64)
    kept = out.flatten(1).ne(0).all(1)
    dropped = out.flatten(1).eq(0).all(1)
    assert bool((kept | dropped).all())  # one decision per sample, for all its rows
    assert 0 < int(kept.sum()) < 64  # not one decision for the whole chunk


class PairScores(nn.Module):
    """CLIP-like: every image row scored against every text row, ``(B, B)``; the rows of one
    sample pair with each other, so a replicated batch of c samples gives ``(c*B, c*B)``."""

    def __init__(self) -> None:
        super().__init__()
        self.img, self.txt, self.drop = nn.Linear(4, 6), nn.Embedding(10, 6), nn.Dropout(0.3)

    def forward(self, pixels, ids):
        a = self.drop(self.img(pixels))  # (B, 6)
        b = self.txt(ids).mean(1)  # (B, 6)
        return {"logits_per_image": a @ b.T, "image_embeds": a}


class Centred(nn.Module):
    """Rows mixed through the batch mean: same shape replicated, other values."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.drop = nn.Linear(3, 3), nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(self.lin(x))
        return h - h.mean(0, keepdim=True)


class TestOneSampleLayout:
    def test_pairwise_scores_keep_the_loops_layout(self):
        # Before: vectorised (T, B, T*B) = (5, 3, 15), the loop (5, 3, 3).
        torch.manual_seed(0)
        model = PairScores().double().eval()
        pixels, ids = torch.randn(3, 4, dtype=torch.float64), torch.randint(10, (3, 2))
        kw = {"output": "logits_per_image", "chunk_size": 5}
        vec = mc_predict(model, (pixels, ids), 5, **kw)
        loop = mc_predict(model, (pixels, ids), 5, vectorize=False, **kw)
        assert vec.shape == loop.shape == (5, 3, 3)
        seeded = mc_predict(model, (pixels, ids), 5, seed=1, **kw)
        torch.testing.assert_close(seeded, mc_predict(model, (pixels, ids), 5, seed=1, **kw))
        with mc_mode(model), torch.no_grad():  # sample t is a plain seeded forward
            torch.manual_seed(3)
            ref = model(pixels, ids)["logits_per_image"]
        torch.testing.assert_close(seeded[2], ref, rtol=1e-12, atol=1e-12)
        # a per-row output of the same model still vectorises
        rows = mc_predict(model, (pixels, ids), 4, seed=2, output="image_embeds")
        rows_loop = mc_predict(
            model, (pixels, ids), 4, seed=2, output="image_embeds", vectorize=False
        )
        torch.testing.assert_close(rows, rows_loop, rtol=1e-12, atol=1e-12)

    def test_rows_mixed_through_the_batch_are_sampled_by_the_loop(self):
        torch.manual_seed(1)
        model, x = Centred().double().eval(), torch.randn(4, 3, dtype=torch.float64)
        vec = mc_predict(model, x, 6, seed=0, chunk_size=6)
        torch.testing.assert_close(vec, mc_predict(model, x, 6, seed=0, vectorize=False))


class HeadDropout(nn.Module):
    """A library model whose head calls F.dropout(x, self.rate, self.training): no registry
    entry names it (as timm's repghostnet before dropkit listed it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.bn, self.rate = nn.Linear(4, 8), nn.BatchNorm1d(8), 0.5

    def forward(self, x):
        return nn.functional.dropout(self.bn(self.lin(x)), self.rate, self.training)


class LayerDrop(nn.Module):
    """Hugging Face's LayerDrop: one rand() per layer and forward, shared by the whole batch."""

    def __init__(self, layerdrop: float = 0.5, n: int = 6) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(5, 5) for _ in range(n))
        self.layerdrop = layerdrop

    def forward(self, x):
        for layer in self.layers:
            if self.training and torch.rand([]) < self.layerdrop:
                continue
            x = x + layer(x)
        return {"last_hidden_state": x}


class TestFoundByBehaviour:
    def test_functional_dropout_unknown_by_name_is_sampled(self):
        # Before: NoDropoutError, "no stochastic layer was found in HeadDropout".
        torch.manual_seed(2)
        model, x = HeadDropout().eval(), torch.randn(3, 4)
        out = mc_predict(model, x, 6)
        flat = out.reshape(6, -1)
        assert all(not torch.equal(flat[i], flat[j]) for i in range(6) for j in range(i))
        assert not model.training and not model.bn.training  # flags restored
        kept = (out != 0).double().mean().item()  # F.dropout(0.5): kept fraction 1/2
        assert abs(kept - 0.5) < Z * (0.25 / out.numel()) ** 0.5

    @pytest.mark.parametrize("registered", [False, True])
    def test_layerdrop_draws_per_sample_in_a_chunk(self, registered):
        # Before (registered as a gate, as Hugging Face's encoders are): all 8 samples of a chunk
        # skipped the same layers (1 distinct pattern of 8); unregistered: NoDropoutError.
        if registered:
            dnn.register_stochastic_layer(LayerDrop, kind="gate", p=("layerdrop",))
        try:
            torch.manual_seed(4)
            model, x = LayerDrop().double().eval(), torch.randn(2, 5, dtype=torch.float64)
            out = mc_predict(model, x, 8, chunk_size=8, output="last_hidden_state")
            # 6 layers, each skipped with probability 1/2: 64 equally likely patterns; 8 draws
            # give at least 5 distinct ones with probability > 0.999 (and the seed is fixed)
            assert len({tuple(o.flatten().tolist()) for o in out}) >= 5
        finally:
            if registered:
                dnn.unregister_stochastic_layer(LayerDrop)


def test_keyword_only_inputs():
    # Before: TypeError: mc_predict() missing 1 required positional argument: 'inputs'
    model, (ids, mask) = TwoInputs().double().eval(), _inputs()
    out = mc_predict(model, ids=ids, mask=mask, samples=4, seed=0)
    torch.testing.assert_close(out, mc_predict(model, ids, 4, seed=0, mask=mask))
    with pytest.raises(TypeError, match="inputs must be .* holding at least one Tensor"):
        mc_predict(model, samples=4)


def test_no_dropout_error_is_also_a_value_error():
    # Before: only a RuntimeError (torch-uncertainty raises ValueError for the same case)
    with pytest.raises(ValueError, match="no stochastic layer was found in Linear"):
        mc_predict(nn.Linear(2, 2), torch.randn(3, 2), 2)
    assert issubclass(NoDropoutError, RuntimeError) and issubclass(NoDropoutError, ValueError)


def test_a_rare_batch_draw_is_still_drawn_per_sample():
    # StochasticDepth(mode="batch") at p=0.05 rarely changes an output in the probe's few calls;
    # it is checked with its rate raised to 0.5, so it is found sharing its draw all the same.
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 3), dnn.DropPath(0.05, mode="batch"))
    out = mc_predict(model, torch.randn(2, 3) + 5, 400, chunk_size=400)
    dropped = out.flatten(1).eq(0).all(1)
    # one decision per sample: about 0.05 * 400 = 20 dropped (binomial sd 4.4), not 0 or 400
    assert abs(int(dropped.sum()) - 20) < Z * (400 * 0.05 * 0.95) ** 0.5
    assert bool((dropped | out.flatten(1).ne(0).all(1)).all())
    assert model[1].p == 0.05  # the rate raised for the check is put back
