"""The ``dropkit`` command: a thin shell over library functions, one file per subcommand.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Argument errors go through the subcommand's parser (exit code 2, with its usage); errors found while
running (a bad file, a config value, a disk that is full, a run directory in use) print one line that
names the file or argument, ``dropkit <command>: error: ...``, and exit with code 2. Ctrl-C exits
with 130.

Building the parser imports no torch (nor numpy, scipy, optuna): ``--help`` answers at once, and a
command imports what it needs when it runs. ``tests/cli/test_startup.py`` keeps it so.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

_SUBCOMMANDS = ("demo", "run", "sweep", "tune", "report", "presets", "uci", "mc_vs_scaling")

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
        prog="dropkit",
        description="dropkit: dropout experiments on real data. "
        "'dropkit COMMAND --help' describes a command and its options.",
    )
    parser.add_argument("--version", action="version", version=f"dropkit {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMANDS:
        importlib.import_module(f"dropkit.cli.{name}").add_parser(subparsers)
    for command in subparsers.choices.values():  # errors found after parsing use its usage
        command.set_defaults(command_parser=command)
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


def _stray_hint(stray: list[str], argv: list[str], command: argparse.ArgumentParser) -> str:
    """The error for arguments the command does not take: a config key written as an option
    (``--epochs 2``) is answered with its ``epochs=2`` form; other names get the closest option."""
    import difflib

    from dropkit.lab.config import Config, did_you_mean

    options = [s for a in command._actions for s in a.option_strings]
    takes_keys = "overrides" in {a.dest for a in command._actions}
    for arg in stray:
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        if not eq:  # --key value: the value is the next word
            at = argv.index(arg)
            nxt = argv[at + 1] if at + 1 < len(argv) else ""
            value = nxt if nxt and not nxt.startswith("-") and "=" not in nxt else "VALUE"
        close = difflib.get_close_matches(key, list(Config.model_fields), n=1, cutoff=0.6)
        if takes_keys and key in Config.model_fields:
            return f"{arg} is not an option; config keys are set as KEY=VALUE, here {key}={value}"
        hint = did_you_mean(f"--{name}", options)
        if hint:
            return f"unrecognized argument {arg}{hint}"
        if takes_keys and close:
            return (
                f"{arg} is not an option; config keys are set as KEY=VALUE: did you mean "
                f"{close[0]}={value}?"
            )
    return f"unrecognized arguments: {' '.join(stray)}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
    except ModuleNotFoundError as err:
        print(_missing_module(err), file=sys.stderr)
        return 2
    # KEY=VALUE overrides may follow options (``sweep --grid seed=0,1 lr=0.01``), which argparse
    # leaves unparsed once positionals were given before them: they join the overrides
    args, extra = parser.parse_known_args(argv)
    command = args.command_parser
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        command.error(_stray_hint(stray or extra, argv, command))
    if extra:
        args.overrides = [*args.overrides, *extra]
    from dropkit.lab._io import LabError

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
