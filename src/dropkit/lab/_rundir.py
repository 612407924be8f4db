"""Reading a run directory: its config, summary, metrics and provenance, without torch (a report
needs no model)."""

from __future__ import annotations

from pathlib import Path

from dropkit.lab._io import read_json, read_jsonl
from dropkit.lab.config import Config

__all__ = ["load_run", "read_summary", "saved_config"]


def saved_config(workdir: Path) -> Config:
    path = workdir / "config.json"
    values = read_json(path)
    if not isinstance(values, dict):
        raise ValueError(f"'{path}' is corrupt: it should hold a JSON object of config keys")
    try:
        return Config.build(values)
    except ValueError as err:
        raise ValueError(f"'{path}' is not a valid run config: {err}") from None


def read_summary(workdir: Path) -> dict:
    path = workdir / "summary.json"
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise ValueError(f"'{path}' is corrupt: it should hold a JSON object")
    return summary


def load_run(workdir: str | Path) -> dict:
    """``{"dir", "config", "metrics", "summary", "provenance"}`` of a run directory (summary None if
    unfinished; provenance empty for runs made before dropkit recorded it)."""
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"load_run: '{workdir}' is not a run directory (no config.json)")
    summary_path = workdir / "summary.json"
    metrics_path = workdir / "metrics.jsonl"
    return {
        "dir": str(workdir),
        "config": saved_config(workdir),
        "metrics": read_jsonl(metrics_path) if metrics_path.is_file() else [],
        "summary": read_summary(workdir) if summary_path.is_file() else None,
        "provenance": read_json(workdir / "provenance.json")
        if (workdir / "provenance.json").is_file()
        else {},
    }
