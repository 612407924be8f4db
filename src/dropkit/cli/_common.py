"""Arguments shared by the subcommands that build a config (``--preset``, ``--config``,
``--print-config``, ``key=value``) and the plain-text help they print."""

from __future__ import annotations

import argparse
import textwrap

from dropkit.cli._text import plain
from dropkit.lab.config import Config, describe_fields

__all__ = ["add_config_arguments", "config_from_args", "config_keys_help", "plain"]


def config_keys_help() -> str:
    """Every config key with its type, default and description, as an aligned table."""
    rows = describe_fields()
    w_key = max(len(r[0]) for r in rows)
    w_type = min(30, max(len(r[1]) for r in rows))
    lines = ["config keys (KEY=VALUE; lists as 1,2,3):"]
    for key, kind, default, description in rows:
        head = f"  {key:<{w_key}}  {kind:<{w_type}}  default {default}"
        lines.append(head)
        if description:
            lines += textwrap.wrap(
                description,
                width=96,
                initial_indent=" " * (w_key + 4),
                subsequent_indent=" " * (w_key + 4),
            )
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    from dropkit.lab.presets import PRESETS

    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="start from a preset's base config"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="config file of keys: JSON, or YAML (.yaml/.yml)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults, preset, file, overrides) as JSON and exit",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, applied last (keys below)",
    )
    parser.epilog = config_keys_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def config_from_args(args: argparse.Namespace) -> Config:
    from dropkit.lab.config import load_config
    from dropkit.lab.presets import PRESETS

    base = PRESETS[args.preset].base if args.preset else None
    return load_config(args.config, args.overrides, base=base)
