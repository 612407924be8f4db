"""The ``dropkit`` command: a thin shell over library functions, one file per subcommand.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Argument errors go through the parser (exit code 2, with the usage); errors found while running (a bad
file, a config value, a disk that is full, a run directory in use) print one line that names the file
or argument, ``dropkit <command>: error: ...``, and exit with code 2. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

_SUBCOMMANDS = ("demo", "run", "sweep", "tune", "report", "uci", "mc_vs_scaling")

# Which extra brings a module the commands import (the lab extra brings the rest).
_EXTRA_OF = {"psycopg2": "postgres", "tensorboard": "tensorboard", "triton": "gpu"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dropkit")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropkit", description="dropkit: dropout experiments on real data."
    )
    parser.add_argument("--version", action="version", version=f"dropkit {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMANDS:
        importlib.import_module(f"dropkit.cli.{name}").add_parser(subparsers)
    return parser


def _missing_module(err: ModuleNotFoundError) -> str:
    name = (err.name or "").split(".")[0]
    extra = _EXTRA_OF.get(name, "lab")
    return (
        f"dropkit: this command needs the '{extra}' extra (module '{name}' is not installed): "
        f"pip install 'dropkit[{extra}]'"
    )


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.strerror or err}: '{err.filename}'"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        from dropkit.lab._io import LabError
    except ModuleNotFoundError as err:
        print(_missing_module(err), file=sys.stderr)
        return 2
    # KEY=VALUE overrides may follow options (``sweep --grid seed=0,1 lr=0.01``), which argparse
    # leaves unparsed once positionals were given before them: they join the overrides
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as err:
        parser.exit(2, _missing_module(err) + "\n")
    except (ValueError, TypeError, OSError, LabError) as err:
        parser.exit(2, f"dropkit {args.command}: error: {_one_line(err)}\n")
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished epochs are saved; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 2  # unreachable: parser.exit raises SystemExit


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
