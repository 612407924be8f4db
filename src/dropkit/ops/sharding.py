"""DTensor: a sharded tensor gets the mask its whole would get, whatever the sharding.

dropkit's fast-path mask is a function of (seed, element index) (:mod:`dropkit.reference.philox`), so
with the same seed on every rank each shard can compute exactly its part of one global mask:
``op(dtensor).full_tensor()`` equals ``op(dtensor.full_tensor())`` on one process, bit for bit, and so
does the gradient, for ``Replicate`` and ``Shard(d)`` placements on any mesh (uneven shards too). The
result is a DTensor with the input's placements. Three rules:

* **Element-wise dropout** (``dropout``, and ``dropout_add``/``bias_dropout_add`` as their
  composition): on the fast path (chosen on the *global* size, as the whole would be), each rank
  computes the mask of its own box of global indices with :func:`dropkit.kernels.cpu.keep_runs`: no
  communication, work and memory of the shard. On the plain path (torch's Bernoulli draws, which are
  not indexed), each rank draws the global mask and keeps its slice.
* **The rest of the family** (channel, shared, locked, alpha, Gaussian, DropBlock, DropPath,
  DropConnect, concrete, embedding, weight dropout, additive noise): ``gather``: the DTensor
  arguments are gathered (``full_tensor``), the op runs on the whole on every rank (same seed, same
  draws, same path) and each rank keeps its shard. Exact by construction, for any op; it costs an
  all-gather and the whole op's work on each rank (a ``Replicate`` input costs nothing extra).
* Ops without a meaning for a DTensor (the variational RNNs, whose recurrence torch's own
  ``nn.LSTM`` does not shard either) refuse it, naming dropkit.

``Partial`` placements (pending sums) and placements other than ``Replicate``/``Shard`` are refused:
dropout of a partial sum is not the sum of dropouts; redistribute first.

All ranks of the mesh must draw the same seed (the usual ``torch.manual_seed(seed)`` on every rank,
or one :class:`~dropkit.random.RankStream` rank per tensor-parallel group): the first call per mesh
and generator checks it with one small all-gather per mesh dimension and raises if the ranks
disagree, instead of returning replicas that differ.
"""

from __future__ import annotations

import functools
import hashlib
import weakref

import torch

from dropkit.ops._torch import is_dtensor

__all__ = ["dropout", "gather", "is_dtensor", "local_box", "plain_dropout", "refuse", "rule"]


# ---- placements -------------------------------------------------------------------------------------


def _check_placements(dt, op: str) -> None:
    from torch.distributed.tensor import Replicate, Shard

    for p in dt.placements:
        if type(p) is Replicate or type(p) is Shard:
            continue
        if type(p).__name__ == "Partial":
            raise ValueError(
                f"dropkit.{op}: a DTensor with a Partial placement (a pending sum) has no "
                "element-wise dropout (dropout of a partial sum is not the sum of dropouts); "
                "redistribute it to Replicate or Shard first"
            )
        raise ValueError(
            f"dropkit.{op}: DTensor placement {p} is not supported (Replicate and Shard(d) are); "
            "redistribute the tensor first"
        )


def local_box(dt) -> tuple[list[int], list[int]]:
    """``(offsets, local shape)``: where this rank's shard of ``dt`` lies in the global tensor.

    Shards follow DTensor's rule: ``Shard(d)`` on a mesh dimension of size ``m`` gives coordinate
    ``c`` the chunk ``[c * k, min((c + 1) * k, n))`` of the current extent ``n`` along ``d``, with
    ``k = ceil(n / m)``; mesh dimensions apply in order, each splitting what the previous left.
    """
    from torch.distributed.tensor import Shard

    shape = list(dt.shape)
    offsets = [0] * len(shape)
    lengths = list(shape)
    coords = dt.device_mesh.get_coordinate()
    for mesh_dim, p in enumerate(dt.placements):
        if type(p) is not Shard:
            continue
        d = p.dim % len(shape)
        m = dt.device_mesh.size(mesh_dim)
        chunk = -(-lengths[d] // m)
        start = min(coords[mesh_dim] * chunk, lengths[d])
        offsets[d] += start
        lengths[d] = max(min(chunk, lengths[d] - start), 0)
    return offsets, lengths


def _runs(offsets: list[int], lengths: list[int], shape: list[int]) -> tuple[torch.Tensor, int]:
    """The box as runs of consecutive global (row-major) indices: ``(starts, length)``."""
    ndim = len(shape)
    strides = [1] * ndim
    for d in range(ndim - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    if ndim == 0:
        return torch.zeros(1, dtype=torch.int64), 1
    # the last dimension not covered whole: dimensions after it are full, so each run spans it
    last = max([d for d in range(ndim) if lengths[d] != shape[d]], default=0)
    length = lengths[last] * strides[last]
    start = torch.zeros((), dtype=torch.int64)
    for d in range(last + 1):
        idx = torch.arange(offsets[d], offsets[d] + (lengths[d] if d < last else 1))
        start = start.unsqueeze(-1) + idx * strides[d]
    return start.reshape(-1), length


def _local_slice(full: torch.Tensor, offsets: list[int], lengths: list[int]) -> torch.Tensor:
    index = tuple(slice(o, o + n) for o, n in zip(offsets, lengths, strict=True))
    return full[index]


# ---- one seed on every rank ----------------------------------------------------------------------------

# What was checked, by mesh, then by generator (None: the global one). Weak references, not ids: the
# decision to run the collective must be the same on every rank, and an id can be reused.
_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(generator, device_type: str) -> int:
    # the state the next draw comes from (and a stream's rank): equal on ranks that will agree
    from dropkit.random.ranks import RankStream

    rank = 0
    if type(generator) is RankStream:
        rank, generator = generator.rank + 1, generator.base
    if generator is not None:
        state = generator.get_state()
    elif device_type == "cpu":
        state = torch.random.get_rng_state()
    else:  # the device's default generator, which the draws on that device use
        state = torch.get_device_module(device_type).get_rng_state()
    digest = hashlib.blake2b(state.numpy().tobytes(), digest_size=7).digest()
    return int.from_bytes(digest, "little") ^ (rank << 56)


def check_same_seed(dt, generator, op: str) -> None:
    """Raise if the ranks of ``dt``'s mesh would draw different seeds (checked once per mesh and
    generator in a process: one all-gather of 8 bytes per mesh dimension)."""
    import torch.distributed as dist

    mesh = dt.device_mesh
    done = _checked.setdefault(mesh, {"global": False, "generators": weakref.WeakSet()})
    seen = done["global"] if generator is None else generator in done["generators"]
    if seen or torch.compiler.is_compiling():
        return
    fingerprint = _fingerprint(generator, mesh.device_type)
    mine = torch.tensor([fingerprint], dtype=torch.int64, device=mesh.device_type)
    for d in range(mesh.ndim):
        group = mesh.get_group(d)
        size = dist.get_world_size(group)
        if size == 1:
            continue
        got = [torch.empty_like(mine) for _ in range(size)]
        dist.all_gather(got, mine, group=group)
        if any(not torch.equal(g, mine) for g in got):
            raise RuntimeError(
                f"dropkit.{op}: the ranks of this DTensor's mesh (dimension {d}) would draw "
                "different dropout masks: their generators are in different states. Seed every "
                "rank alike (torch.manual_seed(seed) on all ranks), or give data-parallel replicas "
                "their own masks with dropkit.random.RankStream(data_parallel_rank), which keeps "
                "one seed within a tensor-parallel group"
            )
    if generator is None:
        done["global"] = True
    else:
        done["generators"].add(generator)


# ---- element-wise dropout ------------------------------------------------------------------------------


class _KeepMask(torch.autograd.Function):
    """``x * (s if keep else 0)`` with a byte mask; linear in ``x``: backward and jvp apply the
    same mask."""

    @staticmethod
    def forward(x, keep, s):
        return x * (keep.to(x.dtype) * s)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, keep, s = inputs
        ctx.save_for_backward(keep)
        ctx.s, ctx.keep = s, keep

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return _KeepMask.apply(grad, keep, ctx.s), None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        return _KeepMask.apply(x_t, ctx.keep, ctx.s)


def _box_keep(dt, offsets, lengths, p: float, seed: int) -> torch.Tensor:
    """The uint8 keep-mask of this rank's box, in the local tensor's shape."""
    starts, length = _runs(offsets, lengths, list(dt.shape))
    if dt.device_mesh.device_type == "cpu":
        from dropkit.kernels import cpu

        keep = cpu.keep_runs(starts, length, p, seed)
    else:  # the CPU kernels' mask, computed on the host (accelerators: correct, not fast)
        from dropkit.kernels import cpu

        keep = cpu.keep_runs(starts, length, p, seed).to(dt.device_mesh.device_type)
    return keep.view(lengths)


def _from_local(local: torch.Tensor, like):
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        local,
        like.device_mesh,
        like.placements,
        run_check=False,
        shape=like.shape,
        stride=like.stride(),
    )


def dropout(input, p: float, s: float, inplace: bool, generator, save_bits: bool):
    """The fast path's dropout of a DTensor: each rank computes its box of the global mask."""
    from dropkit.random import draws

    _check_placements(input, "dropout")
    check_same_seed(input, generator, "dropout")
    device = input.device
    # the seed one process draws for the whole tensor (on an accelerator, from its generator)
    seed = (
        draws.draw_seed(generator)
        if device.type == "cpu"
        else int(draws.device_seed(generator, device))
    )
    offsets, lengths = local_box(input)
    keep = _box_keep(input, offsets, lengths, p, seed)
    local = input.to_local().contiguous()
    scale = torch.tensor(s, dtype=local.dtype, device=local.device)
    out = _from_local(_KeepMask.apply(local, keep, scale), input)
    return input.copy_(out) if inplace else out


def plain_dropout(input, p: float, apply, generator):
    """The plain path's dropout of a DTensor: every rank draws the global mask (torch's Bernoulli,
    the draw one process makes) and applies its slice; ``apply(local, keep)`` is the plain path's
    arithmetic."""
    from dropkit.random import draws

    _check_placements(input, "dropout")
    check_same_seed(input, generator, "dropout")
    mask = torch.empty(input.shape, dtype=torch.bool, device=input.device_mesh.device_type)
    keep = draws.bernoulli_(mask, 1.0 - p, generator)
    offsets, lengths = local_box(input)
    local = apply(input.to_local(), _local_slice(keep, offsets, lengths))
    return _from_local(local, input)


# ---- the rest of the family: gather, run on the whole, keep the shard ------------------------------------


def _first_dtensor(args, kwargs):
    for a in (*args, *kwargs.values()):
        if is_dtensor(a):
            return a
    return None


def gather(fn, op: str, args, kwargs):
    """``fn`` on the gathered DTensor arguments; each output as a DTensor with the placements of the
    first DTensor argument (see the module docstring)."""
    from torch.distributed.tensor import DTensor, Replicate

    first = _first_dtensor(args, kwargs)
    mesh = first.device_mesh
    for a in (*args, *kwargs.values()):
        if is_dtensor(a):
            _check_placements(a, op)
            if a.device_mesh != mesh:
                raise ValueError(f"dropkit.{op}: DTensor arguments on different device meshes")
    check_same_seed(first, kwargs.get("generator"), op)
    inplace = kwargs.get("inplace", False) is True

    def whole(a):
        return a.full_tensor() if is_dtensor(a) else a

    full_kwargs = {k: whole(v) for k, v in kwargs.items()}
    if inplace:
        full_kwargs["inplace"] = False
    out = fn(*(whole(a) for a in args), **full_kwargs)
    replicate = [Replicate()] * mesh.ndim

    def shard(t):
        if not isinstance(t, torch.Tensor):
            return t
        full = DTensor.from_local(t, mesh, replicate, run_check=False)
        # the input's placements where the output has the input's rank (a reduction: Replicate)
        if t.dim() != first.dim():
            return full
        return full.redistribute(mesh, first.placements)

    result = tuple(shard(t) for t in out) if isinstance(out, tuple) else shard(out)
    if inplace:
        return first.copy_(result)
    return result


def _has_dtensor(args, kwargs) -> bool:
    # cheap for plain calls: tensors, numbers and flags fail the first test
    for a in args:
        if type(a) is not torch.Tensor and type(a).__name__ == "DTensor":
            return is_dtensor(a)
    return bool(kwargs) and any(type(v).__name__ == "DTensor" for v in kwargs.values())


def _all_dtensors(args, kwargs) -> bool:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    return all(is_dtensor(t) for t in tensors)


def refuse(op: str, why: str):
    raise TypeError(
        f"dropkit.{op}: DTensor inputs are not supported ({why}); call it on local tensors"
    )


def rule(kind: str = "gather"):
    """Decorate a public op: a DTensor argument takes the ``gather`` rule; with ``kind="compose"``
    an op whose tensor arguments are all DTensors runs as it is (its composition of DTensor ops,
    dropout's among them); ``kind="refuse: <why>"`` refuses DTensors. Plain tensors pay one type
    check per argument."""

    def decorate(fn):
        op = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _has_dtensor(args, kwargs):
                return fn(*args, **kwargs)
            if kind.startswith("refuse"):
                refuse(op, kind.partition(":")[2].strip())
            if kind == "compose" and _all_dtensors(args, kwargs):
                return fn(*args, **kwargs)  # its composition of DTensor ops (dropout's box)
            return gather(fn, op, args, kwargs)

        wrapper.__wrapped_op__ = fn  # type: ignore[attr-defined]
        return wrapper

    return decorate


def philox_dropout(input, seed, p, s, save_bits):
    """The operator ``dropkit::philox_dropout`` on a DTensor: this rank's box of the global mask of
    ``seed``; ``(out, bits)`` with an empty ``bits`` (the box keeps its byte mask itself)."""
    _check_placements(input, "philox_dropout")
    offsets, lengths = local_box(input)
    keep = _box_keep(input, offsets, lengths, p, int(seed))
    local = input.to_local().contiguous()
    scale = torch.tensor(s, dtype=local.dtype, device=local.device)
    out = _from_local(_KeepMask.apply(local, keep, scale), input)
    return out, torch.empty(0, dtype=torch.uint8, device=local.device)
