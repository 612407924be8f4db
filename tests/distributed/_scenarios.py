"""Training as users run it on several ranks (each function runs on every rank of a gloo group;
rank 0's return value, a dict of named checks, comes back to tests/distributed/test_training.py).

Each check compares what the ranks compute with what one process computes from the same seed, or
the masks that different ranks draw, and records True/False (or a message) under a name.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn

import dropkit
import dropkit.functional as DF
import dropkit.nn as dnn

N_FAST = 64 * 128  # above the fast path's threshold


def _gather(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out


def _mlp(width: int = 128, p: float = 0.5, generator=None) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(width, width),
        nn.ReLU(),
        dnn.Dropout(p, generator=generator),
        nn.Linear(width, 8),
    )


# ---- data parallel -----------------------------------------------------------------------------------


def ddp(rank: int, world: int) -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP

    checks = {}
    for label, rows in (("fast", 64), ("plain", 2)):  # 64 x 128 is above the threshold, 2 x 128 not
        model = _mlp()
        local = copy.deepcopy(model)
        ddp_model = DDP(model)
        torch.manual_seed(100 + rank)  # each rank its own data
        x = torch.randn(rows, 128)
        torch.manual_seed(7)  # the usual script: one seed on every rank
        ddp_model(x).square().sum().backward()
        torch.manual_seed(7)
        local(x).square().sum().backward()
        local_grads = torch.cat([p.grad.flatten() for p in local.parameters()])
        mean = torch.stack(_gather(local_grads)).mean(0)
        synced = torch.cat([p.grad.flatten() for p in ddp_model.parameters()])
        checks[f"ddp-{label}: gradients are the mean of the local ones"] = bool(
            torch.allclose(synced, mean, rtol=1e-6, atol=1e-7)
        )
    # what masks ranks draw: one seed everywhere gives identical masks; a RankStream does not
    ones = torch.ones(N_FAST)
    torch.manual_seed(7)
    same = _gather(DF.dropout(ones, 0.5))
    torch.manual_seed(7)
    own = _gather(DF.dropout(ones, 0.5, generator=dropkit.random.RankStream(rank)))
    checks["same seed: identical masks on every rank"] = all(torch.equal(m, same[0]) for m in same)
    checks["RankStream(rank): different masks on every rank"] = all(
        not torch.equal(own[i], own[j]) for i in range(world) for j in range(i)
    )
    # and a rank's stream gives what one process computes with that stream
    torch.manual_seed(7)
    mine = DF.dropout(ones, 0.5, generator=dropkit.random.RankStream(rank))
    checks["RankStream: reproducible from torch.manual_seed"] = bool(torch.equal(mine, own[rank]))
    return checks


# ---- FSDP2 and activation checkpointing ------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self, width: int, generator=None) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.drop = dnn.Dropout(0.3, generator=generator)

    def forward(self, x):
        return x + self.drop(torch.relu(self.linear(x)))


class _Net(nn.Module):
    def __init__(self, width: int = 128, blocks: int = 3, generator=None, ckpt=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(_Block(width, generator) for _ in range(blocks))
        self.head = nn.Linear(width, 4)
        self.ckpt = ckpt

    def forward(self, x):
        for block in self.blocks:
            x = block(x) if self.ckpt is None else self.ckpt(block, x)
        return self.head(x)


def _fsdp_step(ckpt, explicit: bool):
    from torch.distributed.fsdp import fully_shard

    gen = (lambda: torch.Generator().manual_seed(3)) if explicit else (lambda: None)
    torch.manual_seed(50)
    # the same data on every rank, so the result must equal one process's; requiring grad, as
    # reentrant checkpoint needs an input that does
    x = torch.randn(64, 128, requires_grad=True)
    ref = _Net(generator=gen())
    torch.manual_seed(9)
    ref(x).square().mean().backward()
    net = _Net(generator=gen(), ckpt=ckpt)
    for block in net.blocks:
        fully_shard(block)
    fully_shard(net)
    torch.manual_seed(9)
    net(x).square().mean().backward()
    for (name, a), (_, b) in zip(ref.named_parameters(), net.named_parameters(), strict=True):
        full = b.grad.full_tensor()
        if not torch.allclose(a.grad, full, rtol=1e-5, atol=1e-7):
            return f"{name}: gradient differs from one process"
    return True


def fsdp(rank: int, world: int) -> dict:
    from torch.utils.checkpoint import checkpoint

    checks = {}
    modes = {
        "no checkpoint": None,
        "torch checkpoint, non-reentrant": lambda f, x: checkpoint(f, x, use_reentrant=False),
        "torch checkpoint, reentrant": lambda f, x: checkpoint(f, x, use_reentrant=True),
        "dropkit.random.checkpoint, non-reentrant": lambda f, x: dropkit.random.checkpoint(
            f, x, use_reentrant=False
        ),
        "dropkit.random.checkpoint, reentrant": lambda f, x: dropkit.random.checkpoint(
            f, x, use_reentrant=True
        ),
        "checkpoint_context": lambda f, x: checkpoint(
            f, x, use_reentrant=False, context_fn=dropkit.random.checkpoint_context
        ),
    }
    for name, ckpt in modes.items():
        checks[f"fsdp2, global generator, {name}"] = _fsdp_step(ckpt, explicit=False)
        checks[f"fsdp2, explicit generator, {name}"] = _fsdp_step(ckpt, explicit=True)
    # checkpoint_wrapper with dropkit's checkpoint function
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    torch.manual_seed(50)
    x = torch.randn(64, 128)
    ref = _Net(generator=torch.Generator().manual_seed(3))
    torch.manual_seed(9)
    ref(x).square().mean().backward()
    net = _Net(generator=torch.Generator().manual_seed(3))
    net.blocks = nn.ModuleList(
        checkpoint_wrapper(b, checkpoint_fn=dropkit.random.checkpoint, use_reentrant=False)
        for b in net.blocks
    )
    torch.manual_seed(9)
    net(x).square().mean().backward()
    checks["checkpoint_wrapper(checkpoint_fn=dropkit.random.checkpoint)"] = all(
        torch.equal(a.grad, b.grad) for a, b in zip(ref.parameters(), net.parameters(), strict=True)
    )
    return checks


# ---- tensor parallel ---------------------------------------------------------------------------------


class _TPMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(32, 128)
        self.drop = dnn.Dropout(0.5)
        self.down = nn.Linear(128, 32)

    def forward(self, x):
        self.pre = torch.relu(self.up(x))
        self.hidden = self.drop(self.pre)
        return self.down(self.hidden)


def tensor_parallel(rank: int, world: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    checks = {}
    mesh = init_device_mesh("cpu", (world,))
    for label, rows in (("fast", 64), ("plain", 2)):
        torch.manual_seed(1)
        x = torch.randn(rows, 32)
        ref = _TPMlp()
        torch.manual_seed(9)
        out_ref = ref(x)
        out_ref.square().sum().backward()
        tp = parallelize_module(
            _TPMlp(),
            mesh,
            {"up": ColwiseParallel(use_local_output=False), "down": RowwiseParallel()},
        )
        torch.manual_seed(9)
        out = tp(x)
        out.square().sum().backward()
        hidden = tp.hidden
        checks[f"tp-{label}: dropout keeps the sharded placement"] = isinstance(
            hidden, DTensor
        ) and tuple(hidden.placements) == tuple(tp.pre.placements) != (Replicate(),)
        checks[f"tp-{label}: the shards form the one-process mask"] = bool(
            torch.equal(hidden.full_tensor() == 0, ref.hidden == 0)
        )
        out_full = out.full_tensor() if isinstance(out, DTensor) else out
        checks[f"tp-{label}: output as one process"] = bool(
            torch.allclose(out_full, out_ref, rtol=1e-5, atol=1e-6)
        )
        grad = tp.up.weight.grad.full_tensor()
        # the row-wise layer sums partial products across ranks: float32 rounding of a sum
        ok = torch.allclose(grad, ref.up.weight.grad, rtol=1e-4, atol=1e-5)
        checks[f"tp-{label}: gradient as one process"] = (
            True if ok else f"max diff {(grad - ref.up.weight.grad).abs().max().item():.3g}"
        )
    # a Partial DTensor is refused with dropkit's message
    from torch.distributed.tensor import Partial

    part = DTensor.from_local(torch.ones(4, 8), mesh, [Partial()])
    try:
        DF.dropout(part, 0.5)
        checks["Partial placement refused"] = "no error"
    except ValueError as err:
        checks["Partial placement refused"] = "dropkit" in str(err) and "Partial" in str(err)
    # ranks seeded differently: refused rather than shards of different masks
    from torch.distributed.tensor import Shard, distribute_tensor

    sharded = distribute_tensor(torch.ones(64, 128), mesh, [Shard(1)])
    torch.manual_seed(rank)
    try:
        DF.dropout(sharded, 0.5, generator=torch.Generator().manual_seed(rank))
        checks["ranks in different RNG states refused"] = "no error"
    except RuntimeError as err:
        checks["ranks in different RNG states refused"] = "different dropout masks" in str(err)
    return checks


# ---- data x tensor parallel with rank streams (4 ranks) --------------------------------------------------


def streams_2d(rank: int, world: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.utils.checkpoint import checkpoint

    checks = {}
    mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("dp", "tp"))
    tp = mesh["tp"]
    stream = dropkit.random.RankStream.from_mesh(mesh, "dp")
    dp_rank = mesh.get_coordinate()[0]
    full = torch.ones(64, 256)
    for label, fast in (("fast", True), ("plain", False)):
        with dropkit.use_fast_dropout(fast):
            x = distribute_tensor(full, tp, [Shard(1)])
            torch.manual_seed(7)
            mask = DF.dropout(x, 0.5, generator=stream).full_tensor() != 0  # this dp group's mask
            torch.manual_seed(7)
            expected = DF.dropout(full, 0.5, generator=dropkit.random.RankStream(dp_rank)) != 0
        masks = _gather(mask.to(torch.uint8))
        coords = [(r // (world // 2), r % (world // 2)) for r in range(world)]
        same_dp = all(
            torch.equal(masks[i], masks[j])
            for i in range(world)
            for j in range(world)
            if coords[i][0] == coords[j][0]
        )
        other_dp = all(
            not torch.equal(masks[i], masks[j])
            for i in range(world)
            for j in range(world)
            if coords[i][0] != coords[j][0]
        )
        checks[f"2d-{label}: tensor-parallel peers hold one global mask"] = same_dp
        checks[f"2d-{label}: data-parallel replicas draw independent masks"] = other_dp
        checks[f"2d-{label}: the mask is one process's under the same stream"] = bool(
            torch.equal(mask, expected)
        )
    # a stream on torch's generator needs no checkpoint wrapper: both modes replay it
    for reentrant in (False, True):
        w = torch.ones(N_FAST, requires_grad=True)

        def f(t):
            return DF.dropout(t * 1.0, 0.5, generator=stream)

        torch.manual_seed(3)
        out = checkpoint(f, w, use_reentrant=reentrant)
        out.sum().backward()
        checks[f"RankStream under torch checkpoint (reentrant={reentrant})"] = bool(
            torch.equal(w.grad, out.detach())
        )
    return checks
