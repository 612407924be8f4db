"""``dropkit uci``: the UCI regression benchmark of Gal & Ghahramani (2016) with MC dropout.

Resumable: per-split results go to OUT/<dataset>/split_<i>.json; a rerun skips finished splits.
"""

from __future__ import annotations

import argparse

from dropkit.cli._text import plain
from dropkit.cli._types import nonneg_int, positive_int

# UCIConfig's defaults, written out so that --help needs no torch (a test keeps them equal).
DEFAULTS = {
    "epochs_multiplier": 10,
    "val_samples": 1000,
    "test_samples": 10_000,
    "splits_per_batch": 20,
    "seed": 1,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "uci",
        help="MC-dropout UCI regression benchmark (grid search, 10,000 MC samples at test)",
        description=plain(__doc__),
    )
    parser.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        help="a UCI dataset folder (data.txt, index_*.txt, n_splits.txt), or a folder of them",
    )
    parser.add_argument("--out", default="runs/uci", help="results folder (default: runs/uci)")
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help="dataset folder names to run (default: every one found in DATA_DIR)",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        type=nonneg_int,
        metavar="I",
        help="split indices to run (default: all of each dataset's splits)",
    )
    parser.add_argument(
        "--epochs-multiplier",
        type=positive_int,
        default=DEFAULTS["epochs_multiplier"],
        help="epochs = the dataset's n_epochs.txt (40 if absent) x this; the published column "
        "matches 100 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        help="cap on the epochs, for smoke runs (default: no cap)",
    )
    parser.add_argument(
        "--val-samples",
        type=positive_int,
        default=DEFAULTS["val_samples"],
        help="MC samples per validation prediction in the grid search (default: %(default)s)",
    )
    parser.add_argument(
        "--test-samples",
        type=positive_int,
        default=DEFAULTS["test_samples"],
        help="MC samples per test prediction (default: %(default)s)",
    )
    parser.add_argument(
        "--splits-per-batch",
        type=positive_int,
        default=DEFAULTS["splits_per_batch"],
        help="splits trained together as one batched model (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from dropkit.uncertainty.uci import UCIConfig, compare_with_published, run_uci

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
