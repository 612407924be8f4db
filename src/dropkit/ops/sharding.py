"""DTensor: every shard computes its part of the one global mask (placeholder, being built)."""

from __future__ import annotations

from dropkit.ops._torch import is_dtensor

__all__ = ["dropout", "is_dtensor", "philox_dropout"]


def philox_dropout(input, seed, p, s, save_bits):
    raise NotImplementedError("dropkit: DTensor support is being built")


def dropout(input, p, s, inplace, generator, save_bits):
    raise NotImplementedError("dropkit: DTensor support is being built")
