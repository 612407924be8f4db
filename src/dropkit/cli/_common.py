"""Arguments shared by the subcommands that build a config (``--preset``, ``--config``,
``--print-config``, ``key=value``), the plain-text help they print, and the default folders."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import textwrap
from typing import TYPE_CHECKING, Any

from dropkit.cli._text import plain
from dropkit.lab.config import describe_fields

if TYPE_CHECKING:
    from dropkit.lab.config import Config

__all__ = [
    "add_config_arguments",
    "config_from_args",
    "config_hash",
    "config_keys_help",
    "default_folder",
    "plain",
]

DEFAULT_FOLDER_HELP = (
    "runs/<LABEL>-<HASH>: HASH is 8 hex digits of the config's non-default keys, so rerunning "
    "the same command resumes in the same folder and another config gets a folder of its own"
)


def config_keys_help() -> str:
    """Every config key with its type (or choices), default, range and description."""
    rows = describe_fields()
    w_key = max(len(r.key) for r in rows)
    indent = " " * (w_key + 4)
    lines = ["config keys (KEY=VALUE; lists as 1,2,3; 'none' unsets):"]
    for r in rows:
        lines.append(f"  {r.key:<{w_key}}  {r.type}  default {r.default}")
        text = r.description + (f" (range {r.bounds})" if r.bounds else "")
        lines += textwrap.wrap(text, width=96, initial_indent=indent, subsequent_indent=indent)
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    from dropkit.lab.presets import PRESETS

    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        metavar="NAME",
        help="start from a preset's base config ('dropkit presets' lists them with their grid "
        "sizes and run times)",
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
        help="config overrides, applied last (keys below; an option-style --key is refused with "
        "its KEY=VALUE form)",
    )
    parser.epilog = config_keys_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def config_from_args(args: argparse.Namespace) -> Config:
    from dropkit.lab.config import load_config
    from dropkit.lab.presets import PRESETS

    base = PRESETS[args.preset].base if args.preset else None
    return load_config(args.config, args.overrides, base=base)


def config_hash(config: Config, *more: Any) -> str:
    """8 hex digits of the config's non-default keys (and of ``more``): a key added to dropkit
    later, at its default, leaves the hash of an existing config unchanged."""
    changed = config.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps([changed, *more], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def default_folder(label: str, config: Config, *more: Any) -> str:
    """``runs/<label>-<config_hash>``, the label made filesystem-safe."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "-", label).strip("-") or "run"
    return f"runs/{safe}-{config_hash(config, *more)}"
