"""Randomness: where every dropkit mask comes from, and how it stays the same where it must.

* :class:`RankStream`: independent masks across data-parallel ranks, one consistent global mask
  across tensor-parallel ranks (pass it as ``generator=``, or to :func:`dropkit.nn.set_generator`).
* :func:`checkpoint` and :func:`checkpoint_context`: activation checkpointing in which draws from an
  explicit ``torch.Generator`` give the forward's masks again in the recomputation.
* :func:`draw_seed`: the seed one fast-path call draws (to reproduce its mask, e.g. with
  :func:`dropkit.functional.fast_keep_mask`).

The machinery (every draw, the operators compiled graphs call) is in :mod:`dropkit.random.draws`;
docs/distributed.md explains what masks each rank sees.
"""

import torch

from dropkit._validation import _check_generator
from dropkit.random import draws
from dropkit.random.checkpoint import checkpoint, checkpoint_context
from dropkit.random.ranks import RankStream, fold_seed

__all__ = ["RankStream", "checkpoint", "checkpoint_context", "draw_seed", "fold_seed"]


def draw_seed(generator: "torch.Generator | RankStream | None" = None) -> int:
    """The 63-bit seed the fast path draws for one CPU call: one draw from ``generator`` (torch's
    global CPU generator for None; a :class:`RankStream`'s base, its rank folded in), so
    ``torch.manual_seed`` reproduces it."""
    _check_generator(generator, torch.device("cpu"), "draw_seed")
    return draws.draw_seed(generator)
