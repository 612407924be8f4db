"""Hugging Face transformers models built from tiny configs (no download): BERT and GPT-2, eager
and SDPA attention. Everything found, converted back and forth losslessly, MC samples differ (also
from attention dropout alone), rates set, read back and kept by save_pretrained/from_pretrained."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import dropkit.nn as dnn
from dropkit.nn import _gate_dropout
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", dnn.ConversionWarning)  # the attention gates too
            dnn.convert_dropout(model)
        # their functional dropout runs dropkit's (nn/_gate_dropout.py), until to="original"
        assert sum(map(_gate_dropout.installed, model.modules())) == EXPECTED[name][1]
        kinds = {type(m) for _, m in dnn.dropout_modules(model)}
        assert kinds == {dnn.Dropout}
        with torch.no_grad():
            assert torch.equal(model(**b).logits, ref)
        dnn.set_dropout_p(model, 0.2)
        assert model.state_dict().keys() == state.keys()
        fresh = MODELS[name](attn)
        fresh.load_state_dict(model.state_dict(), strict=True)
        dnn.convert_dropout(model, to="original")  # nothing left over: no warning
        assert not any(map(_gate_dropout.installed, model.modules()))
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


# --------------------------------------------------------------------------------------------------
# Issue 22: models beyond BERT and GPT-2 (encoder-decoders, an LLM, CLIP), rates under their own
# names, batch-shared LayerDrop, the one-sample layout, keyword-only inputs, behaviour discovery.


def _distinct(samples: torch.Tensor) -> int:
    return len({tuple(s.flatten().tolist()) for s in samples})


def bart(**rates):
    torch.manual_seed(0)
    zero = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, classifier_dropout=0.0)
    cfg = transformers.BartConfig(
        vocab_size=50,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=32,
        **{**zero, **rates},
    )
    return transformers.BartForConditionalGeneration(cfg).eval()


def whisper(**rates):
    torch.manual_seed(0)
    zero = dict(
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
    )
    cfg = transformers.WhisperConfig(
        vocab_size=60,
        num_mel_bins=8,
        d_model=16,
        encoder_layers=6,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=8,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        **{**zero, **rates},
    )
    return transformers.WhisperForConditionalGeneration(cfg).eval()


def ids(n: int = 2, length: int = 6, vocab: int = 50) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(4, vocab, (n, length))


class TestBart:
    def test_every_rate_under_its_own_name(self):
        # Before: only the first rate attribute was read: every rate reported 0, and
        # mc_predict raised NoDropoutError on a model random in training.
        model, x = bart(activation_dropout=0.3), ids()
        rates = dnn.get_dropout_p(model)
        active = {k: v for k, v in rates.items() if v > 0}
        assert active == {
            "model.encoder.layers.0.activation_dropout": 0.3,
            "model.decoder.layers.0.activation_dropout": 0.3,
        }
        assert rates["model.encoder.layers.0.self_attn.dropout"] == 0.0
        assert rates["model.encoder.layerdrop"] == 0.0 and rates["model.decoder.layerdrop"] == 0.0
        out = mc_predict(model, x, 4, seed=0, decoder_input_ids=x)
        assert out.shape == (4, 2, 6, 50) and _distinct(out) == 4

    def test_set_by_name_keeps_the_config_in_sync(self, tmp_path):
        model = bart(activation_dropout=0.3)
        rates = dnn.get_dropout_p(model)
        attn = {
            k: 0.1 for k in rates if k.endswith("attn.dropout")
        }  # the config's attention_dropout
        assert len(attn) == 3  # encoder self, decoder self and cross attention
        assert dnn.set_dropout_p(model, attn) == list(attn)
        cfg = model.config
        assert (cfg.attention_dropout, cfg.dropout, cfg.activation_dropout) == (0.1, 0.0, 0.3)
        model.save_pretrained(tmp_path)
        again = transformers.BartForConditionalGeneration.from_pretrained(tmp_path)
        assert dnn.get_dropout_p(again) == dnn.get_dropout_p(model)
        one = {"model.encoder.layers.0.activation_dropout": 0.5}  # the config holds one value
        with pytest.warns(UserWarning, match=r"config.activation_dropout cannot hold"):
            dnn.set_dropout_p(model, one)
        assert cfg.activation_dropout == 0.3
        with pytest.raises(ValueError, match="not rates of the model: 'model.nope'"):
            dnn.set_dropout_p(model, {"model.nope": 0.1})

    def test_one_rate_for_all_layerdrop_included(self):
        model = bart(activation_dropout=0.3)
        names = dnn.set_dropout_p(model, 0.2)
        assert set(dnn.get_dropout_p(model).values()) == {0.2} and len(names) == 11
        cfg = model.config
        assert cfg.encoder_layerdrop == cfg.decoder_layerdrop == cfg.activation_dropout == 0.2


class TestWhisper:
    def test_layerdrop_is_drawn_per_sample_in_a_vectorised_chunk(self):
        # Before: every sample of a chunk skipped the same encoder layers (1 distinct output of
        # 8; the loop gave 8 of 8); with only LayerDrop on, NoDropoutError.
        model = whisper(encoder_layerdrop=0.5)
        assert dnn.get_dropout_p(model)["model.encoder.layerdrop"] == 0.5
        torch.manual_seed(2)
        feats, dec = torch.randn(2, 8, 16), torch.randint(3, 60, (2, 4))
        out = mc_predict(model, feats, 8, chunk_size=8, decoder_input_ids=dec)
        # 6 layers skipped with probability 1/2 each: 64 equally likely patterns; 8 draws give at
        # least 5 distinct ones with probability > 0.999 (and the seed is fixed)
        assert _distinct(out) >= 5
        loop = mc_predict(model, feats, 8, vectorize=False, decoder_input_ids=dec)
        assert _distinct(loop) >= 5


def clip():
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            attention_dropout=0.3,
            bos_token_id=0,
            eos_token_id=1,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
            attention_dropout=0.3,
        ),
        projection_dim=8,
    )
    return transformers.CLIPModel(cfg).eval()


def test_clip_logits_per_image_keep_the_loops_layout():
    # Before: vectorised (T, B, T*B) = (4, 3, 12), the loop (T, B, B) = (4, 3, 3).
    model = clip()
    torch.manual_seed(3)
    inputs = {"input_ids": torch.randint(2, 50, (3, 5)), "pixel_values": torch.randn(3, 3, 16, 16)}
    vec = mc_predict(model, inputs, 4, output="logits_per_image", chunk_size=4)
    loop = mc_predict(model, inputs, 4, output="logits_per_image", vectorize=False)
    assert vec.shape == loop.shape == (4, 3, 3)
    assert _distinct(vec) == 4
    embeds = mc_predict(model, inputs, 3, seed=1, output="image_embeds")  # per row: (3, 3, 8)
    torch.testing.assert_close(
        embeds, mc_predict(model, inputs, 3, seed=1, output="image_embeds", vectorize=False)
    )


def test_keyword_only_inputs():
    # Before: TypeError: mc_predict() missing 1 required positional argument: 'inputs'
    model, b = MODELS["bert"]("sdpa"), batch()
    out = mc_predict(model, input_ids=b["input_ids"], attention_mask=b["attention_mask"], samples=3)
    assert out.shape == (3, 3, 3) and _distinct(out) == 3
    seeded = mc_predict(model, samples=3, seed=2, **b)
    torch.testing.assert_close(seeded, mc_predict(model, b, 3, seed=2))


def llama(p: float = 0.3):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=60,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        attention_dropout=p,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def test_llama_attention_dropout_is_found_sampled_and_set():
    model, x = llama(), ids(vocab=60)
    assert dnn.get_dropout_p(model) == {
        "model.layers.0.self_attn.attention_dropout": 0.3,
        "model.layers.1.self_attn.attention_dropout": 0.3,
    }
    out = mc_predict(model, x, 3, output=lambda o: o.logits[:, -1])  # the last token's logits
    assert out.shape == (3, 2, 60) and _distinct(out) == 3
    dnn.set_dropout_p(model, 0.0)
    assert model.config.attention_dropout == 0.0
    with pytest.raises(NoDropoutError, match="p=0"):
        mc_predict(model, x, 2)


def prophetnet():
    torch.manual_seed(0)
    cfg = transformers.ProphetNetConfig(
        vocab_size=60,
        hidden_size=16,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        num_encoder_attention_heads=2,
        num_decoder_attention_heads=2,
        ngram=2,
        num_buckets=8,
        relative_max_distance=16,
        max_position_embeddings=32,
        dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.1,
    )
    return transformers.ProphetNetForConditionalGeneration(cfg).eval()


class TestFoundByBehaviour:
    """ProphetNet's encoder calls F.dropout(x, self.config.dropout, self.training): no module
    attribute holds that rate, so no registry entry can name it; the probe finds it."""

    def _only_the_encoder(self):
        model, x = prophetnet(), ids(vocab=60)
        for _, m, e in dnn.stochastic_layers(model):  # every rate dropkit knows to 0, config kept
            for rate in e.rates(m):
                e.set_rate(m, rate, 0.0)
        return model, x

    def test_mc_predict_samples_it(self):
        # Before: NoDropoutError ("all 6 stochastic modules have p=0") on a model random in
        # training (its encoder's embedding dropout).
        model, x = self._only_the_encoder()
        out = mc_predict(model, x, 4, decoder_input_ids=x)
        assert _distinct(out) == 4
        entry = dnn.stochastic_layer(model.prophetnet.encoder)
        assert entry.found_by == "behaviour"
        with mc_mode(model):  # recorded: switched without an example input
            assert model.prophetnet.encoder.training
            assert not model.prophetnet.encoder.embeddings_layer_norm.training

    def test_audit_and_reports(self):
        model, x = prophetnet(), ids(vocab=60)
        audit = dnn.audit_stochastic(model, x, decoder_input_ids=x)
        rows = {s.name: s for s in audit}
        enc = rows["prophetnet.encoder"]
        assert (enc.found_by, enc.rates, enc.active, enc.controls) == (
            "behaviour",
            None,
            True,
            ("mc_mode",),
        )
        assert all(s.found_by == "name" and s.controlled for n, s in rows.items() if s is not enc)
        with pytest.warns(
            dnn.UnknownRateWarning, match="'prophetnet.encoder' \\(ProphetNetEncoder"
        ):
            dnn.get_dropout_p(model)
        with pytest.warns(dnn.ConversionWarning, match="ProphetNetEncoder .*found random"):
            dnn.convert_dropout(model)
