"""``dropkit tune``: choose drop rates by experiment (Optuna TPE, bad trials pruned; rerun to resume).

Example: ``dropkit tune --preset rate-sweep --space p_hidden=0:0.8 --trials 12 --compare-grid``
searches p_hidden in [0, 0.8] by validation accuracy (or RMSE), confirms the best rate on three
seeds (test mean ± 95% CI) and does the same for the best point of an evenly spaced grid trained
with the same number of epochs. A line per trial shows the progress.
"""

from __future__ import annotations

import argparse
import sys

from dropkit.cli._common import (
    DEFAULT_FOLDER_HELP,
    add_config_arguments,
    config_from_args,
    default_folder,
)
from dropkit.cli._text import plain
from dropkit.cli._types import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search drop rates with TPE and pruning (resumable; same storage as sweep)",
        description=plain(__doc__),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY=LOW:HIGH",
        help="a rate range to search (repeatable; at least one), e.g. --space p_hidden=0:0.7 "
        "--space p_input=0:0.3; keys: p_input, p_hidden, weight_dropout",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=20,
        help="finished (complete or pruned) trials to reach; a rerun continues up to it "
        "(default: 20)",
    )
    parser.add_argument(
        "--startup-trials",
        type=positive_int,
        default=5,
        help="random trials before TPE and pruning start (default: 5)",
    )
    parser.add_argument(
        "--confirm-seeds",
        default="0,1,2",
        metavar="SEEDS",
        help="distinct seeds to retrain the chosen rates on (default: 0,1,2)",
    )
    parser.add_argument(
        "--compare-grid",
        action="store_true",
        help="also train an equal-compute grid over the same ranges and confirm its best point",
    )
    parser.add_argument(
        "--root",
        help=f"tune folder (default: {DEFAULT_FOLDER_HELP} and search space; LABEL is "
        "tune-<preset>, or 'tune')",
    )
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<root>/sweep.db)")
    parser.add_argument("--study", default="tune", help="study name in the storage (default: tune)")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines or progress bars")
    parser.set_defaults(func=_run)


def _parse_space(items: list[str]) -> dict[str, tuple[float, float]]:
    if not items:
        raise ValueError("tune: give at least one --space KEY=LOW:HIGH (e.g. p_hidden=0:0.7)")
    space = {}
    for item in items:
        key, sep, rng = item.partition("=")
        low, sep2, high = rng.partition(":")
        try:
            if not (sep and sep2):
                raise ValueError
            space[key.strip()] = (float(low), float(high))
        except ValueError:
            raise ValueError(f"--space {item!r} is not of the form KEY=LOW:HIGH") from None
    return space


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--confirm-seeds {text!r} must be comma-separated seeds, e.g. 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(
            f"--confirm-seeds {text!r} repeats a seed: a repeated seed is the same sample, not "
            "another one; give distinct seeds"
        )
    return seeds


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    from dropkit.lab.tune import format_result, tune

    space = _parse_space(args.space)
    seeds = _parse_seeds(args.confirm_seeds)
    label = f"tune-{args.preset}" if args.preset else "tune"
    root = args.root or default_folder(label, config, space)
    if not args.root:
        print(f"tune folder: {root}", file=sys.stderr)
    result = tune(
        config,
        space,
        root,
        trials=args.trials,
        storage=args.storage,
        study_name=args.study,
        startup_trials=args.startup_trials,
        confirm_seeds=seeds,
        compare_grid=args.compare_grid,
        progress=not args.quiet,
    )
    print(format_result(result))
    print(f"details: {root}/tune.json")
    return 0
