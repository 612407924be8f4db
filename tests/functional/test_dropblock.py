"""DropBlock 2-D/3-D: blocks painted exactly as the reference paints them, gamma, whole blocks."""

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


CASES = [
    ((2, 3, 9, 9), 3),
    ((2, 3, 8, 11), (2, 4)),
    ((2, 2, 5, 6, 7), 2),
    ((1, 2, 5, 5, 5), (1, 3, 5)),
]


def _block(block, n):
    return (block,) * n if isinstance(block, int) else block


@pytest.mark.parametrize("shape, block", CASES)
def test_mask_matches_the_reference_painting(shape, block):
    block = _block(block, len(shape) - 2)
    seeds = DF.dropblock_seeds(shape, 0.3, block, generator=_seeded(1))
    mask = DF.dropblock_mask(seeds, block)
    assert mask.shape == shape
    np.testing.assert_array_equal(mask.numpy(), ref.dropblock_mask(seeds.numpy(), block))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, block", CASES)
def test_forward_and_backward_match_the_reference(dtype, shape, block):
    p = 0.2
    op = DF.dropblock2d if len(shape) == 4 else DF.dropblock3d
    x = torch.randn(shape, dtype=dtype, generator=_seeded(2), requires_grad=True)
    out = op(x, p, block_size=block, generator=_seeded(3))
    mask = DF.dropblock_mask(DF.dropblock_seeds(shape, p, block, generator=_seeded(3)), block)
    grad_out = torch.randn(shape, dtype=dtype, generator=_seeded(4))
    out.backward(grad_out)
    m = mask.numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.dropblock_forward(x.detach().numpy(), m)
    )
    np.testing.assert_array_equal(x.grad.numpy(), ref.dropblock_backward(grad_out.numpy(), m))
    np.testing.assert_array_equal(
        DF.apply_dropblock(x, mask).detach().numpy(), out.detach().numpy()
    )


def test_gamma_is_eq1_of_the_paper():
    # Ghiasi et al. eq. 1: gamma = (1 - keep_prob) / block^2 * feat^2 / (feat - block + 1)^2.
    assert DF.dropblock_gamma(0.1, (14, 14), (7, 7)) == pytest.approx(0.1 / 49 * 196 / 64)
    assert DF.dropblock_gamma(0.1, (8, 10), (3, 5)) == ref.dropblock_gamma(0.1, (8, 10), (3, 5))
    assert DF.dropblock_gamma(0.9, (4, 4), (4, 4)) == 0.9
    # b (s - b + 1) >= s, so gamma never exceeds p: it is always a probability.
    for s in range(1, 12):
        for b in range(1, s + 1):
            assert DF.dropblock_gamma(1.0, (s, s), (b, b)) <= 1.0 + 1e-15


def test_seeds_are_bernoulli_gamma():
    p, shape, block = 0.2, (200, 20, 12, 12), (3, 3)
    seeds = DF.dropblock_seeds(shape, p, block, generator=_seeded(5))
    gamma = DF.dropblock_gamma(p, shape[2:], block)
    assert seeds.shape == (200, 20, 10, 10)
    assert abs(seeds.double().mean().item() - gamma) < binomial_tol(gamma, seeds.numel())


@pytest.mark.parametrize("block", [(3, 3), (2, 4)])
def test_dropped_region_is_a_union_of_whole_blocks(block):
    # Morphological opening with the block (erode, then dilate) keeps a union of whole blocks
    # unchanged and removes anything smaller; and every block lies inside the map.
    dropped = ~DF.dropblock_mask(
        DF.dropblock_seeds((50, 8, 12, 12), 0.3, block, generator=_seeded(6)), block
    )
    d = dropped.float()
    eroded = -F.max_pool2d(-d, block, stride=1)  # 1 where a whole block starting here is dropped
    pad = [b - 1 for b in reversed(block) for _ in (0, 1)]
    opened = F.max_pool2d(F.pad(eroded, pad), block, stride=1)
    assert dropped.any() and torch.equal(opened.bool(), dropped)


def _expected_dropped_fraction(p, size, block):
    # P(unit dropped) = 1 - (1 - gamma)^c, c = number of valid corners whose block covers it.
    gamma = DF.dropblock_gamma(p, size, block)
    total = 0.0
    for pos in np.ndindex(*size):
        c = math.prod(
            min(y, s - b) - max(0, y - b + 1) + 1 for y, s, b in zip(pos, size, block, strict=True)
        )
        total += 1 - (1 - gamma) ** c
    return total / math.prod(size)


@pytest.mark.parametrize("p, size, block", [(0.1, (12, 12), (3, 3)), (0.3, (9, 9), (5, 5))])
def test_dropped_fraction_matches_its_exact_expectation(p, size, block):
    # Maps are independent: the mean of N*C per-map fractions has std (their std) / sqrt(N*C).
    mask = DF.dropblock_mask(
        DF.dropblock_seeds((400, 25, *size), p, block, generator=_seeded(7)), block
    )
    per_map = (~mask).double().flatten(2).mean(-1).flatten()
    tol = Z * per_map.std().item() / math.sqrt(per_map.numel())
    assert abs(per_map.mean().item() - _expected_dropped_fraction(p, size, block)) < tol
    assert per_map.mean().item() < p  # overlapping blocks: a little under the target


def test_block_size_one_is_elementwise_dropout():
    p = 0.3
    mask = DF.dropblock_mask(DF.dropblock_seeds((100, 10, 20, 20), p, 1, generator=_seeded(8)), 1)
    assert abs((~mask).double().mean().item() - p) < binomial_tol(p, mask.numel())


def test_rescaling_keeps_the_total_activation():
    x = torch.ones(4, 8, 16, 16, dtype=torch.float64)
    out = DF.dropblock2d(x, 0.3, block_size=5, generator=_seeded(9))
    assert (out == 0).any()
    assert out.sum().item() == pytest.approx(x.numel(), rel=1e-12)


def test_shared_channel_mask_matches_the_reference_with_its_broadcast_count():
    # One seed map per sample, (N, 1, H, W); the rescale counts the mask over all C channels.
    x = torch.randn(3, 4, 9, 9, dtype=torch.float64, generator=_seeded(1))
    out = DF.dropblock2d(x, 0.3, block_size=3, share_channels=True, generator=_seeded(2))
    seeds = DF.dropblock_seeds(x.shape, 0.3, 3, share_channels=True, generator=_seeded(2))
    assert seeds.shape == (3, 1, 7, 7)
    mask = ref.dropblock_mask(seeds.numpy(), (3, 3))
    np.testing.assert_array_equal(out.numpy(), ref.dropblock_forward(x.numpy(), mask))


def test_share_channels_gives_one_pattern_per_sample():
    out = DF.dropblock2d(
        torch.ones(6, 5, 10, 10), 0.3, block_size=3, share_channels=True, generator=_seeded(1)
    )
    zeros = out == 0
    assert zeros.any() and torch.equal(zeros, zeros[:, :1].expand_as(zeros))


def test_eval_inplace_p0_and_gradcheck():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert DF.dropblock2d(x, 0.3, training=False, block_size=3) is x
    f = lambda t: DF.dropblock2d(t, 0.3, block_size=3, generator=_seeded(2))  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    y = x.detach().clone()
    expected = DF.dropblock2d(y, 0.3, block_size=3, generator=_seeded(2))
    assert DF.dropblock2d(y, 0.3, inplace=True, block_size=3, generator=_seeded(2)) is y
    assert torch.equal(y, expected)
    assert torch.equal(DF.dropblock2d(y, 0.0, block_size=3), y)


def test_empty_batch():
    assert DF.dropblock2d(torch.empty(0, 3, 5, 5), 0.2, block_size=3).shape == (0, 3, 5, 5)


@pytest.mark.parametrize("block", [5, 2])
def test_p_one_gives_zeros(block):
    # With block 2 in a 5x5 map gamma < 1, yet p=1 still means every unit is dropped.
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = DF.dropblock2d(x, 1.0, block_size=block)
    assert torch.equal(out, torch.zeros_like(out)) and not out.isnan().any()
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


class TestErrors:
    def test_block_larger_than_the_map(self):
        with pytest.raises(
            ValueError, match=r"dropblock2d: block_size \(7, 7\) does not fit .* \(5, 5\)"
        ):
            DF.dropblock2d(torch.ones(1, 1, 5, 5), 0.1, block_size=7)

    @pytest.mark.parametrize("block", [0, -1, (3, 0)])
    def test_non_positive_block(self, block):
        with pytest.raises(ValueError, match="block_size must be positive"):
            DF.dropblock2d(torch.ones(1, 1, 5, 5), 0.1, block_size=block)

    @pytest.mark.parametrize("block", [2.0, (3,), (1, 2, 3), "3"])
    def test_block_type_and_length(self, block):
        with pytest.raises(TypeError, match="block_size must be an int or a sequence of 2 ints"):
            DF.dropblock2d(torch.ones(1, 1, 5, 5), 0.1, block_size=block)

    def test_rank(self):
        with pytest.raises(
            ValueError, match=r"dropblock2d: expected input to be 4D, but received a 3D"
        ):
            DF.dropblock2d(torch.ones(1, 5, 5), 0.1, block_size=3)
        with pytest.raises(ValueError, match=r"dropblock3d: expected input to be 5D"):
            DF.dropblock3d(torch.ones(1, 1, 5, 5), 0.1, block_size=3)

    def test_p_and_dtype(self):
        with pytest.raises(ValueError, match="between 0 and 1"):
            DF.dropblock2d(torch.ones(1, 1, 5, 5), 1.1, block_size=3)
        with pytest.raises(TypeError, match="floating-point"):
            DF.dropblock2d(torch.ones(1, 1, 5, 5, dtype=torch.int64), 0.1, block_size=3)


@pytest.mark.parametrize(
    "shape, block",
    [((2, 3, 4, 6), 5), ((2, 2, 3, 9), (7, 2)), ((1, 2, 2, 3, 4), 3), ((2, 1, 1, 1), 7)],
)
def test_clipped_block_matches_the_reference(shape, block):
    # timm clips a block larger than the map along that axis; clip_block_size=True does the same.
    n = len(shape) - 2
    clipped = ref.clip_block(_block(block, n), shape[2:])
    op = DF.dropblock2d if n == 2 else DF.dropblock3d
    x = torch.randn(shape, dtype=torch.float64, generator=_seeded(5))
    out = op(x, 0.3, block_size=block, clip_block_size=True, generator=_seeded(6))
    seeds = DF.dropblock_seeds(shape, 0.3, clipped, generator=_seeded(6))
    mask = ref.dropblock_mask(seeds.numpy(), clipped)
    np.testing.assert_array_equal(out.numpy(), ref.dropblock_forward(x.numpy(), mask))
    with pytest.raises(ValueError, match="does not fit.*or clip_block_size=True"):
        op(x, 0.3, block_size=block)
    with pytest.raises(TypeError, match="clip_block_size must be a bool"):
        op(x, 0.3, block_size=block, clip_block_size=1)


def test_clipping_leaves_a_fitting_block_alone():
    x = torch.randn(2, 3, 8, 8, generator=_seeded(7))
    a = DF.dropblock2d(x, 0.2, block_size=3, clip_block_size=True, generator=_seeded(8))
    b = DF.dropblock2d(x, 0.2, block_size=3, generator=_seeded(8))
    assert torch.equal(a, b)


# timm's options: survivors unscaled (scale_by_keep=False); dropped units filled with N(0, 1) noise
# drawn at the mask's shape after the seeds (with_noise=True). Plain path (small inputs) and fast
# path (>= 4096 elements), each exactly the reference given its mask and noise.
OPTION_CASES = [
    ((2, 3, 9, 9), 3, False),
    ((1, 2, 5, 5, 5), 2, True),
    ((2, 4, 32, 32), 5, False),  # fast path
    ((2, 4, 32, 32), 5, True),  # fast path, one pattern (and one noise map) per sample
]


def _mask_and_noise(x, p, block, share, seed):
    """The keep-mask and noise the op draws from ``_seeded(seed)``, drawn again here."""
    g = _seeded(seed)
    if x.numel() >= 4096:
        mask = DF.fast_dropblock_mask(x.shape, p, block, DF.draw_seed(g), share_channels=share)
    else:
        mask = DF.dropblock_mask(
            DF.dropblock_seeds(x.shape, p, block, share_channels=share, generator=g), block
        )
    return mask, torch.randn(mask.shape, dtype=x.dtype, generator=g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale_by_keep, with_noise", [(False, False), (False, True), (True, True)])
@pytest.mark.parametrize("shape, block, share", OPTION_CASES)
def test_scale_by_keep_and_with_noise_match_the_reference(
    dtype, scale_by_keep, with_noise, shape, block, share
):
    p = 0.25
    op = DF.dropblock2d if len(shape) == 4 else DF.dropblock3d
    x = torch.randn(shape, dtype=dtype, generator=_seeded(1), requires_grad=True)
    kw = {"block_size": block, "share_channels": share, "scale_by_keep": scale_by_keep}
    out = op(x, p, with_noise=with_noise, generator=_seeded(2), **kw)
    mask, noise = _mask_and_noise(x, p, _block(block, len(shape) - 2), share, 2)
    grad_out = torch.randn(shape, dtype=dtype, generator=_seeded(3))
    out.backward(grad_out)
    m = mask.numpy()
    expected = ref.dropblock_forward(
        x.detach().numpy(),
        m,
        scale_by_keep=scale_by_keep,
        noise=noise.numpy() if with_noise else None,
    )
    assert 0 < m.sum() < m.size
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    np.testing.assert_array_equal(
        x.grad.numpy(), ref.dropblock_backward(grad_out.numpy(), m, scale_by_keep=scale_by_keep)
    )
    # inplace gives the same values; eval is the identity whatever the options
    y = x.detach().clone()
    assert op(y, p, True, True, with_noise=with_noise, generator=_seeded(2), **kw) is y
    assert torch.equal(y, out.detach())
    assert op(x, p, False, with_noise=with_noise, **kw) is x


@pytest.mark.parametrize("share", [False, True])
def test_noise_at_p_one_fills_everything(share):
    x = torch.randn(2, 3, 6, 6)
    out = DF.dropblock2d(
        x, 1.0, block_size=3, share_channels=share, with_noise=True, generator=_seeded(5)
    )
    noise = torch.randn((2, 1 if share else 3, 6, 6), generator=_seeded(5))
    assert torch.equal(out, noise.expand(x.shape))


def test_noise_is_standard_normal_in_the_dropped_units():
    # 4 sigma on the sample mean and variance of n N(0, 1) values (var of the variance: 2/n)
    x = torch.full((8, 8, 32, 32), 100.0)
    out = DF.dropblock2d(
        x, 0.3, block_size=3, scale_by_keep=False, with_noise=True, generator=_seeded(6)
    )
    noise = out[out != 100.0].double()
    n = noise.numel()
    assert n > 10_000
    assert abs(noise.mean().item()) < 4 / n**0.5
    assert abs(noise.var().item() - 1) < 4 * (2 / n) ** 0.5


def test_option_checks():
    x = torch.randn(1, 1, 4, 4)
    for flag in ("scale_by_keep", "with_noise"):
        with pytest.raises(TypeError, match=f"dropblock2d: {flag} must be a bool"):
            DF.dropblock2d(x, 0.1, block_size=2, **{flag: 1})
