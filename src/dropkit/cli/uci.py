"""``dropkit uci``: the UCI regression benchmark of Gal & Ghahramani (2016) with MC dropout.

Resumable: per-split results go to OUT/<dataset>/split_<i>.json; a rerun skips finished splits.
"""

from __future__ import annotations

import argparse

import torch

from dropkit.cli._text import plain
from dropkit.cli._types import nonneg_int, positive_int
from dropkit.uncertainty.uci import UCIConfig, compare_with_published, run_uci


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "uci",
        help="MC-dropout UCI regression benchmark (grid search, 10,000 MC samples at test)",
        description=plain(__doc__),
    )
    parser.add_argument("data_dir", help="a UCI dataset folder, or a folder of them")
    parser.add_argument("--out", default="runs/uci", help="results folder (default: runs/uci)")
    parser.add_argument("--datasets", nargs="+", help="folder names to run (default: all found)")
    parser.add_argument("--splits", nargs="+", type=nonneg_int, help="split indices (default: all)")
    parser.add_argument("--epochs-multiplier", type=positive_int, default=10)
    parser.add_argument("--max-epochs", type=positive_int, help="cap on epochs (smoke runs)")
    parser.add_argument("--val-samples", type=positive_int, default=1000)
    parser.add_argument("--test-samples", type=positive_int, default=10_000)
    parser.add_argument("--splits-per-batch", type=positive_int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    config = UCIConfig(
        epochs_multiplier=args.epochs_multiplier,
        max_epochs=args.max_epochs,
        val_samples=args.val_samples,
        test_samples=args.test_samples,
        splits=tuple(args.splits) if args.splits else None,
        splits_per_batch=args.splits_per_batch,
        seed=args.seed,
    )
    summaries = run_uci(args.data_dir, args.out, config, datasets=args.datasets)
    print(compare_with_published(summaries))
    return 0
