"""random/draws.py: the plain path's draws, and the custom ops they become under compile."""

from __future__ import annotations

import torch

from dropkit.random import draws as _random


def test_eager_draws_are_torchs_own_calls():
    for generator in (None, torch.Generator().manual_seed(3)):

        def seeded(generator=generator):
            torch.manual_seed(0)
            return generator.manual_seed(3) if generator is not None else None

        g = seeded()
        got = _random.bernoulli_(torch.empty(5, 7, dtype=torch.bool), 0.3, g)
        g = seeded()
        want = torch.empty(5, 7, dtype=torch.bool).bernoulli_(0.3, generator=g)
        assert torch.equal(got, want)
        g = seeded()
        got = _random.randn((5, 7), torch.float32, torch.device("cpu"), g)
        g = seeded()
        assert torch.equal(got, torch.randn(5, 7, generator=g))
        g = seeded()
        got = _random.rand((5, 7), torch.float64, torch.device("cpu"), g)
        g = seeded()
        assert torch.equal(got, torch.rand(5, 7, dtype=torch.float64, generator=g))


def test_compiled_graph_holds_the_seeded_custom_ops():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    def f(x):
        keep = _random.bernoulli_(torch.empty_like(x, dtype=torch.bool), 0.5, None)
        return x * keep + _random.randn(x.shape, x.dtype, x.device, None)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    x = torch.ones(4, 6)
    torch.manual_seed(1)
    got = compiled(x)
    torch.manual_seed(1)
    assert torch.equal(got, f(x))
    targets = {str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"}
    assert {"dropkit.bernoulli.default", "dropkit.randn.default"} <= targets
    for op in (torch.ops.dropkit.bernoulli.default, torch.ops.dropkit.randn.default):
        assert torch.Tag.nondeterministic_seeded in op.tags
