"""Channel dropout (dropout1d/2d/3d): whole channels, batched and unbatched, ambiguous ranks refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dropkit.functional as DF
from dropkit import reference as ref
from tests.conftest import binomial_tol

OPS = {1: DF.dropout1d, 2: DF.dropout2d, 3: DF.dropout3d}
TORCH_OPS = {1: F.dropout1d, 2: F.dropout2d, 3: F.dropout3d}
SPATIAL = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _axes(x, n):
    return tuple(range(x.dim() - n, x.dim()))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("batched", [True, False])
class TestReferenceParity:
    @pytest.mark.parametrize("scale", ["inverted", "classic"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_forward_and_backward(self, n, batched, scale, dtype):
        p = 0.4
        shape = ((6,) if batched else ()) + (5,) + SPATIAL[n]
        x = torch.randn(shape, dtype=dtype, generator=_seeded(1), requires_grad=True)
        out = OPS[n](x, p, batched=batched, scale=scale, generator=_seeded(2))
        mask = DF.sample_shared_mask(x.shape, p, _axes(x, n), generator=_seeded(2))
        channel_mask = mask.reshape(mask.shape[: x.dim() - n]).numpy()
        grad_out = torch.randn(shape, dtype=dtype, generator=_seeded(3))
        out.backward(grad_out)
        kw = {"spatial_dims": n, "scale": scale}
        expected = ref.channel_dropout_forward(x.detach().numpy(), channel_mask, p, **kw)
        np.testing.assert_array_equal(out.detach().numpy(), expected)
        grad = ref.channel_dropout_forward(grad_out.numpy(), channel_mask, p, **kw)
        np.testing.assert_array_equal(x.grad.numpy(), grad)

    def test_gradcheck(self, n, batched):
        shape = ((2,) if batched else ()) + (3,) + SPATIAL[n]
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        f = lambda t: OPS[n](t, 0.5, batched=batched, generator=_seeded(5))  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("n", [1, 2, 3])
class TestStructure:
    def test_whole_channels_and_fraction(self, n):
        p = 0.3
        x = torch.ones((400, 50) + SPATIAL[n])
        out = OPS[n](x, p, generator=_seeded(9))
        flat = out.flatten(2)  # (N, C, positions)
        dropped = (flat == 0).all(-1)
        assert torch.equal(dropped | (flat == 1 / (1 - p)).all(-1), torch.ones_like(dropped))
        assert abs(dropped.double().mean().item() - p) < binomial_tol(p, dropped.numel())

    def test_unbatched_equals_a_batch_of_one_under_the_same_seed(self, n):
        x = torch.randn((5,) + SPATIAL[n])
        unbatched = OPS[n](x, 0.5, batched=False, generator=_seeded(3))
        batched = OPS[n](x.unsqueeze(0), 0.5, generator=_seeded(3))
        assert torch.equal(unbatched, batched[0])

    def test_same_mask_as_torch_under_the_same_seed(self, n):
        # Batched input: dropkit's channel dropout is a drop-in for torch's, mask for mask.
        x = torch.randn((8, 16) + SPATIAL[n])
        torch.manual_seed(7)
        theirs = TORCH_OPS[n](x, 0.4)
        torch.manual_seed(7)
        assert torch.equal(OPS[n](x, 0.4), theirs)

    def test_eval_and_inplace(self, n):
        x = torch.randn((2, 3) + SPATIAL[n])
        assert OPS[n](x, 0.5, training=False) is x
        torch.testing.assert_close(
            OPS[n](x, 0.5, training=False, scale="classic"), x * 0.5, rtol=0, atol=0
        )
        expected = OPS[n](x, 0.5, generator=_seeded(1))
        y = x.clone()
        assert OPS[n](y, 0.5, inplace=True, generator=_seeded(1)) is y
        assert torch.equal(y, expected)


def test_channels_last_and_empty():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    out = DF.dropout2d(x, 0.5, generator=_seeded(1))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert DF.dropout2d(torch.empty(0, 3, 4, 4), 0.5).shape == (0, 3, 4, 4)


class TestRanks:
    def test_3d_input_to_dropout2d_is_ambiguous(self):
        with pytest.raises(
            ValueError,
            match=r"dropout2d: a 3-D input of shape \(3, 8, 8\) is ambiguous.*\(N, C, L\)",
        ):
            DF.dropout2d(torch.ones(3, 8, 8), 0.5)

    def test_4d_input_to_dropout3d_is_ambiguous(self):
        with pytest.raises(
            ValueError, match=r"reads it as unbatched .*batched=False for \(C, D, H, W\)"
        ):
            DF.dropout3d(torch.ones(3, 4, 8, 8), 0.5)

    @pytest.mark.parametrize("n, rank", [(1, 1), (1, 4), (2, 2), (2, 5), (3, 3), (3, 6)])
    def test_wrong_rank(self, n, rank):
        x = torch.ones((2,) * rank)
        with pytest.raises(
            ValueError, match=f"dropout{n}d: Expected .* input, but received a {rank}D input"
        ):
            OPS[n](x, 0.5)

    def test_batched_flag_must_match_the_rank(self):
        with pytest.raises(ValueError, match=r"batched=True means the shape \(N, C, H, W\)"):
            DF.dropout2d(torch.ones(3, 8, 8), 0.5, batched=True)
        with pytest.raises(TypeError, match="batched must be a bool"):
            DF.dropout2d(torch.ones(2, 3, 8, 8), 0.5, batched=1)

    def test_1d_accepts_2d_as_unbatched(self):
        out = DF.dropout1d(torch.ones(4, 10), 0.5, generator=_seeded(0))
        assert ((out == 0).all(1) | (out == 2).all(1)).all()

    def test_spatial_dims_and_bad_inputs(self):
        with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3"):
            DF.channel_dropout(torch.ones(2, 3, 4), 0.5, spatial_dims=4)
        with pytest.raises(TypeError, match="dropout2d: input must be a floating-point tensor"):
            DF.dropout2d(torch.ones(2, 3, 4, 4, dtype=torch.int32), 0.5)
        with pytest.raises(ValueError, match="between 0 and 1"):
            DF.dropout2d(torch.ones(2, 3, 4, 4), -0.1)
