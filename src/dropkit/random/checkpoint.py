"""Activation checkpointing with explicit generators: the recomputation draws the forward's masks.

``torch.utils.checkpoint`` reruns a region's forward during backward. It saves torch's global CPU
generator (and the devices' generators) when the forward starts and restores them for the rerun, so
a draw from the global generator gives the same mask twice: dropkit's ops with ``generator=None``, or
with a :class:`~dropkit.random.RankStream` on the global generator, need nothing more. A
``torch.Generator`` passed by the user is not restored: the rerun would draw the next mask and the
gradient would belong to a mask the forward never used.

So explicit generators are journalled, through public torch APIs only:

* :func:`checkpoint` is ``torch.utils.checkpoint.checkpoint`` around a wrapper of the function. The
  wrapper's first call is the forward: each draw from an explicit generator records the generator
  and its state. Every later call is a recomputation: the i-th draw sets the i-th recorded state,
  draws, and puts the generator back where it was (the rerun leaves it where the forward left it, as
  checkpoint does for the global generator). Both ``use_reentrant`` modes; ``checkpoint_wrapper``
  takes it as ``checkpoint_fn``.
* :func:`checkpoint_context` is the same journal as a ``context_fn`` for ``use_reentrant=False``
  (``torch.utils.checkpoint.checkpoint``, ``checkpoint_wrapper``, Hugging Face's
  ``gradient_checkpointing_kwargs``), composable with another ``context_fn`` such as selective
  checkpointing's.

A recomputation that draws differently from its forward (another generator, more draws) raises. A
draw from an explicit generator inside a plain ``torch.utils.checkpoint`` region, where dropkit has no
journal, raises too, naming these ways out: dropkit never redraws silently. That region is recognised
by the frames of ``torch/utils/checkpoint.py`` on the Python stack (the file, not its functions or
locals, which change between releases); ``tests/random/test_checkpoint.py`` runs it on every torch
of the version matrix.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable

import torch
import torch.utils.checkpoint as _torch_checkpoint

__all__ = ["checkpoint", "checkpoint_context", "draw"]

_CHECKPOINT_FILE = _torch_checkpoint.__file__
_local = threading.local()  # .frames: the active journals, innermost last

_WAYS_OUT = (
    "use dropkit.random.checkpoint(fn, *args, use_reentrant=...) instead of "
    "torch.utils.checkpoint.checkpoint, or pass context_fn=dropkit.random.checkpoint_context "
    "(use_reentrant=False; checkpoint_wrapper, FSDP2 and Hugging Face's gradient_checkpointing_kwargs "
    "take it too), or draw from torch's global generator (generator=None, or a "
    "dropkit.random.RankStream without base), which checkpoint restores"
)


class _Journal:
    """The explicit-generator draws of one checkpointed forward: ``(generator, state before)``."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[torch.Generator, torch.Tensor]] = []


class _Frame:
    """An active journal on the calling thread: recording (a forward) or replaying (a rerun)."""

    __slots__ = ("journal", "replaying", "cursor")

    def __init__(self, journal: _Journal, replaying: bool) -> None:
        self.journal = journal
        self.replaying = replaying
        self.cursor = 0


@contextlib.contextmanager
def _active(journal: _Journal, replaying: bool):
    frames = getattr(_local, "frames", None)
    if frames is None:
        frames = _local.frames = []
    frames.append(_Frame(journal, replaying))
    try:
        yield
    finally:
        frames.pop()


def _inside_torch_checkpoint() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == _CHECKPOINT_FILE:
            return True
        frame = frame.f_back
    return False


def draw(generator: torch.Generator, fn: Callable, *args):
    """``fn(*args)``, one draw from the explicit ``generator``: recorded in a checkpointed forward,
    replayed in its recomputation, refused inside a checkpoint dropkit does not journal."""
    frames = getattr(_local, "frames", None)
    if not frames:
        if _inside_torch_checkpoint():
            raise RuntimeError(
                "dropkit: generator= (a torch.Generator) inside torch.utils.checkpoint: its "
                "recomputation in backward would draw a different mask from the forward's "
                f"(checkpoint restores only torch's global generators); {_WAYS_OUT}"
            )
        return fn(*args)
    # The innermost replaying frame, if any, gives the state; the recording frames inside it
    # record that state (a region nested in a region being recomputed records anew).
    replay = None
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].replaying:
            replay = i
            break
    if replay is None:
        state = generator.get_state()
        for frame in frames:
            frame.journal.entries.append((generator, state))
        return fn(*args)
    source = frames[replay]
    index = source.cursor
    entries = source.journal.entries
    if index >= len(entries) or entries[index][0] is not generator:
        raise RuntimeError(
            "dropkit: a checkpointed region's recomputation draws from its generators differently "
            f"from its forward (draw {index + 1}; the forward made {len(entries)}): the masks "
            "would differ; make the region's calls the same in both passes"
        )
    source.cursor = index + 1
    state = entries[index][1]
    for frame in frames[replay + 1 :]:
        frame.journal.entries.append((generator, state))
    now = generator.get_state()
    generator.set_state(state)
    try:
        return fn(*args)
    finally:
        generator.set_state(now)


class _Replaying:
    """The function checkpoint runs: its first call records, every later call replays."""

    def __init__(self, function: Callable) -> None:
        self.function = function
        self.journal = _Journal()
        self.calls = 0

    def __call__(self, *args, **kwargs):
        replaying = self.calls > 0
        self.calls += 1
        with _active(self.journal, replaying):
            return self.function(*args, **kwargs)


def checkpoint(function: Callable, *args, use_reentrant: bool, **kwargs):
    """``torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=..., **kwargs)`` in which
    dropkit's draws from explicit ``torch.Generator``\\ s give the forward's masks again in the
    recomputation (torch restores only its global generators).

    Every keyword of torch's checkpoint is passed on (``preserve_rng_state``, ``context_fn``,
    ``determinism_check``, ...). ``use_reentrant`` must be given, as torch asks. With
    ``checkpoint_wrapper(module, checkpoint_fn=dropkit.random.checkpoint, use_reentrant=False)``
    every wrapped module is checkpointed this way.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> layer = torch.nn.Sequential(torch.nn.Linear(8, 8), dropkit.nn.Dropout(0.5, generator=g))
        >>> x = torch.randn(4, 8, requires_grad=True)
        >>> dropkit.random.checkpoint(layer, x, use_reentrant=False).sum().backward()
    """
    if not isinstance(use_reentrant, bool):
        raise TypeError(
            "dropkit.random.checkpoint: use_reentrant must be True or False, but got "
            f"{use_reentrant!r}"
        )
    return _torch_checkpoint.checkpoint(
        _Replaying(function), *args, use_reentrant=use_reentrant, **kwargs
    )


class _Both:
    """Enter ``first`` then ``second``; leave in reverse order."""

    def __init__(self, first, second) -> None:
        self.stack = contextlib.ExitStack()
        self.first, self.second = first, second

    def __enter__(self):
        self.stack.enter_context(self.first)
        self.stack.enter_context(self.second)
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)


def checkpoint_context(inner: Callable | None = None):
    """A ``context_fn`` for ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` that
    replays dropkit's explicit-generator draws in the recomputation (see :func:`checkpoint`).

    Pass the function itself, ``context_fn=dropkit.random.checkpoint_context``; to combine it with
    another ``context_fn`` (selective checkpointing's, say), pass that one as ``inner``:
    ``context_fn=functools.partial(dropkit.random.checkpoint_context, inner=sac_context_fn)``.

    Returns the pair of context managers torch expects: the forward's and the recomputation's.
    """
    journal = _Journal()
    forward = _active(journal, False)
    recompute = _RecomputeContext(journal)
    if inner is None:
        return forward, recompute
    inner_forward, inner_recompute = inner()
    return _Both(forward, inner_forward), _Both(recompute, inner_recompute)


class _RecomputeContext:
    """The recomputation's context: a fresh replay cursor each time it is entered (torch enters it
    once per rerun)."""

    def __init__(self, journal: _Journal) -> None:
        self.journal = journal
        self.context = None

    def __enter__(self):
        self.context = _active(self.journal, True)
        return self.context.__enter__()

    def __exit__(self, *exc):
        context, self.context = self.context, None
        return context.__exit__(*exc)
