"""Run a function on N real ``torch.distributed`` ranks (gloo, 127.0.0.1), in bounded time.

``run(target, world_size)`` starts ``world_size`` fresh Python processes, each calling
``target(rank, world_size)`` (``"package.module:function"``) after ``init_process_group("gloo")``
on a free local port, with one torch thread per rank. Whatever rank 0's function returns (picklable)
comes back. A rank that fails, hangs past ``timeout`` or dies before it has finished and left the
group takes all ranks down and the call raises with every rank's output, so a test never waits
forever.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(target: str, world_size: int = 2, timeout: float = 600.0, env: dict | None = None):
    """Rank 0's return value of ``target(rank, world_size)`` on ``world_size`` gloo ranks."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="dropkit-ranks-") as tmp:
        result = Path(tmp) / "result.pkl"
        procs, logs = [], []
        for rank in range(world_size):
            log = open(Path(tmp) / f"rank{rank}.log", "w+")  # noqa: SIM115 (closed below)
            logs.append(log)
            child_env = {
                **os.environ,
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                **(env or {}),
            }
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.distributed.launch",
                        target,
                        str(rank),
                        str(world_size),
                        str(port),
                        str(result),
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                )
            )
        deadline = time.monotonic() + timeout
        failed = False

        def done(rank: int) -> bool:  # the rank finished its work and left the group
            return (Path(tmp) / f"done{rank}").exists()

        def crashed(rank: int) -> bool:
            return procs[rank].poll() not in (None, 0) and not done(rank)

        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(crashed(r) for r in range(world_size)):
                failed = True
                break
            time.sleep(0.2)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        outputs = []
        for rank, log in enumerate(logs):
            log.seek(0)
            outputs.append(
                f"--- rank {rank} (exit {procs[rank].returncode}) ---\n{log.read()[-6000:]}"
            )
            log.close()
        # A rank that finished and left the group counts as done, whatever its exit status (the
        # process exits through os._exit; torch's gloo threads have been seen to abort at exit).
        if failed or not all(done(r) for r in range(world_size)) or not result.exists():
            why = "timed out" if time.monotonic() > deadline else "failed"
            raise RuntimeError(f"{target} on {world_size} ranks {why}:\n" + "\n".join(outputs))
        return pickle.loads(result.read_bytes())


def _main(target: str, rank: int, world_size: int, port: int, result: str) -> None:
    import importlib

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        module, name = target.split(":")
        value = getattr(importlib.import_module(module), name)(rank, world_size)
        if rank == 0:
            Path(result).write_bytes(pickle.dumps(value))
        dist.barrier()
        dist.destroy_process_group()
        Path(result).with_name(f"done{rank}").touch()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    # Leave without the interpreter's teardown, where gloo's threads can abort the process
    # ("terminate called without an active exception") after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
