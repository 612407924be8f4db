"""Fast CPU dropout vs PyTorch eager: speed, saved memory, an MLP step, a loaded machine, JIT cost.

Every ratio is measured in one run on the same tensors; each figure is the median over repeats.
Run from the repository root (about 3 minutes):

    .venv/bin/python benchmarks/bench_dropout.py            # all sections, 2 threads
    .venv/bin/python benchmarks/bench_dropout.py --only big small --repeats 21

Sections: big (16M elements, fwd+bwd), small (1K-64K), dtypes, fused, memory, mlp, loaded (one core
busy with another process), jit (cold and warm first call, in fresh processes). Results are printed as
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

import dropkit
import dropkit.functional as DF
import dropkit.nn as dnn
from dropkit.kernels import _hugepages

SECTIONS = ("big", "small", "dtypes", "fused", "memory", "mlp", "loaded", "jit")


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Medians of several candidates timed in turn, so load changes hit all alike."""
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order, rng = list(fns), random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)  # no candidate always follows the same one (see _mlp_table)
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def fwd_bwd(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor):
    def run():
        x.grad = None
        op(x).backward(g)

    return run


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


def saved_bytes(fn) -> int:
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)


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
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()
        return time.perf_counter() - t0


def _identity(_p: float) -> torch.nn.Module:
    return torch.nn.Identity()


MLP_VARIANTS = {
    "no dropout": _identity,
    "torch nn.Dropout": torch.nn.Dropout,
    "dropkit": dnn.Dropout,
}


def _mlp_table(args, label: str) -> list[dict]:
    steps = {k: _MLPStep(cls) for k, cls in MLP_VARIANTS.items()}
    for step in steps.values():  # warm-up (and the kernels' first call)
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    # One step of each variant in turn, so load changes hit all alike, in a new random order each
    # round: a variant is slowed by the state the one before it leaves (caches, and the C heap:
    # after torch's dropout step the next step took ~90 more page faults), so no variant may
    # always follow the same one.
    order, rng = list(steps), random.Random(0)
    for _ in range(args.repeats * 30):
        rng.shuffle(order)
        for k in order:
            times[k].append(steps[k]())
    none = statistics.median(times["no dropout"])
    rows = []
    for k, ts in times.items():
        p50 = statistics.median(ts)
        rows.append(
            {
                "section": label,
                "case": f"MLP 784-1024-1024-10 batch 128 step: {k}",
                "p50 ms": p50 * 1e3,
                "p90 ms": statistics.quantiles(ts, n=10)[8] * 1e3,
                "dropout share": 0.0 if k == "no dropout" else (p50 - none) / p50,
            }
        )
    return rows


def section_mlp(args) -> list[dict]:
    rows = _mlp_table(args, "mlp")
    # The same share estimated from parts, less sensitive to a noisy machine: the step without
    # dropout plus the two dropout layers' forward+backward on (128, 1024), timed alone.
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
                "p50 ms": (t["no dropout"] + layers) * 1e3,
                "p90 ms": float("nan"),
                "dropout share": layers / (t["no dropout"] + layers),
            }
        )
    return rows


def section_loaded(args) -> list[dict]:
    # One core kept busy by another process for the whole section.
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return _mlp_table(args, "loaded")
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
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
