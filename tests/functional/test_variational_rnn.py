"""dropkit.functional.variational_rnn against the unrolled NumPy reference and torch.nn.LSTM/GRU.

Tolerance: the torch loop batches all steps' input projections and all gates into single matrix
products, the reference does one gate and one step at a time, so their sums run in different orders
and bit-for-bit equality is not expected. In float64 each product here sums at most 12 terms and the
recurrence runs at most 7 steps, so the rounding difference is a few ulps (~1e-15); we allow
rtol = atol = 1e-12, a thousand times that, and far below any real error (a wrong mask changes values
by O(0.1)).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import binomial_tol

TOL = dict(rtol=1e-12, atol=1e-12)
F64 = torch.float64
P = dict(input_dropout=0.2, dropout=0.3, recurrent_dropout=0.4, output_dropout=0.25)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rnn(mode, num_layers=2, bidirectional=False, batch_first=False, bias=True, i=4, h=5):
    torch.manual_seed(0)
    cls = nn.LSTM if mode == "LSTM" else nn.GRU
    return cls(
        i, h, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, dtype=F64
    )


def _weights(rnn):
    return [w for ws in rnn.all_weights for w in ws]


def _np(masks):
    conv = lambda m: None if m is None else m.numpy()  # noqa: E731
    return dict(
        input_masks=[conv(m) for m in masks.input],
        recurrent_masks=[conv(m) for m in masks.recurrent],
        output_mask=conv(masks.output),
    )


def _hx(mode, rnn, n, seed=3):
    g = _seeded(seed)
    shape = (rnn.num_layers * (2 if rnn.bidirectional else 1), n, rnn.hidden_size)
    h0 = torch.randn(shape, dtype=F64, generator=g)
    c0 = torch.randn(shape, dtype=F64, generator=g)
    return (h0, c0) if mode == "LSTM" else h0


def _to_np(hx):
    return tuple(t.numpy() for t in hx) if isinstance(hx, tuple) else hx.numpy()


def _masks(mode, rnn, n, per_gate, seed=7, **ps):
    return DF.sample_rnn_masks(
        mode,
        n,
        rnn.input_size,
        rnn.hidden_size,
        rnn.num_layers,
        rnn.bidirectional,
        per_gate=per_gate,
        generator=_seeded(seed),
        **(ps or P),
    )


def _run(mode, rnn, x, hx, masks, **ps):
    return DF.variational_rnn(
        x,
        hx,
        _weights(rnn),
        mode=mode,
        num_layers=rnn.num_layers,
        bidirectional=rnn.bidirectional,
        batch_first=rnn.batch_first,
        masks=masks,
        **(ps or P),
    )


def _assert_close(ours, theirs):
    out, hid = ours
    r_out, r_hid = theirs
    np.testing.assert_allclose(out.detach().numpy(), r_out, **TOL)
    if isinstance(hid, tuple):
        for a, b in zip(hid, r_hid, strict=True):
            np.testing.assert_allclose(a.detach().numpy(), b, **TOL)
    else:
        np.testing.assert_allclose(hid.detach().numpy(), r_hid, **TOL)


class TestReferenceParity:
    """Given the same masks, the torch loop and the step-by-step NumPy reference agree (float64)."""

    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    @pytest.mark.parametrize("per_gate", [False, True])
    @pytest.mark.parametrize("bidirectional", [False, True])
    @pytest.mark.parametrize("batch_first", [False, True])
    def test_forward(self, mode, per_gate, bidirectional, batch_first):
        rnn = _rnn(mode, 2, bidirectional, batch_first)
        t, n = 7, 3
        x = torch.randn((n, t, 4) if batch_first else (t, n, 4), dtype=F64, generator=_seeded(1))
        hx = _hx(mode, rnn, n)
        masks = _masks(mode, rnn, n, per_gate)
        ours = _run(mode, rnn, x, hx, masks)
        theirs = ref.variational_rnn_forward(
            x.numpy(),
            _to_np(hx),
            [w.detach().numpy() for w in _weights(rnn)],
            mode=mode,
            num_layers=2,
            bidirectional=bidirectional,
            batch_first=batch_first,
            **_np(masks),
            **P,
        )
        _assert_close(ours, theirs)

    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    def test_recurrent_dropout_only_no_bias(self, mode):
        # Only h_{t-1} is dropped: isolates the recurrent-state mask in the unrolled reference.
        rnn = _rnn(mode, 1, bias=False)
        x = torch.randn(6, 4, 4, dtype=F64, generator=_seeded(2))
        ps = dict(recurrent_dropout=0.5)
        masks = _masks(mode, rnn, 4, True, **ps)
        assert masks.input == [None] and masks.output is None
        ours = _run(mode, rnn, x, None, masks, **ps)
        theirs = ref.variational_rnn_forward(
            x.numpy(),
            None,
            [w.detach().numpy() for w in _weights(rnn)],
            mode=mode,
            **_np(masks),
            **ps,
        )
        _assert_close(ours, theirs)
        # and the mask matters: without it the result differs by far more than the tolerance
        plain = ref.variational_rnn_forward(
            x.numpy(), None, [w.detach().numpy() for w in _weights(rnn)], mode=mode
        )
        assert np.abs(ours[0].detach().numpy() - plain[0]).max() > 1e-2


class TestAgainstTorch:
    """With no dropout (every p = 0), the loop is the deterministic network: nn.LSTM / nn.GRU."""

    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    @pytest.mark.parametrize("bidirectional", [False, True])
    @pytest.mark.parametrize("batch_first", [False, True])
    def test_padded(self, mode, bidirectional, batch_first):
        rnn = _rnn(mode, 2, bidirectional, batch_first)
        x = torch.randn((3, 6, 4) if batch_first else (6, 3, 4), dtype=F64, generator=_seeded(1))
        hx = _hx(mode, rnn, 3)
        ours = _run(mode, rnn, x, hx, None, input_dropout=0.0)
        theirs = rnn(x, hx)
        _assert_close(ours, (theirs[0].detach().numpy(), _detach(theirs[1])))

    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    @pytest.mark.parametrize("bidirectional", [False, True])
    def test_packed(self, mode, bidirectional):
        rnn = _rnn(mode, 2, bidirectional)
        x = torch.randn(6, 4, 4, dtype=F64, generator=_seeded(1))
        packed = pack_padded_sequence(x, [3, 6, 1, 4], enforce_sorted=False)
        hx = _hx(mode, rnn, 4)
        ours = _run(mode, rnn, packed, hx, None, input_dropout=0.0)
        theirs = rnn(packed, hx)
        np.testing.assert_array_equal(ours[0].batch_sizes.numpy(), theirs[0].batch_sizes.numpy())
        _assert_close(
            (ours[0].data, ours[1]), (theirs[0].data.detach().numpy(), _detach(theirs[1]))
        )

    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    def test_unbatched(self, mode):
        rnn = _rnn(mode, 1)
        x = torch.randn(5, 4, dtype=F64, generator=_seeded(1))
        hx = _hx(mode, rnn, 1)
        hx = tuple(h[:, 0] for h in hx) if mode == "LSTM" else hx[:, 0]
        ours = _run(mode, rnn, x, hx, None, input_dropout=0.0)
        theirs = rnn(x, hx)
        assert ours[0].shape == theirs[0].shape == (5, 5)
        _assert_close(ours, (theirs[0].detach().numpy(), _detach(theirs[1])))


def _detach(hid):
    if isinstance(hid, tuple):
        return tuple(h.detach().numpy() for h in hid)
    return hid.detach().numpy()


class TestPacked:
    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    @pytest.mark.parametrize("bidirectional", [False, True])
    def test_packed_equals_each_sequence_alone(self, mode, bidirectional):
        # With dropout on, a packed batch gives each sequence what it gets run alone with its own
        # masks (the masks are in the caller's batch order, whatever the packing order).
        rnn = _rnn(mode, 2, bidirectional)
        lengths = [3, 6, 1, 4]
        x = torch.randn(6, 4, 4, dtype=F64, generator=_seeded(1))
        hx = _hx(mode, rnn, 4)
        masks = _masks(mode, rnn, 4, per_gate=True)
        out, hid = _run(
            mode, rnn, pack_padded_sequence(x, lengths, enforce_sorted=False), hx, masks
        )
        padded, _ = pad_packed_sequence(out)
        for i, length in enumerate(lengths):
            one = DF.RNNMasks(
                [m[:, i : i + 1] for m in masks.input],
                [m[:, i : i + 1] for m in masks.recurrent],
                masks.output[i : i + 1],
            )
            hx_i = tuple(h[:, i : i + 1] for h in hx) if mode == "LSTM" else hx[:, i : i + 1]
            out_i, hid_i = _run(mode, rnn, x[:length, i : i + 1], hx_i, one)
            torch.testing.assert_close(padded[:length, i : i + 1], out_i, **TOL)
            if mode == "LSTM":
                torch.testing.assert_close(hid[0][:, i : i + 1], hid_i[0], **TOL)
                torch.testing.assert_close(hid[1][:, i : i + 1], hid_i[1], **TOL)
            else:
                torch.testing.assert_close(hid[:, i : i + 1], hid_i, **TOL)


class TestGradients:
    @pytest.mark.parametrize("mode", ["LSTM", "GRU"])
    @pytest.mark.parametrize("per_gate", [False, True])
    def test_gradcheck(self, mode, per_gate):
        rnn = _rnn(mode, 2, bidirectional=True, i=2, h=2)
        masks = _masks(mode, rnn, 2, per_gate)
        x = torch.randn(3, 2, 2, dtype=F64, generator=_seeded(1), requires_grad=True)
        hx = _hx(mode, rnn, 2)
        h0 = (hx[0] if mode == "LSTM" else hx).requires_grad_()
        c0 = hx[1].requires_grad_() if mode == "LSTM" else None
        weights = [w.detach().clone().requires_grad_() for w in _weights(rnn)]
        n_w = len(weights)

        def f(x, h0, *rest):
            ws, c = (list(rest[:n_w]), rest[n_w]) if mode == "LSTM" else (list(rest), None)
            out, hid = DF.variational_rnn(
                x,
                (h0, c) if mode == "LSTM" else h0,
                ws,
                mode=mode,
                num_layers=2,
                bidirectional=True,
                masks=masks,
                **P,
            )
            return (out, *hid) if mode == "LSTM" else (out, hid)

        inputs = (x, h0, *weights, *([c0] if mode == "LSTM" else []))
        assert torch.autograd.gradcheck(f, inputs)


class TestMasks:
    n = 200_000

    @pytest.mark.parametrize("p", [0.1, 0.5])
    def test_fraction_dropped_and_independent_gates(self, p):
        masks = DF.sample_rnn_masks(
            "LSTM", self.n, 1, 1, recurrent_dropout=p, per_gate=True, generator=_seeded(5)
        )
        m = masks.recurrent[0][:, :, 0]  # (4 gates, N)
        for gate in m:
            dropped = (~gate).double().mean().item()
            assert abs(dropped - p) < binomial_tol(p, self.n), (dropped, p)
        # two gates' masks independent: P(both kept) = (1-p)^2
        q = (1 - p) ** 2
        both = (m[0] & m[1]).double().mean().item()
        assert abs(both - q) < binomial_tol(q, self.n)

    def test_masks_are_constant_along_time(self):
        # Read the mask the loop used off the gradient: with input dropout only and h_0 = 0, the
        # gradient of the sum of step-t gates w.r.t. x_t is zero exactly where the input mask drops,
        # and that set is the same at every t.
        rnn = _rnn("GRU", 1, i=50)
        x = torch.randn(5, 8, 50, dtype=F64, generator=_seeded(1), requires_grad=True)
        masks = _masks("GRU", rnn, 8, False, input_dropout=0.5)
        out, _ = _run("GRU", rnn, x, None, masks, input_dropout=0.5)
        out.sum().backward()
        zero = x.grad == 0  # (T, N, I)
        assert torch.equal(zero, (~masks.input[0][0]).expand_as(zero))


class TestErrors:
    def _call(self, x, hx=None, **kw):
        rnn = _rnn("LSTM", 1)
        return DF.variational_rnn(x, hx, _weights(rnn), **kw)

    def test_wrong_rank(self):
        with pytest.raises(
            ValueError, match=r"variational_lstm: expected input to be 2D or 3D, but received a 4D"
        ):
            self._call(torch.randn(2, 3, 4, 4, dtype=F64))

    def test_bad_p(self):
        with pytest.raises(
            ValueError, match=r"recurrent_dropout: dropout probability has to be in \[0, 1\)"
        ):
            self._call(torch.randn(2, 3, 4, dtype=F64), recurrent_dropout=1.0)
        with pytest.raises(ValueError, match="input_dropout: .*but got -0.1"):
            self._call(torch.randn(2, 3, 4, dtype=F64), input_dropout=-0.1)

    def test_batch_first_mismatch_is_named(self):
        # (N=3, T=6) data passed without batch_first: h_0 has batch 3 = the input's "time" size.
        x = torch.randn(3, 6, 4, dtype=F64)
        hx = (torch.zeros(1, 3, 5, dtype=F64), torch.zeros(1, 3, 5, dtype=F64))
        with pytest.raises(
            ValueError, match=r"expected h_0 of shape \(1, 6, 5\).*batch_first=True\?"
        ):
            self._call(x, hx)

    def test_masks_of_the_wrong_batch_size(self):
        x = torch.randn(6, 3, 4, dtype=F64)
        masks = DF.sample_rnn_masks("LSTM", 6, 4, 5, recurrent_dropout=0.5)
        with pytest.raises(
            ValueError, match=r"masks.recurrent\[0\] must be a bool tensor of shape \(1, 3, 5\)"
        ):
            self._call(x, masks=masks, recurrent_dropout=0.5)

    def test_input_size_and_mode(self):
        with pytest.raises(ValueError, match=r"input.size\(-1\) == input_size \(4\), got 3"):
            self._call(torch.randn(2, 3, 3, dtype=F64))
        with pytest.raises(ValueError, match="mode must be one of"):
            self._call(torch.randn(2, 3, 4, dtype=F64), mode="RNN")
