"""``dropkit report``: aggregate run directories into a table (mean ± 95% CI over seeds) and plots.

Runs that differ only in their seed form one row; n is the number of distinct seeds (repeated runs
of one seed count once). A run directory that cannot be read, or that never finished, is left out
with a warning naming it.
"""

from __future__ import annotations

import argparse

from dropkit.cli._text import plain


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="aggregate run directories into an HTML/Markdown report",
        description=plain(__doc__),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run directories, or folders searched for them (e.g. a sweep's <root>/runs)",
    )
    parser.add_argument(
        "--out",
        default="runs/report",
        help="output folder for report.html, report.md, results.json, runs.csv and the plots "
        "(default: runs/report)",
    )
    parser.add_argument(
        "--title",
        default="dropkit report",
        help="heading of the report (default: 'dropkit report')",
    )
    parser.set_defaults(func=_run)


def run_report(paths, out, **kwargs) -> dict:
    """:func:`dropkit.lab.report.report`, its warnings (skipped runs) printed as one line each."""
    import sys
    import warnings

    from dropkit.lab.report import SkippedRunWarning, report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedRunWarning)
        out = report(paths, out, **kwargs)
    for w in caught:
        if issubclass(w.category, SkippedRunWarning):
            print(f"dropkit report: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return out


def _run(args: argparse.Namespace) -> int:
    from dropkit.lab.report import format_table

    out = run_report(args.paths, args.out, title=args.title)
    print(format_table(out["rows"]))
    print(f"report: {out['html']} and {out['markdown']}")
    return 0
