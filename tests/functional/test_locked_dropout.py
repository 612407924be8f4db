"""dropkit.functional.locked_dropout: the NumPy reference, statistics, packed sequences, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import Z, binomial_tol

SCALES = ["inverted", "classic"]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestReferenceParity:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("batch_first", [False, True])
    @pytest.mark.parametrize("scale", SCALES)
    def test_forward_and_backward_bitwise(self, dtype, batch_first, scale):
        p = 0.3
        x = torch.randn(9, 5, 7, dtype=dtype, generator=_seeded(1), requires_grad=True)
        out = DF.locked_dropout(x, p, batch_first=batch_first, scale=scale, generator=_seeded(2))
        # locked_dropout draws exactly the mask sample_mask draws for locked_mask_shape
        shape = DF.locked_mask_shape(x, batch_first)
        mask = DF.sample_mask(shape, p, generator=_seeded(2))
        grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
        out.backward(grad_out)
        m = mask.squeeze(1 if batch_first else 0).numpy()  # (N, H)
        np.testing.assert_array_equal(
            out.detach().numpy(),
            ref.locked_dropout_forward(
                x.detach().numpy(), m, p, batch_first=batch_first, scale=scale
            ),
        )
        np.testing.assert_array_equal(
            x.grad.numpy(),
            ref.locked_dropout_backward(
                grad_out.numpy(), m, p, batch_first=batch_first, scale=scale
            ),
        )

    @pytest.mark.parametrize("scale", SCALES)
    def test_eval(self, scale):
        x = torch.randn(4, 3, 2, dtype=torch.float64)
        out = DF.locked_dropout(x, 0.4, training=False, scale=scale)
        expected = ref.locked_dropout_forward(x.numpy(), None, 0.4, scale=scale, training=False)
        np.testing.assert_array_equal(out.numpy(), expected)
        if scale == "inverted":
            assert out is x


class TestPacked:
    @pytest.mark.parametrize("enforce_sorted", [False, True])
    def test_packed_equals_padded_for_the_same_mask(self, enforce_sorted):
        lengths = [6, 4, 3, 1] if enforce_sorted else [3, 6, 1, 4]
        x = torch.randn(6, 4, 5, generator=_seeded(1))
        mask = DF.sample_mask((4, 5), 0.5, generator=_seeded(2))  # (N, H), caller's order
        packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        out = DF.locked_dropout(packed, 0.5, mask=mask)
        padded_out = DF.locked_dropout(x, 0.5, mask=mask[None])
        unpacked, out_lengths = pad_packed_sequence(out)
        assert out_lengths.tolist() == lengths
        for i, n in enumerate(lengths):
            assert torch.equal(unpacked[:n, i], padded_out[:n, i])

    def test_packed_draws_one_mask_per_sequence(self):
        x = torch.ones(6, 4, 50)
        packed = pack_padded_sequence(x, [3, 6, 1, 4], enforce_sorted=False)
        unpacked, lengths = pad_packed_sequence(
            DF.locked_dropout(packed, 0.5, generator=_seeded(0))
        )
        for i, n in enumerate(lengths.tolist()):
            rows = unpacked[:n, i]
            assert torch.equal(rows, rows[:1].expand_as(rows))  # the same at every step
        assert not torch.equal(unpacked[0, 0], unpacked[0, 1])

    def test_packed_eval_is_identity(self):
        packed = pack_padded_sequence(torch.randn(3, 2, 4), [3, 2])
        out = DF.locked_dropout(packed, 0.5, training=False)
        assert torch.equal(out.data, packed.data)


class TestStatistics:
    @pytest.mark.parametrize("batch_first", [False, True])
    def test_mask_constant_along_time_and_fraction_dropped(self, batch_first):
        p, t, n, h = 0.3, 20, 500, 200
        x = torch.ones((n, t, h) if batch_first else (t, n, h))
        out = DF.locked_dropout(x, p, batch_first=batch_first, generator=_seeded(4))
        time_dim = 1 if batch_first else 0
        first = out.select(time_dim, 0)
        assert torch.equal(out, first.unsqueeze(time_dim).expand_as(out))
        dropped = (first == 0).double().mean().item()  # n*h independent draws
        assert abs(dropped - p) < binomial_tol(p, n * h), dropped

    def test_independent_across_batch(self):
        # Sequences 2k and 2k+1 draw independently: P(both keep a unit) = (1-p)^2.
        p, n, h = 0.5, 2000, 100
        out = DF.locked_dropout(torch.ones(3, n, h), p, generator=_seeded(5))[0] != 0  # (n, h)
        both = (out[0::2] & out[1::2]).double().mean().item()
        q = (1 - p) ** 2
        assert abs(both - q) < binomial_tol(q, n // 2 * h)

    def test_expectation_preserved(self):
        p, n = 0.4, 400_000
        x = torch.full((2, n, 1), 3.0, dtype=torch.float64)
        mean = DF.locked_dropout(x, p, generator=_seeded(6)).mean().item()
        # 3 * Bernoulli(1-p) / (1-p): std 3 * sqrt(p/(1-p)) per draw, n draws
        assert abs(mean - 3.0) < Z * 3 * math.sqrt(p / (1 - p) / n)


class TestGradients:
    def test_gradcheck(self):
        x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda t: DF.locked_dropout(t, 0.5, generator=_seeded(1)), (x,)
        )

    def test_unbatched(self):
        x = torch.ones(10, 50)
        out = DF.locked_dropout(x, 0.5, generator=_seeded(0))
        assert torch.equal(out, out[:1].expand_as(out))


class TestErrors:
    def test_wrong_rank(self):
        with pytest.raises(
            ValueError,
            match=r"locked_dropout: expected input to be 2D or 3D, but received a 4D input.*PackedSequence",
        ):
            DF.locked_dropout(torch.ones(2, 3, 4, 5), 0.5)

    def test_bad_p(self):
        with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
            DF.locked_dropout(torch.ones(2, 3, 4), 1.5)

    def test_batch_first_type_and_mask_shape(self):
        with pytest.raises(TypeError, match="batch_first must be a bool"):
            DF.locked_dropout(torch.ones(2, 3, 4), 0.5, batch_first=1)
        with pytest.raises(ValueError, match=r"mask of shape \(3, 1, 4\) does not broadcast"):
            # a batch-first mask given for a time-first (T=2, N=3) input
            DF.locked_dropout(torch.ones(2, 3, 4), 0.5, mask=torch.ones(3, 1, 4, dtype=torch.bool))
