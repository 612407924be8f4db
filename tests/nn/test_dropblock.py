"""dropkit.nn.DropBlock2d / DropBlock3d."""

from __future__ import annotations

import pytest
import torch

import dropkit.functional as DF
import dropkit.nn as dnn


def test_forward_is_the_functional_op_and_repr():
    x = torch.randn(2, 3, 9, 9)
    m = dnn.DropBlock2d(0.2, block_size=3, generator=torch.Generator().manual_seed(4))
    expected = DF.dropblock2d(x, 0.2, block_size=3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(m(x), expected)
    assert repr(m) == "DropBlock2d(p=0.2, inplace=False, block_size=(3, 3))"
    m3 = dnn.DropBlock3d(0.1, block_size=(1, 2, 3), share_channels=True)
    assert (
        repr(m3) == "DropBlock3d(p=0.1, inplace=False, block_size=(1, 2, 3), share_channels=True)"
    )
    assert m3(torch.randn(2, 3, 4, 5, 6)).shape == (2, 3, 4, 5, 6)


def test_eval_is_identity():
    x = torch.randn(2, 3, 9, 9)
    assert dnn.DropBlock2d(0.3, block_size=3).eval()(x) is x


def test_bad_block_size_at_construction_and_forward():
    with pytest.raises(ValueError, match="DropBlock2d: block_size must be positive"):
        dnn.DropBlock2d(0.1, block_size=0)
    with pytest.raises(TypeError, match="sequence of 3 ints"):
        dnn.DropBlock3d(0.1, block_size=(3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        dnn.DropBlock2d(0.1, block_size=7)(torch.randn(1, 1, 5, 5))


def test_module_clips_the_block_when_asked():
    m = dnn.DropBlock2d(0.2, block_size=7, clip_block_size=True)
    assert repr(m) == "DropBlock2d(p=0.2, inplace=False, block_size=(7, 7), clip_block_size=True)"
    x = torch.randn(2, 3, 4, 5)
    g = torch.Generator().manual_seed(3)
    m.generator = g
    expected = DF.dropblock2d(x, 0.2, block_size=(4, 5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(m(x), expected)


@pytest.mark.parametrize(
    "cls, shape", [(dnn.DropBlock2d, (2, 3, 9, 9)), (dnn.DropBlock3d, (2, 2, 5, 5, 5))]
)
def test_scale_by_keep_and_with_noise_modules(cls, shape):
    x = torch.randn(shape)
    kw = {"block_size": 3, "scale_by_keep": False, "with_noise": True}
    m = cls(0.3, generator=torch.Generator().manual_seed(2), **kw)
    op = DF.dropblock2d if cls is dnn.DropBlock2d else DF.dropblock3d
    assert torch.equal(m(x), op(x, 0.3, generator=torch.Generator().manual_seed(2), **kw))
    assert repr(m).endswith(
        "block_size=" + str(m.block_size) + ", scale_by_keep=False, with_noise=True)"
    )
    assert m.eval()(x) is x
    # the TorchScript branch draws the plain path's seeds and noise
    scripted = torch.jit.script(m.train())
    m.generator = torch.Generator().manual_seed(3)
    scripted.generator = torch.Generator().manual_seed(3)
    assert torch.equal(scripted(x), m(x))
    for flag in ("scale_by_keep", "with_noise"):
        with pytest.raises(TypeError, match=f"{cls.__name__}: {flag} must be a bool"):
            cls(0.1, **{flag: "yes"})


@pytest.mark.parametrize(
    "cls, shape", [(dnn.DropBlock2d, (2, 3, 5, 4)), (dnn.DropBlock3d, (2, 2, 3, 5, 4))]
)
def test_torchscript_branch_clips_the_block(cls, shape):
    # block 7 is larger than every axis: clip_block_size=True must clip it in TorchScript too
    x = torch.randn(shape)
    m = cls(0.3, block_size=7, clip_block_size=True, generator=torch.Generator().manual_seed(4))
    scripted = torch.jit.script(m.train())
    expected = m(x)
    scripted.generator = torch.Generator().manual_seed(4)
    assert torch.equal(scripted(x), expected)
