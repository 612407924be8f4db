"""Safe run files: atomic writes, a per-directory lock, stale temporary files, readable errors.

A write goes to a temporary file beside the target, then ``os.replace`` moves it into place, so a
reader (or a resumed run) sees the old file or the new one, never half of one; Ctrl-C during a write
is held back until the file is complete. An ``OSError`` (disk full, read-only folder) names the file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any


def _file_mode() -> int:
    # mkstemp creates 0600 files; give the result the mode a plain open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


class LabError(RuntimeError):
    """A lab failure the user can act on, reported by the CLI as one line (exit code 2)."""


class RunInUseError(LabError):
    """Another process holds the lock of a run directory."""


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, then deliver it.

    A KeyboardInterrupt raised inside torch's serializer surfaces as a RuntimeError, and one between
    a write and its rename would lose the file; deferring it keeps both the file and exit code 130.
    The block records the signal; once it ends, Python's usual handler becomes a KeyboardInterrupt
    raised right there, and any other handler is called, as the signal would have called it. A
    process that ignores SIGINT (one started in the background by a non-interactive shell inherits
    that) keeps ignoring it. Only the main thread can install signal handlers; elsewhere this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous == signal.SIG_IGN:  # None: a handler not set from Python
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if previous is signal.default_int_handler:
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)  # SIG_DFL or the caller's own handler


def _named(err: OSError, path: Path) -> OSError:
    # The same error class and errno, with the file the user can act on.
    return type(err)(err.errno, err.strerror or str(err), str(path))


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary binary file in ``path``'s folder, then move it into place.

    ``OSError`` (disk full, read-only folder, a file where a folder should be) carries ``path`` as
    its ``filename``; no temporary file is left behind.
    """
    path = Path(path)
    with sigint_deferred():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise _named(err, path.parent if err.errno != errno.EEXIST else path) from None
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _MODE)
            os.replace(tmp, path)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            raise _named(err, path) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete ``atomic_write``'s temporary files left in ``folder`` by a killed process.

    Call only while holding the folder's lock (:func:`lock_dir`), so no live writer owns them.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def lock_dir(folder: str | Path, what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (an advisory ``flock`` on ``folder/.lock``).

    A second process (or a second lock in this one) gets :class:`RunInUseError` at once. The kernel
    releases the lock when its holder exits, however it exits (SIGKILL included).
    """
    import fcntl

    folder = Path(folder)
    lock_path = folder / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _MODE)
    except OSError as err:
        raise _named(err, lock_path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(
                f"{what}: '{folder}' is in use by another process (it holds {lock_path}); wait "
                "for it to finish or use another directory"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_csv(path: str | Path, rows: Sequence[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; ``ValueError`` naming the file if it is not valid JSON text."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"'{path}' is corrupt, not valid JSON ({err})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """One JSON object per line; ``ValueError`` naming the file and line if one is corrupt."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"'{path}' is corrupt, not text ({err})") from None
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"'{path}' line {lineno} is corrupt, not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise ValueError(f"'{path}' line {lineno} is not a JSON object")
        rows.append(row)
    return rows
