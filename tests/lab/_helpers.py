"""Helpers of the lab tests: a config small enough to train in well under a second (scikit-learn
digits, one hidden layer), and a run interrupted at a given epoch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dropkit.lab.runner as runner_mod

TINY = {
    "dataset": "digits",
    "widths": [32],
    "epochs": 1,
    "batch_size": 64,
    "lr": 0.01,
    "val_fraction": 0.2,
    "plots": False,
}


@contextlib.contextmanager
def interrupted_at(monkeypatch, epoch: int) -> Iterator[None]:
    """Inside, a run stops with KeyboardInterrupt (as at Ctrl-C) when it would record ``epoch``;
    the epochs before it are recorded."""
    original = runner_mod._epoch_record

    def stop(e, *args):
        if e == epoch:
            raise KeyboardInterrupt
        return original(e, *args)

    monkeypatch.setattr(runner_mod, "_epoch_record", stop)
    try:
        yield
    finally:
        monkeypatch.setattr(runner_mod, "_epoch_record", original)
