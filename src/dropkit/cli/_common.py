"""Arguments shared by the subcommands that build a config: ``--preset``, ``--config``, ``key=value``."""

from __future__ import annotations

import argparse

from dropkit.lab.config import Config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    from dropkit.lab.presets import PRESETS

    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="start from a preset's base config"
    )
    parser.add_argument("--config", metavar="FILE", help="JSON file of config keys")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help=f"config overrides, applied last; keys: {', '.join(Config.model_fields)}",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    from dropkit.lab.config import load_config
    from dropkit.lab.presets import PRESETS

    base = PRESETS[args.preset].base if args.preset else None
    return load_config(args.config, args.overrides, base=base)
