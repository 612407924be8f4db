"""No sweep worker outlives its sweep: stopped (SIGTERM) or killed (SIGKILL), the workers stop too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads child processes from Linux's /proc"
)


def _workers(pid: int) -> list[int]:
    """Live spawned worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    out = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except FileNotFoundError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("sigint", ["default", "ignored"], ids=["foreground", "background-launch"])
def test_workers_stop_with_the_sweep(tmp_path, sig, sigint):
    # "ignored": the sweep starts with SIGINT ignored, as a non-interactive shell starts a
    # background job (and its spawned workers inherit that)
    code = "import sys; from dropkit.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "sweep", "--workers", "2", "--root", str(tmp_path)]
    argv += ["--grid", "seed=0,1,2", "dataset=digits", "widths=16", "epochs=100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*argv, "plots=false"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_ignore_sigint if sigint == "ignored" else None,
    )
    try:
        assert _wait(lambda: len(_workers(proc.pid)) == 2, 120), "the two workers never started"
        workers = _workers(proc.pid)
        # both are training (each holds a run directory) before the sweep is stopped
        assert _wait(lambda: len(list(tmp_path.glob("runs/*/config.json"))) == 2, 120)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        assert _wait(lambda: not any(_alive(w) for w in workers), 60), "a worker outlived the sweep"
        if sig == signal.SIGTERM:
            assert proc.returncode == 130, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
