"""timm and torchvision models built without weights: torchvision efficientnet_b0, timm vit_tiny
(drop_path, attn_drop) and resnet18 (drop_block, drop_path, drop_rate). Everything found, each
source of noise switched on by mc_mode on its own, converted back and forth losslessly, rates set
and read back, the no-dropout model refused.

timm and torchvision wheels need the torch build they were made for: these tests run in the second
environment .ci/run creates (torch 2.14.1 + torchvision 0.29.1 + timm) and skip elsewhere.
"""

from __future__ import annotations

import collections
import copy
import functools
import warnings

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.uncertainty import NoDropoutError, mc_mode, mc_predict
from tests.interop._require import require

timm = require("timm", "timm (and a torchvision matching this torch) cannot be imported")
torchvision = require("torchvision", "torchvision cannot be imported against this torch build")


def efficientnet_b0():
    torch.manual_seed(0)
    return torchvision.models.efficientnet_b0(num_classes=5).eval(), torch.randn(2, 3, 32, 32)


def vit_tiny():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        num_classes=5,
        drop_path_rate=0.1,
        attn_drop_rate=0.1,
    )
    return model.eval(), torch.randn(2, 3, 32, 32)


def resnet18():
    torch.manual_seed(0)
    model = timm.create_model(
        "resnet18",
        pretrained=False,
        num_classes=5,
        drop_rate=0.2,
        drop_path_rate=0.1,
        drop_block_rate=0.1,
        zero_init_last=False,  # timm zeroes each block's last BN: DropPath of 0 would be invisible
    )
    # 64 px: layer3's 4x4 map is smaller than its 5-wide blocks; timm clips them, and so does a
    # converted model (clip_block_size=True)
    return model.eval(), torch.randn(2, 3, 64, 64)


MODELS = {"efficientnet_b0": efficientnet_b0, "vit_tiny": vit_tiny, "resnet18": resnet18}
# What the registry must find: (class name, kind) -> count.
FOUND = {
    "efficientnet_b0": {("StochasticDepth", "layer"): 16, ("Dropout", "layer"): 1},
    "vit_tiny": {("Dropout", "layer"): 50, ("DropPath", "layer"): 22, ("Attention", "gate"): 12},
    "resnet18": {("DropPath", "layer"): 7, ("DropBlock2d", "layer"): 4, ("ResNet", "gate"): 1},
}
# Each source of noise, switched on alone: (name predicate, rate).
SOURCES = {
    "efficientnet_b0": {
        "stochastic depth": lambda n, m: type(m).__name__ == "StochasticDepth",
        "head dropout": lambda n, m: n == "classifier.0",
    },
    "vit_tiny": {
        "drop path": lambda n, m: type(m).__name__ == "DropPath",
        "fused attention dropout": lambda n, m: n.endswith("attn.attn_drop"),
    },
    "resnet18": {
        "drop path": lambda n, m: type(m).__name__ == "DropPath",
        "drop block": lambda n, m: type(m).__name__ == "DropBlock2d",
        "functional head dropout": lambda n, m: n == "",
    },
}
CASES = [(model, source) for model in SOURCES for source in SOURCES[model]]


def differ(samples: torch.Tensor) -> bool:
    """Samples pairwise different, by more than rounding (efficientnet's untrained activations are
    ~1e-14, so relative to their size)."""
    flat = samples.flatten(1)
    scale = flat.abs().mean()
    return all(
        (flat[i] - flat[j]).abs().max() > 1e-3 * scale for i in range(len(flat)) for j in range(i)
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_everything_is_found(name):
    model, _ = MODELS[name]()
    found = collections.Counter(
        (type(m).__name__, e.kind) for _, m, e in dnn.stochastic_layers(model)
    )
    assert dict(found) == FOUND[name]
    rates = dnn.get_dropout_p(model)
    assert len(rates) == len(dnn.dropout_modules(model)) and max(rates.values()) > 0


@pytest.mark.parametrize(("name", "source"), CASES)
def test_each_source_alone_makes_mc_samples_differ(name, source):
    model, x = MODELS[name]()
    dnn.set_dropout_p(model, 0.0)
    chosen = [(n, m, e) for n, m, e in dnn.stochastic_layers(model) if SOURCES[name][source](n, m)]
    assert chosen
    for _, m, e in chosen:
        e.set_p(m, 0.5)
    with torch.no_grad():
        ref = model(x)
    samples = mc_predict(model, x, 4, seed=0)
    assert samples.shape == (4, *ref.shape) and differ(samples)
    with mc_mode(model):  # BatchNorm and LayerNorm stay in eval
        assert not any(
            m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        )
    with torch.no_grad():
        assert torch.equal(model(x), ref)


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_is_lossless(name):
    model, x = MODELS[name]()
    fresh, _ = MODELS[name]()
    state = copy.deepcopy(model.state_dict())
    originals = {n: type(m) for n, m in dnn.dropout_modules(model)}
    rates = dnn.get_dropout_p(model)
    with torch.no_grad():
        ref = model(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dnn.convert_dropout(model)
    left = [w for w in caught if issubclass(w.category, dnn.ConversionWarning)]
    # every model converts entirely: the gates (fused attention, resnet's head) run dropkit's
    # dropout inside their forward (nn/_gate_dropout.py)
    assert left == []
    converted = {n: m for n, m in dnn.dropout_modules(model) if isinstance(m, nn.Module)}
    gates = {n for n, _, e in dnn.stochastic_layers(model, kind="gate")}
    assert all(
        type(m).__module__.startswith("dropkit") for n, m in converted.items() if n not in gates
    )
    assert dnn.get_dropout_p(model) == pytest.approx(_effective(rates, model))
    with torch.no_grad():
        assert torch.equal(model(x), ref)  # eval: bit-identical
    assert samples_differ_after_conversion(model, x)
    fresh.load_state_dict(model.state_dict(), strict=True)  # loadable by the original library
    dnn.convert_dropout(model, to="original")
    assert {n: type(m) for n, m in dnn.dropout_modules(model)} == originals
    assert dnn.get_dropout_p(model) == pytest.approx(rates)
    assert _same_state(model.state_dict(), state)
    with torch.no_grad():
        assert torch.equal(model(x), ref)


def _effective(rates, model):
    """timm's DropBlock2d(drop_prob, gamma_scale) drops a fraction drop_prob * gamma_scale: that is
    dropkit's p after conversion."""
    out = dict(rates)
    for n, m in dnn.dropout_modules(model):
        origin = m.__dict__.get("_dropkit_origin")
        if origin is not None and type(origin).__name__ == "DropBlock2d":
            out[n] = origin.drop_prob * origin.gamma_scale
    return out


def samples_differ_after_conversion(model, x):
    return differ(mc_predict(model, x, 3, seed=1))


def _same_state(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(MODELS))
def test_rates_set_and_read_back(name):
    model, _ = MODELS[name]()
    names = dnn.set_dropout_p(model, 0.3)
    assert dnn.get_dropout_p(model) == dict.fromkeys(names, 0.3)
    assert len(names) == len(dnn.dropout_modules(model))


def test_models_without_dropout_raise():
    torch.manual_seed(0)
    plain = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()  # all rates 0
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(NoDropoutError, match="p=0"):
        mc_predict(plain, x, 3)
    with pytest.raises(NoDropoutError, match="no stochastic layer was found in ResNet"):
        mc_predict(torchvision.models.resnet18(num_classes=3).eval(), x, 3)
    with pytest.warns(UserWarning, match="identical"):
        mc_predict(plain, x, 2, on_deterministic="warn")


def test_torchvision_dropblock_and_batch_stochastic_depth():
    ops = torchvision.ops
    model = nn.Sequential(
        ops.DropBlock2d(0.2, 3), nn.Unflatten(1, (2, 2)), ops.DropBlock3d(0.1, 1, inplace=True)
    )
    depth = nn.Sequential(ops.StochasticDepth(0.2, "batch"))
    dnn.convert_dropout(depth)
    assert type(depth[0]) is dnn.DropPath and depth[0].mode == "batch"
    depth[0].p = 0.3
    dnn.convert_dropout(depth, to="original")
    assert type(depth[0]) is ops.StochasticDepth and depth[0].mode == "batch" and depth[0].p == 0.3
    dnn.convert_dropout(model)
    assert type(model[0]) is dnn.DropBlock2d and model[0].block_size == (3, 3)
    assert not model[0].clip_block_size  # torchvision does not clip
    assert not model[0].share_channels and model[2].inplace and model[2].p == 0.1
    dnn.convert_dropout(model, to="original")
    assert type(model[0]) is ops.DropBlock2d and type(model[2]) is ops.DropBlock3d


@pytest.mark.parametrize(
    "layer, expected",
    [
        (lambda: timm.layers.DropPath(0.3, scale_by_keep=False), {"scale_by_keep": False}),
        (
            lambda: timm.layers.DropBlock2d(0.2, 3, scale_by_keep=False),
            {"scale_by_keep": False, "with_noise": False},
        ),
        # timm never rescales when it fills blocks with noise
        (
            lambda: timm.layers.DropBlock2d(0.2, 3, with_noise=True),
            {"scale_by_keep": False, "with_noise": True},
        ),
    ],
)
def test_timm_scale_by_keep_and_with_noise_convert_losslessly(layer, expected):
    original = layer()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), original).eval()
    x = torch.randn(8, 3, 10, 10)
    with torch.no_grad():
        ref = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnn.ConversionWarning)  # nothing left unconverted
        dnn.convert_dropout(model)
    converted = model[1]
    assert type(converted).__module__.startswith("dropkit")
    assert {k: getattr(converted, k) for k in expected} == expected
    with torch.no_grad():
        assert torch.equal(model(x), ref)  # eval: the identity on both sides
        h = model[0](x)
        out = converted.train()(h)
    if expected.get("with_noise"):
        assert not torch.equal(out, h) and (out == h).float().mean() > 0.5  # kept units as they are
    else:  # unscaled: every unit is its input or 0
        assert torch.all((out == h) | (out == 0))
    dnn.convert_dropout(model.eval(), to="original")
    assert model[1] is original
    with torch.no_grad():
        assert torch.equal(model(x), ref)


# --------------------------------------------------------------------------------------------------
# Issue 22: torchvision's Swin attention, timm's F.dropout heads, DenseNet's layers, a torchvision
# ViT; the audit of a real model.


def _distinct(samples: torch.Tensor) -> int:
    return len({tuple(s.flatten().tolist()) for s in samples})


@functools.cache
def _swin_t() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.swin_t(num_classes=5).eval()  # 28M parameters: built once


def swin_t(attention_dropout: float, dropout: float = 0.0):
    """torchvision's swin_t with these rates, its stochastic depth (0.2, fixed by swin_t) off."""
    model = copy.deepcopy(_swin_t())
    for m in model.modules():
        if type(m).__name__ == "StochasticDepth":
            m.p = 0.0
        elif type(m).__name__ == "ShiftedWindowAttention":
            m.attention_dropout, m.dropout = attention_dropout, dropout
        elif isinstance(m, nn.Dropout):
            m.p = dropout
    torch.manual_seed(1)
    return model, torch.randn(2, 3, 32, 32)


def _swin_attention(model):
    return [m for m in model.modules() if type(m).__name__ == "ShiftedWindowAttention"]


class TestSwin:
    def test_attention_dropout_alone_is_sampled(self):
        # Before: not found; NoDropoutError on a model random in training.
        model, x = swin_t(attention_dropout=0.5)
        rates = dnn.get_dropout_p(model)
        attn = {k: v for k, v in rates.items() if k.endswith("attn.attention_dropout")}
        assert len(attn) == 12 and set(attn.values()) == {0.5}
        assert _distinct(mc_predict(model, x, 4, seed=0)) == 4

    def test_switched_and_set_beside_other_dropout(self):
        # Before: with the MLP's nn.Dropout on, mc_mode left attention dropout out (silently)
        # and set_dropout_p left it at 0.5.
        model, x = swin_t(attention_dropout=0.5, dropout=0.1)
        with mc_mode(model):
            assert all(m.training for m in _swin_attention(model))
        dnn.set_dropout_p(model, 0.0)
        assert all(m.attention_dropout == 0.0 and m.dropout == 0.0 for m in _swin_attention(model))
        with pytest.raises(NoDropoutError, match="p=0"):
            mc_predict(model, x, 2)


@pytest.mark.parametrize("name", ["repghostnet_050", "fasternet_t0", "starnet_s050"])
def test_timm_functional_dropout_heads(name):
    # Before: get_dropout_p -> {}, set_dropout_p changed nothing, mc_predict: NoDropoutError.
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, drop_rate=0.5, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    assert dnn.get_dropout_p(model) == {"": 0.5}
    samples = mc_predict(model, x, 4, seed=0)
    assert _distinct(samples) == 4
    # F.dropout(0.5) on the pooled features, then the classifier: each sample differs from eval
    with torch.no_grad():
        assert all(not torch.equal(s, model(x)) for s in samples)
    assert dnn.set_dropout_p(model, 0.2) == [""] and model.drop_rate == 0.2


def test_torchvision_densenet_layers():
    torch.manual_seed(0)
    model = torchvision.models.DenseNet(
        growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, drop_rate=0.3,
        num_classes=5,
    ).eval()  # fmt: skip
    rates = dnn.get_dropout_p(model)
    assert len(rates) == 4 and set(rates.values()) == {0.3}  # one per _DenseLayer
    samples = mc_predict(model, torch.randn(2, 3, 32, 32), 3, seed=0)
    assert _distinct(samples) == 3


def test_torchvision_vit_attention_dropout_alone():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        dropout=0.0, attention_dropout=0.4, num_classes=5,
    ).eval()  # fmt: skip
    nn.init.normal_(model.heads.head.weight)  # torchvision zero-initialises the head
    assert {type(m).__name__ for _, m, e in dnn.stochastic_layers(model, kind="gate")} == {
        "MultiheadAttention"
    }
    x = torch.randn(3, 3, 32, 32)
    vec = mc_predict(model, x, 4, seed=1)
    assert _distinct(vec) == 4
    torch.testing.assert_close(vec, mc_predict(model, x, 4, seed=1, vectorize=False))


def test_audit_of_a_timm_vit_finds_everything_by_name():
    model, x = vit_tiny()
    audit = dnn.audit_stochastic(model, x)
    found = collections.Counter((type(s.module).__name__, s.kind) for s in audit)
    assert dict(found) == FOUND["vit_tiny"]
    assert all(s.found_by == "name" and "mc_mode" in s.controls for s in audit)
    assert not any(s.batch_shared for s in audit)  # DropPath(row), dropout, attention: per row
