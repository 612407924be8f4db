"""The family's graph lane (ops/family.py): compiled and exported code calls the same
kernels, through custom ops, and draws what eager draws for the same seed, gradients included."""

from __future__ import annotations

import pytest
import torch

import dropkit.functional as DF
from dropkit.ops import family as _fast_family

pytestmark = pytest.mark.skipif(_fast_family.kernels() is None, reason="numba is not installed")

N = _fast_family.NOISE_MIN_NUMEL

CASES = {
    "alpha_dropout": (lambda x, **kw: DF.alpha_dropout(x, 0.3, **kw), (N // 64, 64)),
    "gaussian_dropout": (lambda x, **kw: DF.gaussian_dropout(x, 0.3, **kw), (N // 64, 64)),
    "dropblock2d": (lambda x, **kw: DF.dropblock2d(x, 0.3, block_size=3, **kw), (2, 8, 16, 16)),
    "dropblock2d-shared": (
        lambda x, **kw: DF.dropblock2d(x, 0.3, block_size=3, share_channels=True, **kw),
        (2, 8, 16, 16),
    ),
}


def _run(fn, x, generator=None):
    x = x.detach().clone().requires_grad_()
    kwargs = {} if generator is None else {"generator": generator}
    out = fn(x, **kwargs)
    (out * torch.arange(out.numel()).view_as(out)).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("explicit", [False, True], ids=["global", "generator"])
def test_compiled_forward_and_backward_are_eagers(name, explicit):
    fn, shape = CASES[name]
    x = torch.randn(shape, dtype=torch.float64)
    assert _fast_family.applies(x)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    g = torch.Generator().manual_seed(3) if explicit else None
    torch.manual_seed(5)
    got = _run(compiled, x, g)
    g = torch.Generator().manual_seed(3) if explicit else None
    torch.manual_seed(5)
    expected = _run(fn, x, g)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_graphs_use_the_custom_ops():
    fn, shape = CASES["gaussian_dropout"]
    captured = []

    def backend(graph, example_inputs):
        captured.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return graph.forward

    torch._dynamo.reset()
    torch.compile(fn, fullgraph=True, backend=backend)(torch.randn(shape))
    assert "dropkit.gaussian_mul.default" in captured
    assert "dropkit.seed.default" in captured


def test_vmap_takes_the_plain_path():
    # under vmap the kernels are not called: each sample draws its own noise (torch's draws)
    fn, shape = CASES["gaussian_dropout"]
    x = torch.ones(shape)
    out = torch.func.vmap(fn, randomness="different")(x.expand(2, *shape).clone())
    assert not torch.equal(out[0], out[1])
