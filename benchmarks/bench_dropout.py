"""Fast CPU dropout vs PyTorch eager: speed, saved memory, an MLP step, a loaded machine, JIT cost.

Every ratio is measured in one run on the same tensors; each figure is the median over repeats,
except in the MLP sections (mlp, loaded): there each variant runs in processes of its own and the
figure is the mean step time (see MLP_ALLOCATORS).
Run from the repository root (about 10 minutes):

    .venv/bin/python benchmarks/bench_dropout.py            # all sections, 2 threads
    .venv/bin/python benchmarks/bench_dropout.py --only big small --repeats 21

Sections: big (16M elements, fwd+bwd), small (1K-64K), dtypes, fused, memory, mlp, compiled (the MLP
step eager and under torch.compile, torch and dropkit, in one process), loaded (one core busy with
another process), jit (cold and warm first call, in fresh processes). Results are printed as
Markdown and written to --json when given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import fwd_bwd, saved_bytes

import dropkit
import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit.kernels import _hugepages

SECTIONS = ("big", "small", "dtypes", "fused", "memory", "mlp", "compiled", "loaded", "jit")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Medians of several candidates timed in turn, so load changes hit all alike."""
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order, rng = list(fns), random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)  # no candidate always follows the same one
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def section_big(args) -> list[dict]:
    rows = []
    n = 16 * 2**20
    x = torch.randn(n, requires_grad=True)
    g = torch.randn(n)
    xd = x.detach()
    for p in (0.5, 0.1):
        fns = {
            "torch F.dropout": fwd_bwd(lambda t, p=p: F.dropout(t, p), x, g),
            "dropkit plain path": fwd_bwd(
                lambda t, p=p: _with(False, "bits", lambda: DF.dropout(t, p)), x, g
            ),
            "dropkit fast, bits": fwd_bwd(
                lambda t, p=p: _with(True, "bits", lambda: DF.dropout(t, p)), x, g
            ),
            "dropkit fast, seed": fwd_bwd(
                lambda t, p=p: _with(True, "seed", lambda: DF.dropout(t, p)), x, g
            ),
            "2x clone (floor)": lambda: (xd.clone(), g.clone()),
            # The same two copies into buffers allocated as dropkit allocates its outputs (huge
            # pages where the kernel grants them): the floor for the same allocation policy.
            "2x copy, huge pages (floor)": lambda: (
                _hugepages.empty_like(xd).copy_(xd),
                _hugepages.empty_like(g).copy_(g),
            ),
        }
        t = interleaved(fns, args.repeats)
        base, floor = t["torch F.dropout"], t["2x clone (floor)"]
        huge_floor = t["2x copy, huge pages (floor)"]
        for name, sec in t.items():
            rows.append(
                {
                    "section": "big",
                    "case": f"float32 16M p={p} fwd+bwd: {name}",
                    "ns/elem": sec / n * 1e9,
                    "speed-up vs torch": base / sec,
                    "x floor": sec / floor,
                    "x huge-page floor": sec / huge_floor,
                }
            )
    return rows


def _with(enabled: bool, save: str, fn):
    with dropkit.use_fast_dropout(enabled, save=save):
        return fn()


def section_small(args) -> list[dict]:
    rows = []
    for n in (1024, 4096, 8192, 20_000, 65_536):
        x = torch.randn(n, requires_grad=True)
        g = torch.randn(n)
        fns = {
            "torch": fwd_bwd(lambda t: F.dropout(t, 0.5), x, g),
            "dropkit default": fwd_bwd(lambda t: DF.dropout(t, 0.5), x, g),
            "dropkit plain": fwd_bwd(
                lambda t: _with(False, "bits", lambda: DF.dropout(t, 0.5)), x, g
            ),
            "dropkit fast (forced)": fwd_bwd(lambda t: _forced(lambda: DF.dropout(t, 0.5)), x, g),
        }
        t = interleaved(fns, args.repeats * 20)
        for name, sec in t.items():
            rows.append(
                {
                    "section": "small",
                    "case": f"float32 n={n} p=0.5 fwd+bwd: {name}",
                    "us": sec * 1e6,
                    "time / torch": sec / t["torch"],
                }
            )
    return rows


def _forced(fn):
    with dropkit.use_fast_dropout(True, min_numel=1):
        return fn()


def section_dtypes(args) -> list[dict]:
    rows = []
    n = 4 * 2**20
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        x = torch.randn(n, dtype=dtype, requires_grad=True)
        g = torch.randn(n, dtype=dtype)
        t = interleaved(
            {
                "torch": fwd_bwd(lambda t: F.dropout(t, 0.5), x, g),
                "dropkit": fwd_bwd(lambda t: DF.dropout(t, 0.5), x, g),
            },
            args.repeats,
        )
        rows.append(
            {
                "section": "dtypes",
                "case": f"{str(dtype).removeprefix('torch.')} 4M p=0.5 fwd+bwd",
                "torch ns/elem": t["torch"] / n * 1e9,
                "dropkit ns/elem": t["dropkit"] / n * 1e9,
                "speed-up": t["torch"] / t["dropkit"],
            }
        )
    return rows


def section_fused(args) -> list[dict]:
    n_rows, h = 4096, 1024
    x = torch.randn(n_rows, h, requires_grad=True)
    r = torch.randn(n_rows, h, requires_grad=True)
    b = torch.randn(h, requires_grad=True)
    g = torch.randn(n_rows, h)

    def run(fn):
        def go():
            x.grad = r.grad = b.grad = None
            fn().backward(g)

        return go

    t = interleaved(
        {
            "torch dropout(x + b) + r": run(lambda: F.dropout(x + b, 0.1) + r),
            "dropkit dropout(x + b) + r": run(lambda: DF.dropout(x + b, 0.1) + r),
            "dropkit bias_dropout_add": run(lambda: DF.bias_dropout_add(x, b, r, 0.1)),
            "torch dropout(x) + r": run(lambda: F.dropout(x, 0.1) + r),
            "dropkit dropout_add": run(lambda: DF.dropout_add(x, r, 0.1)),
        },
        args.repeats,
    )
    return [
        {"section": "fused", "case": f"4096x1024 p=0.1 fwd+bwd: {k}", "ms": v * 1e3}
        for k, v in t.items()
    ]


def section_memory(args) -> list[dict]:
    n = 2**20
    x = torch.randn(n, requires_grad=True)
    cases = {
        "torch F.dropout": lambda: F.dropout(x, 0.5),
        "dropkit fast, bits": lambda: _with(True, "bits", lambda: DF.dropout(x, 0.5)),
        "dropkit fast, seed": lambda: _with(True, "seed", lambda: DF.dropout(x, 0.5)),
        "dropkit plain path": lambda: _with(False, "bits", lambda: DF.dropout(x, 0.5)),
    }
    return [
        {
            "section": "memory",
            "case": f"float32 saved for backward: {k}",
            "B/elem": saved_bytes(f) / n,
        }
        for k, f in cases.items()
    ]


def _mlp(dropout_cls) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(784, 1024),
        torch.nn.ReLU(),
        dropout_cls(0.5),
        torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(),
        dropout_cls(0.5),
        torch.nn.Linear(1024, 10),
    )


class _MLPStep:
    """One SGD step of the MLP on a fixed batch; its wall time is what is measured."""

    def __init__(self, dropout_cls) -> None:
        torch.manual_seed(0)
        self.model = _mlp(dropout_cls)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.x = torch.randn(128, 784)
        self.y = torch.randint(0, 10, (128,))

    def __call__(self) -> float:
        return self.timed()[0]

    def timed(self) -> tuple[float, float]:
        """(wall time, CPU time of this process) of one step."""
        t0, c0 = time.perf_counter(), time.process_time()
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()
        return time.perf_counter() - t0, time.process_time() - c0


def _identity(_p: float) -> torch.nn.Module:
    return torch.nn.Identity()


class _TimesTwo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, grad):
        return grad * 2.0


class _PythonFunctionControl(torch.nn.Module):
    """A control, not dropout: ``x * 2`` through a Python ``autograd.Function``, as dropkit's layer
    goes through one. It shows what a Python-level autograd node costs the step by itself."""

    def __init__(self, _p: float) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _TimesTwo.apply(x)


class _OperatorControl(torch.nn.Module):
    """The same ``x * 2`` as :class:`_PythonFunctionControl`, through torch's own C++ operator."""

    def __init__(self, _p: float) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0


MLP_VARIANTS = {
    "no dropout": _identity,
    "torch nn.Dropout": torch.nn.Dropout,
    "dropkit": dnn.Dropout,
    "control: Python autograd.Function x*2": _PythonFunctionControl,
    "control: torch operator x*2": _OperatorControl,
}

# The C heap decides much of the MLP step's time. With glibc's defaults, freeing the weight
# gradients (zero_grad(set_to_none=True), 7 MiB) can leave more free memory at the top of the heap
# than its trim threshold; glibc then returns it to the kernel and the next backward faults it in
# again: about 2,700 page faults and 3 ms more in such a step, whatever the model. Whether a step
# trims depends on where everything else lies in the heap, so it differs between processes of the
# same program. Each variant therefore runs in processes of its own (as in real use, not sharing one
# heap with the other variants), several times, under glibc's defaults and with trimming off
# (freed memory is kept for reuse, as jemalloc and tcmalloc, the allocators PyTorch's CPU launcher
# offers, also keep it for a while).
MLP_ALLOCATORS = {
    "glibc defaults": {},
    "glibc, no trim": {
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    },
}


def _mlp_child(variant: str, steps: int) -> None:
    """In a child process: warm up, then print the wall times of ``steps`` steps as JSON."""
    step = _MLPStep(MLP_VARIANTS[variant])
    for _ in range(30):  # warm-up (and the kernels' first call)
        step()
    print(json.dumps([step() for _ in range(steps)]))


def _mlp_runs(args, env: dict[str, str]) -> dict[str, list[float]]:
    """Step times of each variant, from ``args.processes`` processes per variant taken in turn."""
    times: dict[str, list[float]] = {k: [] for k in MLP_VARIANTS}
    order, rng = list(MLP_VARIANTS), random.Random(0)
    for _ in range(args.processes):
        rng.shuffle(order)
        for variant in order:
            command = [sys.executable, os.path.abspath(__file__), "--threads", str(args.threads)]
            command += ["--mlp-child", variant, "--steps", str(args.steps)]
            out = subprocess.run(
                command, env={**os.environ, **env}, capture_output=True, text=True, check=True
            )
            times[variant] += json.loads(out.stdout.strip().splitlines()[-1])
    return times


def _mlp_rows(label: str, case: str, times: dict[str, list[float]]) -> list[dict]:
    # The mean is the figure to compare: with heap trims the step times are bimodal and the median
    # jumps between the two modes. "added share": (mean - mean without dropout) / mean.
    none = statistics.fmean(times["no dropout"])
    rows = []
    for k, ts in times.items():
        mean = statistics.fmean(ts)
        q = statistics.quantiles(ts, n=10)
        rows.append(
            {
                "section": label,
                "case": f"{case}: {k}",
                "mean ms": mean * 1e3,
                "p10 ms": q[0] * 1e3,
                "p50 ms": statistics.median(ts) * 1e3,
                "p90 ms": q[8] * 1e3,
                "added share": 0.0 if k == "no dropout" else (mean - none) / mean,
            }
        )
    return rows


def section_mlp(args) -> list[dict]:
    rows = []
    for allocator, env in MLP_ALLOCATORS.items():
        times = _mlp_runs(args, env)
        rows += _mlp_rows("mlp", f"MLP 784-1024-1024-10 batch 128 step, {allocator}", times)
    # The same share estimated from parts, in this process: the step without dropout plus the two
    # dropout layers' forward+backward on (128, 1024), timed alone.
    h = torch.randn(128, 1024, requires_grad=True)
    g = torch.randn(128, 1024)
    step_without = _MLPStep(_identity)
    t = interleaved(
        {
            "no dropout": step_without,
            "torch nn.Dropout": fwd_bwd(lambda x: F.dropout(x, 0.5), h, g),
            "dropkit": fwd_bwd(lambda x: DF.dropout(x, 0.5), h, g),
        },
        args.repeats * 4,
    )
    for k in ("torch nn.Dropout", "dropkit"):
        layers = 2 * t[k]
        rows.append(
            {
                "section": "mlp",
                "case": f"from parts: step without dropout + 2 x dropout(128x1024) fwd+bwd: {k}",
                "mean ms": float("nan"),
                "p10 ms": float("nan"),
                "p50 ms": (t["no dropout"] + layers) * 1e3,
                "p90 ms": float("nan"),
                "added share": layers / (t["no dropout"] + layers),
            }
        )
    return rows


class _CompiledMLPStep(_MLPStep):
    """The MLP step with the model under ``torch.compile`` (inductor): forward and backward compiled,
    the optimizer step eager."""

    def __init__(self, dropout_cls) -> None:
        super().__init__(dropout_cls)
        self.model = torch.compile(self.model, fullgraph=True)


def section_compiled(args) -> list[dict]:
    # All six variants in one process, one step of each in turn (shuffled), so load changes hit all
    # alike; the figure is the median step time. "overhead": (median - median of the same mode
    # without dropout) / median without dropout. The same for the process's CPU time per step
    # ("cpu"): with one thread it leaves out the time spent waiting for a core on a shared machine.
    # The graphs are compiled afresh in each run (inductor's caches off): the caches do not see a
    # change in a custom op's Python registrations, so a cached graph could be one compiled from
    # another version of dropkit.
    variants = {
        "no dropout": _identity,
        "torch nn.Dropout": torch.nn.Dropout,
        "dropkit": dnn.Dropout,
    }
    from torch._inductor import config as inductor_config

    steps = {}
    for mode, cls in (("eager", _MLPStep), ("compiled", _CompiledMLPStep)):
        for name, dropout_cls in variants.items():
            steps[(mode, name)] = cls(dropout_cls)
    with inductor_config.patch(force_disable_caches=True):
        for step in steps.values():  # warm-up: compiles, and the kernels' first call
            for _ in range(20):
                step()
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    order, rng = list(steps), random.Random(0)
    for _ in range(args.steps):
        rng.shuffle(order)
        for key in order:
            w, c = steps[key].timed()
            wall[key].append(w)
            cpu[key].append(c)
    rows = []
    for (mode, name), ts in wall.items():
        median = statistics.median(ts)
        none = statistics.median(wall[(mode, "no dropout")])
        cpu_median = statistics.median(cpu[(mode, name)])
        cpu_none = statistics.median(cpu[(mode, "no dropout")])
        rows.append(
            {
                "section": "compiled",
                "case": f"MLP 784-1024-1024-10 batch 128 SGD step, {mode}: {name}",
                "p50 ms": median * 1e3,
                "p10 ms": statistics.quantiles(ts, n=10)[0] * 1e3,
                "overhead vs no dropout": (median - none) / none,
                "p50 cpu ms": cpu_median * 1e3,
                "cpu overhead": (cpu_median - cpu_none) / cpu_none,
            }
        )
    return rows


def section_loaded(args) -> list[dict]:
    # One core kept busy by another process for the whole section.
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        times = _mlp_runs(args, MLP_ALLOCATORS["glibc, no trim"])
        return _mlp_rows("loaded", "MLP step, one core busy, glibc no trim", times)
    finally:
        hog.kill()
        hog.wait()


_JIT_SNIPPET = """
import time, torch
t0 = time.perf_counter()
import dropkit.functional as DF
x = torch.randn(1 << 16, requires_grad=True)
DF.dropout(x, 0.5).sum().backward()
x64 = torch.randn(1 << 16, dtype=torch.float64, requires_grad=True)
DF.dropout(x64, 0.5).sum().backward()
print(time.perf_counter() - t0)
"""


def section_jit(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold (empty cache)", "warm (cached)"):
            out = subprocess.run(
                [sys.executable, "-c", _JIT_SNIPPET], env=env, capture_output=True, text=True
            )
            rows.append(
                {
                    "section": "jit",
                    "case": f"first fwd+bwd, float32 + float64, new process: {label}",
                    "s": float(out.stdout.strip() or "nan"),
                }
            )
    code = "import time; t0 = time.perf_counter(); import numba; print(time.perf_counter() - t0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rows.append({"section": "jit", "case": "import numba", "s": float(out.stdout.strip())})
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = []
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            keys = [k for k in row if k != "section"]
            lines += ["", f"**{section}**", "", "| " + " | ".join(keys) + " |"]
            lines.append("|" + "---|" * len(keys))
        cells = [
            f"{v:.3g}" if isinstance(v, float) else str(v) for k, v in row.items() if k != "section"
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--processes", type=int, default=4, help="mlp, loaded: processes per variant and allocator"
    )
    parser.add_argument(
        "--steps", type=int, default=300, help="mlp, loaded: steps per process; compiled: steps"
    )
    parser.add_argument("--mlp-child", choices=MLP_VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.mlp_child:
        _mlp_child(args.mlp_child, args.steps)
        return
    from dropkit.kernels import _openmp

    team = "torch's OpenMP team" if _openmp.runtime() is not None else "Python threads"
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {args.threads} threads, kernels on {team}, huge pages "
        f"{'on' if _hugepages._MADVISE is not None else 'off'}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    rows: list[dict] = []
    for name in args.only:
        t0 = time.perf_counter()
        new = globals()[f"section_{name}"](args)
        print(to_markdown(new), f"\n({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
        rows += new
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
