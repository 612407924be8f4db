"""``dropkit report``: aggregate run directories into a table (mean ± 95% CI) and plots."""

from __future__ import annotations

import argparse

from dropkit.cli._text import plain


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="aggregate run directories into an HTML/Markdown report",
        description=plain(__doc__),
    )
    parser.add_argument("paths", nargs="+", help="run directories, or folders holding them")
    parser.add_argument("--out", default="runs/report", help="output folder (default: runs/report)")
    parser.add_argument("--title", default="dropkit report")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dropkit.lab.report import format_table, report

    out = report(args.paths, args.out, title=args.title)
    print(format_table(out["rows"]))
    print(f"report: {out['html']} and {out['markdown']}")
    return 0
