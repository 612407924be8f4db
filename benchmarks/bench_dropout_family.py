"""Forward + backward time of the issue-3 dropout variants, against PyTorch where it has the op.

Each row is the median over ``torch.utils.benchmark`` blocked runs of one training step (forward,
``sum().backward()``) on CPU with one intra-op thread; ratios are taken within one run.

    .venv/bin/python benchmarks/bench_dropout_family.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import dropkit.functional as DF


def _median_ms(fn, x, min_run_time: float) -> float:
    def step():
        x.grad = None
        fn(x).sum().backward()

    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t = 0.2 if args.quick else 1.0

    fmap = torch.randn(32, 64, 32, 32, requires_grad=True)  # (N, C, H, W)
    dense = torch.randn(256, 4096, requires_grad=True)  # (N, D)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    w, b = conv.weight.detach().requires_grad_(), conv.bias.detach().requires_grad_()
    small = torch.randn(32, 16, 16, 16, requires_grad=True)
    ws = torch.randn(16, 16, 3, 3, requires_grad=True)

    rows = [
        # (name, dropkit op, baseline op, input, baseline name)
        (
            "dropout2d p=0.2",
            lambda x: DF.dropout2d(x, 0.2),
            lambda x: F.dropout2d(x, 0.2),
            fmap,
            "torch dropout2d",
        ),
        (
            "alpha_dropout p=0.1",
            lambda x: DF.alpha_dropout(x, 0.1),
            lambda x: F.alpha_dropout(x, 0.1, True),
            dense,
            "torch alpha_dropout",
        ),
        (
            "gaussian_dropout p=0.5",
            lambda x: DF.gaussian_dropout(x, 0.5),
            lambda x: F.dropout(x, 0.5),
            dense,
            "torch dropout",
        ),
        (
            "drop_path p=0.1",
            lambda x: DF.drop_path(x, 0.1),
            lambda x: F.dropout(x, 0.1),
            fmap,
            "torch dropout",
        ),
        (
            "dropblock2d p=0.1 b=7",
            lambda x: DF.dropblock2d(x, 0.1, block_size=7),
            lambda x: F.dropout2d(x, 0.2),
            fmap,
            "torch dropout2d",
        ),
        (
            "dropconnect conv, per batch",
            lambda x: DF.dropconnect_conv(x, w, b, 0.3, padding=1),
            lambda x: F.conv2d(x, w, b, padding=1),
            fmap,
            "torch conv2d",
        ),
        (
            "dropconnect conv, per sample",
            lambda x: DF.dropconnect_conv(x, ws, None, 0.3, padding=1, per_sample=True),
            lambda x: F.conv2d(x, ws, None, padding=1),
            small,
            "torch conv2d",
        ),
    ]
    print(f"torch {torch.__version__}, 1 thread, CPU; median ms of forward+backward")
    print("| op | input | dropkit ms | baseline | baseline ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name, ours, theirs, x, base in rows:
        a, c = _median_ms(ours, x, t), _median_ms(theirs, x, t)
        print(f"| {name} | {tuple(x.shape)} | {a:.2f} | {base} | {c:.2f} | {a / c:.2f} |")


if __name__ == "__main__":
    main()
