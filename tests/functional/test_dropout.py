"""dropkit.functional.dropout / sample_mask / apply_mask against the NumPy reference and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import Z, binomial_tol

FLOATS = [torch.float32, torch.float64]
SCALES = ["inverted", "classic"]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestReferenceParity:
    """Given the same mask, torch and the NumPy reference agree bit for bit."""

    @pytest.mark.parametrize("dtype", FLOATS)
    @pytest.mark.parametrize("scale", SCALES)
    @pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1 / 3])
    def test_apply_mask_forward_and_backward(self, dtype, scale, p):
        x = torch.randn(17, 33, dtype=dtype, generator=_seeded(1), requires_grad=True)
        mask = DF.sample_mask(x.shape, p, generator=_seeded(2))
        out = DF.apply_mask(x, mask, p, scale=scale)
        grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
        out.backward(grad_out)

        m = mask.numpy()
        expected = ref.dropout_forward(x.detach().numpy(), m, p, scale=scale)
        expected_grad = ref.dropout_backward(grad_out.numpy(), m, p, scale=scale)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.detach().numpy(), expected)
        np.testing.assert_array_equal(x.grad.numpy(), expected_grad)

    @pytest.mark.parametrize("dtype", FLOATS)
    @pytest.mark.parametrize("scale", SCALES)
    def test_dropout_uses_the_mask_sample_mask_draws(self, dtype, scale):
        # The plain path of dropout() on a contiguous input draws exactly the mask sample_mask draws
        # from the same seed (the fast path draws its own: see test_fast_dropout.py).
        p = 0.3
        x = torch.randn(64, 65, dtype=dtype, generator=_seeded(1))
        with DF.use_fast_dropout(False):
            out = DF.dropout(x, p, scale=scale, generator=_seeded(7))
        mask = DF.sample_mask(x.shape, p, generator=_seeded(7)).numpy()
        expected = ref.dropout_forward(x.numpy(), mask, p, scale=scale)
        np.testing.assert_array_equal(out.numpy(), expected)

    @pytest.mark.parametrize("scale", SCALES)
    def test_eval(self, scale):
        x = torch.randn(5, 6, dtype=torch.float64)
        out = DF.dropout(x, 0.3, training=False, scale=scale)
        expected = ref.dropout_forward(x.numpy(), None, 0.3, scale=scale, training=False)
        np.testing.assert_array_equal(out.numpy(), expected)

    def test_float16_matches_reference(self):
        p = 0.3
        x = torch.randn(1000, generator=_seeded(1)).half()
        mask = DF.sample_mask(x.shape, p, generator=_seeded(2))
        out = DF.apply_mask(x, mask, p)
        np.testing.assert_array_equal(out.numpy(), ref.dropout_forward(x.numpy(), mask.numpy(), p))


class TestGradients:
    @pytest.mark.parametrize("scale", SCALES)
    def test_gradcheck_apply_mask(self, scale):
        x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
        mask = DF.sample_mask(x.shape, 0.4, generator=_seeded(0))
        assert torch.autograd.gradcheck(lambda t: DF.apply_mask(t, mask, 0.4, scale=scale), (x,))
        assert torch.autograd.gradgradcheck(lambda t: DF.apply_mask(t, mask, 0.4), (x,))

    def test_gradcheck_dropout_with_fixed_generator(self):
        # gradcheck calls the function many times: a freshly seeded generator fixes the mask.
        x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: DF.dropout(t, 0.5, generator=_seeded(5)), (x,))

    def test_gradient_is_zero_where_dropped(self):
        x = torch.randn(1000, requires_grad=True)
        out = DF.dropout(x, 0.5, generator=_seeded(0))
        out.sum().backward()
        dropped = out.detach() == 0
        assert torch.all(x.grad[dropped] == 0)
        assert torch.all(x.grad[~dropped] == 2.0)

    def test_no_grad(self):
        x = torch.randn(10, requires_grad=True)
        with torch.no_grad():
            out = DF.dropout(x, 0.5)
        assert not out.requires_grad
        assert DF.dropout(x, 0.5).requires_grad


class TestStatistics:
    n = 1_000_000

    @pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
    def test_fraction_dropped(self, p):
        out = DF.dropout(torch.ones(self.n), p, generator=_seeded(11))
        dropped = (out == 0).double().mean().item()
        assert abs(dropped - p) < binomial_tol(p, self.n), (dropped, p)

    @pytest.mark.parametrize("p", [0.2, 0.5])
    @pytest.mark.parametrize("scale", SCALES)
    def test_expectation_equals_eval_output(self, p, scale):
        # E[train output] = eval output for both conventions. For an input of ones the train output
        # is s * Bernoulli(1-p) with s = 1/(1-p) or 1: its std is s * sqrt(p(1-p)).
        x = torch.ones(self.n, dtype=torch.float64)
        train_mean = DF.dropout(x, p, scale=scale, generator=_seeded(3)).mean().item()
        eval_mean = DF.dropout(x, p, training=False, scale=scale).mean().item()
        s = 1 / (1 - p) if scale == "inverted" else 1.0
        tol = Z * s * math.sqrt(p * (1 - p) / self.n)
        assert abs(train_mean - eval_mean) < tol, (train_mean, eval_mean, tol)

    def test_inverted_and_classic_expected_outputs_agree(self):
        # The two conventions differ by the constant 1-p in training and in eval alike, so the
        # classic network's expected output is (1-p) times the inverted one's: same predictions.
        p = 0.4
        x = torch.randn(8, dtype=torch.float64)
        inv = DF.dropout(x, p, generator=_seeded(1))
        cls = DF.dropout(x, p, scale="classic", generator=_seeded(1))
        torch.testing.assert_close(cls, inv * (1 - p), rtol=1e-15, atol=0)
        torch.testing.assert_close(
            DF.dropout(x, p, training=False, scale="classic"),
            DF.dropout(x, p, training=False) * (1 - p),
            rtol=1e-15,
            atol=0,
        )

    def test_calls_are_independent(self):
        # Two calls: P(kept in both) = (1-p)^2 if the masks are independent.
        p, n = 0.5, self.n
        gen = _seeded(4)
        a = DF.dropout(torch.ones(n), p, generator=gen) != 0
        b = DF.dropout(torch.ones(n), p, generator=gen) != 0
        both = (a & b).double().mean().item()
        q = (1 - p) ** 2
        assert abs(both - q) < binomial_tol(q, n)

    def test_same_distribution_as_torch(self):
        # Two-proportion test between dropkit and torch.nn.functional.dropout (independent seeds).
        p, n = 0.3, self.n
        torch.manual_seed(100)
        ours = (DF.dropout(torch.ones(n), p) == 0).double().mean().item()
        torch.manual_seed(200)
        theirs = (F.dropout(torch.ones(n), p) == 0).double().mean().item()
        assert abs(ours - theirs) < Z * math.sqrt(2 * p * (1 - p) / n)
        torch.manual_seed(0)
        values = set(DF.dropout(torch.ones(1000), p).unique().tolist())
        torch.manual_seed(0)
        assert values == set(F.dropout(torch.ones(1000), p).unique().tolist())

    @pytest.mark.parametrize("dtype", FLOATS)
    @pytest.mark.parametrize("p", [0.1, 0.5])
    def test_bit_identical_to_torch_under_the_same_seed(self, dtype, p):
        # On CPU the plain path draws its mask exactly as torch does: a true drop-in. The fast path
        # (on by default for large tensors) draws different, equally reproducible masks.
        x = torch.randn(4096, dtype=dtype)
        torch.manual_seed(9)
        theirs = F.dropout(x, p)
        torch.manual_seed(9)
        with DF.use_fast_dropout(False):
            ours = DF.dropout(x, p)
        assert torch.equal((ours == 0), (theirs == 0))
        torch.testing.assert_close(ours, theirs, rtol=2 * torch.finfo(dtype).eps, atol=0)


class TestSeeds:
    def test_same_seed_same_mask(self):
        x = torch.randn(1000)
        assert torch.equal(DF.dropout(x, generator=_seeded(5)), DF.dropout(x, generator=_seeded(5)))

    def test_different_seed_different_mask(self):
        x = torch.ones(1000)
        assert not torch.equal(
            DF.dropout(x, generator=_seeded(5)), DF.dropout(x, generator=_seeded(6))
        )

    def test_global_seed_reproduces(self):
        x = torch.ones(1000)
        torch.manual_seed(3)
        a = DF.dropout(x)
        torch.manual_seed(3)
        assert torch.equal(a, DF.dropout(x))


class TestSpecialP:
    def test_p_zero_is_the_identity_but_a_new_tensor(self):
        x = torch.randn(10)
        out = DF.dropout(x, 0.0)
        assert torch.equal(out, x) and out is not x

    def test_p_one_gives_zeros_never_nan(self):
        x = torch.randn(100, requires_grad=True)
        out = DF.dropout(x, 1.0)
        assert torch.equal(out, torch.zeros(100)) and not out.isnan().any()
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros(100))

    def test_tiny_p_keeps_and_scales(self):
        x = torch.randn(10_000, dtype=torch.float64)
        out = DF.dropout(x, 1e-10, generator=_seeded(0))
        torch.testing.assert_close(out, x * (1 / (1 - 1e-10)), rtol=0, atol=0)

    def test_p_half(self):
        x = torch.ones(10)
        assert set(DF.dropout(x, 0.5).unique().tolist()) <= {0.0, 2.0}

    def test_nan_input_stays_nan_where_dropped(self):
        # Documented: dropout multiplies, like torch.nn.Dropout, so NaN * 0 = NaN.
        x = torch.full((100,), math.nan)
        assert DF.dropout(x, 0.5).isnan().all()
        assert DF.dropout(x, 1.0).isnan().all()


class TestShapesAndLayouts:
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, *FLOATS])
    def test_dtype_shape_device_kept(self, dtype):
        x = torch.randn(3, 4, 5).to(dtype)
        out = DF.dropout(x, 0.5)
        assert (out.dtype, out.shape, out.device) == (dtype, x.shape, x.device)
        assert set(out.float().unique().tolist()) <= {0.0} | set((x.float() * 2).unique().tolist())

    def test_empty(self):
        x = torch.empty(0, 3)
        out = DF.dropout(x, 0.5)
        assert out.shape == (0, 3)

    def test_zero_dim(self):
        x = torch.tensor(3.0)
        outs = {DF.dropout(x, 0.5, generator=_seeded(s)).item() for s in range(20)}
        assert outs == {0.0, 6.0}

    def test_non_contiguous(self):
        x = torch.randn(8, 16).t()
        mask = DF.sample_mask(x.shape, 0.5, generator=_seeded(1))
        out = DF.apply_mask(x, mask, 0.5)
        np.testing.assert_array_equal(
            out.numpy(), ref.dropout_forward(x.numpy(), mask.numpy(), 0.5)
        )
        assert DF.dropout(x, 0.5).shape == x.shape

    def test_channels_last_kept_and_exact(self):
        x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
        out = DF.dropout(x, 0.5, generator=_seeded(1))
        assert out.is_contiguous(memory_format=torch.channels_last)
        kept = out != 0
        np.testing.assert_array_equal(
            out.numpy(), ref.dropout_forward(x.numpy(), kept.numpy(), 0.5)
        )


class TestEvalAndInplace:
    def test_eval_returns_the_input_itself(self):
        x = torch.randn(10)
        assert DF.dropout(x, 0.5, training=False) is x

    def test_inplace_returns_the_input_with_the_same_values(self):
        x = torch.randn(100)
        expected = DF.dropout(x, 0.5, generator=_seeded(3))
        y = x.clone()
        out = DF.dropout(y, 0.5, inplace=True, generator=_seeded(3))
        assert out is y and torch.equal(y, expected)

    def test_classic_eval_inplace(self):
        x = torch.ones(4)
        out = DF.dropout(x, 0.25, training=False, inplace=True, scale="classic")
        assert out is x and torch.equal(x, torch.full((4,), 0.75))


class TestErrors:
    @pytest.mark.parametrize("p", [-0.1, 1.5])
    def test_p_range_has_torchs_message(self, p):
        with pytest.raises(ValueError) as ours:
            DF.dropout(torch.ones(3), p)
        with pytest.raises(ValueError) as theirs:
            F.dropout(torch.ones(3), p)
        assert str(ours.value) == str(theirs.value)

    @pytest.mark.parametrize("p", [math.nan, math.inf])
    def test_non_finite_p(self, p):
        with pytest.raises(ValueError, match="finite"):
            DF.dropout(torch.ones(3), p)

    def test_p_type(self):
        with pytest.raises(TypeError, match=r"p must be a real number, but got str \('0.5'\)"):
            DF.dropout(torch.ones(3), "0.5")

    @pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
    def test_integer_and_bool_inputs(self, dtype):
        with pytest.raises(TypeError, match=f"floating-point tensor, but got dtype {dtype}"):
            DF.dropout(torch.ones(3, dtype=dtype), 0.5)

    def test_not_a_tensor(self):
        with pytest.raises(TypeError, match="must be a torch.Tensor, but got list"):
            DF.dropout([1.0, 2.0], 0.5)

    def test_scale(self):
        with pytest.raises(ValueError, match="scale must be one of"):
            DF.dropout(torch.ones(3), 0.5, scale="inverse")

    def test_generator_type(self):
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            DF.dropout(torch.ones(3), 0.5, generator=0)

    def test_mask_checks(self):
        x = torch.ones(4, 3)
        with pytest.raises(TypeError, match="mask must be a bool tensor"):
            DF.apply_mask(x, torch.ones(4, 3), 0.5)
        with pytest.raises(ValueError, match=r"mask of shape \(4, 2\) does not broadcast"):
            DF.apply_mask(x, torch.ones(4, 2, dtype=torch.bool), 0.5)
        with pytest.raises(ValueError, match="does not broadcast"):
            DF.apply_mask(x, torch.ones(2, 4, 3, dtype=torch.bool), 0.5)

    def test_sample_mask_checks(self):
        with pytest.raises(ValueError, match="negative"):
            DF.sample_mask((2, -1), 0.5)
        with pytest.raises(TypeError, match="sequence of ints"):
            DF.sample_mask("ab", 0.5)
        with pytest.raises(ValueError, match="dropout probability"):
            DF.sample_mask((2,), 2.0)
