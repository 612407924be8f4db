"""Metric loggers: the runner hands each epoch's record to every logger it was given.

A logger is anything with ``log(record: dict)``; ``close()`` is optional. Back-ends here: the run
directory's JSONL and CSV files (always used by the runner) and a one-line-per-epoch stdout printer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from dropkit.lab._io import write_csv, write_jsonl

__all__ = ["FileLogger", "MetricsLogger", "StdoutLogger"]


@runtime_checkable
class MetricsLogger(Protocol):
    def log(self, record: dict) -> None: ...


class FileLogger:
    """Keeps every record and rewrites ``metrics.jsonl`` and ``metrics.csv`` atomically after each.

    The files are small (one line per epoch), so a full rewrite costs nothing and a crash can never
    leave a half-written line.
    """

    def __init__(self, workdir: str | Path, history: list[dict] | None = None) -> None:
        self.workdir = Path(workdir)
        self.records = list(history or [])
        if self.records:
            self._flush()

    def log(self, record: dict) -> None:
        self.records.append(record)
        self._flush()

    def _flush(self) -> None:
        write_jsonl(self.workdir / "metrics.jsonl", self.records)
        write_csv(self.workdir / "metrics.csv", self.records)


class StdoutLogger:
    """Prints ``epoch  train_loss  val_loss  test_acc ...`` one line per epoch."""

    def __init__(
        self,
        keys: tuple[str, ...] = ("train_loss", "val_loss", "test_loss", "test_acc", "test_rmse"),
    ) -> None:
        self.keys = keys

    def log(self, record: dict) -> None:
        parts = [f"epoch {record['epoch']:>4}"]
        parts += [f"{k} {record[k]:.4f}" for k in self.keys if record.get(k) is not None]
        print("  ".join(parts), flush=True)
