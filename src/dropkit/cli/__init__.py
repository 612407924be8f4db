"""The ``dropkit`` command: a thin shell over library functions, one file per subcommand.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
User errors go through ``parser.error`` (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dropkit.cli import demo, mc_vs_scaling, report, run, sweep, tune, uci

__all__ = ["build_parser", "main"]

_SUBCOMMANDS = (demo, run, sweep, tune, report, uci, mc_vs_scaling)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropkit", description="dropkit: dropout experiments on real data."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        parser.error(str(err))  # exits with code 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished epochs are saved; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 2  # unreachable: parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
