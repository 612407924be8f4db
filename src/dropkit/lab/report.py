"""Aggregate run directories into a results table (mean ± 95% CI over seeds) and plots.

Runs whose configs differ only in ``seed`` (and in settings that do not change the result: threads,
plots) form one group, one row of the table. ``report`` writes ``report.html`` (plots embedded as PNG),
``report.md`` (plots beside it as PNG files), ``results.json`` and ``runs.csv`` (long format: one row
per run and epoch, with the run's config).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dropkit.lab._io import atomic_write, write_csv, write_json, write_text
from dropkit.lab.runner import load_run

__all__ = [
    "collect_runs",
    "format_table",
    "group_runs",
    "long_rows",
    "mean_ci",
    "report",
    "results_table",
    "variants_table",
]

_NOT_SETTINGS = ("seed", "threads", "device", "plots", "eval_train_max", "eval_every")
# Axes a sweep plot can be drawn against, in order of preference.
_AXES = ("train_size", "p_hidden", "p_input", "l2", "l1", "max_norm", "augment_noise")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (NaN for fewer than 2 values)."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    if len(a) < 2:
        return float(a.mean()), math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean()), float(half)


def collect_runs(paths: Iterable[str | Path]) -> list[dict]:
    """Every finished run under ``paths`` (run directories, or folders searched recursively)."""
    runs, seen = [], set()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"report: no such run directory or folder '{path}'")
        found = (
            [path]
            if (path / "config.json").is_file()
            else sorted(p.parent for p in path.rglob("config.json"))
        )
        for run_dir in found:
            key = run_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            loaded = load_run(run_dir)
            if loaded["summary"] is not None:
                runs.append(loaded)
    return runs


def _settings(config) -> dict:
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in _NOT_SETTINGS}


def _fmt_value(value) -> str:
    if isinstance(value, list):
        return _fmt_value(value[0]) if len(set(value)) == 1 else "/".join(map(_fmt_value, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_runs(runs: Sequence[dict]) -> list[dict]:
    """Groups of runs with equal settings, in order of first appearance, each with a short label."""
    groups: dict[str, dict] = {}
    for r in runs:
        settings = _settings(r["config"])
        key = repr(sorted(settings.items()))
        groups.setdefault(key, {"settings": settings, "runs": []})["runs"].append(r)
    out = list(groups.values())
    varying = (
        [k for k in out[0]["settings"] if len({repr(g["settings"][k]) for g in out}) > 1]
        if out
        else []
    )
    names_distinct = len({g["settings"]["name"] for g in out}) == len(out)
    for g in out:
        if names_distinct and len(out) > 1 or not varying:
            g["label"] = g["settings"]["name"]
        else:
            g["label"] = ", ".join(
                f"{k}={_fmt_value(g['settings'][k])}" for k in varying if k != "name"
            )
        g["varying"] = varying
    return out


def _natural(label: str) -> list:
    # "n=100" before "n=1000": compare digit runs as numbers.
    import re

    return [
        (0, float(t), "") if re.fullmatch(r"\d+(\.\d+)?", t) else (1, 0.0, t)
        for t in re.findall(r"\d+(?:\.\d+)?|\D+", label)
    ]


def _row(group: dict) -> dict:
    summaries = [r["summary"] for r in group["runs"]]
    metric = "acc" if "test_acc" in summaries[0] else "rmse"
    row = {"label": group["label"], "n": len(summaries), "metric": metric}
    for key in (
        f"train_{metric}",
        f"val_{metric}",
        f"test_{metric}",
        "gap",
        "final_epoch",
        "wall_s",
    ):
        values = [s[key] for s in summaries if s.get(key) is not None]
        if values:
            row[key], row[f"{key}_ci"] = mean_ci(values)
    return row


def _cell(row: dict, key: str, pct: bool) -> str:
    if key not in row:
        return "—"
    mean, ci = row[key], row[f"{key}_ci"]
    scale, unit = (100.0, "") if pct else (1.0, "")
    text = f"{mean * scale:.2f}{unit}"
    return text + (f" ± {ci * scale:.2f}" if not math.isnan(ci) else "")


def results_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    metric = rows[0]["metric"] if rows else "acc"
    pct = metric == "acc"
    name = "acc. %" if pct else "RMSE"
    header = ["variant", "seeds", f"train {name}", f"val {name}", f"test {name}"]
    header += ["gap (train−test) %"] if pct else []
    header += ["epochs", "time/run s"]
    body = []
    for row in rows:
        cells = [row["label"], str(row["n"])]
        cells += [_cell(row, f"{part}_{metric}", pct) for part in ("train", "val", "test")]
        cells += [_cell(row, "gap", True)] if pct else []
        cells += [f"{row.get('final_epoch', math.nan):.0f}", f"{row.get('wall_s', math.nan):.1f}"]
        body.append(cells)
    # A column no run fills (e.g. validation without a validation set) is left out.
    keep = [i for i in range(len(header)) if i < 2 or any(c[i] not in ("—", "nan") for c in body)]
    return [header[i] for i in keep], [[c[i] for i in keep] for c in body]


# The settings every variant's description shows; those that vary between variants are added.
_DESCRIBE = ("dataset", "model", "widths", "optimizer", "lr", "batch_size", "epochs")
_VERSIONS = ("dropkit", "torch", "python")


def variants_table(groups: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per variant: its main settings, the settings that vary between variants, and provenance
    (dropkit, torch and Python versions of its runs; several values when runs differ)."""
    varying = [k for k in (groups[0]["varying"] if groups else []) if k not in ("name", *_DESCRIBE)]
    keys = [*_DESCRIBE, *varying]
    header = ["variant", *keys, *_VERSIONS]
    body = []
    for g in groups:
        cells = [g["label"], *(_fmt_value(g["settings"][k]) for k in keys)]
        for key in _VERSIONS:
            seen = sorted({str(r.get("provenance", {}).get(key, "—")) for r in g["runs"]})
            cells.append("/".join(seen))
        body.append(cells)
    return header, body


def _csv_value(value):
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def long_rows(groups: list[dict]) -> list[dict]:
    """One row per run and evaluated epoch: the variant, the run's whole config and the epoch's
    metrics, a long-format table for pandas, R or a spreadsheet."""
    rows = []
    for g in groups:
        for r in g["runs"]:
            config = {k: _csv_value(v) for k, v in r["config"].model_dump(mode="json").items()}
            for record in r["metrics"]:
                rows.append({"variant": g["label"], "run_dir": r["dir"], **config, **record})
    return rows


def _axis_value(settings: dict, key: str) -> float | None:
    value = settings.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return float(value) if isinstance(value, (int, float)) else None


def _figures(groups: list[dict], rows: list[dict], title: str) -> list[tuple[str, str, bytes]]:
    """``(file name, caption, PNG bytes)`` for each plot that the runs support."""
    from dropkit.lab.plots import curves_figure, save_png, sweep_figure

    figures = []
    shown = groups[:8]
    series = {g["label"]: [r["metrics"] for r in g["runs"]] for g in shown}
    caption = (
        "Learning curves, mean over seeds: train (dashed), validation (dotted), test (solid); "
        "bands: 95% CI over seeds"
    )
    if len(groups) > len(shown):
        caption += f" (first {len(shown)} of {len(groups)} variants)"
    figures.append(("curves.png", caption, save_png(curves_figure(series, title))))

    varying = groups[0]["varying"] if groups else []
    axis = next(
        (
            k
            for k in _AXES
            if k in varying and all(_axis_value(g["settings"], k) is not None for g in groups)
        ),
        None,
    )
    if axis is None:
        return figures
    metric = rows[0]["metric"]
    # Series: the other varying settings, except those fixed by the axis value (e.g. epochs scaled
    # with train_size, or the variant name that sets it).
    others = []
    for k in varying:
        if k == axis:
            continue
        per_x: dict[float | None, set] = {}
        for g in groups:
            per_x.setdefault(_axis_value(g["settings"], axis), set()).add(repr(g["settings"][k]))
        if any(len(v) > 1 for v in per_x.values()):
            others.append(k)
    for key, ylabel, fname in (
        (f"test_{metric}", f"test {metric}", "test_vs"),
        ("gap", "train − test accuracy", "gap_vs"),
    ):
        if key not in rows[0]:
            continue
        lines: dict[str, list] = {}
        for g, row in zip(groups, rows, strict=True):
            line = ", ".join(f"{k}={_fmt_value(g['settings'][k])}" for k in others)
            lines.setdefault(line, []).append(
                (_axis_value(g["settings"], axis), row[key], row[f"{key}_ci"])
            )
        points = {}
        for line, pts in lines.items():
            if len(pts) >= 3:  # a curve needs a few points; fewer is a table's job
                pts.sort()
                points[line] = tuple(list(v) for v in zip(*pts, strict=True))
        if not points:
            continue
        fig = sweep_figure(
            points, axis, ylabel, f"{ylabel} vs {axis} (mean ± 95% CI)", logx=axis == "train_size"
        )
        figures.append((f"{fname}_{axis}.png", f"{ylabel} vs {axis}", save_png(fig)))
    return figures


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}figcaption{color:#555;font-size:90%}
pre{background:#f7f7f7;padding:.5em;font-size:85%}details{margin:.3em 0}"""


def report(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    title: str = "dropkit report",
    order: Sequence[str] = (),
) -> dict:
    """Write ``report.html``, ``report.md``, ``results.json``, ``runs.csv`` and the PNG plots to
    ``out_dir``.

    Rows come in ``order`` (labels), then the remaining labels sorted. Returns
    ``{"rows": [...], "html": path, "markdown": path}``. ``FileNotFoundError`` if a path is
    missing, ``ValueError`` if no finished run is found.
    """
    paths = list(paths)
    runs = collect_runs(paths)
    if not runs:
        raise ValueError(
            f"report: no finished runs (with summary.json) under {', '.join(map(str, paths))}"
        )
    groups = group_runs(runs)
    # Rows: labels named in ``order`` first, in that order; the rest by label.
    rank = {label: i for i, label in enumerate(order)}
    groups.sort(key=lambda g: (rank.get(g["label"], len(rank)), _natural(g["label"])))
    rows = [_row(g) for g in groups]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _figures(groups, rows, title)
    header, body = results_table(rows)

    for name, _, png in figures:
        atomic_write(out_dir / name, lambda f, png=png: f.write(png))
    md = [
        f"# {title}",
        "",
        f"{len(runs)} runs in {len(groups)} variants; mean ± 95% CI (Student t) "
        "over seeds; accuracy in %.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += ["| " + " | ".join(cells) + " |" for cells in body]
    md += [""] + [f"![{caption}]({name})\n" for name, caption, _ in figures]
    v_header, v_body = variants_table(groups)
    md += ["## Variants: configuration and provenance", ""]
    md += ["| " + " | ".join(v_header) + " |", "|" + "---|" * len(v_header)]
    md += ["| " + " | ".join(cells) + " |" for cells in v_body]
    md += ["", "Every run, every evaluated epoch, with its config: `runs.csv`.", ""]
    write_text(out_dir / "report.md", "\n".join(md))
    write_csv(out_dir / "runs.csv", long_rows(groups))

    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>\n"
    table += "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>\n" for cells in body
    )
    v_table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in v_header) + "</tr>\n"
    v_table += "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>\n"
        for cells in v_body
    )
    configs = "".join(
        f"<details><summary>{html.escape(g['label'])}: full config</summary><pre>"
        f"{html.escape(json.dumps(g['settings'], indent=1, sort_keys=True))}</pre></details>\n"
        for g in groups
    )
    imgs = "".join(
        f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(cap)}</figcaption></figure>\n'
        for _, cap, png in figures
    )
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(runs)} runs in {len(groups)} variants; mean ± 95% CI (Student t) over seeds; "
        f"accuracy in %.</p><table>{table}</table>{imgs}"
        f"<h2>Variants: configuration and provenance</h2><table>{v_table}</table>{configs}"
        "<p>Every run, every evaluated epoch, with its config: <code>runs.csv</code> beside "
        "this file.</p></body></html>\n"
    )
    write_text(out_dir / "report.html", page)
    write_json(
        out_dir / "results.json", {"title": title, "rows": rows, "runs": [r["dir"] for r in runs]}
    )
    return {
        "rows": rows,
        "html": str(out_dir / "report.html"),
        "markdown": str(out_dir / "report.md"),
    }


def format_table(rows: list[dict]) -> str:
    """The results table as aligned plain text, for the terminal."""
    header, body = results_table(rows)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = []
    for cells in [header, *body]:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(lines)
