"""Where the time of the MLP step in bench_dropout.py goes: page faults, dropkit's parts, cold caches.

Diagnostics behind the "C heap" notes in docs/benchmarks.md and docs/fast_dropout.md. Run from the
repository root; each command is one process (run it under glibc's defaults, then with trimming off
by setting MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 in the environment):

    .venv/bin/python benchmarks/mlp_step_anatomy.py faults --variant dropkit   # per-step page faults
    .venv/bin/python benchmarks/mlp_step_anatomy.py parts                      # dropkit's kernels, seed
    .venv/bin/python benchmarks/mlp_step_anatomy.py after-mm                   # one call, cold caches

``faults`` splits the steps at 1,000 minor page faults (a step after a heap trim takes about 2,700,
one without a few hundred at most) and reports both groups. ``parts`` times dropkit's forward and
backward kernels and seed draws inside the steps. ``after-mm`` times single element-wise calls on a
128x1024 tensor, alone and right after a (128, 1024) @ (1024, 1024) matmul has gone through the caches.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time

import torch
from _common import median_time
from bench_dropout import MLP_VARIANTS, _MLPStep

from dropkit.kernels import cpu
from dropkit.random import draws

_SLOW_FAULTS = 1000


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def faults(args) -> None:
    if args.no_gc:
        gc.disable()
    step = _MLPStep(MLP_VARIANTS[args.variant])
    for _ in range(30):
        step()
    times, counts = [], []
    for _ in range(args.steps):
        f0 = _minor_faults()
        times.append(step() * 1e3)
        counts.append(_minor_faults() - f0)
    q = statistics.quantiles(times, n=10)
    print(
        f"{args.variant}: mean {statistics.fmean(times):.2f} ms, p10 {q[0]:.2f}, "
        f"p50 {statistics.median(times):.2f}, p90 {q[8]:.2f}"
    )
    for label, keep in (
        ("slow", lambda c: c >= _SLOW_FAULTS),
        ("fast", lambda c: c < _SLOW_FAULTS),
    ):
        group = [(t, c) for t, c in zip(times, counts, strict=True) if keep(c)]
        if group:
            print(
                f"  {label} steps (faults {'>=' if label == 'slow' else '<'} {_SLOW_FAULTS}): "
                f"{len(group)} of {len(times)}, mean {statistics.fmean(t for t, _ in group):.2f} ms, "
                f"mean faults {statistics.fmean(c for _, c in group):.0f}"
            )


def parts(args) -> None:
    spent: dict[str, float] = {}

    def timed(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def wrapper(*a):
            t0 = time.perf_counter()
            out = fn(*a)
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
            return out

        setattr(owner, name, wrapper)

    timed(cpu, "forward_tensor", "forward kernels")
    timed(cpu, "backward_tensor", "backward kernels")
    timed(draws, "_random_seed", "seed draws")
    step = _MLPStep(MLP_VARIANTS["dropkit"])
    for _ in range(30):
        step()
    spent.clear()
    times = [step() for _ in range(args.steps)]
    print(f"dropkit step: mean {statistics.fmean(times) * 1e3:.2f} ms over {args.steps} steps")
    for label, total in spent.items():
        print(f"  {label}: {total / args.steps * 1e6:.0f} us per step (two layers)")


def after_mm(args) -> None:
    n = 128 * 1024
    x, g = torch.randn(n), torch.randn(n)
    out, gin = torch.empty(n), torch.empty(n)
    bits = torch.empty(n // 8, dtype=torch.uint8)
    a, w = torch.randn(128, 1024), torch.randn(1024, 1024)
    t = cpu.threshold(0.5)
    cases = {
        "dropkit forward kernel (bits kept)": lambda: cpu.forward_tensor(
            x, out, bits, n, 123, t, 2.0, True
        ),
        "dropkit backward kernel (from bits)": lambda: cpu.backward_tensor(
            g, gin, bits, n, 123, t, 2.0
        ),
        "torch g * 2 (out=)": lambda: torch.mul(g, 2.0, out=gin),
        "torch relu": lambda: torch.relu(x),
    }
    for label, fn in cases.items():
        alone = median_time(fn, args.steps)

        def cold(fn=fn) -> float:
            torch.mm(a, w)
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        after = statistics.median(cold() for _ in range(args.steps))
        print(f"{label}: alone {alone * 1e6:.1f} us, after mm {after * 1e6:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("faults", "parts", "after-mm"))
    parser.add_argument("--variant", choices=MLP_VARIANTS, default="dropkit")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-gc", action="store_true", help="faults: gc.disable() first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"faults": faults, "parts": parts, "after-mm": after_mm}[args.what](args)


if __name__ == "__main__":
    main()
