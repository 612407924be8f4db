"""The dropout of gates (functional dropout inside a module's forward) on dropkit's kernels after
``convert_dropout`` (src/dropkit/nn/_gate_dropout.py): the attention that replaces SDPA with dropout,
the redirection of F.dropout and SDPA while a gate runs in training, and nothing else changed."""

from __future__ import annotations

import copy
import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit.nn as dnn
from dropkit.nn import _gate_dropout as gd

# ---- attention ----------------------------------------------------------------------------------


def _reference(q, k, v, mask, bias, scale, keep):
    # float64: softmax(q k^T * scale + bias) with masked entries -inf, times keep/(1-p), @ v
    s = (q.double() @ k.double().transpose(-2, -1)) * scale
    if bias is not None:
        s = s + bias.double()
    empty = None
    if mask is not None:
        empty = ~mask.any(-1, keepdim=True)  # rows with nothing to attend to: zero weights
        s = s.masked_fill(~mask & ~empty, -math.inf)
    w = torch.softmax(s, -1)
    if empty is not None:
        w = w.masked_fill(empty, 0.0)
    return (w * keep.double()) @ v.double()


def _with_masks(keep_full):
    """Patch dropkit's dropout inside ``attention`` with the given keep multipliers (B*H, L, S),
    sliced to each query block in call order, so the result can be checked against the reference."""
    state = {"row": 0}

    def fake(w, p, training):
        rows, cols = w.shape[-2:]
        a = state["row"]
        state["row"] += rows
        return w * keep_full[:, a : a + rows, :cols]

    return mock.patch.object(gd, "_dk_dropout", side_effect=fake)


@pytest.mark.parametrize(
    "case", ["causal", "causal_longer_kv", "bool_mask", "float_mask", "none", "gqa"]
)
def test_attention_is_the_math_path_with_the_given_mask(case):
    torch.manual_seed(0)
    b, h, lq, e = 2, 3, 256 if case.startswith("causal") else 40, 8
    lk = lq + 16 if case == "causal_longer_kv" else lq
    q = torch.randn(b, h, lq, e, dtype=torch.float64, requires_grad=True)
    hk = 1 if case == "gqa" else h
    k = torch.randn(b, hk, lk, e, dtype=torch.float64, requires_grad=True)
    v = torch.randn(b, hk, lk, 5, dtype=torch.float64, requires_grad=True)
    p = 0.3
    keep = (torch.rand(b * h, lq, lk, dtype=torch.float64) > p) / (1 - p)
    kw, mask, bias = {}, None, None
    if case.startswith("causal"):
        kw["is_causal"] = True
        mask = torch.ones(lq, lk, dtype=torch.bool).tril()
    elif case == "bool_mask":
        mask = torch.rand(b, 1, lq, lk) > 0.3
        mask[0, 0, 3] = False  # a row with nothing to attend to gives zeros, as torch's SDPA
        kw["attn_mask"] = mask
    elif case == "float_mask":
        bias = torch.randn(lq, lk, dtype=torch.float64)
        kw["attn_mask"] = bias
    if case == "gqa":
        kw["enable_gqa"] = True
    with _with_masks(keep):
        out = gd.attention(q, k, v, dropout_p=p, scale=0.7, **kw)
    kr, vr = (k, v) if hk == h else (k.repeat_interleave(h, 1), v.repeat_interleave(h, 1))
    ref = _reference(q, kr, vr, mask, bias, 0.7, keep.view(b, h, lq, lk))
    # the reference is SDPA's function: with every weight kept it is torch's SDPA
    torch_kw = {key: val for key, val in kw.items() if key != "enable_gqa"}
    with torch.no_grad():
        torch.testing.assert_close(
            _reference(q, kr, vr, mask, bias, 0.7, torch.ones(b, h, lq, lk)),
            F.scaled_dot_product_attention(q, kr, vr, scale=0.7, **torch_kw),
        )
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)  # float64: rounding only
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), g)
    want = torch.autograd.grad(ref, (q, k, v), g)
    for a, w in zip(got, want, strict=True):
        torch.testing.assert_close(a, w, rtol=1e-9, atol=1e-11)


def test_attention_drops_a_fraction_p_of_the_weights_and_rescales_the_rest():
    # v = identity: the output is the dropped attention weights themselves
    torch.manual_seed(0)
    b, h, n, p = 4, 4, 256, 0.25
    q, k = torch.randn(b, h, n, 16), torch.randn(b, h, n, 16)
    v = torch.eye(n).expand(b, h, n, n)
    w = gd.attention(q, k, v, dropout_p=p, is_causal=True)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the weights, undropped
    seen = torch.ones(n, n, dtype=torch.bool).tril().expand_as(w)
    assert torch.all(w[~seen] == 0)
    kept = w[seen] != 0
    count = seen.sum().item()  # 526,336 weights: binomial sd of the kept fraction ~ 6e-4
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / count)
    torch.testing.assert_close(w[seen][kept], full[seen][kept] / (1 - p))
    assert not torch.equal(w, gd.attention(q, k, v, dropout_p=p, is_causal=True))


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_attention_leaves_rates_0_and_1_to_torch(p):
    q = k = v = torch.randn(1, 2, 8, 4)
    with mock.patch.object(gd, "_dk_dropout", side_effect=AssertionError("dropkit called")):
        out = gd.attention(q, k, v, dropout_p=p, is_causal=True)
    if p == 0.0:
        assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


# ---- the redirection, on a gate of one's own -----------------------------------------------------


class _Gate(nn.Module):
    """A gate as Hugging Face writes one: F.dropout and SDPA with its own rate, if training."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.attention_dropout = p

    def forward(self, x):  # (N, H, L, 8)
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(x, x, x, dropout_p=p, is_causal=True)
        return F.dropout(self.proj(y), p=p, training=self.training)


@pytest.fixture
def gate_cls():
    dnn.register_stochastic_layer(_Gate, kind="gate", p="attention_dropout")
    yield _Gate
    dnn.unregister_stochastic_layer(_Gate)


def _spy():
    calls = []
    real = gd._dk_dropout

    def spy(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)

    return calls, mock.patch.object(gd, "_dk_dropout", side_effect=spy)


def test_converted_gate_runs_dropkit_in_training_and_nothing_after(gate_cls):
    model = nn.Sequential(gate_cls(), nn.Dropout(0.1))
    x = torch.randn(2, 2, 4, 8)
    with torch.no_grad():
        ref = model.eval()(x)
    state = copy.deepcopy(model.state_dict())
    dnn.convert_dropout(model)  # no ConversionWarning: the gate is handled (pytest: -W error)
    assert gd.installed(model[0])
    calls, spy = _spy()
    with spy:
        model.train()(x).sum().backward()
        assert calls == [(2 * 2, 4, 4), (2, 2, 4, 8)]  # SDPA's weights, then the F.dropout
        calls.clear()
        F.dropout(x, 0.5)  # outside the gate's forward: torch's, untouched
        F.scaled_dot_product_attention(x, x, x, dropout_p=0.5)
        assert calls == []
        with torch.no_grad():
            assert torch.equal(model.eval()(x), ref)  # eval: nothing redirected, bit-identical
        assert calls == []
    assert list(model.state_dict()) == list(state)
    dnn.convert_dropout(model, to="original")
    assert not gd.installed(model[0])
    with _spy()[1] as fake:
        model.train()(x)
        assert fake.call_count == 0


def test_the_mode_ends_when_the_gate_raises(gate_cls):
    gate = gate_cls()
    dnn.convert_dropout(gate)
    with pytest.raises(RuntimeError):
        gate.train()(torch.randn(2, 3))  # a shape the gate cannot take
    calls, spy = _spy()
    with spy:
        F.dropout(torch.randn(64), 0.5)
    assert calls == []


def test_nested_gates_hold_one_mode(gate_cls):
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = gate_cls()
            self.dropout = 0.2

        def forward(self, x):
            return F.dropout(self.inner(x), p=self.dropout, training=self.training)

    dnn.register_stochastic_layer(Outer, kind="gate", p="dropout")
    try:
        model = dnn.convert_dropout(Outer())
        calls, spy = _spy()
        with spy:
            model.train()(torch.randn(1, 2, 4, 8))
            assert len(calls) == 3  # inner SDPA and F.dropout, outer F.dropout
            calls.clear()
            F.dropout(torch.randn(8), 0.5)
            assert calls == []
    finally:
        dnn.unregister_stochastic_layer(Outer)


def test_native_gates_get_no_hooks():
    model = nn.Sequential(nn.MultiheadAttention(8, 2, dropout=0.1), nn.LSTM(4, 4, 2, dropout=0.1))
    assert not any(gd.applies(m) for m in model.modules())
