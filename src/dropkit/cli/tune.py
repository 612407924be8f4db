"""``dropkit tune``: choose drop rates by experiment (Optuna TPE, bad trials pruned; rerun to resume).

Example: ``dropkit tune --preset rate-sweep --space p_hidden=0:0.8 --trials 12 --compare-grid``
searches p_hidden in [0, 0.8], confirms the best rate on three seeds (test mean ± 95% CI) and does
the same for the best point of an evenly spaced grid trained with the same number of epochs.
"""

from __future__ import annotations

import argparse

from dropkit.cli._common import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search drop rates with TPE and pruning (resumable; same storage as sweep)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY=LOW:HIGH",
        help="a rate range to search (repeatable), e.g. --space p_hidden=0:0.7 --space p_input=0:0.3",
    )
    parser.add_argument("--trials", type=int, default=20, help="finished trials to reach")
    parser.add_argument(
        "--startup-trials", type=int, default=5, help="random trials before TPE and pruning"
    )
    parser.add_argument(
        "--confirm-seeds", default="0,1,2", help="seeds to retrain the chosen rates on"
    )
    parser.add_argument(
        "--compare-grid", action="store_true", help="also run an equal-compute grid and confirm it"
    )
    parser.add_argument("--root", help="tune folder (default: runs/tune-<preset> or runs/tune)")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<root>/sweep.db)")
    parser.add_argument("--study", default="tune", help="study name in the storage")
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
    return seeds


def _run(args: argparse.Namespace) -> int:
    from dropkit.lab.tune import format_result, tune

    config = config_from_args(args)
    root = args.root or (f"runs/tune-{args.preset}" if args.preset else "runs/tune")
    result = tune(
        config,
        _parse_space(args.space),
        root,
        trials=args.trials,
        storage=args.storage,
        study_name=args.study,
        startup_trials=args.startup_trials,
        confirm_seeds=_parse_seeds(args.confirm_seeds),
        compare_grid=args.compare_grid,
    )
    print(format_result(result))
    print(f"details: {root}/tune.json")
    return 0
