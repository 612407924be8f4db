"""Training on real ranks (issue 21): DDP, FSDP2 with activation checkpointing, tensor parallelism,
and data x tensor parallelism with rank streams, each against one process from the same seed.

Each scenario of :mod:`tests.distributed._scenarios` runs once on a gloo group on 127.0.0.1
(2 ranks; 4 for the 2-D mesh), in bounded time, and returns named checks; a test asserts that
every expected check ran and passed.
"""

from __future__ import annotations

import pytest
import torch.distributed as dist

from tests.distributed.launch import run

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")


def _checks(name: str, world: int) -> dict:
    return run(f"tests.distributed._scenarios:{name}", world_size=world, timeout=600)


def _assert_all(checks: dict, expected: set[str]) -> None:
    missing = expected - set(checks)
    assert not missing, f"checks that did not run: {sorted(missing)}"
    failed = {k: v for k, v in checks.items() if v is not True}
    assert not failed, failed


def test_ddp_syncs_gradients_and_rank_streams_separate_masks():
    _assert_all(
        _checks("ddp", 2),
        {
            "ddp-fast: gradients are the mean of the local ones",
            "ddp-plain: gradients are the mean of the local ones",
            "same seed: identical masks on every rank",
            "RankStream(rank): different masks on every rank",
            "RankStream: reproducible from torch.manual_seed",
        },
    )


def test_fsdp2_with_checkpointing_equals_one_process():
    modes = (
        "no checkpoint",
        "dropkit.random.checkpoint, non-reentrant",
        "dropkit.random.checkpoint, reentrant",
        "checkpoint_context",
    )
    torch_modes = ("torch checkpoint, non-reentrant", "torch checkpoint, reentrant")
    expected = {
        f"fsdp2, {kind} generator, {m}"
        for m in modes + torch_modes
        for kind in ("global", "explicit")
    }
    expected.add("checkpoint_wrapper(checkpoint_fn=dropkit.random.checkpoint)")
    _assert_all(_checks("fsdp", 2), expected)


def test_tensor_parallel_dropout_is_the_global_mask():
    expected = {
        f"tp-{label}: {what}"
        for label in ("fast", "plain")
        for what in (
            "dropout keeps the sharded placement",
            "the shards form the one-process mask",
            "output as one process",
            "gradient as one process",
        )
    }
    expected |= {"Partial placement refused", "ranks in different RNG states refused"}
    _assert_all(_checks("tensor_parallel", 2), expected)


def test_data_by_tensor_parallel_mesh_with_rank_streams():
    expected = {
        f"2d-{label}: {what}"
        for label in ("fast", "plain")
        for what in (
            "tensor-parallel peers hold one global mask",
            "data-parallel replicas draw independent masks",
            "the mask is one process's under the same stream",
        )
    }
    expected |= {f"RankStream under torch checkpoint (reentrant={r})" for r in (False, True)}
    _assert_all(_checks("streams_2d", 4), expected)
