"""Rank-aware randomness: masks that differ across data-parallel ranks and agree where they must.

Under the usual distributed script every rank calls ``torch.manual_seed(seed)``, so every
data-parallel rank draws the same dropout masks at every step (torch's dropout and dropkit's alike).
Tensor-parallel ranks must instead agree: their shards are parts of one tensor, and dropkit gives a
``DTensor`` the same global mask whatever its sharding (:mod:`dropkit.ops.sharding`) only if all ranks
of its mesh draw the same seed.

A :class:`RankStream` separates the two. Pass it wherever a ``generator=`` is accepted (or set it on a
whole model with :func:`dropkit.nn.set_generator`): each draw takes one seed from its base (torch's
global generator by default, so ``torch.manual_seed`` still reproduces runs) and folds the stream's
rank into it (SplitMix64's finaliser over ``seed + (rank + 1) * golden``). Ranks with different
``rank`` values get independent masks; ranks with the same value (the tensor-parallel peers of one
data-parallel replica) get the same seed, hence one consistent global mask for a DTensor.

Because the base is torch's global generator, ``torch.utils.checkpoint`` (both modes, FSDP2,
``checkpoint_wrapper``) restores it for the recomputation as it does for torch's own dropout: no
wrapper is needed. A ``torch.Generator`` base is an explicit generator: checkpoint it with
:func:`dropkit.random.checkpoint`. This is Megatron-LM's pair of streams (a default one shared by
tensor-parallel peers, a model-parallel one seeded per tensor-parallel rank) without streams to
save: the state is torch's, and the rank is a constant.
"""

from __future__ import annotations

import torch

__all__ = ["RankStream", "fold_seed"]

_MASK64 = (1 << 64) - 1
_SEED_MASK = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def fold_seed(seed: int, rank: int) -> int:
    """``seed`` with ``rank`` folded in: a 63-bit seed, SplitMix64's finaliser of
    ``seed + (rank + 1) * 0x9E3779B97F4A7C15`` (mod 2**64), its top bit cleared."""
    z = (seed + (rank + 1) * _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return (z ^ (z >> 31)) & _SEED_MASK


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    # logical shift of int64 words holding uint64 values (>> on int64 is arithmetic)
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def fold_seed_tensor(seed: torch.Tensor, rank: int) -> torch.Tensor:
    """:func:`fold_seed` on an int64 tensor of seeds, on its device (wrapping int64 arithmetic)."""
    z = seed + _signed(((rank + 1) * _GOLDEN) & _MASK64)
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return (z ^ _shr(z, 31)) & _SEED_MASK


class RankStream:
    """A source of dropout randomness that folds a rank into every seed (see the module docstring).

    Args:
        rank: the integer folded in: the data-parallel rank, so that data-parallel replicas draw
            independent masks and their tensor-parallel peers (same ``rank``) agree.
        base: where the seeds come from: torch's global generator of the data's device (None, the
            default: ``torch.manual_seed`` reproduces runs and checkpointing restores it), or a
            ``torch.Generator``.

    Example::

        >>> rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        >>> stream = dropkit.random.RankStream(rank)
        >>> y = dropkit.functional.dropout(torch.randn(8, 16), 0.1, generator=stream)
    """

    __slots__ = ("rank", "base", "__weakref__")

    def __init__(self, rank: int, *, base: torch.Generator | None = None) -> None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise ValueError(f"RankStream: rank must be an int >= 0, but got {rank!r}")
        if base is not None and not isinstance(base, torch.Generator):
            raise TypeError(
                f"RankStream: base must be a torch.Generator or None, but got {type(base).__name__}"
            )
        self.rank = rank
        self.base = base

    @classmethod
    def from_mesh(
        cls, mesh, dims: str | tuple[str, ...], *, base: torch.Generator | None = None
    ) -> RankStream:
        """The stream of this process for a ``DeviceMesh``: ``rank`` is this process's position
        along the mesh dimensions ``dims`` (their names), numbered row-major, e.g. ``("dp",)`` for
        the data-parallel coordinate of a 2-D ``("dp", "tp")`` mesh."""
        names = (dims,) if isinstance(dims, str) else tuple(dims)
        mesh_names = tuple(mesh.mesh_dim_names or ())
        unknown = [d for d in names if d not in mesh_names]
        if not names or unknown:
            raise ValueError(
                f"RankStream.from_mesh: dims must name dimensions of the mesh {mesh_names}, "
                f"but got {names!r}"
            )
        coords = mesh.get_coordinate()
        if coords is None:
            raise ValueError("RankStream.from_mesh: this process is not part of the mesh")
        rank = 0
        for d in names:
            i = mesh_names.index(d)
            rank = rank * mesh.size(i) + coords[i]
        return cls(rank, base=base)

    @property
    def device(self) -> torch.device | None:
        """The base generator's device; None with torch's global generators (any device)."""
        return None if self.base is None else self.base.device

    def fold(self, seed: int) -> int:
        """``seed`` (one draw of the base) with this stream's rank folded in."""
        return fold_seed(seed, self.rank)

    def fold_tensor(self, seed: torch.Tensor) -> torch.Tensor:
        """:meth:`fold` on an int64 tensor, on its device (no synchronisation)."""
        return fold_seed_tensor(seed, self.rank)

    def __repr__(self) -> str:
        base = "" if self.base is None else f", base={self.base!r}"
        return f"RankStream(rank={self.rank}{base})"
