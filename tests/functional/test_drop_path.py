"""DropPath / stochastic depth: whole samples, the linear rate rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import binomial_tol


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("scale", ["inverted", "classic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_backward_match_the_reference(scale, dtype):
    p = 0.3
    x = torch.randn(16, 3, 4, 5, dtype=dtype, generator=_seeded(1), requires_grad=True)
    out = DF.drop_path(x, p, scale=scale, generator=_seeded(2))
    mask = DF.sample_shared_mask(x.shape, p, (1, 2, 3), generator=_seeded(2)).reshape(-1).numpy()
    grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
    out.backward(grad_out)
    expected = ref.drop_path_forward(x.detach().numpy(), mask, p, scale=scale)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    np.testing.assert_array_equal(
        x.grad.numpy(), ref.drop_path_forward(grad_out.numpy(), mask, p, scale=scale)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_mode_matches_the_reference(dtype):
    # torchvision's StochasticDepth(mode="batch"): one draw for the whole batch.
    p = 0.4
    x = torch.randn(6, 3, 4, dtype=dtype, generator=_seeded(1))
    for seed in range(6):
        out = DF.drop_path(x, p, mode="batch", generator=_seeded(seed))
        keep = DF.sample_shared_mask(x.shape, p, (0, 1, 2), generator=_seeded(seed)).reshape(1)
        expected = ref.drop_path_forward(x.numpy(), keep.numpy().repeat(6), p)
        np.testing.assert_array_equal(out.numpy(), expected)
    with pytest.raises(ValueError, match="drop_path: mode must be one of"):
        DF.drop_path(x, p, mode="rows")


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_whole_samples_dropped_at_rate_p(p):
    x = torch.ones(100_000, 3, 2)
    out = DF.drop_path(x, p, generator=_seeded(4)).flatten(1)
    dropped = (out == 0).all(1)
    assert torch.equal(dropped | (out == 1 / (1 - p)).all(1), torch.ones_like(dropped))
    assert abs(dropped.double().mean().item() - p) < binomial_tol(p, dropped.numel())


def test_residual_block_is_the_identity_where_dropped():
    x = torch.randn(64, 8)
    branch = torch.randn(64, 8)
    y = x + DF.drop_path(branch, 0.5, generator=_seeded(1))
    dropped = (y == x).all(1)
    assert 0 < dropped.sum() < 64
    torch.testing.assert_close(y[~dropped], x[~dropped] + 2 * branch[~dropped])


def test_eval():
    x = torch.randn(4, 3)
    assert DF.drop_path(x, 0.2, training=False) is x
    torch.testing.assert_close(
        DF.drop_path(x, 0.2, training=False, scale="classic"), x * 0.8, rtol=0, atol=0
    )


def test_gradcheck():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: DF.drop_path(t, 0.5, generator=_seeded(2)), (x,))


def test_rates_follow_huang_et_al():
    # p_l = l / L * p_L, l = 1..L (Huang et al. 2016, eq. 4); p_L = 0.5 for their 110-layer ResNet.
    rates = DF.drop_path_rates(0.5, 54)
    assert len(rates) == 54 and rates[-1] == 0.5
    np.testing.assert_allclose(np.diff(rates), 0.5 / 54, rtol=1e-12)
    assert rates[0] == pytest.approx(0.5 / 54)


@pytest.mark.parametrize("num_blocks", [1, 2, 12, 54])
def test_linspace_rates_match_numpy_and_torch(num_blocks):
    # timm's drop_path_rate schedule: torch.linspace(0, p, L) (float32 there, float64 here).
    rates = DF.drop_path_rates(0.3, num_blocks, rule="linspace")
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.3, num_blocks), rtol=1e-15, atol=0)
    f32 = torch.linspace(0, 0.3, num_blocks).tolist()
    np.testing.assert_allclose(rates, f32, rtol=1e-6, atol=1e-7)
    assert rates[0] == 0.0 and (num_blocks == 1 or rates[-1] == 0.3)


def test_errors():
    with pytest.raises(ValueError, match="drop_path_rates: rule must be one of"):
        DF.drop_path_rates(0.5, 3, rule="timm")
    with pytest.raises(ValueError, match="batch dimension"):
        DF.drop_path(torch.tensor(1.0), 0.5)
    with pytest.raises(ValueError, match="num_blocks must be positive"):
        DF.drop_path_rates(0.5, 0)
    with pytest.raises(TypeError, match="num_blocks must be an int"):
        DF.drop_path_rates(0.5, 2.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        DF.drop_path(torch.ones(3), 2.0)
    with pytest.raises(TypeError, match="floating-point"):
        DF.drop_path(torch.ones(3, dtype=torch.long), 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scale_by_keep_false_matches_the_reference(dtype):
    # timm's DropPath(scale_by_keep=False): survivors unscaled in training, eval the identity
    p = 0.3
    x = torch.randn(16, 3, 4, dtype=dtype, generator=_seeded(1), requires_grad=True)
    out = DF.drop_path(x, p, scale_by_keep=False, generator=_seeded(2))
    mask = DF.sample_shared_mask(x.shape, p, (1, 2), generator=_seeded(2)).reshape(-1).numpy()
    grad_out = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
    out.backward(grad_out)
    kw = {"scale_by_keep": False}
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.drop_path_forward(x.detach().numpy(), mask, p, **kw)
    )
    np.testing.assert_array_equal(
        x.grad.numpy(), ref.drop_path_forward(grad_out.numpy(), mask, p, **kw)
    )
    assert 0 < mask.sum() < 16
    assert DF.drop_path(x, p, training=False, scale_by_keep=False) is x


def test_scale_by_keep_checks():
    x = torch.ones(4, 2)
    with pytest.raises(TypeError, match="drop_path: scale_by_keep must be a bool"):
        DF.drop_path(x, 0.5, scale_by_keep=1)
    with pytest.raises(ValueError, match="scale_by_keep=False goes with scale='inverted'"):
        DF.drop_path(x, 0.5, scale="classic", scale_by_keep=False)
