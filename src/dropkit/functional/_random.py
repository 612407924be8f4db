"""Every random draw of dropkit's plain paths, in one place: Bernoulli masks, Gaussian and uniform noise.

Eager, each draw is the torch call it always was (``bernoulli_``, ``randn``, ``rand`` on torch's
generator: ``generator=`` or the global one). Under ``torch.compile`` a draw from the global
generator is an opaque custom op (``dropkit::bernoulli``, ``dropkit::randn``, ``dropkit::rand``)
that makes that same call when the compiled graph runs. Inductor would otherwise lower torch's
random ops to its own generator (seeded from torch's, but a different stream), so a compiled model
would draw different masks from eager for the same seed; through these ops compiled and eager draw
the same numbers (as long as the graph holds no other random op lowered by inductor, which draws
its own seed from the global generator first). ``torch.export`` (and the ONNX exporter) keep torch's
own random ops, which ONNX translates (an exported program runs outside torch's generator). The ops
carry the ``nondeterministic_seeded`` tag, so the compiler neither merges two of them nor recomputes
one in backward.

A draw from an explicit ``generator=`` goes through :mod:`dropkit.functional._checkpoint_rng`, so
that ``torch.utils.checkpoint``'s recomputation replays it (checkpoint restores only the global
generators' states by itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit.functional import _checkpoint_rng

__all__: list[str] = []

_SEEDED = (torch.Tag.nondeterministic_seeded,)


@torch.library.custom_op("dropkit::bernoulli", mutates_args=(), tags=_SEEDED)
def _bernoulli_op(like: torch.Tensor, prob: float) -> torch.Tensor:
    return torch.empty_like(like).bernoulli_(prob)


@_bernoulli_op.register_fake
def _(like, prob):
    return torch.empty_like(like)


@torch.library.custom_op("dropkit::randn", mutates_args=(), tags=_SEEDED)
def _randn_op(like: torch.Tensor) -> torch.Tensor:
    return torch.randn(like.shape, dtype=like.dtype, device=like.device)


@_randn_op.register_fake
def _(like):
    return torch.empty_like(like, memory_format=torch.contiguous_format)


@torch.library.custom_op("dropkit::rand", mutates_args=(), tags=_SEEDED)
def _rand_op(like: torch.Tensor) -> torch.Tensor:
    return torch.rand(like.shape, dtype=like.dtype, device=like.device)


@_rand_op.register_fake
def _(like):
    return torch.empty_like(like, memory_format=torch.contiguous_format)


def _compiled_global(generator: torch.Generator | None) -> bool:
    # Not under torch.export (nor the ONNX exporter built on it): an exported program runs
    # elsewhere, and its graph keeps torch's own random ops, which ONNX translates.
    return generator is None and torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def bernoulli_(out: torch.Tensor, prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """``out.bernoulli_(prob, generator=generator)``: True (1) with probability ``prob``.

    Under torch.compile the result is a new tensor (``out`` only gives shape, dtype and strides);
    use the return value."""
    if _compiled_global(generator):
        return _bernoulli_op(out, prob)
    if generator is None:
        return out.bernoulli_(prob)
    return _checkpoint_rng.draw(generator, lambda: out.bernoulli_(prob, generator=generator))


def _noise(draw, op, shape, dtype, device, generator) -> torch.Tensor:
    # draw: torch.randn or torch.rand; op: the matching opaque op for compiled code
    if _compiled_global(generator):
        return op(torch.empty(shape, dtype=dtype, device=device))
    size = torch.Size(shape)
    if generator is None:  # aten.randn/rand.default, which the ONNX exporter translates
        return draw(size, dtype=dtype, device=device)
    return _checkpoint_rng.draw(
        generator, lambda: draw(size, dtype=dtype, device=device, generator=generator)
    )


def randn(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``torch.randn(shape, dtype=dtype, device=device, generator=generator)``."""
    return _noise(torch.randn, _randn_op, shape, dtype, device, generator)


def rand(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``torch.rand(shape, dtype=dtype, device=device, generator=generator)``."""
    return _noise(torch.rand, _rand_op, shape, dtype, device, generator)
