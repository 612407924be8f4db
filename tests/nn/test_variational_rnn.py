"""dropkit.nn.VariationalLSTM / VariationalGRU as drop-ins for torch.nn.LSTM / torch.nn.GRU."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit.nn._base import _Stochastic

F64 = torch.float64
PAIRS = [(dnn.VariationalLSTM, nn.LSTM, "LSTM"), (dnn.VariationalGRU, nn.GRU, "GRU")]
P = dict(input_dropout=0.2, recurrent_dropout=0.3, output_dropout=0.25)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(ours, theirs, **kw):
    cfg = dict(input_size=4, hidden_size=5, num_layers=2, dtype=F64) | kw
    plain = theirs(**cfg)
    var = ours(**cfg, **P)
    var.load_state_dict(plain.state_dict())  # a torch checkpoint loads as it is
    return var, plain


def _flat(hid):
    return hid if isinstance(hid, tuple) else (hid,)


@pytest.mark.parametrize(("ours", "theirs", "mode"), PAIRS)
class TestDropIn:
    def test_keys_and_marker(self, ours, theirs, mode):
        var, plain = _pair(ours, theirs)
        assert list(var.state_dict()) == list(plain.state_dict())
        assert isinstance(var, theirs) and isinstance(var, _Stochastic)

    @pytest.mark.parametrize("bidirectional", [False, True])
    @pytest.mark.parametrize("batch_first", [False, True])
    def test_eval_is_torch_exactly_and_shapes_match_in_training(
        self, ours, theirs, mode, bidirectional, batch_first
    ):
        var, plain = _pair(ours, theirs, bidirectional=bidirectional, batch_first=batch_first)
        x = torch.randn(3, 7, 4, dtype=F64)
        var.eval(), plain.eval()
        out, hid = var(x)
        p_out, p_hid = plain(x)
        assert torch.equal(out, p_out)
        for a, b in zip(_flat(hid), _flat(p_hid), strict=True):
            assert torch.equal(a, b)
        var.train()
        out, hid = var(x)
        assert out.shape == p_out.shape
        assert [h.shape for h in _flat(hid)] == [h.shape for h in _flat(p_hid)]

    def test_unbatched_and_packed_shapes(self, ours, theirs, mode):
        var, plain = _pair(ours, theirs)
        x = torch.randn(7, 4, dtype=F64)
        assert var(x)[0].shape == plain(x)[0].shape == (7, 5)
        packed = pack_padded_sequence(
            torch.randn(7, 3, 4, dtype=F64), [7, 2, 5], enforce_sorted=False
        )
        out, hid = var(packed)
        p_out, p_hid = plain(packed)
        assert (
            torch.equal(out.batch_sizes, p_out.batch_sizes) and out.data.shape == p_out.data.shape
        )
        assert [h.shape for h in _flat(hid)] == [h.shape for h in _flat(p_hid)]

    def test_training_with_every_p_zero_is_torch_fused(self, ours, theirs, mode):
        var, plain = _pair(ours, theirs)
        var.input_dropout = var.recurrent_dropout = var.output_dropout = 0.0
        x = torch.randn(6, 3, 4, dtype=F64)
        assert torch.equal(var(x)[0], plain(x)[0])

    def test_forward_is_the_functional_op_with_given_masks(self, ours, theirs, mode):
        var, _ = _pair(ours, theirs, bidirectional=True)
        x = torch.randn(6, 3, 4, dtype=F64)
        masks = var.sample_masks(3, generator=_seeded(1))
        out, _ = var(x, masks=masks)
        expected, _ = DF.variational_rnn(
            x,
            None,
            [w for ws in var.all_weights for w in ws],
            mode=mode,
            num_layers=2,
            bidirectional=True,
            masks=masks,
            **P,
        )
        assert torch.equal(out, expected)

    def test_generator_reproduces_and_masks_change_between_calls(self, ours, theirs, mode):
        var, _ = _pair(ours, theirs)
        x = torch.randn(6, 3, 4, dtype=F64)
        var.generator = _seeded(4)
        a, b = var(x)[0], var(x)[0]
        assert not torch.equal(a, b)
        var.generator = _seeded(4)
        assert torch.equal(var(x)[0], a)

    def test_deepcopy_to_and_train_step(self, ours, theirs, mode):
        var, _ = _pair(ours, theirs)
        var32 = copy.deepcopy(var).to(torch.float32)
        assert var32.recurrent_dropout == 0.3 and var32.weight_hh_l0.dtype == torch.float32
        out, _ = var32(torch.randn(6, 3, 4))
        out.sum().backward()
        assert all(p.grad is not None for p in var32.parameters())


class TestErrors:
    def test_bad_p(self):
        with pytest.raises(
            ValueError,
            match=r"VariationalLSTM: recurrent_dropout: dropout probability has to be in \[0, 1\)",
        ):
            dnn.VariationalLSTM(3, 4, recurrent_dropout=1.0)
        m = dnn.VariationalGRU(3, 4)
        with pytest.raises(ValueError, match="output_dropout: .*but got 2"):
            m.output_dropout = 2

    def test_proj_size_refused(self):
        with pytest.raises(ValueError, match="proj_size > 0 is not supported"):
            dnn.VariationalLSTM(3, 4, proj_size=2)

    def test_wrong_rank(self):
        m = dnn.VariationalGRU(3, 4, recurrent_dropout=0.5)
        with pytest.raises(ValueError, match="expected input to be 2D or 3D, but received a 4D"):
            m(torch.randn(2, 2, 2, 3))

    def test_batch_first_mismatch(self):
        m = dnn.VariationalLSTM(3, 4, recurrent_dropout=0.5)  # batch_first=False
        x = torch.randn(2, 9, 3)  # actually (N=2, T=9, I=3)
        hx = (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
        with pytest.raises(ValueError, match=r"is the input \(N, T, H\), i.e. batch_first=True\?"):
            m(x, hx)

    def test_repr(self):
        m = dnn.VariationalLSTM(3, 4, 2, recurrent_dropout=0.25, per_gate=True)
        assert (
            repr(m) == "VariationalLSTM(3, 4, num_layers=2, recurrent_dropout=0.25, per_gate=True)"
        )
