"""random/checkpoint.py: explicit generators under activation checkpointing.

Issue 21's reproducer gave a silently wrong gradient on torch 2.14: the recomputation drew a new
mask. Here: torch's own checkpoint (read from its frames, on every torch CI runs) and dropkit's
checkpoint and context (public APIs) replay the forward's draws (both modes, nested regions, a
second backward); a checkpoint dropkit cannot read, and a recomputation that draws differently,
raise: never a silent redraw.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

import dropkit
import dropkit.functional as DF

N = 8192  # the fast path (a seed per call); the plain path draws torch's Bernoulli masks
SIZES = {"fast": N, "plain": 64}


def _grad(ckpt, size: int, generator_seed: int = 5):
    """Issue 21's reproducer: output and input gradient, checkpointed by ``ckpt`` (or not)."""
    x0 = torch.linspace(-1, 1, size)
    x = x0.clone().requires_grad_()
    g = torch.Generator().manual_seed(generator_seed)

    def f(t):
        return DF.dropout(t * 1.0, 0.5, generator=g)

    out = f(x) if ckpt is None else ckpt(f, x)
    out.sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("reentrant", [False, True])
def test_the_reproducer_gives_the_forwards_gradient(size, reentrant):
    o0, g0 = _grad(None, size)
    o1, g1 = _grad(functools.partial(dropkit.random.checkpoint, use_reentrant=reentrant), size)
    assert torch.equal(o0, o1) and torch.equal(g0, g1)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_checkpoint_context(size):
    o0, g0 = _grad(None, size)
    ctx = dropkit.random.checkpoint_context
    o1, g1 = _grad(lambda f, x: checkpoint(f, x, use_reentrant=False, context_fn=ctx), size)
    assert torch.equal(o0, o1) and torch.equal(g0, g1)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("reentrant", [False, True])
def test_the_reproducer_with_torchs_own_checkpoint(size, reentrant):
    # issue 21: prints "True True" on every torch of the matrix
    o0, g0 = _grad(None, size)
    o1, g1 = _grad(functools.partial(checkpoint, use_reentrant=reentrant), size)
    assert torch.equal(o0, o1) and torch.equal(g0, g1)


def test_a_checkpoint_dropkit_cannot_read_raises():
    # code that runs from torch/utils/checkpoint.py but holds none of the regions dropkit reads:
    # what a torch that rearranged its checkpoint would look like. Refused, never redrawn.
    import torch.utils.checkpoint as torch_checkpoint

    namespace = {}
    source = "def call(f, x):\n    return f(x)\n"
    exec(compile(source, torch_checkpoint.__file__, "exec"), namespace)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match="does not recognise.*dropkit.random.checkpoint"):
        namespace["call"](lambda t: DF.dropout(t, 0.5, generator=g), torch.ones(N))
    # the public path works there
    out = dropkit.random.checkpoint(
        lambda t: namespace["call"](lambda u: DF.dropout(u, 0.5, generator=g), t),
        torch.ones(N, requires_grad=True),
        use_reentrant=False,
    )
    assert out.shape == (N,)


def test_composes_with_selective_checkpointing():
    policy = functools.partial(create_selective_checkpoint_contexts, [torch.ops.aten.mm.default])
    ctx = functools.partial(dropkit.random.checkpoint_context, inner=policy)
    w = torch.randn(32, 32, requires_grad=True)
    g = torch.Generator().manual_seed(1)

    def f(x):
        return DF.dropout(x @ w, 0.5, generator=g) @ w

    x = torch.randn(256, 32)
    g.manual_seed(1)
    f(x).square().sum().backward()
    expected, w.grad = w.grad, None
    g.manual_seed(1)
    checkpoint(f, x, use_reentrant=False, context_fn=ctx).square().sum().backward()
    assert torch.equal(w.grad, expected)


def test_nested_regions_and_the_generators_final_state():
    g = torch.Generator().manual_seed(2)

    def inner(t):
        return DF.dropout(t, 0.5, generator=g) * 2

    def outer(t):
        t = DF.dropout(t * 1.0, 0.5, generator=g)
        return dropkit.random.checkpoint(inner, t, use_reentrant=False) + t

    def run(ckpt):
        g.manual_seed(2)
        x = torch.ones(N, requires_grad=True)
        out = outer(x) if ckpt is None else ckpt(outer, x, use_reentrant=False)
        state = g.get_state()
        out.sum().backward()
        return out.detach(), x.grad, state, g.get_state()

    o0, g0, _, _ = run(None)
    o1, g1, after_forward, after_backward = run(dropkit.random.checkpoint)
    assert torch.equal(o0, o1) and torch.equal(g0, g1)
    assert torch.equal(after_forward, after_backward)  # the recomputation left g as it was


def test_a_second_backward_replays_again():
    g = torch.Generator().manual_seed(3)
    x = torch.ones(N, requires_grad=True)
    out = dropkit.random.checkpoint(
        lambda t: DF.dropout(t * 1.0, 0.5, generator=g), x, use_reentrant=False
    )
    out.sum().backward(retain_graph=True)
    first, x.grad = x.grad.clone(), None
    out.sum().backward()
    assert torch.equal(first, x.grad) and torch.equal(first, out.detach())


def test_a_recomputation_that_draws_more_raises():
    g = torch.Generator().manual_seed(4)
    calls = []

    def f(t):
        calls.append(1)
        out = DF.dropout(t * 1.0, 0.5, generator=g)
        if len(calls) > 1:  # a different sequence of calls in the rerun
            out = DF.dropout(out, 0.5, generator=g)
        return out

    out = dropkit.random.checkpoint(f, torch.ones(N, requires_grad=True), use_reentrant=True)
    with pytest.raises(RuntimeError, match="recomputation draws from its generators differently"):
        out.sum().backward()


def test_use_reentrant_must_be_given():
    with pytest.raises(TypeError, match="use_reentrant must be True or False"):
        dropkit.random.checkpoint(lambda t: t, torch.ones(2), use_reentrant=None)


def test_the_global_generator_and_streams_need_no_wrapper():
    # torch's checkpoint restores torch's generators, which a RankStream without base draws from
    for generator in (None, dropkit.random.RankStream(3)):
        for reentrant in (False, True):
            x = torch.ones(N, requires_grad=True)
            torch.manual_seed(0)
            out = checkpoint(
                lambda t, gen=generator: DF.dropout(t * 1.0, 0.5, generator=gen),
                x,
                use_reentrant=reentrant,
            )
            out.sum().backward()
            assert torch.equal(x.grad, out.detach())
