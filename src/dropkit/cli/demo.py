"""``dropkit demo``: an MLP on scikit-learn's bundled digits, with and without dropout."""

from __future__ import annotations

import argparse

from dropkit._demo import run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a small MLP with and without dropout on bundled data and print accuracies",
        description=__doc__,
    )
    parser.add_argument("--epochs", type=_positive_int, default=150, help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.set_defaults(func=_run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    rows = run_demo(epochs=args.epochs, seed=args.seed)
    print(f"{'model':<32} {'train acc':>9} {'test acc':>9} {'gap':>7}")
    for name, train_acc, test_acc in rows:
        gap = train_acc - test_acc
        print(f"{name:<32} {train_acc:>9.4f} {test_acc:>9.4f} {gap:>7.4f}")
    return 0
