"""``dropkit run``: train one configured model into a run directory (rerun to resume)."""

from __future__ import annotations

import argparse
import json
import sys

from dropkit.cli._common import (
    DEFAULT_FOLDER_HELP,
    add_config_arguments,
    config_from_args,
    default_folder,
)
from dropkit.cli._text import plain


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train one configured model (resumes an interrupted run)",
        description=plain(__doc__),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--workdir",
        default=None,
        help=f"run directory (default: {DEFAULT_FOLDER_HELP}; LABEL is the config's name)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--logger",
        action="append",
        default=[],
        choices=("stdout", "tensorboard"),
        help="also log each epoch's metrics to stdout, or to TensorBoard event files in "
        "<workdir>/tensorboard, with the config as hparams (repeatable; metrics.jsonl and "
        "metrics.csv are always written)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    from dropkit.lab.loggers import make_loggers
    from dropkit.lab.runner import run

    workdir = args.workdir or default_folder(config.name, config)
    if not args.workdir:
        print(f"run directory: {workdir}", file=sys.stderr)
    loggers = make_loggers(args.logger, workdir, hparams=config.model_dump(mode="json"))
    summary = run(config, workdir, loggers=loggers, progress=not args.quiet)
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"run directory: {workdir}")
    return 0
