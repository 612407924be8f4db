"""dropkit.nn.WeightDropLSTM / WeightDropGRU: lossless, fused, warning-free DropConnect on W_hh."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit import reference as ref
from dropkit.nn._base import _Stochastic
from dropkit.nn.weight_drop import _one_chunk

F64 = torch.float64
PAIRS = [(dnn.WeightDropLSTM, nn.LSTM, "LSTM"), (dnn.WeightDropGRU, nn.GRU, "GRU")]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(ours, theirs, p=0.5, seed=0, **kw):
    cfg = dict(input_size=4, hidden_size=5, num_layers=2, bidirectional=True, dtype=F64) | kw
    torch.manual_seed(seed)
    plain = theirs(**cfg)
    dropped = ours(**cfg, weight_dropout=p)
    dropped.load_state_dict(plain.state_dict())
    return dropped, plain


@pytest.mark.parametrize(("ours", "theirs", "mode"), PAIRS)
class TestLossless:
    def test_parameters_and_state_dict_keys_are_those_of_torch(self, ours, theirs, mode):
        dropped, plain = _pair(ours, theirs)
        assert [n for n, _ in dropped.named_parameters()] == [
            n for n, _ in plain.named_parameters()
        ]
        assert list(dropped.state_dict()) == list(plain.state_dict())
        # and a torch checkpoint loads strictly, a dropkit one loads into torch
        plain.load_state_dict(dropped.state_dict())
        assert isinstance(dropped, _Stochastic) and isinstance(dropped, theirs)

    def test_eval_is_the_plain_rnn_exactly(self, ours, theirs, mode):
        dropped, plain = _pair(ours, theirs)
        x = torch.randn(6, 3, 4, dtype=F64)
        a, b = dropped.eval()(x), plain.eval()(x)
        assert torch.equal(a[0], b[0])

    def test_training_restores_the_parameters(self, ours, theirs, mode):
        dropped, _ = _pair(ours, theirs)
        before = {k: v.clone() for k, v in dropped.state_dict().items()}
        dropped(torch.randn(6, 3, 4, dtype=F64))
        for name, w in zip(dropped._flat_weights_names, dropped._flat_weights, strict=True):
            assert w is getattr(dropped, name)  # the list is the parameters again
        for k, v in dropped.state_dict().items():
            assert torch.equal(v, before[k])

    def test_from_module_shares_the_parameter_objects(self, ours, theirs, mode):
        plain = theirs(4, 5, 2, dtype=F64)
        dropped = ours.from_module(plain, 0.3)
        assert all(a is b for a, b in zip(dropped.parameters(), plain.parameters(), strict=True))
        assert dropped.weight_dropout == 0.3
        x = torch.randn(6, 3, 4, dtype=F64)
        assert torch.equal(dropped.eval()(x)[0], plain.eval()(x)[0])
        with pytest.raises(TypeError, match=r"from_module: expected a torch.nn"):
            ours.from_module(nn.RNN(4, 5), 0.3)


@pytest.mark.parametrize(("ours", "theirs", "mode"), PAIRS)
class TestTraining:
    @pytest.mark.parametrize("batch_first", [False, True])
    def test_matches_reference_with_the_dropped_weights(self, ours, theirs, mode, batch_first):
        # Masks drawn in order, one per weight_hh_l*, from the module's generator: the reference
        # runs the plain RNN on weight_hh * mask / (1-p). Tolerance as in the variational tests.
        p = 0.4
        dropped, _ = _pair(ours, theirs, p, batch_first=batch_first)
        dropped.generator = _seeded(9)
        x = torch.randn(3, 6, 4, dtype=F64, generator=_seeded(1))
        out, _ = dropped(x)
        g = _seeded(9)
        weights = []
        for name in dropped._flat_weights_names:
            w = getattr(dropped, name).detach().numpy()
            if name.startswith("weight_hh"):
                mask = DF.sample_mask(w.shape, p, generator=g).numpy()
                w = ref.weight_drop_forward(w, mask, p)
            weights.append(w)
        expected, _ = ref.variational_rnn_forward(
            x.numpy(),
            None,
            weights,
            mode=mode,
            num_layers=2,
            bidirectional=True,
            batch_first=batch_first,
        )
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)

    def test_gradient_reaches_the_parameter_through_the_mask(self, ours, theirs, mode):
        dropped, _ = _pair(ours, theirs, p=0.5)
        dropped.generator = _seeded(2)
        out, _ = dropped(torch.randn(6, 3, 4, dtype=F64))
        out.sum().backward()
        mask = DF.sample_mask(dropped.weight_hh_l0.shape, 0.5, generator=_seeded(2))
        grad = dropped.weight_hh_l0.grad
        assert torch.all(grad[~mask] == 0) and grad[mask].abs().sum() > 0
        assert dropped.weight_ih_l0.grad is not None

    def test_new_mask_each_call_and_fused_kernel(self, ours, theirs, mode):
        dropped, _ = _pair(ours, theirs)
        x = torch.randn(6, 3, 4, dtype=F64)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            a, _ = dropped(x)
        ops = {e.key for e in prof.key_averages()}
        assert f"aten::{mode.lower()}" in ops, ops  # PyTorch's fused RNN op ran
        assert "aten::sigmoid" not in ops  # no step-by-step cell in Python
        b, _ = dropped(x)
        assert not torch.equal(a, b)

    def test_no_warnings(self, ours, theirs, mode):
        dropped, _ = _pair(ours, theirs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dropped(torch.randn(6, 3, 4, dtype=F64))[0].sum().backward()
            dropped.eval()(torch.randn(6, 3, 4, dtype=F64))

    def test_to_and_deepcopy(self, ours, theirs, mode):
        dropped, _ = _pair(ours, theirs)
        moved = copy.deepcopy(dropped).to(torch.float32)
        assert moved.weight_hh_l0.dtype == torch.float32
        assert moved.weight_dropout == dropped.weight_dropout
        x = torch.randn(6, 3, 4)
        moved.generator = _seeded(3)
        out32, _ = moved(x)
        dropped.generator = _seeded(3)
        out64, _ = dropped(x.double())
        torch.testing.assert_close(out32, out64.float(), rtol=1e-5, atol=1e-5)
        assert moved.weight_hh_l0 is not dropped.weight_hh_l0

    def test_packed_input(self, ours, theirs, mode):
        dropped, plain = _pair(ours, theirs, p=0.0)
        packed = pack_padded_sequence(
            torch.randn(6, 3, 4, dtype=F64), [6, 2, 4], enforce_sorted=False
        )
        assert torch.equal(dropped(packed)[0].data, plain(packed)[0].data)
        dropped.weight_dropout = 0.5
        assert dropped(packed)[0].data.shape == plain(packed)[0].data.shape


def test_one_chunk_lays_weights_out_like_a_flat_buffer():
    # The CUDA path (cuDNN flat buffer) exercised on CPU: originals are views of one buffer.
    shapes = [(8, 3), (8, 2), (8,), (8,)]
    flat = torch.randn(sum(torch.Size(s).numel() for s in shapes), dtype=F64)
    originals, offset = [], 0
    for s in shapes:
        n = torch.Size(s).numel()
        originals.append(flat[offset : offset + n].view(s))
        offset += n
    new = [w.clone().requires_grad_() for w in originals]
    views = _one_chunk(originals, new)
    base = views[0].untyped_storage().data_ptr()
    assert all(v.untyped_storage().data_ptr() == base for v in views)
    assert [v.storage_offset() for v in views] == [w.storage_offset() for w in originals]
    assert all(torch.equal(v, w) for v, w in zip(views, new, strict=True))
    sum(v.sum() for v in views).backward()
    assert all(torch.equal(w.grad, torch.ones_like(w)) for w in new)
    # not one buffer -> None (the caller keeps the separate tensors)
    assert _one_chunk([torch.randn(2, 2), torch.randn(2)], new[:2]) is None


def test_errors_and_repr():
    with pytest.raises(
        ValueError,
        match=r"WeightDropLSTM: weight_dropout: dropout probability has to be in \[0, 1\)",
    ):
        dnn.WeightDropLSTM(3, 4, weight_dropout=1.0)
    m = dnn.WeightDropGRU(3, 4, weight_dropout=0.2)
    with pytest.raises(ValueError, match="but got -1"):
        m.weight_dropout = -1
    assert repr(m) == "WeightDropGRU(3, 4, weight_dropout=0.2)"


@pytest.mark.parametrize(("ours", "theirs", "mode"), PAIRS)
def test_gradcheck_through_the_fused_kernel(ours, theirs, mode):
    # Same mask on every call (a freshly seeded generator); weight_hh_l0 passed in through
    # torch.func.functional_call, which the module also supports.
    m = ours(2, 2, bidirectional=True, weight_dropout=0.5, dtype=F64)
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    w = m.weight_hh_l0.detach().clone().requires_grad_()

    def f(x, w):
        m.generator = _seeded(5)
        return torch.func.functional_call(m, {"weight_hh_l0": w}, (x,))[0]

    assert torch.autograd.gradcheck(f, (x, w))


@pytest.mark.parametrize(("ours", "theirs", "mode"), PAIRS)
def test_reassigned_parameter_is_dropped_on_the_next_call(ours, theirs, mode):
    # nn.LSTM re-reads reassigned parameters inside forward; the swap must survive that.
    m = ours(3, 4, weight_dropout=0.5, dtype=F64)
    m.weight_hh_l0 = nn.Parameter(torch.randn_like(m.weight_hh_l0))
    x = torch.randn(5, 2, 3, dtype=F64)
    m.generator = _seeded(3)
    out, _ = m(x)
    plain = theirs(3, 4, dtype=F64)
    plain.load_state_dict(m.state_dict())
    with torch.no_grad():
        plain.weight_hh_l0.copy_(DF.weight_drop(m.weight_hh_l0, 0.5, generator=_seeded(3)))
    assert torch.equal(out, plain(x)[0])  # the same fused kernel on the same values
