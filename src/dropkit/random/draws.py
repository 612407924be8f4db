"""Every random draw dropkit makes, in one place.

What is drawn: the 63-bit seed of a kernel call (the Philox mask of dropout and the family is a
function of that seed and the element's index), and the plain paths' Bernoulli masks, Gaussian and
uniform noise, drawn by torch's own samplers so that they match torch's under the same seed.

Where it comes from (the ``generator=`` argument of every op): torch's global generator of the
device (``None``), a ``torch.Generator``, or a :class:`dropkit.random.RankStream`, which draws a seed
from its base (torch's global generator, or a ``torch.Generator``) and folds a rank into it.

How each draw is made:

* Eager, each draw is the torch call it always was (``bernoulli_``, ``randn``, ``rand``, ``random_``).
  A draw from an explicit ``torch.Generator`` goes through :mod:`dropkit.random.checkpoint`, which
  replays it inside :func:`dropkit.random.checkpoint` and refuses it inside a plain
  ``torch.utils.checkpoint`` (whose recomputation would draw a different mask).
* Under ``torch.compile`` a draw is an opaque operator (``dropkit::seed``, ``dropkit::bernoulli``,
  ``dropkit::randn``, ``dropkit::rand``) that makes that same call when the compiled graph runs.
  Inductor would otherwise lower torch's random ops to its own generator (seeded from torch's, but a
  different stream), so a compiled model would draw other masks than eager for the same seed. The
  operators carry the ``nondeterministic_seeded`` tag: the compiler neither merges two of them nor
  recomputes one in backward. ``torch.export`` (and the ONNX exporter) keep torch's own random ops,
  which ONNX translates (an exported program runs outside torch's generator).
* A generator inside a graph is a constant of the graph: its key (:func:`generator_key`), looked up
  when the graph runs (:func:`generator_of`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import torch

from dropkit.ops import _torch
from dropkit.ops.registry import define
from dropkit.random import checkpoint as _checkpoint
from dropkit.random.ranks import RankStream

__all__ = [
    "SEED_END",
    "bernoulli",
    "bernoulli_",
    "device_seed",
    "draw_seed",
    "generator_key",
    "generator_of",
    "rand",
    "randn",
    "seed_tensor",
    "torch_generator",
]

SEED_END = 2**63 - 1  # seeds are in [0, 2**63 - 1): torch.randint's int64 range
_SEEDED = (torch.Tag.nondeterministic_seeded,)

# ---- generators named in graphs -------------------------------------------------------------------

_generators: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()


@_torch.constant_result  # run (not traced) by dynamo: the key is a constant of the graph
def generator_key(generator) -> int:
    """0 for torch's global generator; else a key under which :func:`generator_of` finds it."""
    if generator is None:
        return 0
    _generators[id(generator)] = generator
    return id(generator)


def generator_of(key: int):
    """The generator (or stream) of :func:`generator_key`; None for key 0."""
    if key == 0:
        return None
    try:
        return _generators[key]
    except KeyError:
        raise RuntimeError(
            "dropkit: the torch.Generator this graph was compiled with no longer exists; compile "
            "again with a live generator (or pass generator=None)"
        ) from None


# ---- seeds --------------------------------------------------------------------------------------

_seed_buffers = threading.local()


def _random_seed(generator: torch.Generator | None) -> int:
    # torch.randint(0, SEED_END, ()) without a new tensor per call: the same value from the same
    # generator state, about a third of the cost. One buffer per thread, read through a NumPy view
    # (tensor.item() would be a second operator call).
    buffers = getattr(_seed_buffers, "pair", None)
    if buffers is None:
        # a normal tensor even when the first call runs under inference_mode (an inference tensor
        # could not be updated in place outside it)
        with torch.inference_mode(False):
            tensor = torch.empty((), dtype=torch.int64)
        buffers = _seed_buffers.pair = (tensor, tensor.numpy())
    buffers[0].random_(0, SEED_END, generator=generator)
    return int(buffers[1])


def draw_seed(generator) -> int:
    """One 63-bit seed for a CPU kernel call, as a Python int: one draw from ``generator`` (torch's
    global CPU generator for None; a stream's base, folded with its rank)."""
    if generator is None:
        return _random_seed(None)
    if type(generator) is RankStream:
        base = generator.base
        raw = _random_seed(None) if base is None else _checkpoint.draw(base, _random_seed, base)
        return generator.fold(raw)
    return _checkpoint.draw(generator, _random_seed, generator)


def seed_tensor(generator) -> torch.Tensor:
    """The seed :func:`draw_seed` draws, as a 0-d int64 tensor made by ``torch.randint`` (what
    ``torch.func`` transforms and dynamo trace; ``random_`` on a buffer they do not)."""
    if type(generator) is RankStream:
        return torch.tensor(draw_seed(generator), dtype=torch.int64)
    if generator is None:
        return torch.randint(0, SEED_END, (), dtype=torch.int64)
    return _checkpoint.draw(
        generator, lambda: torch.randint(0, SEED_END, (), generator=generator, dtype=torch.int64)
    )


def device_seed(generator, device: torch.device) -> torch.Tensor:
    """The seed of one call on an accelerator: a 1-element int64 tensor on ``device``, one draw from
    ``generator`` (or the device's default generator). No synchronisation: the value stays there."""
    if type(generator) is RankStream:
        raw = device_seed(generator.base, device)
        return generator.fold_tensor(raw)

    def draw():
        return torch.randint(0, SEED_END, (1,), device=device, generator=generator)

    return draw() if generator is None else _checkpoint.draw(generator, draw)


def _seed_impl(like: torch.Tensor, generator_key: int) -> torch.Tensor:
    generator = generator_of(generator_key)
    if like.is_cuda:
        return device_seed(generator, like.device).reshape(())
    return torch.tensor(draw_seed(generator), dtype=torch.int64)


_seed_op = define(
    "seed",
    _seed_impl,
    fake=lambda like, generator_key: like.new_empty((), dtype=torch.int64),
    tags=_SEEDED,
)


def graph_seed(like: torch.Tensor, generator) -> torch.Tensor:
    """The seed of one kernel call inside a graph: ``dropkit::seed``, the draw eager code makes."""
    return _seed_op.library(like, generator_key(generator))


# ---- torch's samplers ---------------------------------------------------------------------------------


def torch_generator(generator, device: torch.device) -> torch.Generator | None:
    """The ``torch.Generator`` a torch sampler takes for ``generator``: itself, None (the global one),
    or, for a :class:`RankStream`, a new generator seeded with one folded draw of the stream."""
    if type(generator) is not RankStream:
        return generator
    if device.type == "cpu":
        seed = draw_seed(generator)
    else:
        seed = int(device_seed(generator, device))
    return torch.Generator(device=device).manual_seed(seed)


def _bernoulli_impl(like: torch.Tensor, prob: float, generator_key: int) -> torch.Tensor:
    generator = torch_generator(generator_of(generator_key), like.device)
    return torch.empty_like(like).bernoulli_(prob, generator=generator)


_bernoulli_op = define(
    "bernoulli",
    _bernoulli_impl,
    fake=lambda like, prob, generator_key: torch.empty_like(like),
    tags=_SEEDED,
)


def _noise_fake(like, generator_key):
    return torch.empty_like(like, memory_format=torch.contiguous_format)


def _randn_impl(like: torch.Tensor, generator_key: int) -> torch.Tensor:
    generator = torch_generator(generator_of(generator_key), like.device)
    return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)


def _rand_impl(like: torch.Tensor, generator_key: int) -> torch.Tensor:
    generator = torch_generator(generator_of(generator_key), like.device)
    return torch.rand(like.shape, dtype=like.dtype, device=like.device, generator=generator)


_randn_op = define("randn", _randn_impl, fake=_noise_fake, tags=_SEEDED)
_rand_op = define("rand", _rand_impl, fake=_noise_fake, tags=_SEEDED)


def _compiled() -> bool:
    # Under torch.compile, not torch.export (nor the ONNX exporter built on it): an exported
    # program runs elsewhere, and its graph keeps torch's own random ops, which ONNX translates.
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def bernoulli_(out: torch.Tensor, prob: float, generator) -> torch.Tensor:
    """``out.bernoulli_(prob, generator=generator)``: True (1) with probability ``prob``.

    Under torch.compile the result is a new tensor (``out`` only gives shape, dtype and strides):
    use the return value."""
    if _compiled() and (generator is None or type(generator) is RankStream):
        return _bernoulli_op.library(out, prob, generator_key(generator))
    if generator is None:
        return out.bernoulli_(prob)
    if type(generator) is RankStream:
        return out.bernoulli_(prob, generator=torch_generator(generator, out.device))
    return _checkpoint.draw(generator, lambda: out.bernoulli_(prob, generator=generator))


def bernoulli(like: torch.Tensor, prob: float, generator) -> torch.Tensor:
    """A new tensor like ``like`` (dtype, shape, layout), True (1) with probability ``prob``, as one
    opaque operator under torch.compile whatever the generator (the plain path of dropout there)."""
    if torch.compiler.is_compiling():
        return _bernoulli_op.library(like, prob, generator_key(generator))
    return bernoulli_(torch.empty_like(like), prob, generator)


def _noise(sampler, op, shape, dtype, device, generator) -> torch.Tensor:
    if _compiled() and (generator is None or type(generator) is RankStream):
        return op.library(torch.empty(shape, dtype=dtype, device=device), generator_key(generator))
    size = torch.Size(shape)
    if generator is None:  # aten.randn/rand.default, which the ONNX exporter translates
        return sampler(size, dtype=dtype, device=device)
    if type(generator) is RankStream:
        return sampler(
            size, dtype=dtype, device=device, generator=torch_generator(generator, device)
        )
    return _checkpoint.draw(
        generator, lambda: sampler(size, dtype=dtype, device=device, generator=generator)
    )


def randn(
    shape: Sequence[int], dtype: torch.dtype, device: torch.device, generator
) -> torch.Tensor:
    """``torch.randn(shape, dtype=dtype, device=device, generator=generator)``."""
    return _noise(torch.randn, _randn_op, shape, dtype, device, generator)


def rand(shape: Sequence[int], dtype: torch.dtype, device: torch.device, generator) -> torch.Tensor:
    """``torch.rand(shape, dtype=dtype, device=device, generator=generator)``."""
    return _noise(torch.rand, _rand_op, shape, dtype, device, generator)
