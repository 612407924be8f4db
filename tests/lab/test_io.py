"""Ctrl-C held back during a write: delivered once the file is whole, as the process's handler of
SIGINT wants (KeyboardInterrupt, the caller's own handler, or nothing where SIGINT is ignored)."""

from __future__ import annotations

import signal
import threading

import pytest

from dropkit.lab._io import atomic_write, sigint_deferred


@pytest.fixture
def sigint_handler():
    """Set SIGINT's handler for one test; the previous one comes back afterwards."""
    previous = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, previous)


def _interrupted_write(f) -> None:
    f.write(b"first half, ")
    signal.raise_signal(signal.SIGINT)  # Ctrl-C mid-file, in this (the main) thread
    f.write(b"second half")


def test_ctrl_c_becomes_keyboard_interrupt_once_the_file_is_whole(tmp_path, sigint_handler):
    sigint_handler(signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "f", _interrupted_write)
    assert (tmp_path / "f").read_bytes() == b"first half, second half"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_callers_own_handler_is_called_after_the_block(tmp_path, sigint_handler):
    calls = []
    handler = lambda signum, frame: calls.append(signum)  # noqa: E731
    sigint_handler(handler)
    with sigint_deferred():
        signal.raise_signal(signal.SIGINT)
        assert calls == []  # held back
    assert calls == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is handler
    with sigint_deferred():  # no Ctrl-C: nothing delivered
        pass
    assert calls == [signal.SIGINT]


def test_an_ignored_sigint_stays_ignored(tmp_path, sigint_handler):
    # As in a process started in the background by a non-interactive shell (a CI script's `&`).
    sigint_handler(signal.SIG_IGN)
    with sigint_deferred():
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # no handler swapped in
    atomic_write(tmp_path / "f", _interrupted_write)  # no KeyboardInterrupt, no lost file
    assert (tmp_path / "f").read_bytes() == b"first half, second half"
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_other_threads_write_without_touching_signals(tmp_path, sigint_handler):
    sigint_handler(signal.default_int_handler)
    seen = []

    def write() -> None:
        with sigint_deferred():
            seen.append(signal.getsignal(signal.SIGINT))
        atomic_write(tmp_path / "f", lambda f: f.write(b"from a thread"))

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]
    assert (tmp_path / "f").read_bytes() == b"from a thread"
