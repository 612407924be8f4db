"""Re-measure issue 13's table: what dropkit finds, converts and samples in timm, torchvision and
Hugging Face models built from configs (no weights, no download).

Run in an environment with timm, torchvision and transformers (the CI's .venv-vision):

    PYTHONPATH=src .venv-vision/bin/python benchmarks/interop_table.py

Prints one markdown row per model: the stochastic modules found (by class and kind), the rates
dropkit reads, whether T=5 Monte-Carlo samples all differ, what convert_dropout left unconverted,
and whether the round trip kept eval outputs and the state_dict.
"""

from __future__ import annotations

import collections
import copy
import tempfile
import warnings

import torch

import dropkit.nn as dnn
from dropkit.uncertainty import NoDropoutError, mc_predict


def _models():
    import timm
    import torchvision
    import transformers

    torch.manual_seed(0)
    yield (
        "torchvision efficientnet_b0",
        torchvision.models.efficientnet_b0(),
        torch.randn(2, 3, 32, 32),
    )
    yield (
        "timm vit_tiny (drop_path 0.1, attn_drop 0.1)",
        timm.create_model(
            "vit_tiny_patch16_224",
            img_size=32,
            patch_size=8,
            drop_path_rate=0.1,
            attn_drop_rate=0.1,
        ),
        torch.randn(2, 3, 32, 32),
    )
    yield (
        "timm resnet18 (drop_block, drop_path, drop_rate)",
        timm.create_model(
            "resnet18", drop_rate=0.2, drop_path_rate=0.1, drop_block_rate=0.1, zero_init_last=False
        ),
        torch.randn(2, 3, 96, 96),
    )
    ids = torch.randint(60, (2, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for attn in ("eager", "sdpa"):
        bert = transformers.BertConfig(
            vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, num_labels=3, attn_implementation=attn,
        )  # fmt: skip
        yield f"HF BERT tiny ({attn})", transformers.BertForSequenceClassification(bert), batch
        gpt2 = transformers.GPT2Config(
            vocab_size=60, n_embd=16, n_layer=2, n_head=2, n_positions=16, bos_token_id=0,
            eos_token_id=0, attn_implementation=attn,
        )  # fmt: skip
        yield f"HF GPT-2 tiny ({attn})", transformers.GPT2LMHeadModel(gpt2), batch
    yield "timm resnet18 (no dropout)", timm.create_model("resnet18"), torch.randn(1, 3, 32, 32)


def _call(model, inputs):
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


def _attention_only(model) -> bool | None:
    """MC samples differ with every rate 0 but the attention dropout's (None: no attention)."""
    names = [
        n for n, _ in dnn.dropout_modules(model)
        if n.endswith(("attn.attn_drop", "attn.attn_dropout", "attention.self.dropout"))
    ]  # fmt: skip
    return names or None


def measure(name, model, inputs):
    model.eval()
    found = collections.Counter(
        f"{type(m).__name__}{' (gate)' if e.kind == 'gate' else ''}"
        for _, m, e in dnn.stochastic_layers(model)
    )
    rates = dnn.get_dropout_p(model)
    try:
        s = mc_predict(model, inputs, 5, seed=0)
        flat = s.flatten(1)
        differ = all(not torch.equal(flat[i], flat[j]) for i in range(5) for j in range(i))
        mc = "5 samples, all different" if differ else "**identical samples**"
    except NoDropoutError as e:
        mc = f"NoDropoutError: {str(e)[:60]}..."
    attn = _attention_only(model)
    if attn:
        m2 = copy.deepcopy(model)
        dnn.set_dropout_p(m2, 0.0)
        for n, mod in dnn.dropout_modules(m2):
            if n in attn:
                mod.p = 0.5
        flat = mc_predict(m2, inputs, 3, seed=0).flatten(1)
        mc += "; attention dropout alone: " + (
            "differ" if not torch.equal(flat[0], flat[1]) else "**identical**"
        )
    with torch.no_grad():
        ref = _call(model, inputs)
    state = copy.deepcopy(model.state_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dnn.convert_dropout(model)
    left = sum(
        int(line.split(" x ")[0]) for w in caught if issubclass(w.category, dnn.ConversionWarning)
        for line in str(w.message).splitlines()[1:]
    )  # fmt: skip
    with torch.no_grad():
        same = torch.equal(_call(model, inputs), ref)
    dnn.convert_dropout(model, to="original")
    with torch.no_grad():
        same = same and torch.equal(_call(model, inputs), ref)
    sd = model.state_dict()
    same_sd = list(sd) == list(state) and all(torch.equal(sd[k], state[k]) for k in sd)
    extra = ""
    if hasattr(model, "save_pretrained") and rates:
        dnn.set_dropout_p(model, 0.3)
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            again = type(model).from_pretrained(d)
        extra = f"; set 0.3, save/reload: {sorted(set(dnn.get_dropout_p(again).values()))}"
    found_txt = ", ".join(f"{n} {k}" for k, n in found.items()) or "nothing"
    return (
        f"| {name} | {found_txt} | {len(rates)} rates | {mc} | {left} left (reported) | "
        f"eval bit-identical: {same}, state_dict equal: {same_sd}{extra} |"
    )


def main() -> None:
    torch.set_num_threads(1)
    print("| model | what dropkit finds | rates | mc_predict | convert_dropout | round trip |")
    print("|---|---|---|---|---|---|")
    for name, model, inputs in _models():
        print(measure(name, model, inputs), flush=True)


if __name__ == "__main__":
    main()
