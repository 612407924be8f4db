"""Shared test helpers.

Statistical tests use fixed seeds and a tolerance of ``Z`` standard deviations of the statistic under
its exact distribution (binomial for counts). With Z = 5 a correct implementation fails with
probability below 6e-7 per check for a random seed; with the seeds fixed the outcome is deterministic.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

Z = 5.0

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def binomial_tol(p: float, n: int, z: float = Z) -> float:
    """Tolerance on an observed fraction of n Bernoulli(p) trials: z * sqrt(p(1-p)/n)."""
    return z * math.sqrt(p * (1.0 - p) / n)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline datasets not found at {SHARED_DATA} (see DEVELOPERS.md)")
    return SHARED_DATA
