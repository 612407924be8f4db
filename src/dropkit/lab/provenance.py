"""What produced a run, for a paper to cite: code, software, machine, command, seeds and data.

:func:`collect` returns a JSON-ready dict, written to each run directory as ``provenance.json`` when
the run starts; a run resumed later (perhaps on another machine) adds one entry to its ``resumes``
list. Nothing here can fail a run: a field that cannot be read (no git, not a checkout, no
``/proc/cpuinfo``) is ``None``.

Fields: ``command`` (the process's command line), ``dropkit``, ``git_commit`` and ``git_dirty`` (when
dropkit runs from a git checkout: the commit, and whether files of the package differ from it),
``torch``, ``numba``, ``numpy``, ``python``, ``platform``, ``host``, ``cpu`` (model name),
``cpu_count``, ``threads`` (torch's intra-op threads during the run), ``device``, ``seed`` and
``seeded`` (what it seeds), ``data_sha256`` (SHA-256 of the arrays trained and evaluated on, after the
split), ``data_files`` (SHA-256 of each data file read, as ``sha256sum`` prints it), ``started_utc``.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["collect", "cpu_model", "file_sha256", "git_state"]


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_state(folder: str | Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout that holds ``folder`` (default: dropkit's package),
    if git tracks it there; ``(None, None)`` otherwise (an installed package, no git)."""
    if folder is None:
        import dropkit

        folder = Path(dropkit.__file__).parent
    folder = Path(folder)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "--", ".")  # tracked here, not a repo that holds a venv
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, dirty


def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; macOS: sysctl), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or None


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cached while its size and modification time stay the same)."""
    st = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _arrays_sha256(arrays: Iterable[Any]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        if a is None:
            digest.update(b"none")
            continue
        t = a.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def collect(config: Any, device: Any, data: Any = None, files: Iterable[Path] = ()) -> dict:
    """Provenance of a run of ``config`` on ``device`` (see the module's notes for the fields).

    ``data`` is the run's prepared tensors (their fingerprint is taken), ``files`` the data files it
    read.
    """
    import torch

    commit, dirty = git_state()
    if device.type == "cuda":
        device_text = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        device_text = device.type
    hashes = {}
    for path in files:
        try:
            hashes[str(path)] = file_sha256(path)
        except OSError:
            hashes[str(path)] = None
    fingerprint = None
    if data is not None:
        parts = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        fingerprint = _arrays_sha256(getattr(data, name) for name in parts)
    return {
        "command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else None,
        "dropkit": _version("dropkit"),
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": torch.__version__,
        "numba": _version("numba"),
        "numpy": _version("numpy"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node() or None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device_text,
        "seed": config.seed,
        "seeded": "torch.manual_seed(seed): initial weights, dropout masks, augmentation; "
        "numpy default_rng([seed, 1]): batch order; default_rng(seed): validation split",
        "data_sha256": fingerprint,
        "data_files": hashes,
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
