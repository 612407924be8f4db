"""Metric loggers: the runner hands each epoch's record to every logger it was given.

A logger is anything with ``log(record: dict)``; ``close()`` is optional (the runner calls it when the
run ends or stops). Back-ends here: the run directory's JSONL and CSV files (always used by the
runner), a one-line-per-epoch stdout printer and TensorBoard event files (``torch.utils.tensorboard``;
the ``tensorboard`` extra). :func:`make_loggers` builds them by name, as ``dropkit run --logger``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from dropkit.lab._io import write_csv, write_jsonl

__all__ = [
    "LOGGERS",
    "FileLogger",
    "MetricsLogger",
    "StdoutLogger",
    "TensorBoardLogger",
    "make_loggers",
]


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


class TensorBoardLogger:
    """Writes every numeric metric of each record as a TensorBoard scalar, step = epoch.

    Event files go to ``<workdir>/tensorboard`` (``tensorboard --logdir runs`` shows every run); a
    resumed run appends to them. Needs the ``tensorboard`` package (``pip install
    'dropkit[tensorboard]'``).
    """

    def __init__(self, workdir: str | Path) -> None:
        import torch.utils.tensorboard  # noqa: F401  (ModuleNotFoundError now if tensorboard is missing)

        self.log_dir = Path(workdir) / "tensorboard"
        self._writer = None  # opened at the first record: nothing is written for a refused run

    def log(self, record: dict) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                part, _, metric = key.partition("_")
                self._writer.add_scalar(f"{metric}/{part}" if metric else key, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


LOGGERS = ("stdout", "tensorboard")


def make_loggers(names: Sequence[str], workdir: str | Path) -> list[MetricsLogger]:
    """Loggers by name (``stdout``, ``tensorboard``); the JSONL/CSV files are always written."""
    out: list[MetricsLogger] = []
    for name in names:
        if name == "stdout":
            out.append(StdoutLogger())
        elif name == "tensorboard":
            out.append(TensorBoardLogger(workdir))
        else:
            raise ValueError(
                f"logger {name!r} is not known; choose from {', '.join(LOGGERS)} "
                "(metrics.jsonl and metrics.csv are always written)"
            )
    return out
