"""``dropkit mc-vs-scaling``: test error of MC averaging over k sub-networks vs weight scaling.

Srivastava et al. (2014), Fig. 11, on MNIST-1D (generated offline) or Fashion-MNIST IDX files.
"""

from __future__ import annotations

import argparse

import torch

from dropkit.cli._text import plain
from dropkit.cli._types import positive_int
from dropkit.uncertainty.ensemble import MCvsScalingConfig, run_mc_vs_scaling


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mc-vs-scaling",
        help="MC averaging vs weight scaling on a trained dropout MLP (Srivastava 2014, Fig. 11)",
        description=plain(__doc__),
    )
    parser.add_argument(
        "--dataset",
        type=lambda text: text.replace("-", "_"),  # fashion-mnist is read as fashion_mnist
        choices=("mnist1d", "fashion_mnist"),
        default="mnist1d",
        help="data set (default mnist1d)",
    )
    parser.add_argument("--data-dir", help="folder of the Fashion-MNIST IDX files")
    parser.add_argument("--out", default="runs/mc_vs_scaling", help="results folder")
    parser.add_argument("--epochs", type=positive_int, default=60)
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[512, 512])
    parser.add_argument("--max-k", type=positive_int, default=100)
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--n-train", type=positive_int, help="cap on training rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    config = MCvsScalingConfig(
        dataset=args.dataset.replace("_", "-"),  # MCvsScalingConfig's own spelling
        data_dir=args.data_dir,
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        max_k=args.max_k,
        repeats=args.repeats,
        n_train=args.n_train,
        seed=args.seed,
    )
    r = run_mc_vs_scaling(config, args.out)
    print(f"weight scaling: test error {100 * r['weight_scaling_error']:.2f}%")
    for k, m, s in zip(r["ks"], r["mc_error_mean"], r["mc_error_std"], strict=True):
        print(f"MC k={k:<4} test error {100 * m:.2f}% ± {100 * s:.2f}")
    print(f"results and plot in {args.out}")
    return 0
