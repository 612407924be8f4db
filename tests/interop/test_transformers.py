"""Hugging Face transformers models built from tiny configs (no download): BERT and GPT-2, eager
and SDPA attention. Everything found, converted back and forth losslessly, MC samples differ (also
from attention dropout alone), rates set, read back and kept by save_pretrained/from_pretrained."""

from __future__ import annotations

import copy

import pytest
import torch

import dropkit.nn as dnn
from dropkit.uncertainty import NoDropoutError, mc_mode, mc_predict
from tests.interop._require import require

transformers = require("transformers", "transformers is not installed")

ATTN = ("eager", "sdpa")


def bert(attn: str, p: float = 0.1):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        hidden_dropout_prob=p,
        attention_probs_dropout_prob=p,
        attn_implementation=attn,
    )
    return transformers.BertForSequenceClassification(cfg).eval()


def gpt2(attn: str, p: float = 0.1):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=60,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=16,
        resid_pdrop=p,
        embd_pdrop=p,
        attn_pdrop=p,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


MODELS = {"bert": bert, "gpt2": gpt2}
# (dropout layers with a rate, attention gates): BERT has embeddings + 3 per layer + classifier;
# GPT-2 embeddings + 3 per layer; one attention gate per layer in both.
EXPECTED = {"bert": (8, 2), "gpt2": (7, 2)}


def batch():
    torch.manual_seed(1)
    ids = torch.randint(60, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("name", list(MODELS))
class TestModel:
    def test_everything_is_found(self, name, attn):
        model = MODELS[name](attn)
        assert model.config._attn_implementation == attn
        rates = dnn.get_dropout_p(model)
        gates = [n for n, _, e in dnn.stochastic_layers(model, kind="gate")]
        assert (len(rates), len(gates)) == EXPECTED[name]
        assert set(rates.values()) == {0.1}
        assert all(n.endswith(".attn") or n.endswith(".attention.self") for n in gates)

    def test_attention_dropout_alone_makes_samples_differ(self, name, attn):
        model = MODELS[name](attn)
        dnn.set_dropout_p(model, 0.0)
        attn_drop = [
            m
            for n, m in dnn.dropout_modules(model)
            if n.endswith("attn.attn_dropout") or n.endswith("attention.self.dropout")
        ]
        assert len(attn_drop) == 2
        for m in attn_drop:
            m.p = 0.5  # the rate the attention passes to SDPA / its functional dropout
        with torch.no_grad():
            ref = model(**batch()).logits
        out = mc_predict(model, batch(), 4, seed=0)
        assert out.shape == (4, *ref.shape)
        assert all(not torch.equal(out[i], out[j]) for i in range(4) for j in range(i))
        assert not model.training and torch.equal(model(**batch()).logits, ref)  # eval restored

    def test_mc_predict_calling_conventions(self, name, attn):
        model, b = MODELS[name](attn), batch()
        loop = mc_predict(model, b, 3, seed=2, vectorize=False)
        kw = mc_predict(model, b["input_ids"], 3, seed=2, attention_mask=b["attention_mask"])
        torch.testing.assert_close(kw, loop)
        unseeded = mc_predict(model, b, 4, chunk_size=4)  # vectorised, gates on: rows differ
        assert unseeded.shape[1:] == loop.shape[1:]
        assert not torch.equal(unseeded[0], unseeded[1])
        hidden = mc_predict(model, b, 2, seed=0, output=lambda o: o.logits[:, -1])
        torch.testing.assert_close(hidden, mc_predict(model, b, 2, seed=0)[:, :, -1])

    def test_round_trip_is_lossless(self, name, attn):
        model, b = MODELS[name](attn), batch()
        state = copy.deepcopy(model.state_dict())
        with torch.no_grad():
            ref = model(**b).logits
        with pytest.warns(dnn.ConversionWarning, match="2 x .*Attention.*functionally"):
            dnn.convert_dropout(model)
        kinds = {type(m) for _, m in dnn.dropout_modules(model)}
        assert kinds == {dnn.Dropout}
        with torch.no_grad():
            assert torch.equal(model(**b).logits, ref)
        dnn.set_dropout_p(model, 0.2)
        assert model.state_dict().keys() == state.keys()
        fresh = MODELS[name](attn)
        fresh.load_state_dict(model.state_dict(), strict=True)
        dnn.convert_dropout(model, to="original")  # nothing left over: no warning
        assert {type(m) for _, m in dnn.dropout_modules(model)} == {torch.nn.Dropout}
        assert set(dnn.get_dropout_p(model).values()) == {0.2}
        with torch.no_grad():
            assert torch.equal(model(**b).logits, ref)

    def test_rates_survive_save_pretrained(self, name, attn, tmp_path):
        model = MODELS[name](attn)
        names = dnn.set_dropout_p(model, 0.3)
        assert len(names) == EXPECTED[name][0]
        keys = [k for k, v in model.config.to_dict().items() if "pdrop" in k or "dropout_prob" in k]
        assert keys and all(getattr(model.config, k) == 0.3 for k in keys)
        model.save_pretrained(tmp_path)
        cls = type(model)
        again = cls.from_pretrained(tmp_path, attn_implementation=attn)
        assert set(dnn.get_dropout_p(again).values()) == {0.3}

    def test_no_dropout_model_raises(self, name, attn):
        model = MODELS[name](attn, p=0.0)
        with pytest.raises(NoDropoutError, match="p=0"):
            mc_predict(model, batch(), 3)
        with pytest.raises(NoDropoutError), mc_mode(model):
            pass
