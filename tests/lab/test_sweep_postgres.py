"""A real distributed sweep: a PostgreSQL server, two ``dropkit sweep`` worker processes on one study,
one of them killed mid-run and restarted.

The fixture starts a throw-away server (``initdb`` into a temporary folder, ``pg_ctl start`` on a
loopback port, as the unprivileged ``postgres`` user when the tests run as root, since PostgreSQL
refuses to run as root). It skips, saying why, only where no server can be started: no PostgreSQL
binaries (Debian: ``apt-get install postgresql``), no ``psycopg2`` (the ``postgres`` extra), or no
unprivileged user to run it as.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = [
    "dataset=digits",
    "widths=16",
    "batch_size=64",
    "lr=0.01",
    "val_fraction=0.2",
    "plots=false",
]
EPOCHS = "epochs=10"  # long enough (a fraction of a second) to be killed in the middle of a run
GRID = ["--grid", "p_hidden=0,0.5", "--grid", "seed=0,1,2"]  # 6 points


def _pg_bin(name: str) -> str | None:
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4])
    )
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 is missing: pip install 'dropkit[postgres]'")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="dropkit-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True)  # noqa: E731
    out = run(initdb, "-D", str(data), "-A", "trust", "-U", "dropkit", "--no-sync", "-E", "UTF8")
    if out.returncode != 0:
        shutil.rmtree(folder)
        pytest.skip(f"initdb failed: {out.stderr.strip()[-300:]}")
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    out = run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start")
    if out.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else out.stderr
        shutil.rmtree(folder)
        pytest.skip(f"pg_ctl could not start a server: {log.strip()[-300:]}")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="dropkit", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE sweeps")
        conn.close()
        yield f"postgresql://dropkit@127.0.0.1:{port}/sweeps"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _worker(root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [
        sys.executable,
        "-c",
        "import sys; from dropkit.cli import main; sys.exit(main())",
        "sweep",
        "--root",
        str(root),
        *GRID,
        *extra,
        *TINY,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(text: str, what: str) -> list[str]:
    # "run 3/6 p_hidden=0.5 seed=0: training (2 of 6 complete)" -> "p_hidden=0.5 seed=0"
    return [
        line.split(" ", 2)[2].split(":")[0]
        for line in text.splitlines()
        if line.startswith("run ") and f": {what} (" in line
    ]


def _rows(root: Path) -> list[dict]:
    # The report's numbers; the times (of the epochs, of the warm-up) differ between machines.
    rows = json.loads((root / "report" / "results.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if not k.startswith(("wall_s", "warmup_s"))} for r in rows]


def test_two_workers_a_kill_and_a_restart_on_postgresql(postgres_url, tmp_path):
    # The reference: one worker, SQLite.
    ref = _worker(tmp_path / "single", EPOCHS)
    # The distributed sweep: two workers on one study URL; worker A is killed during a run (its
    # longer epochs make sure it is mid-run), then restarted.
    url = ["--storage", postgres_url, "--heartbeat", "1", EPOCHS]
    root = tmp_path / "shared"
    a, b = _worker(root, *url), _worker(root, *url)
    deadline = time.monotonic() + 120
    killed_point = None
    while killed_point is None and time.monotonic() < deadline and None in (a.poll(), b.poll()):
        for ckpt in (root / "runs").glob("*/checkpoint.pt") if (root / "runs").exists() else ():
            killed_point = ckpt.parent  # a run between its first epoch and its summary
            break
        time.sleep(0.02)
    if killed_point is None:
        for p in (a, b):
            p.kill()
        pytest.fail(f"no run reached its first checkpoint: {[p.communicate()[1] for p in (a, b)]}")
    # Kill whichever worker holds that run's lock (the one training it).
    holder = next(p for p in (a, b) if _holds(p.pid, killed_point / ".lock"))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    restarted = _worker(root, *url)
    others = [p for p in (a, b) if p is not holder] + [restarted]
    outs = [p.communicate(timeout=180) for p in others]
    killed_err = holder.stderr.read()
    ref_out, ref_err = ref.communicate(timeout=180)
    for p, (_, err) in zip(others, outs, strict=True):
        assert p.returncode == 0, err
    assert ref.returncode == 0, ref_err

    # Every grid point trained exactly once: one "training" line per point over all workers,
    # and the killed worker's point resumed (not retrained) by another.
    errs = [killed_err, *(err for _, err in outs)]
    trained = sorted(sum((_lines(e, "training") for e in errs), []))
    assert trained == sorted(_lines(ref_err, "training")) and len(trained) == 6, errs
    resumed = sum((_lines(e, "resuming from its checkpoint") for e in errs[1:]), [])
    assert len(resumed) == 1 and resumed[0] in _lines(killed_err, "training")
    assert all("6 of 6 grid points complete" in out for out, _ in outs)
    # No run directory left with a checkpoint or a temporary file; the reports agree.
    assert not list(root.glob("runs/*/checkpoint.pt")) and not list(root.glob("runs/*/.*.tmp"))
    assert _rows(root) == _rows(tmp_path / "single")


def _holds(pid: int, lock: Path) -> bool:
    # /proc/locks lists flock holders by pid and inode.
    inode = lock.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and str(pid) in fields and fields[5].endswith(f":{inode}"):
            return True
    return False
