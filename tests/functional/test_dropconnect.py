"""DropConnect ops: masked weights exact; layer outputs and gradients against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import binomial_tol

SCALES = ["inverted", "classic"]
# float64, different summation orders (BLAS vs NumPy): agreement to a few ulps of the sums.
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _t(shape, seed, grad=False):
    return torch.randn(shape, dtype=torch.float64, generator=_seeded(seed), requires_grad=grad)


@pytest.mark.parametrize("scale", SCALES)
def test_masked_weight_is_exact(scale):
    w = _t((8, 5), 1)
    mask = DF.dropconnect_mask(w.shape, 0.3, generator=_seeded(2))
    expected = ref.dropconnect_weight(w.numpy(), mask.numpy(), 0.3, scale=scale)
    np.testing.assert_array_equal(DF.apply_mask(w, mask, 0.3, scale=scale).numpy(), expected)


class TestLinear:
    @pytest.mark.parametrize("scale", SCALES)
    @pytest.mark.parametrize("per_sample", [False, True])
    def test_forward_and_backward_match_the_reference(self, scale, per_sample):
        p = 0.4
        x, w, b = _t((6, 3, 5), 1, True), _t((4, 5), 2, True), _t((4,), 3, True)
        mask = DF.dropconnect_mask(
            w.shape, p, batch_size=6 if per_sample else None, generator=_seeded(4)
        )
        out = DF.apply_dropconnect_linear(x, w, b, mask, p, scale=scale)
        g = _t(out.shape, 5)
        out.backward(g)
        args = (w.detach().numpy(), g.numpy(), mask.numpy(), p)
        gx, gw, gb = ref.dropconnect_linear_backward(x.detach().numpy(), *args, scale=scale)
        expected = ref.dropconnect_linear_forward(
            x.detach().numpy(), w.detach().numpy(), b.detach().numpy(), mask.numpy(), p, scale=scale
        )
        np.testing.assert_allclose(out.detach().numpy(), expected, **TOL)
        np.testing.assert_allclose(x.grad.numpy(), gx, **TOL)
        np.testing.assert_allclose(w.grad.numpy(), gw, **TOL)
        np.testing.assert_allclose(b.grad.numpy(), gb, **TOL)

    @pytest.mark.parametrize("per_sample", [False, True])
    def test_op_draws_the_mask_dropconnect_mask_draws(self, per_sample):
        x, w, b = _t((6, 5), 1), _t((4, 5), 2), _t((4,), 3)
        out = DF.dropconnect_linear(x, w, b, 0.3, per_sample=per_sample, generator=_seeded(9))
        mask = DF.dropconnect_mask(
            w.shape, 0.3, batch_size=6 if per_sample else None, generator=_seeded(9)
        )
        assert torch.equal(out, DF.apply_dropconnect_linear(x, w, b, mask, 0.3))

    def test_eval_uses_the_mean_weight(self):
        x, w, b = _t((6, 5), 1), _t((4, 5), 2), _t((4,), 3)
        assert torch.equal(DF.dropconnect_linear(x, w, b, 0.3, training=False), F.linear(x, w, b))
        out = DF.dropconnect_linear(x, w, b, 0.3, training=False, scale="classic")
        torch.testing.assert_close(out, F.linear(x, w * 0.7, b), rtol=0, atol=0)

    def _recover_weights(self, per_sample, p=0.5, n=64, seed=0):
        # An identity input per sample reads back each sample's effective (masked) weight.
        w = torch.ones(30, 20, dtype=torch.float64)
        x = torch.eye(20, dtype=torch.float64).expand(n, 20, 20)
        out = DF.dropconnect_linear(x, w, None, p, per_sample=per_sample, generator=_seeded(seed))
        return out.transpose(1, 2) != 0  # (n, out, in): which weights survived, per sample

    def test_one_mask_per_batch_by_default(self):
        kept = self._recover_weights(per_sample=False)
        assert torch.equal(kept, kept[:1].expand_as(kept))
        assert abs((~kept[0]).double().mean().item() - 0.5) < binomial_tol(0.5, kept[0].numel())

    def test_per_sample_masks_are_independent(self):
        # P(kept in sample i and in sample j) = (1-p)^2 for independent masks.
        kept = self._recover_weights(per_sample=True, p=0.4)
        both = (kept[0::2] & kept[1::2]).double().mean().item()
        n = kept[0::2].numel()
        assert abs(both - 0.36) < binomial_tol(0.36, n)
        assert abs((~kept).double().mean().item() - 0.4) < binomial_tol(0.4, kept.numel())

    def test_gradcheck(self):
        x, w, b = _t((3, 4), 1, True), _t((2, 4), 2, True), _t((2,), 3, True)
        for per_sample in (False, True):
            f = lambda x, w, b, ps=per_sample: DF.dropconnect_linear(  # noqa: E731
                x, w, b, 0.5, per_sample=ps, generator=_seeded(1)
            )
            assert torch.autograd.gradcheck(f, (x, w, b), fast_mode=True)


CONV_CASES = [
    # (input shape, weight shape, kwargs)
    ((2, 4, 11), (6, 4, 3), {}),
    ((3, 4, 12), (6, 2, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    ((2, 3, 7, 8), (5, 3, 3, 2), {"padding": (1, 0)}),
    ((3, 4, 9, 9), (4, 2, 3, 3), {"stride": (2, 1), "padding": 1, "dilation": (1, 2), "groups": 2}),
]


class TestConv:
    @pytest.mark.parametrize("xs, ws, kw", CONV_CASES)
    def test_reference_conv_is_torchs_conv(self, xs, ws, kw):
        x, w, b = _t(xs, 1), _t(ws, 2), _t(ws[:1], 3)
        conv = {3: F.conv1d, 4: F.conv2d}[w.dim()]
        expected = ref.conv_forward(x.numpy(), w.numpy(), b.numpy(), **kw)
        np.testing.assert_allclose(conv(x, w, b, **kw).numpy(), expected, **TOL)

    @pytest.mark.parametrize("scale", SCALES)
    @pytest.mark.parametrize("per_sample", [False, True])
    @pytest.mark.parametrize("xs, ws, kw", CONV_CASES)
    def test_forward_and_weight_gradient_match_the_reference(self, xs, ws, kw, per_sample, scale):
        p = 0.3
        x, w, b = _t(xs, 1), _t(ws, 2, True), _t(ws[:1], 3)
        mask = DF.dropconnect_mask(
            ws, p, batch_size=xs[0] if per_sample else None, generator=_seeded(4)
        )
        out = DF.apply_dropconnect_conv(x, w, b, mask, p, scale=scale, **kw)
        expected = ref.dropconnect_conv_forward(
            x.numpy(), w.detach().numpy(), b.numpy(), mask.numpy(), p, scale=scale, **kw
        )
        np.testing.assert_allclose(out.detach().numpy(), expected, **TOL)
        # The weight's gradient is the masked weight's gradient times the same mask and scale.
        g = _t(out.shape, 5)
        out.backward(g)
        wm = DF.apply_mask(w.detach().expand(mask.shape), mask, p, scale=scale).requires_grad_()
        if per_sample:
            ref_out = torch.cat(
                [
                    {3: F.conv1d, 4: F.conv2d}[w.dim()](x[i : i + 1], wm[i], b, **kw)
                    for i in range(xs[0])
                ]
            )
        else:
            ref_out = {3: F.conv1d, 4: F.conv2d}[w.dim()](x, wm, b, **kw)
        ref_out.backward(g)
        grad_w = DF.apply_mask(wm.grad, mask, p, scale=scale)
        expected_grad = grad_w.sum(0) if per_sample else grad_w
        torch.testing.assert_close(w.grad, expected_grad, **TOL)

    @pytest.mark.parametrize(
        "xs, ws, kw",
        [
            ((2, 4, 6), (4, 2, 3), {"stride": 2, "padding": 1, "groups": 2}),
            (
                (2, 2, 4, 5),
                (2, 1, 2, 2),
                {"stride": (1, 2), "padding": 1, "dilation": (2, 1), "groups": 2},
            ),
        ],
    )
    def test_gradcheck(self, xs, ws, kw):
        x, w, b = _t(xs, 1, True), _t(ws, 2, True), _t(ws[:1], 3, True)
        for per_sample in (False, True):
            f = lambda x, w, b, ps=per_sample: DF.dropconnect_conv(  # noqa: E731
                x, w, b, 0.5, per_sample=ps, generator=_seeded(1), **kw
            )
            assert torch.autograd.gradcheck(f, (x, w, b), fast_mode=True)

    def test_eval_is_the_plain_conv(self):
        x, w, b = _t((2, 3, 8, 8), 1), _t((4, 3, 3, 3), 2), _t((4,), 3)
        out = DF.dropconnect_conv(x, w, b, 0.5, training=False, padding=1)
        assert torch.equal(out, F.conv2d(x, w, b, padding=1))

    def test_op_draws_the_mask_dropconnect_mask_draws(self):
        x, w = _t((3, 2, 6, 6), 1), _t((4, 2, 3, 3), 2)
        out = DF.dropconnect_conv(x, w, None, 0.3, per_sample=True, generator=_seeded(3))
        mask = DF.dropconnect_mask(w.shape, 0.3, batch_size=3, generator=_seeded(3))
        assert torch.equal(out, DF.apply_dropconnect_conv(x, w, None, mask, 0.3))


class TestErrors:
    def test_per_sample_needs_a_batch(self):
        with pytest.raises(ValueError, match="per_sample=True needs a batched input"):
            DF.dropconnect_linear(torch.ones(5), torch.ones(3, 5), per_sample=True)

    def test_weight_rank(self):
        with pytest.raises(
            ValueError, match=r"dropconnect_linear: expected weight to be 2D, but received a 3D"
        ):
            DF.dropconnect_linear(torch.ones(2, 5), torch.ones(1, 3, 5))
        with pytest.raises(ValueError, match="dropconnect_conv: expected input to be 4D"):
            DF.dropconnect_conv(torch.ones(3, 8, 8), torch.ones(4, 3, 3, 3))

    def test_mask_shape(self):
        with pytest.raises(ValueError, match="does not broadcast"):
            DF.apply_dropconnect_linear(
                torch.ones(2, 5), torch.ones(3, 5), None, torch.ones(3, 4, dtype=torch.bool), 0.5
            )
        with pytest.raises(
            ValueError, match=r"per-sample mask of shape \(4, 3, 5\) needs an input of shape \(N=4"
        ):
            DF.apply_dropconnect_linear(
                torch.ones(2, 5), torch.ones(3, 5), None, torch.ones(4, 3, 5, dtype=torch.bool), 0.5
            )

    def test_p_and_dtype(self):
        with pytest.raises(ValueError, match="between 0 and 1"):
            DF.dropconnect_linear(torch.ones(2, 5), torch.ones(3, 5), p=1.5)
        with pytest.raises(TypeError, match="weight must be a floating-point tensor"):
            DF.dropconnect_linear(torch.ones(2, 5), torch.ones(3, 5, dtype=torch.long))
        with pytest.raises(TypeError, match="input must be a floating-point tensor"):
            DF.dropconnect_conv(torch.ones(2, 3, 5, 5, dtype=torch.long), torch.ones(4, 3, 3, 3))
