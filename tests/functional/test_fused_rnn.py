"""The fused recurrence (ops/rnn.py) against the step-by-step loop it replaces.

Given the same masks both compute the same function; only the order of the sums differs (the
forward's products run on transposed operands, the backward's weight gradient is one product over
all steps), so in float64 with at most 8 steps and 6 hidden units the difference is a few ulps. We
allow 1e-12, as the reference parity tests do; a wrong mask or a missing gradient term changes
values by O(0.1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import dropkit
import dropkit.functional as DF
from dropkit.ops import rnn as _fused_rnn

TOL = dict(rtol=1e-12, atol=1e-12)
P = dict(input_dropout=0.2, dropout=0.3, recurrent_dropout=0.4, output_dropout=0.25)


def _setup(mode, bias, bidirectional, dtype=torch.float64):
    torch.manual_seed(0)
    rnn = (nn.LSTM if mode == "LSTM" else nn.GRU)(
        4, 6, 2, bias=bias, bidirectional=bidirectional, dtype=dtype
    )
    weights = [w.detach().clone().requires_grad_() for ws in rnn.all_weights for w in ws]
    x = torch.randn(8, 3, 4, dtype=dtype, requires_grad=True)
    hx = torch.randn(2 * (2 if bidirectional else 1), 3, 6, dtype=dtype, requires_grad=True)
    masks = DF.sample_rnn_masks(
        mode, 3, 4, 6, 2, bidirectional, generator=torch.Generator().manual_seed(1), **P
    )
    return weights, x, hx, masks


def _loss(mode, weights, x, hx, masks, bidirectional):
    state = (hx, hx * 0.5) if mode == "LSTM" else hx
    out, hid = DF.variational_rnn(
        x,
        state,
        weights,
        mode=mode,
        num_layers=2,
        bidirectional=bidirectional,
        masks=masks,
        **P,
    )
    hid = hid[0] * 1.3 + hid[1] * 0.7 if mode == "LSTM" else hid
    return (out**2).sum() + (hid**3).sum()  # every output and state reaches the loss


@pytest.fixture
def counted(monkeypatch):
    calls = []
    recur = _fused_rnn.recur

    def counting(*args):
        calls.append(args[0])
        return recur(*args)

    monkeypatch.setattr(_fused_rnn, "recur", counting)
    return calls


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("step_kernels", [True, False])
def test_values_and_gradients_match_the_loop(
    mode, bias, bidirectional, step_kernels, counted, monkeypatch
):
    # step_kernels=False: the LSTM's element-wise work on torch's operators (as on CUDA, or where
    # numba cannot be imported) instead of kernels/cpu_rnn.py
    if not step_kernels:
        monkeypatch.setattr(_fused_rnn, "_step_kernels", lambda like: None)
    weights, x, hx, masks = _setup(mode, bias, bidirectional)
    inputs = [x, hx, *weights]
    results = []
    for fast in (True, False):
        with dropkit.use_fast_dropout(fast):
            loss = _loss(mode, weights, x, hx, masks, bidirectional)
            grads = torch.autograd.grad(loss, inputs, create_graph=True)
            # double backward: the fused node recomputes through the loop
            gg = torch.autograd.grad(sum((g**2).sum() for g in grads), inputs)
        results.append((loss, grads, gg))
    assert len(counted) == 2 * (2 if bidirectional else 1)  # every layer and direction, fast run
    (l1, g1, gg1), (l2, g2, gg2) = results
    torch.testing.assert_close(l1, l2, **TOL)
    for a, b in zip((*g1, *gg1), (*g2, *gg2), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("step_kernels", [True, False])
def test_float32_matches_the_loop(mode, step_kernels, counted, monkeypatch):
    if not step_kernels:
        monkeypatch.setattr(_fused_rnn, "_step_kernels", lambda like: None)
    weights, x, hx, masks = _setup(mode, True, False, torch.float32)
    outs = []
    for fast in (True, False):
        with dropkit.use_fast_dropout(fast):
            loss = _loss(mode, weights, x, hx, masks, False)
            outs.append((loss, torch.autograd.grad(loss, [x, hx, *weights])))
    assert counted
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_eligibility(counted):
    weights, x, hx, masks = _setup("LSTM", True, False)
    kw = dict(mode="LSTM", num_layers=2, **P)
    # per-gate masks, packed sequences and the switch off keep the step-by-step loop
    per_gate = DF.sample_rnn_masks("LSTM", 3, 4, 6, 2, per_gate=True, **P)
    DF.variational_rnn(x, None, weights, masks=per_gate, **kw)
    packed = pack_padded_sequence(x, [8, 5, 2])
    DF.variational_rnn(packed, None, weights, masks=masks, **kw)
    with dropkit.use_fast_dropout(False):
        DF.variational_rnn(x, None, weights, masks=masks, **kw)
    assert counted == []
    DF.variational_rnn(x, None, weights, masks=masks, **kw)
    assert counted == ["LSTM", "LSTM"]


def test_no_grad_and_unused_outputs(counted):
    weights, x, hx, masks = _setup("GRU", True, True)
    kw = dict(mode="GRU", num_layers=2, bidirectional=True, masks=masks, **P)
    with torch.no_grad():
        out_ng, _ = DF.variational_rnn(x, hx, weights, **kw)
    out, _ = DF.variational_rnn(x, hx, weights, **kw)
    torch.testing.assert_close(out_ng, out.detach(), rtol=0, atol=0)
    out.sum().backward()  # h_n unused: its gradient is zero
    assert all(w.grad is not None for w in weights)


@pytest.mark.skipif(_fused_rnn._ONEDNN is None, reason="this torch has no oneDNN ops")
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_float32_products_run_on_onednn(mode, monkeypatch):
    # every product of a float32 CPU recurrence and of its input part goes to oneDNN (none to
    # torch's mm/addmm, which call MKL); the values are those of the loop (test above)
    calls = []
    real = _fused_rnn._ONEDNN

    def spy(i):
        def f(*args):
            calls.append(i)
            return real[i](*args)

        return f

    monkeypatch.setattr(_fused_rnn, "_ONEDNN", (spy(0), spy(1), real[2]))
    weights, x, hx, masks = _setup(mode, True, False, torch.float32)
    loss = _loss(mode, weights, x, hx, masks, False)
    for name in ("mm", "addmm"):
        monkeypatch.setattr(torch, name, _refuse(name))
    torch.autograd.grad(loss, [x, hx, *weights])
    assert calls.count(0) >= 2 * 8  # each step of both layers (the LSTM kernels add x_gates)


def _refuse(name):
    def f(*args, **kwargs):
        raise AssertionError(f"torch.{name} called in a float32 backward")

    return f


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_is_f_linear_to_second_order(dtype):
    # the input part of the gates: F.linear's values and gradients, also under create_graph=True
    torch.manual_seed(0)
    x = torch.randn(12, 5, dtype=dtype, requires_grad=True)
    w = torch.randn(8, 5, dtype=dtype, requires_grad=True)
    b = torch.randn(8, dtype=dtype, requires_grad=True)
    got, want = _fused_rnn.linear(x, w, b), nn.functional.linear(x, w, b)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else TOL
    torch.testing.assert_close(got, want, **tol)
    g1 = torch.autograd.grad((got**2).sum(), (x, w, b), create_graph=True)
    g2 = torch.autograd.grad((want**2).sum(), (x, w, b), create_graph=True)
    for a, c in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, c, **tol)
    gg1 = torch.autograd.grad(sum((g**2).sum() for g in g1), (x, w, b))
    gg2 = torch.autograd.grad(sum((g**2).sum() for g in g2), (x, w, b))
    for a, c in zip(gg1, gg2, strict=True):
        torch.testing.assert_close(a, c, **tol)
