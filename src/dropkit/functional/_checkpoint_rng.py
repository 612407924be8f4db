"""Explicit generators under ``torch.utils.checkpoint``: the recomputed forward draws the same seeds.

Checkpointing reruns the forward during backward. It saves torch's global CPU RNG state (and the
devices' states) when the forward starts and restores them for the rerun, so a call that draws from
the global generator sees the same mask twice. A ``torch.Generator`` passed by the user is not
restored: left alone, the rerun would draw the next seed from it and compute gradients for a mask
the forward never used.

So the fast path keeps a journal per checkpointed region: in the region's forward, each draw from an
explicit generator first records ``(generator, generator.get_state())``; in the region's
recomputation, the i-th draw sets the i-th recorded state, draws, and puts the generator's state
back (a recomputation leaves the generator where the forward left it, as checkpoint does for the
global generator). The journal is held weakly by the region (the checkpoint's autograd context in
reentrant mode, its frame object in non-reentrant mode) and goes with it.

The region is found from the Python stack: the frames of ``torch/utils/checkpoint.py`` that run the
user's function (``CheckpointFunction.forward`` / ``.backward`` for ``use_reentrant=True``;
``checkpoint`` and ``unpack_hook`` (which runs ``recompute_fn``) for ``use_reentrant=False``). This is
done only for calls with an explicit generator, and only the frames are inspected. It depends on
how torch.utils.checkpoint is written (checked by tests for torch 2.13); where the frames are not
found, the call draws as before.
"""

from __future__ import annotations

import sys
import weakref

import torch
import torch.utils.checkpoint as _ckpt

__all__: list[str] = []

_FILE = _ckpt.__file__
_journals: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Journal:
    __slots__ = ("entries", "cursors")

    def __init__(self) -> None:
        self.entries: list[tuple[torch.Generator, torch.Tensor]] = []
        self.cursors: dict[object, int] = {}  # recomputation id -> next entry


def _region(frame):
    """(region, recomputation id or None) of the innermost checkpoint around ``frame``, or None."""
    recomputing = False
    while frame is not None:
        code = frame.f_code
        if code.co_filename == _FILE:
            name = code.co_name
            local = frame.f_locals
            if name == "forward" and "ctx" in local and "run_function" in local:
                return local["ctx"], None  # use_reentrant=True, forward
            if name == "backward" and "ctx" in local:
                return local["ctx"], id(frame)  # use_reentrant=True, recomputation
            if name == "recompute_fn":
                recomputing = True  # use_reentrant=False: the frame is that of unpack_hook
            elif name == "unpack_hook" and recomputing and "frame" in local:
                return local["frame"], local.get("gid")
            elif name == "checkpoint" and not recomputing and local.get("gen") is not None:
                gen_frame = local["gen"].gi_frame  # use_reentrant=False, forward
                if gen_frame is not None and "new_frame" in gen_frame.f_locals:
                    return gen_frame.f_locals["new_frame"], None
        frame = frame.f_back
    return None


def draw(generator: torch.Generator, draw_fn):
    """``draw_fn()`` (one seed draw from ``generator``), recorded in a checkpointed forward and
    replayed in its recomputation."""
    found = _region(sys._getframe(1))
    if found is None:
        return draw_fn()
    region, recompute_id = found
    try:
        journal = _journals.get(region)
    except TypeError:  # not weakly referenceable: nothing to keep
        return draw_fn()
    if recompute_id is None:
        if journal is None:
            journal = _journals[region] = _Journal()
        journal.entries.append((generator, generator.get_state()))
        return draw_fn()
    if journal is None:
        return draw_fn()
    index = journal.cursors.get(recompute_id, 0)
    journal.cursors[recompute_id] = index + 1
    if index >= len(journal.entries) or journal.entries[index][0] is not generator:
        return draw_fn()  # a different sequence of calls than the forward's: draw as usual
    now = generator.get_state()
    generator.set_state(journal.entries[index][1])
    try:
        return draw_fn()
    finally:
        generator.set_state(now)
