"""Alpha dropout with shared axes (Keras's AlphaDropout noise_shape) against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit import reference as ref


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("axes", [1, (2, 3), (), -1])
def test_forward_and_backward_given_the_same_mask(dtype, axes):
    p = 0.2
    x = torch.randn(3, 4, 5, 2, dtype=dtype, generator=_seeded(1), requires_grad=True)
    out = DF.shared_alpha_dropout(x, p, shared_axes=axes, generator=_seeded(2))
    mask = DF.sample_shared_mask(x.shape, p, axes, generator=_seeded(2)).numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.alpha_dropout_forward(x.detach().numpy(), mask, p)
    )
    grad = torch.randn(x.shape, dtype=dtype, generator=_seeded(3))
    out.backward(grad)
    np.testing.assert_array_equal(x.grad.numpy(), ref.alpha_dropout_backward(grad.numpy(), mask, p))


def test_special_cases_are_alpha_and_feature_alpha_dropout():
    x = torch.randn(4, 3, 6, 6, generator=_seeded(4))
    a = DF.shared_alpha_dropout(x, 0.3, shared_axes=(), generator=_seeded(5))
    assert torch.equal(a, DF.alpha_dropout(x, 0.3, generator=_seeded(5)))
    f = DF.shared_alpha_dropout(x, 0.3, shared_axes=(2, 3), generator=_seeded(6))
    assert torch.equal(f, DF.feature_alpha_dropout(x, 0.3, generator=_seeded(6)))
    assert DF.shared_alpha_dropout(x, 0.3, False, shared_axes=1) is x


def test_module_and_errors():
    m = dnn.SharedAlphaDropout(0.1, shared_axes=1, generator=_seeded(7))
    x = torch.randn(2, 5, 3)
    assert torch.equal(m(x), DF.shared_alpha_dropout(x, 0.1, shared_axes=1, generator=_seeded(7)))
    assert repr(m) == "SharedAlphaDropout(p=0.1, inplace=False, shared_axes=(1,))"
    assert dnn.get_dropout_p(torch.nn.Sequential(m)) == {"0": 0.1}
    with pytest.raises(ValueError, match="shared_alpha_dropout"):
        DF.shared_alpha_dropout(x, 0.1, shared_axes=3)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DF.shared_alpha_dropout(x, 1.0, shared_axes=1)
