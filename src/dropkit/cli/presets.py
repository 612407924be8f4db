"""``dropkit presets``: the presets of ``dropkit sweep --preset NAME``, with their grid sizes and a
rough run time (one CPU thread, from the model's arithmetic: good to a factor of about 2)."""

from __future__ import annotations

import argparse
import textwrap

from dropkit.cli._text import plain


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "presets",
        help="list the presets: title, grid size, rough run time",
        description=plain(__doc__),
    )
    parser.set_defaults(func=_run)


def rows() -> list[dict]:
    """One row per preset: name, title, runs (grid points), seconds per run and in all (rough)."""
    from dropkit.lab._cost import estimate_seconds
    from dropkit.lab.config import Config
    from dropkit.lab.presets import PRESETS
    from dropkit.lab.sweep import _point_config, grid_points

    out = []
    for name, preset in PRESETS.items():
        base = Config.build(dict(preset.base))
        points = grid_points(preset.grid)
        times = [estimate_seconds(_point_config(base, p, preset.variants)) for p in points]
        known = None if any(t is None for t in times) else times
        out.append(
            {
                "name": name,
                "title": preset.title,
                "runs": len(points),
                "per_run_s": None if known is None else sum(known) / len(known),
                "total_s": None if known is None else sum(known),
            }
        )
    return out


def _run(args: argparse.Namespace) -> int:
    from dropkit.lab._cost import format_duration

    table = rows()
    w = max(len(r["name"]) for r in table)
    print(f"{'preset':<{w}}  runs  time/run  total (1 worker)")
    for r in table:
        per, total = format_duration(r["per_run_s"]), format_duration(r["total_s"])
        print(f"{r['name']:<{w}}  {r['runs']:>4}  {per:>8}  {total:>16}")
        for line in textwrap.wrap(r["title"], width=96 - w):
            print(f"{'':<{w}}  {line}")
    print(
        "\ntimes: rough, one CPU thread per run (good to a factor of about 2); "
        "run one with: dropkit sweep --preset NAME (--workers N in parallel)"
    )
    return 0
