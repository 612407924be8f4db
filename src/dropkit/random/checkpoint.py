"""Activation checkpointing with explicit generators: the recomputation draws the forward's masks.

``torch.utils.checkpoint`` reruns a region's forward during backward. It saves torch's global CPU
generator (and the devices' generators) when the forward starts and restores them for the rerun, so
a draw from the global generator gives the same mask twice: dropkit's ops with ``generator=None``, or
with a :class:`~dropkit.random.RankStream` on the global generator, need nothing more. A
``torch.Generator`` passed by the user is not restored: the rerun would draw the next mask and the
gradient would belong to a mask the forward never used.

So draws from explicit generators are journalled per checkpointed region: in the region's forward,
each draw records the generator and its state; in a recomputation, the i-th draw sets the i-th
recorded state, draws, and puts the generator back where it was (the rerun leaves it where the
forward left it, as checkpoint does for the global generator). A recomputation that draws
differently from its forward (another generator, more draws) raises. Where the regions come from:

* **Public torch APIs**, guaranteed on any torch: :func:`checkpoint` is
  ``torch.utils.checkpoint.checkpoint`` around a wrapper of the function, whose first call is the
  forward and every later call a recomputation (both ``use_reentrant`` modes; ``checkpoint_wrapper``
  takes it as ``checkpoint_fn``); :func:`checkpoint_context` is the same journal as a ``context_fn``
  for ``use_reentrant=False`` (``torch.utils.checkpoint``, ``checkpoint_wrapper``, FSDP2, Hugging
  Face's ``gradient_checkpointing_kwargs``), composable with selective checkpointing's.
* **A plain** ``torch.utils.checkpoint`` **call**, the way most code checkpoints: the region is read
  from the frames of ``torch/utils/checkpoint.py`` on the Python stack (the reentrant
  ``CheckpointFunction``'s ``ctx``; the non-reentrant ``_CheckpointFrame`` of the forward's
  generator or of the recomputation's unpack hook). These are torch internals, so the reading is
  checked on every torch of the version matrix (``tests/random/test_checkpoint.py``), and where
  dropkit finds itself inside those frames but cannot read the region (a torch that rearranged
  them) the draw raises an error naming the public ways out above: never a silent redraw. Until
  2.14 moved the non-reentrant forward into ``_checkpoint_impl``, dropkit read only the function
  names of 2.13 and, not finding them, drew anew: issue 21's silent wrong gradient.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
import weakref
from collections.abc import Callable

import torch
import torch.utils.checkpoint as _torch_checkpoint

__all__ = ["checkpoint", "checkpoint_context", "draw"]

_CHECKPOINT_FILE = _torch_checkpoint.__file__
_local = threading.local()  # .frames: the active journals of dropkit's own regions, innermost last
# The journals of plain torch.utils.checkpoint regions, held weakly by the region (the reentrant
# function's ctx, the non-reentrant _CheckpointFrame) and gone with it.
_journals: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_WAYS_OUT = (
    "use dropkit.random.checkpoint(fn, *args, use_reentrant=...) instead of "
    "torch.utils.checkpoint.checkpoint, or pass context_fn=dropkit.random.checkpoint_context "
    "(use_reentrant=False; checkpoint_wrapper, FSDP2 and Hugging Face's gradient_checkpointing_kwargs "
    "take it too), or draw from torch's global generator (generator=None, or a "
    "dropkit.random.RankStream without base), which checkpoint restores"
)


class _Journal:
    """The explicit-generator draws of one checkpointed forward: ``(generator, state before)``;
    ``cursors``: the next entry of each recomputation of a plain torch region, by its id."""

    __slots__ = ("entries", "cursors")

    def __init__(self) -> None:
        self.entries: list[tuple[torch.Generator, torch.Tensor]] = []
        self.cursors: dict[object, int] = {}


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


def _torch_region(frame):
    """``(region, recomputation id or None)`` of the innermost ``torch.utils.checkpoint`` region
    around ``frame``, or None outside every region; raises inside one it cannot read."""
    inside = False
    while frame is not None:
        if frame.f_code.co_filename == _CHECKPOINT_FILE:
            inside = True
            found = _read_region(frame)
            if found is not None:
                return found
        frame = frame.f_back
    if inside:
        raise RuntimeError(
            f"dropkit: generator= (a torch.Generator) inside a torch.utils.checkpoint of torch "
            f"{torch.__version__} whose structure dropkit does not recognise: its recomputation "
            f"could draw a different mask from the forward's; {_WAYS_OUT}"
        )
    return None


def _read_region(frame):
    local = frame.f_locals
    checkpoint_frame = getattr(_torch_checkpoint, "_CheckpointFrame", None)
    if "run_function" in local and "ctx" in local:  # reentrant: CheckpointFunction.forward
        return local["ctx"], None
    if frame.f_code.co_name == "backward" and "ctx" in local:  # reentrant: the recomputation
        return local["ctx"], id(frame)
    region = local.get("frame")
    if checkpoint_frame is not None and isinstance(region, checkpoint_frame) and "gid" in local:
        return region, local["gid"]  # non-reentrant: the unpack hook that recomputes
    gen = local.get("gen")  # non-reentrant: the forward, beside checkpoint's generator
    if isinstance(gen, types.GeneratorType) and gen.gi_frame is not None:
        region = gen.gi_frame.f_locals.get("new_frame")
        if checkpoint_frame is not None and isinstance(region, checkpoint_frame):
            return region, None
    return None


def _torch_journal(region) -> _Journal:
    try:
        journal = _journals.get(region)
        if journal is None:
            journal = _journals[region] = _Journal()
    except TypeError:  # not weakly referenceable: a torch that changed the region's type
        raise RuntimeError(
            f"dropkit: generator= inside torch.utils.checkpoint: the region cannot hold dropkit's "
            f"journal on torch {torch.__version__}; {_WAYS_OUT}"
        ) from None
    return journal


def draw(generator: torch.Generator, fn: Callable, *args):
    """``fn(*args)``, one draw from the explicit ``generator``: recorded in a checkpointed forward,
    replayed in its recomputation (see the module docstring)."""
    frames = getattr(_local, "frames", None) or ()
    found = _torch_region(sys._getframe(1))
    if not frames and found is None:
        return fn(*args)
    region, recompute_id = found if found is not None else (None, None)
    # Where the state comes from: the innermost of dropkit's regions being recomputed; else a torch
    # region being recomputed (dropkit's regions inside it are new, recording); else the generator
    # as it is. Every region recording inside that source records the state the draw uses.
    source = next((i for i in range(len(frames) - 1, -1, -1) if frames[i].replaying), None)
    if source is not None:
        entries, index = frames[source].journal.entries, frames[source].cursor
        frames[source].cursor = index + 1
        recorders = [f.journal for f in frames[source + 1 :]]
        if region is not None and recompute_id is None:
            recorders.append(_torch_journal(region))
    elif recompute_id is not None:
        journal = _torch_journal(region)
        entries, index = journal.entries, journal.cursors.get(recompute_id, 0)
        journal.cursors[recompute_id] = index + 1
        recorders = [f.journal for f in frames]
    else:
        state = generator.get_state()
        recorders = [f.journal for f in frames]
        if region is not None:
            recorders.append(_torch_journal(region))
        for journal in recorders:
            journal.entries.append((generator, state))
        return fn(*args)
    if index >= len(entries) or entries[index][0] is not generator:
        raise RuntimeError(
            "dropkit: a checkpointed region's recomputation draws from its generators differently "
            f"from its forward (draw {index + 1}; the forward made {len(entries)}): the masks "
            "would differ; make the region's calls the same in both passes"
        )
    state = entries[index][1]
    for journal in recorders:
        journal.entries.append((generator, state))
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
