"""dropkit.functional.embedding_dropout: the NumPy reference, word-type statistics, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import Z, binomial_tol


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestReferenceParity:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("scale", ["inverted", "classic"])
    @pytest.mark.parametrize("padding_idx", [None, 0])
    def test_forward_and_weight_gradient(self, dtype, scale, padding_idx):
        p, v, d = 0.3, 20, 6
        weight = torch.randn(v, d, dtype=dtype, generator=_seeded(1), requires_grad=True)
        idx = torch.randint(v, (7, 5), generator=_seeded(2))  # repeats: several tokens per type
        out = DF.embedding_dropout(
            idx, weight, p, padding_idx=padding_idx, scale=scale, generator=_seeded(3)
        )
        mask = DF.sample_mask((v, 1), p, generator=_seeded(3))  # the mask the op draws
        grad_out = torch.randn(out.shape, dtype=dtype, generator=_seeded(4))
        out.backward(grad_out)
        m = mask[:, 0].numpy()
        np.testing.assert_array_equal(
            out.detach().numpy(),
            ref.embedding_dropout_forward(idx.numpy(), weight.detach().numpy(), m, p, scale=scale),
        )
        # Rows hit by several tokens sum their gradients; torch may add them in another order,
        # so this is equal to rounding (a few ulps), not bit for bit.
        expected = ref.embedding_dropout_backward(
            idx.numpy(), grad_out.numpy(), m, p, v, padding_idx=padding_idx, scale=scale
        )
        eps = torch.finfo(dtype).eps
        np.testing.assert_allclose(weight.grad.numpy(), expected, rtol=16 * eps, atol=16 * eps)
        assert (weight.grad.numpy()[~m] == 0).all()

    def test_eval_is_plain_lookup(self):
        weight = torch.randn(10, 3)
        idx = torch.tensor([[1, 2], [3, 1]])
        assert torch.equal(
            DF.embedding_dropout(idx, weight, 0.5, training=False), F.embedding(idx, weight)
        )
        out = DF.embedding_dropout(idx, weight, 0.5, training=False, scale="classic")
        assert torch.equal(out, F.embedding(idx, weight * 0.5))


class TestStatistics:
    def test_whole_word_types_dropped(self):
        # Every occurrence of a word in the batch is dropped together, and only whole rows.
        v, p = 5000, 0.4
        weight = torch.ones(v, 8)
        idx = torch.arange(v).repeat(3)  # each word type three times
        out = DF.embedding_dropout(idx, weight, p, generator=_seeded(7)).view(3, v, 8)
        assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
        row_zero = (out[0] == 0).all(1)
        assert torch.equal(row_zero, (out[0] == 0).any(1))  # rows are all-zero or all-kept
        dropped = row_zero.double().mean().item()
        assert abs(dropped - p) < binomial_tol(p, v), dropped

    def test_expectation_preserved(self):
        v, p = 200_000, 0.25
        weight = torch.full((v, 1), 2.0, dtype=torch.float64)
        mean = DF.embedding_dropout(torch.arange(v), weight, p, generator=_seeded(8)).mean().item()
        assert abs(mean - 2.0) < Z * 2.0 * math.sqrt(p / (1 - p) / v)


class TestGradients:
    def test_gradcheck_weight(self):
        weight = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
        idx = torch.tensor([[0, 1, 5], [5, 2, 0]])
        assert torch.autograd.gradcheck(
            lambda w: DF.embedding_dropout(idx, w, 0.5, generator=_seeded(1)), (weight,)
        )


class TestErrors:
    def test_bad_p(self):
        with pytest.raises(ValueError, match="between 0 and 1, but got -0.2"):
            DF.embedding_dropout(torch.tensor([1]), torch.randn(3, 2), -0.2)

    def test_wrong_rank_weight(self):
        with pytest.raises(
            ValueError, match=r"embedding_dropout: expected weight to be 2D, but received a 3D"
        ):
            DF.embedding_dropout(torch.tensor([1]), torch.randn(3, 2, 2), 0.1)

    def test_float_indices(self):
        with pytest.raises(
            TypeError, match="input must be an integer tensor of indices, but got torch.float32"
        ):
            DF.embedding_dropout(torch.tensor([1.0]), torch.randn(3, 2), 0.1)
