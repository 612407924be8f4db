"""dropout_add / bias_dropout_add: the fused fast path equals the composition and the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref

SAVES = ["bits", "seed"]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def fast():
    with DF.use_fast_dropout(True, save="bits", min_numel=1):
        yield


def _inputs(dtype=torch.float32, shape=(37, 130)):
    g = _seeded(1)
    x, r = (torch.randn(shape, generator=g, dtype=dtype).requires_grad_() for _ in range(2))
    b = torch.randn(shape[-1], generator=g, dtype=dtype).requires_grad_()
    return x, b, r


@pytest.mark.usefixtures("fast")
class TestFusedParity:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("save", SAVES)
    @pytest.mark.parametrize("with_bias", [False, True])
    def test_equals_dropout_then_add_with_the_same_mask(self, dtype, save, with_bias):
        p = 0.3
        x, b, r = _inputs(dtype)
        grad_out = torch.randn(x.shape, generator=_seeded(2), dtype=dtype)
        with DF.use_fast_dropout(True, save=save, min_numel=1):
            if with_bias:
                out = DF.bias_dropout_add(x, b, r, p, generator=_seeded(7))
            else:
                out = DF.dropout_add(x, r, p, generator=_seeded(7))
        out.backward(grad_out)
        mask = DF.fast_keep_mask(x, p, DF.draw_seed(_seeded(7))).numpy()
        xb = x.detach().numpy() + (b.detach().numpy() if with_bias else 0)
        expected = ref.dropout_forward(xb.astype(xb.dtype), mask, p) + r.detach().numpy()
        grad_x = ref.dropout_backward(grad_out.numpy(), mask, p)
        np.testing.assert_array_equal(out.detach().numpy(), expected)
        np.testing.assert_array_equal(x.grad.numpy(), grad_x)
        np.testing.assert_array_equal(r.grad.numpy(), grad_out.numpy())
        if with_bias:
            np.testing.assert_allclose(b.grad.numpy(), grad_x.sum(0), rtol=1e-5)

    def test_fused_draws_the_mask_unfused_dropout_draws(self):
        x, b, r = (t.detach() for t in _inputs())
        fused = DF.bias_dropout_add(x, b, r, 0.5, generator=_seeded(3))
        unfused = DF.dropout(x + b, 0.5, generator=_seeded(3)) + r
        assert torch.equal(fused, unfused)

    @pytest.mark.parametrize("with_bias", [False, True])
    def test_gradcheck(self, with_bias):
        x, b, r = (t.detach().double().requires_grad_() for t in _inputs(shape=(4, 5)))
        if with_bias:
            fn = lambda x, b, r: DF.bias_dropout_add(x, b, r, 0.4, generator=_seeded(5))  # noqa: E731
            args = (x, b, r)
        else:
            fn = lambda x, r: DF.dropout_add(x, r, 0.4, generator=_seeded(5))  # noqa: E731
            args = (x, r)
        assert torch.autograd.gradcheck(fn, args)

    def test_inputs_the_kernel_does_not_take_fall_back_to_the_composition(self):
        # half precision, a transposed input, a broadcast residual: same values as the composition.
        x, b, r = (t.detach() for t in _inputs())
        cases = [
            (x.half(), r.half()),
            (x.t().contiguous().t(), r),
            (x, r[0]),
        ]
        for xi, ri in cases:
            fused = DF.dropout_add(xi, ri, 0.5, generator=_seeded(3))
            assert torch.equal(fused, DF.dropout(xi, 0.5, generator=_seeded(3)) + ri)


class TestEvalAndPlain:
    @pytest.mark.parametrize("scale", ["inverted", "classic"])
    def test_eval(self, scale):
        x, b, r = (t.detach() for t in _inputs())
        factor = 1.0 if scale == "inverted" else 0.7
        expected = (x + b) * torch.tensor(factor) + r
        out = DF.bias_dropout_add(x, b, r, 0.3, training=False, scale=scale)
        assert torch.equal(out, expected)
        assert torch.equal(DF.dropout_add(x, r, 0.3, training=False), x + r)

    def test_plain_path_is_the_composition(self):
        x, b, r = (t.detach() for t in _inputs())
        with DF.use_fast_dropout(False):
            out = DF.bias_dropout_add(x, b, r, 0.5, generator=_seeded(3))
            expected = DF.dropout(x + b, 0.5, generator=_seeded(3)) + r
        assert torch.equal(out, expected)


class TestErrors:
    def test_messages(self):
        x = torch.ones(4, 3)
        with pytest.raises(TypeError, match="dropout_add: residual must be a torch.Tensor"):
            DF.dropout_add(x, 1.0, 0.5)
        with pytest.raises(ValueError, match=r"residual of shape \(5,\) does not broadcast"):
            DF.dropout_add(x, torch.ones(5), 0.5)
        with pytest.raises(ValueError, match=r"bias of shape \(4,\) does not broadcast"):
            DF.bias_dropout_add(x, torch.ones(4), x, 0.5)
        with pytest.raises(TypeError, match="bias must be a floating-point tensor"):
            DF.bias_dropout_add(x, torch.ones(3, dtype=torch.int64), x, 0.5)
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
            DF.dropout_add(x, x, 1.5)
