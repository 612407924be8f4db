"""dropkit.nn.Dropout1d/2d/3d: drop-ins for torch's, with the ambiguous rank refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit.nn as dnn

PAIRS = [
    (dnn.Dropout1d, nn.Dropout1d, (8, 4, 10)),
    (dnn.Dropout2d, nn.Dropout2d, (8, 4, 5, 5)),
    (dnn.Dropout3d, nn.Dropout3d, (4, 4, 3, 3, 3)),
]


@pytest.mark.parametrize("ours, theirs, shape", PAIRS)
def test_repr_and_same_output_as_torch_under_the_same_seed(ours, theirs, shape):
    assert repr(ours(0.3)) == repr(theirs(0.3))
    x = torch.randn(shape)
    torch.manual_seed(1)
    expected = theirs(0.3)(x)
    torch.manual_seed(1)
    assert torch.equal(ours(0.3)(x), expected)


@pytest.mark.parametrize("ours, theirs, shape", PAIRS)
def test_eval_is_identity(ours, theirs, shape):
    x = torch.randn(shape)
    assert ours(0.5).eval()(x) is x


def test_unbatched_needs_batched_false_for_2d_and_3d():
    x = torch.randn(4, 6, 6)
    with pytest.raises(ValueError, match="ambiguous"):
        dnn.Dropout2d(0.5)(x)
    m = dnn.Dropout2d(0.5, batched=False)
    assert repr(m) == "Dropout2d(p=0.5, inplace=False, batched=False)"
    out = m(torch.ones(4, 6, 6))
    assert ((out == 0).flatten(1).all(1) | (out == 2).flatten(1).all(1)).all()
    with pytest.raises(ValueError, match="batched=False means the shape"):
        m(torch.randn(2, 4, 6, 6))


def test_bad_arguments():
    with pytest.raises(TypeError, match="Dropout2d: batched must be a bool"):
        dnn.Dropout2d(0.5, batched="no")
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.Dropout3d(-1.0)


@pytest.mark.parametrize(
    ("ours", "theirs", "rank"),
    [
        (dnn.Dropout1d, nn.Dropout1d, 4),
        (dnn.Dropout1d, nn.Dropout1d, 1),
        (dnn.Dropout2d, None, 5),
        (dnn.Dropout3d, None, 6),
    ],
)
def test_wrong_rank_raises_torchs_message(ours, theirs, rank):
    # Before: "dropout1d: expected input to be 2D or 3D, but received a 4D input of shape ...",
    # not torch's text, which docs/pytorch_contracts.md promises.
    x = torch.randn((2,) * rank)
    with pytest.raises(RuntimeError) as ours_error:  # and a ValueError (dropkit's contract)
        ours(0.5)(x)
    assert isinstance(ours_error.value, ValueError)
    n = int(ours.__name__[-2])
    text = (
        f"dropout{n}d: Expected {n + 1}D or {n + 2}D input, but received a {rank}D input. Note "
        f"that dropout{n}d exists to provide channel-wise dropout on inputs with {n} spatial "
        f"dimension{'s' * (n > 1)}, a channel dimension, and an optional batch dimension (i.e. "
        f"{n + 1}D or {n + 2}D inputs)."
    )
    assert str(ours_error.value).startswith(text)
    if theirs is not None:  # torch raises the same text (its dropout2d/3d only warn)
        with pytest.raises(RuntimeError) as torch_error:
            theirs(0.5)(x)
        assert str(torch_error.value) == text
