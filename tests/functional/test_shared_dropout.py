"""dropkit.functional.shared_dropout / sample_shared_mask against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import binomial_tol

FLOATS = [torch.float32, torch.float64]
SCALES = ["inverted", "classic"]
AXES = [(), (1,), (0, 2), (-1,), (1, 2, 3)]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestReferenceParity:
    @pytest.mark.parametrize("dtype", FLOATS)
    @pytest.mark.parametrize("scale", SCALES)
    @pytest.mark.parametrize("axes", AXES)
    def test_forward_and_backward_given_the_same_mask(self, dtype, scale, axes):
        p = 0.3
        x = torch.randn(3, 4, 5, 6, dtype=dtype, generator=_seeded(1), requires_grad=True)
        mask = DF.sample_shared_mask(x.shape, p, axes, generator=_seeded(2))
        assert mask.shape == ref.shared_mask_shape(tuple(x.shape), axes)
        out = DF.apply_mask(x, mask, p, scale=scale)
        grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
        out.backward(grad_out)
        m = mask.numpy()
        expected = ref.shared_dropout_forward(x.detach().numpy(), m, p, scale=scale)
        np.testing.assert_array_equal(out.detach().numpy(), expected)
        np.testing.assert_array_equal(
            x.grad.numpy(), ref.shared_dropout_backward(grad_out.numpy(), m, p, scale=scale)
        )

    @pytest.mark.parametrize("scale", SCALES)
    @pytest.mark.parametrize("axes", AXES)
    def test_op_draws_the_mask_sample_shared_mask_draws(self, scale, axes):
        p = 0.4
        x = torch.randn(3, 4, 5, 6, generator=_seeded(1))
        out = DF.shared_dropout(x, p, shared_axes=axes, scale=scale, generator=_seeded(7))
        mask = DF.sample_shared_mask(x.shape, p, axes, generator=_seeded(7)).numpy()
        expected = ref.shared_dropout_forward(x.numpy(), mask, p, scale=scale)
        np.testing.assert_array_equal(out.numpy(), expected)

    def test_no_shared_axes_is_standard_dropout(self):
        x = torch.randn(50, 60)
        out = DF.shared_dropout(x, 0.3, shared_axes=(), generator=_seeded(4))
        assert torch.equal(out, DF.dropout(x, 0.3, generator=_seeded(4)))

    @pytest.mark.parametrize("scale", SCALES)
    def test_eval(self, scale):
        x = torch.randn(4, 5, dtype=torch.float64)
        out = DF.shared_dropout(x, 0.3, training=False, shared_axes=1, scale=scale)
        expected = ref.shared_dropout_forward(x.numpy(), None, 0.3, scale=scale, training=False)
        np.testing.assert_array_equal(out.numpy(), expected)
        assert DF.shared_dropout(x, 0.3, training=False, shared_axes=1) is x


class TestStructureAndStatistics:
    @pytest.mark.parametrize("axes", [(1,), (0, 2)])
    def test_one_decision_along_the_shared_axes(self, axes):
        x = torch.ones(20, 30, 40)
        kept = DF.shared_dropout(x, 0.5, shared_axes=axes, generator=_seeded(0)) != 0
        for a in axes:
            assert torch.equal(kept, kept.narrow(a, 0, 1).expand_as(kept))

    @pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
    def test_fraction_of_dropped_draws(self, p):
        # (N, T, D) = (400, 50, 500) with T shared: 200,000 independent Bernoulli(p) draws.
        x = torch.ones(400, 50, 500)
        out = DF.shared_dropout(x, p, shared_axes=1, generator=_seeded(11))
        draws = out[:, 0, :] == 0
        n = draws.numel()
        assert abs(draws.double().mean().item() - p) < binomial_tol(p, n)

    def test_expectation_preserved(self):
        # Each draw contributes s * Bernoulli(1-p) with s = 1/(1-p): mean 1, std sqrt(p/(1-p)).
        p, x = 0.3, torch.ones(2000, 7, 100, dtype=torch.float64)
        out = DF.shared_dropout(x, p, shared_axes=1, generator=_seeded(5))[:, 0]
        n = out.numel()
        assert abs(out.mean().item() - 1) < 5 * (p / (1 - p)) ** 0.5 / n**0.5


class TestGradients:
    def test_gradcheck(self):
        x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
        f = lambda t: DF.shared_dropout(t, 0.5, shared_axes=(0, 2), generator=_seeded(5))  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,))


class TestErrors:
    def test_axis_out_of_range(self):
        with pytest.raises(
            ValueError, match=r"shared_dropout: shared_axes entry 3 is out of range"
        ):
            DF.shared_dropout(torch.ones(2, 3, 4), 0.5, shared_axes=(3,))

    def test_repeated_axes(self):
        with pytest.raises(ValueError, match="repeated dimensions"):
            DF.shared_dropout(torch.ones(2, 3, 4), 0.5, shared_axes=(1, -2))

    def test_axis_type(self):
        with pytest.raises(TypeError, match="shared_axes must hold ints"):
            DF.shared_dropout(torch.ones(2, 3), 0.5, shared_axes=(1.0,))
        with pytest.raises(TypeError, match="int or a sequence of ints"):
            DF.shared_dropout(torch.ones(2, 3), 0.5, shared_axes=None)

    def test_bad_p_and_dtype(self):
        with pytest.raises(ValueError, match="between 0 and 1"):
            DF.shared_dropout(torch.ones(2, 3), 1.5, shared_axes=1)
        with pytest.raises(TypeError, match="floating-point tensor"):
            DF.shared_dropout(torch.ones(2, 3, dtype=torch.long), 0.5, shared_axes=1)
