"""random/ranks.py: RankStream folds a rank into every seed (issue 21's rank-aware randomness)."""

from __future__ import annotations

import pytest
import torch

import dropkit
import dropkit.functional as DF
from dropkit.random import RankStream, fold_seed
from dropkit.random.ranks import fold_seed_tensor
from tests.conftest import binomial_tol


def test_fold_on_tensors_equals_fold_on_ints():
    seeds = [0, 1, 2**62 + 12345, 2**63 - 2, 987654321987654321]
    for rank in (0, 1, 7, 1023):
        got = fold_seed_tensor(torch.tensor(seeds, dtype=torch.int64), rank).tolist()
        assert got == [fold_seed(s, rank) for s in seeds]
        assert all(0 <= v < 2**63 for v in got)


def test_ranks_give_distinct_seeds_and_the_same_rank_the_same():
    seeds = {fold_seed(123, r) for r in range(1000)}
    assert len(seeds) == 1000
    assert fold_seed(123, 5) == fold_seed(123, 5)


@pytest.mark.parametrize("fast", [True, False])
def test_a_stream_is_reproducible_and_rank_dependent(fast):
    x = torch.ones(8192 if fast else 100)
    with dropkit.use_fast_dropout(fast):
        torch.manual_seed(1)
        a = DF.dropout(x, 0.5, generator=RankStream(0))
        torch.manual_seed(1)
        b = DF.dropout(x, 0.5, generator=RankStream(0))
        torch.manual_seed(1)
        c = DF.dropout(x, 0.5, generator=RankStream(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    keep = (c != 0).double().mean().item()
    assert abs(keep - 0.5) < binomial_tol(0.5, x.numel())


def test_a_stream_with_a_base_generator_draws_from_it():
    x = torch.ones(8192)
    a = DF.dropout(x, 0.5, generator=RankStream(2, base=torch.Generator().manual_seed(9)))
    torch.manual_seed(123)  # the global generator plays no part
    b = DF.dropout(x, 0.5, generator=RankStream(2, base=torch.Generator().manual_seed(9)))
    assert torch.equal(a, b)
    seed = dropkit.random.draw_seed(RankStream(2, base=torch.Generator().manual_seed(9)))
    assert seed == fold_seed(DF.draw_seed(torch.Generator().manual_seed(9)), 2)


def test_every_op_takes_a_stream():
    x = torch.ones(4, 6, 8, 8)
    for op in (DF.dropout, DF.dropout2d, DF.gaussian_dropout, DF.alpha_dropout, DF.dropblock2d):
        torch.manual_seed(0)
        a = op(x, 0.3, generator=RankStream(0))
        torch.manual_seed(0)
        b = op(x, 0.3, generator=RankStream(0))
        assert torch.equal(a, b), op.__name__


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank must be an int >= 0, but got -1"):
        RankStream(-1)
    with pytest.raises(TypeError, match="base must be a torch.Generator or None, but got int"):
        RankStream(0, base=3)
    with pytest.raises(TypeError, match="generator must be a torch.Generator, a dropkit.random"):
        DF.dropout(torch.ones(3), 0.5, generator="seed")
