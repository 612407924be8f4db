"""``dropkit mc-vs-scaling``: test error of MC averaging over k sub-networks vs weight scaling.

Srivastava et al. (2014), Fig. 11, on MNIST-1D (generated offline) or Fashion-MNIST IDX files.
"""

from __future__ import annotations

import argparse

from dropkit.cli._text import plain
from dropkit.cli._types import positive_int

# MCvsScalingConfig's defaults, written out so that --help needs no torch (a test keeps them equal).
DEFAULTS = {"epochs": 60, "hidden": [512, 512], "max_k": 100, "repeats": 20, "seed": 0}


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
        help="data set: mnist1d (generated offline) or fashion_mnist (needs --data-dir) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        help="folder of the four Fashion-MNIST IDX files (default: none; required for "
        "fashion_mnist)",
    )
    parser.add_argument(
        "--out",
        default="runs/mc_vs_scaling",
        help="results folder: results.json and the plot (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=DEFAULTS["epochs"],
        help="training epochs of the dropout MLP (default: %(default)s)",
    )
    parser.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        default=DEFAULTS["hidden"],
        metavar="WIDTH",
        help="hidden layer widths (default: 512 512)",
    )
    parser.add_argument(
        "--max-k",
        type=positive_int,
        default=DEFAULTS["max_k"],
        help="largest number k of sub-networks averaged (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=DEFAULTS["repeats"],
        help="random draws of k among the max-k samples per k: the mean and std shown "
        "(default: %(default)s)",
    )
    parser.add_argument("--n-train", type=positive_int, help="cap on training rows (default: all)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from dropkit.uncertainty.ensemble import MCvsScalingConfig, run_mc_vs_scaling

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
