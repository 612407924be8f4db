"""Metric loggers: the runner hands each epoch's record to every logger it was given.

A logger is anything with ``log(record: dict)``; ``close()`` is optional (the runner calls it when the
run ends or stops). Back-ends here: the run directory's JSONL and CSV files (always used by the
runner), a one-line-per-epoch stdout printer (written through tqdm, so that it never lands on a
progress bar) and TensorBoard event files (``torch.utils.tensorboard``; the ``tensorboard`` extra).
:func:`make_loggers` builds them by name, as ``dropkit run --logger``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dropkit.lab._io import write_csv, write_jsonl

__all__ = [
    "LOGGERS",
    "FileLogger",
    "MetricsLogger",
    "StdoutLogger",
    "TensorBoardLogger",
    "make_loggers",
    "tensorboard_tag",
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
    """Prints ``epoch  train_loss  val_loss  test_acc ...`` one line per epoch.

    Through ``tqdm.write``: a progress bar on the terminal is cleared, the line printed, the bar
    drawn again below it, instead of the line being written onto the bar.
    """

    def __init__(
        self,
        keys: tuple[str, ...] = ("train_loss", "val_loss", "test_loss", "test_acc", "test_rmse"),
    ) -> None:
        self.keys = keys

    def log(self, record: dict) -> None:
        parts = [f"epoch {record['epoch']:>4}"]
        parts += [f"{k} {record[k]:.4f}" for k in self.keys if record.get(k) is not None]
        from tqdm.auto import tqdm

        tqdm.write("  ".join(parts), file=sys.stdout)
        sys.stdout.flush()


def tensorboard_tag(key: str) -> str:
    """A record's key as a TensorBoard tag grouped by metric: ``test_acc`` -> ``acc/test``,
    ``train_loss`` -> ``loss/train``; ``elapsed_s`` -> ``time/elapsed_s``, ``lr`` -> ``optim/lr``."""
    part, _, metric = key.partition("_")
    if part in ("train", "val", "test") and metric:
        return f"{metric}/{part}"
    if key == "elapsed_s":
        return "time/elapsed_s"
    if key == "lr":
        return "optim/lr"
    return f"other/{key}"


def _hparam(value: Any) -> int | float | str | bool:
    # TensorBoard's hparams take numbers, text and booleans: lists become "256,256", None "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if value is None:
        return "none"
    return value


class TensorBoardLogger:
    """Writes every numeric metric of each record as a TensorBoard scalar, step = epoch, tagged by
    metric (:func:`tensorboard_tag`: ``acc/test``, ``loss/val``, ``time/elapsed_s``), and the run's
    config as hparams, with the metric tags as the hparams' metrics (the HPARAMS tab then compares
    runs by their config).

    Event files go to ``<workdir>/tensorboard`` (``tensorboard --logdir runs`` shows every run); a
    resumed run appends to them. Needs the ``tensorboard`` package (``pip install
    'dropkit[tensorboard]'``).
    """

    def __init__(self, workdir: str | Path, hparams: Mapping[str, Any] | None = None) -> None:
        import torch.utils.tensorboard  # noqa: F401  (ModuleNotFoundError now if tensorboard is missing)

        self.log_dir = Path(workdir) / "tensorboard"
        self.hparams = {k: _hparam(v) for k, v in (hparams or {}).items()}
        self._writer = None  # opened at the first record: nothing is written for a refused run

    def log(self, record: dict) -> None:
        scalars = {
            tensorboard_tag(k): v
            for k, v in record.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
            if self.hparams:  # the experiment, session start and end: in this run's own folder
                metrics = {tag: 0.0 for tag in scalars if not tag.startswith(("time/", "optim/"))}
                for summary in hparams(self.hparams, metrics):
                    self._writer.file_writer.add_summary(summary)
        step = int(record["epoch"])
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


LOGGERS = ("stdout", "tensorboard")


def make_loggers(
    names: Sequence[str], workdir: str | Path, hparams: Mapping[str, Any] | None = None
) -> list[MetricsLogger]:
    """Loggers by name (``stdout``, ``tensorboard``); the JSONL/CSV files are always written.
    ``hparams`` (the run's config) go to TensorBoard's hparams."""
    out: list[MetricsLogger] = []
    for name in names:
        if name == "stdout":
            out.append(StdoutLogger())
        elif name == "tensorboard":
            out.append(TensorBoardLogger(workdir, hparams))
        else:
            raise ValueError(
                f"logger {name!r} is not known; choose from {', '.join(LOGGERS)} "
                "(metrics.jsonl and metrics.csv are always written)"
            )
    return out
