"""``dropkit sweep``: a grid of runs on Optuna (SQLite by default; rerun the same command to resume).

Several machines join one sweep by pointing at one database: ``--storage postgresql://user:pw@host/db``
with the same grid, ``--study`` and ``--root`` on each machine.
"""

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
from dropkit.cli._types import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of configs (resumable; workers share one Optuna storage)",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a grid axis (repeatable), e.g. --grid p_hidden=0,0.25,0.5 --grid seed=0,1,2; "
        "with --preset, replaces that axis of the preset's grid; list-valued keys take ';' between "
        "values: --grid 'widths=100,100;256,256' (and so do variant names holding commas: "
        "'variant=input 0.2, hidden 0.5;')",
    )
    parser.add_argument(
        "--root",
        help=f"sweep folder (default: {DEFAULT_FOLDER_HELP} of the base config; LABEL is the "
        "preset's name, or 'sweep')",
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///<root>/sweep.db; workers on several machines "
        "share a postgresql://user:pw@host/db)",
    )
    parser.add_argument(
        "--study", default=None, help="study name in the storage (default: grid-<hash of the grid>)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="local worker processes (default 1)"
    )
    parser.add_argument(
        "--heartbeat",
        type=positive_int,
        default=60,
        metavar="SECONDS",
        help="seconds between a worker's heartbeats in the storage; a point whose worker misses "
        "4 is handed to another worker (default 60)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip writing <root>/report")
    parser.set_defaults(func=_run)


def _parse_axis(text: str) -> tuple[str, list]:
    from dropkit.lab.config import parse_overrides

    key, sep, values = text.partition("=")
    if not sep or not values.strip():
        raise ValueError(f"--grid {text!r} is not of the form key=v1,v2,...")
    key = key.strip()
    if key in ("widths", "channels", "p_hidden", "variant") and ";" in values:
        # list-valued axes: --grid widths="100,100;256,256"; variant names may hold commas
        items = values.split(";")
    else:
        items = values.split(",")
    if key == "variant":  # names, kept as text ("none" is a variant, not null); "a, b;" is one name
        return key, [v.strip() for v in items if v.strip()]
    return key, [parse_overrides([f"v={v.strip()}"])["v"] for v in items]


def _run(args: argparse.Namespace) -> int:
    from dropkit.cli.report import run_report
    from dropkit.lab.config import parse_overrides
    from dropkit.lab.presets import PRESETS
    from dropkit.lab.sweep import grid_points, sweep

    config = config_from_args(args)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    preset = PRESETS[args.preset] if args.preset else None
    grid = dict(preset.grid) if preset else {}
    grid.update(_parse_axis(axis) for axis in args.grid)
    root = args.root or default_folder(args.preset or "sweep", config)
    if not args.root:
        print(f"sweep folder: {root}", file=sys.stderr)
    variants = None
    if preset:  # KEY=VALUE overrides apply last: over the preset's variants too
        overrides = parse_overrides(args.overrides)
        variants = {name: {**v, **overrides} for name, v in preset.variants.items()}
    rows = sweep(
        config,
        grid,
        root,
        variants=variants,
        storage=args.storage,
        study_name=args.study,
        workers=args.workers,
        heartbeat=args.heartbeat,
        progress=True,
    )
    done = {json.dumps(r["params"], sort_keys=True) for r in rows if r["state"] == "COMPLETE"}
    print(
        f"{len(done)} of {len(grid_points(grid))} grid points complete; "
        f"run directories under {root}/runs"
    )
    if not args.no_report:
        title = preset.title if preset else "dropkit sweep"
        order = list(preset.variants) if preset else ()
        out = run_report([f"{root}/runs"], f"{root}/report", title=title, order=order)
        print(f"report: {out['html']}")
    return 0
