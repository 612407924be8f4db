"""The NumPy references for recurrent dropout checked against independent ground truth.

The unrolled reference with no masks must be torch.nn.LSTM / nn.GRU (float64, tolerance as in
tests/functional/test_variational_rnn.py: different summation orders, a few ulps); with masks it must
be the same network run on masked inputs, which is checked by feeding the masked values by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dropkit import reference as ref

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unmasked_reference_is_torch(mode, bidirectional):
    torch.manual_seed(0)
    rnn = (nn.LSTM if mode == "LSTM" else nn.GRU)(
        3, 4, 2, bidirectional=bidirectional, dtype=torch.float64
    )
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, hid = rnn(x)
    weights = [w.detach().numpy() for ws in rnn.all_weights for w in ws]
    r_out, r_hid = ref.variational_rnn_forward(
        x.numpy(), None, weights, mode=mode, num_layers=2, bidirectional=bidirectional
    )
    np.testing.assert_allclose(out.detach().numpy(), r_out, **TOL)
    hid = hid if isinstance(hid, tuple) else (hid,)
    r_hid = r_hid if isinstance(r_hid, tuple) else (r_hid,)
    for a, b in zip(hid, r_hid, strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b, **TOL)


def test_shared_input_mask_equals_masking_the_input_by_hand():
    # One layer, input dropout only: the reference must equal the plain network on x * m / (1-p).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2))
    weights = [rng.standard_normal(s) for s in [(8, 2), (8, 2), (8,), (8,)]]
    mask = rng.random((1, 3, 2)) >= 0.5
    out, _ = ref.variational_rnn_forward(x, None, weights, input_masks=[mask], input_dropout=0.5)
    by_hand, _ = ref.variational_rnn_forward(x * mask * 2.0, None, weights)
    np.testing.assert_array_equal(out, by_hand)


def test_reference_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        ref.variational_rnn_forward(np.zeros((2, 1, 1)), None, [np.zeros((3, 1))] * 2, mode="RNN")
    with pytest.raises(ValueError, match="expected a 3D"):
        ref.locked_dropout_forward(np.zeros((2, 3)), np.ones((2, 3), bool), 0.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        ref.embedding_dropout_forward(np.array([0]), np.zeros((3, 2)), np.ones(4, bool), 0.5)
