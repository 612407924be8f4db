"""mc_predict (vectorised) vs a Python loop of T forwards: T=100 samples on 1,000 inputs.

Usage: .venv/bin/python benchmarks/bench_mc_predict.py [--repeats 7] [--threads 1]

Prints the median wall time of each path and their ratio, measured in one run, for a small
(UCI-sized) and a medium (MNIST-sized) dropout MLP.
"""

from __future__ import annotations

import argparse

import torch
from _common import median_time
from torch import nn

from dropkit.uncertainty import mc_mode, mc_predict
from dropkit.uncertainty.ensemble import build_mlp


def python_loop(model: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    with mc_mode(model), torch.no_grad():
        return torch.stack([model(x) for _ in range(t)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--inputs", type=int, default=1000, help="B (a run with B=10 follows)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t, b = args.samples, args.inputs
    cases = {
        "UCI-sized MLP 8-50-1, p=0.05": (build_mlp(8, (50,), 1, 0.05, 0.05), 8),
        "MNIST-sized MLP 784-512-512-10, p=0.2/0.5": (
            build_mlp(784, (512, 512), 10, 0.2, 0.5),
            784,
        ),
    }
    print(f"T={t}, threads={args.threads}, median of {args.repeats}")
    print(
        f"{'model':<44} {'B':>5} {'loop (ms)':>10} {'mc_predict (ms)':>16} {'seeded (ms)':>12} "
        f"{'loop/vec':>9}"
    )
    for (name, (model, d)), batch in [(c, bb) for c in cases.items() for bb in (b, 10)]:
        x = torch.randn(batch, d)
        loop = median_time(lambda m=model, x=x: python_loop(m, x, t), args.repeats, warmup=1)
        vec = median_time(lambda m=model, x=x: mc_predict(m, x, t), args.repeats, warmup=1)
        seeded = median_time(
            lambda m=model, x=x: mc_predict(m, x, t, seed=0), args.repeats, warmup=1
        )
        print(
            f"{name:<44} {batch:>5} {1e3 * loop:>10.1f} {1e3 * vec:>16.1f} {1e3 * seeded:>12.1f} "
            f"{loop / vec:>9.2f}"
        )


if __name__ == "__main__":
    main()
