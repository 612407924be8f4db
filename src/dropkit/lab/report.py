"""Aggregate run directories into a results table (mean ± 95% CI over seeds) and plots.

Runs whose configs differ only in ``seed`` (and in settings that do not change the result: threads,
plots) form one group, one row of the table. Within a group the samples are the seeds: repeated runs
of one seed (the same config trained twice, e.g. in two folders) are averaged into one sample, so n
is the number of distinct seeds; every cell states its n, and n = 1 shows no interval. ``time/run``
is the seconds of the epochs; a one-off warm-up step before them (kernel compilation) is shown apart.

``report`` writes ``report.html`` (plots embedded as PNG), ``report.md`` (plots beside it as PNG
files), ``results.json`` and ``runs.csv`` (long format: one row per run and epoch, with the run's
config); both pages end with each run's provenance (command, code version, machine, data hash). Run
directories that cannot be read, or never finished, are left out with a :class:`SkippedRunWarning`
naming each, and are listed in the report.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dropkit.lab._io import atomic_write, write_csv, write_json, write_text
from dropkit.lab._rundir import load_run

__all__ = [
    "SkippedRunWarning",
    "collect_runs",
    "format_table",
    "group_runs",
    "long_rows",
    "mean_ci",
    "provenance_lists",
    "provenance_table",
    "report",
    "results_table",
    "variants_table",
]

_NOT_SETTINGS = ("seed", "threads", "device", "plots", "eval_train_max", "eval_every")
# Axes a sweep plot can be drawn against, in order of preference.
_AXES = ("train_size", "p_hidden", "p_input", "l2", "l1", "max_norm", "augment_noise")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (NaN for fewer than 2 values)."""
    from scipy.special import stdtrit

    a = np.asarray(values, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    if len(a) < 2:
        return float(a.mean()), math.nan
    # Student t's quantile from scipy.special (scipy.stats takes a second to import)
    half = stdtrit(len(a) - 1, 0.5 + confidence / 2) * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean()), float(half)


class SkippedRunWarning(UserWarning):
    """A run directory that a report leaves out: unreadable (a corrupt file) or unfinished."""


def _in_use(run_dir: Path) -> bool:
    """Whether a process holds the run's lock (it is training now); the lock file is not created."""
    import fcntl

    try:
        fd = os.open(run_dir / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock if it was taken
    return False


def _unfinished(run: dict) -> str:
    done = max((r.get("epoch", 0) for r in run["metrics"]), default=0)
    where = (
        "being trained by another process now"
        if _in_use(Path(run["dir"]))
        else "rerun its command to finish it, or delete it (a run killed mid-way, perhaps "
        "finished elsewhere)"
    )
    return f"unfinished: {done} of {run['config'].epochs} epochs logged, no summary.json; {where}"


def collect_runs(paths: Iterable[str | Path], skipped: list | None = None) -> list[dict]:
    """Every finished run under ``paths`` (run directories, or folders searched recursively).

    A run directory that cannot be read (a corrupt ``config.json``, ``provenance.json``...) or has
    no ``summary.json`` (unfinished) is left out with a :class:`SkippedRunWarning` naming it and
    why; ``(directory, reason)`` is also appended to ``skipped`` when given.
    """
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
            try:
                loaded = load_run(run_dir)
            except (ValueError, OSError) as err:
                reason = f"cannot be read: {' '.join(str(err).split())}"
            else:
                if loaded["summary"] is not None:
                    runs.append(loaded)
                    continue
                reason = _unfinished(loaded)
            warnings.warn(f"skipping '{run_dir}': {reason}", SkippedRunWarning, stacklevel=2)
            if skipped is not None:
                skipped.append((str(run_dir), reason))
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


def by_seed(runs: Sequence[dict]) -> dict[int, list[dict]]:
    """A group's runs by seed, seeds in order: the samples of its statistics."""
    out: dict[int, list[dict]] = {}
    for r in sorted(runs, key=lambda r: (r["config"].seed, r["dir"])):
        out.setdefault(r["config"].seed, []).append(r)
    return out


def _seed_value(runs: Sequence[dict], key: str) -> float | None:
    # One seed's sample: the mean over its repeated runs (identical when training is deterministic)
    values = [r["summary"][key] for r in runs if r["summary"].get(key) is not None]
    return float(np.mean(values)) if values else None


def _row(group: dict) -> dict:
    seeds = by_seed(group["runs"])
    metric = "acc" if "test_acc" in group["runs"][0]["summary"] else "rmse"
    row = {
        "label": group["label"],
        "n": len(seeds),
        "seeds": list(seeds),
        "repeats": {seed: len(rs) for seed, rs in seeds.items() if len(rs) > 1},
        "metric": metric,
    }
    for key in (
        f"train_{metric}",
        f"val_{metric}",
        f"test_{metric}",
        "gap",
        "final_epoch",
        "wall_s",
        "warmup_s",
    ):
        values = [v for v in (_seed_value(rs, key) for rs in seeds.values()) if v is not None]
        if values:
            row[key], row[f"{key}_ci"] = mean_ci(values)
            row[f"{key}_n"] = len(values)
    return row


def _cell(row: dict, key: str, pct: bool) -> str:
    """``mean ± half-width (n=k)``; ``mean (n=1)`` without an interval."""
    if key not in row:
        return "—"
    mean, ci, n = row[key], row[f"{key}_ci"], row.get(f"{key}_n", row["n"])
    scale = 100.0 if pct else 1.0
    text = f"{mean * scale:.2f}"
    return text + (f" ± {ci * scale:.2f}" if n > 1 and not math.isnan(ci) else "") + f" (n={n})"


def _seed_text(row: dict) -> str:
    """The seeds, consecutive ones as a range (``0-4``), a repeated one marked (``5 (2 runs)``)."""
    parts: list[str] = []
    run: list[int] = []

    def close() -> None:
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run.clear()

    for seed in row["seeds"]:
        if row["repeats"].get(seed):
            close()
            parts.append(f"{seed} ({row['repeats'][seed]} runs)")
        else:
            if run and seed != run[-1] + 1:
                close()
            run.append(seed)
    close()
    return ",".join(parts)


def results_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    metric = rows[0]["metric"] if rows else "acc"
    pct = metric == "acc"
    name = "acc. %" if pct else "RMSE"
    header = ["variant", "n", "seeds", f"train {name}", f"val {name}", f"test {name}"]
    header += ["gap (train−test) %"] if pct else []
    header += ["epochs", "time/run s", "warm-up s"]
    body = []
    for row in rows:
        cells = [row["label"], str(row["n"]), _seed_text(row)]
        cells += [_cell(row, f"{part}_{metric}", pct) for part in ("train", "val", "test")]
        cells += [_cell(row, "gap", True)] if pct else []
        cells += [f"{row.get(k, math.nan):.{d}f}" for k, d in (("final_epoch", 0), ("wall_s", 1))]
        cells += [f"{row.get('warmup_s', math.nan):.1f}"]  # runs made before dropkit timed it: nan
        body.append(cells)
    # A column no run fills (e.g. validation without a validation set) is left out.
    keep = [i for i in range(len(header)) if i < 3 or any(c[i] not in ("—", "nan") for c in body)]
    return [header[i] for i in keep], [[c[i] for i in keep] for c in body]


# The settings every variant's description shows; those that vary between variants are added.
_DESCRIBE = ("dataset", "model", "widths", "optimizer", "lr", "batch_size", "epochs")
_VERSIONS = ("dropkit", "torch", "numba", "python")


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


_PROVENANCE = (
    ("started (UTC)", "started_utc"),
    ("host", "host"),
    ("CPU", "cpu"),
    ("threads", "threads"),
    ("device", "device"),
    ("dropkit", "dropkit"),
    ("git commit", "git_commit"),
    ("torch", "torch"),
    ("numba", "numba"),
    ("python", "python"),
    ("data SHA-256", "data_sha256"),
)


def _prov_value(prov: dict, key: str) -> str:
    value = prov.get(key)
    if value is None:
        return "—"
    if key == "git_commit":
        return value[:12] + (" (modified)" if prov.get("git_dirty") else "")
    if key == "data_sha256":
        return value[:16]
    if key == "started_utc":
        return str(value).replace("T", " ").replace("+00:00", "")
    return str(value)


def provenance_table(groups: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per run: its variant, seed and folder, the session that started it (time, host, CPU,
    threads, device, code and library versions, fingerprint of its data after the seed's split)
    and later sessions that resumed it. ``—``: not recorded (a run made by an older dropkit).
    The command lines and data files are listed apart (:func:`provenance_lists`): runs share them."""
    header = ["variant", "seed", "run", *(h for h, _ in _PROVENANCE), "resumed"]
    body = []
    for g in groups:
        for seed, runs in by_seed(g["runs"]).items():
            for r in runs:
                prov = r.get("provenance") or {}
                resumes = "; ".join(
                    f"from epoch {x.get('from_epoch', '?')} on {x.get('host', '?')} "
                    f"({_prov_value(x, 'started_utc')})"
                    for x in prov.get("resumes", [])
                )
                body.append(
                    [
                        g["label"],
                        str(seed),
                        Path(r["dir"]).name,
                        *(_prov_value(prov, key) for _, key in _PROVENANCE),
                        resumes or "no",
                    ]
                )
    return header, body


def provenance_lists(groups: list[dict]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``({command line: [run folders]}, {data file: SHA-256})`` over every run (and resume)."""
    commands: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    for g in groups:
        for r in g["runs"]:
            prov = r.get("provenance") or {}
            for session in (prov, *prov.get("resumes", [])):
                if session.get("command"):
                    folders = commands.setdefault(session["command"], [])
                    if Path(r["dir"]).name not in folders:
                        folders.append(Path(r["dir"]).name)
                files.update({k: v for k, v in (session.get("data_files") or {}).items() if v})
    return commands, files


def _provenance_html(commands: dict[str, list[str]], files: dict[str, str]) -> str:
    items = "".join(
        f"<li><code>{html.escape(c)}</code> ({len(f)} runs: {html.escape(', '.join(f))})</li>"
        for c, f in commands.items()
    )
    out = f"<p>Command lines:</p><ul class='commands'>{items or '<li>—</li>'}</ul>"
    if files:
        items = "".join(
            f"<li><code>{html.escape(path)}</code>: <code>{digest}</code></li>"
            for path, digest in sorted(files.items())
        )
        out += f"<p>Data files (SHA-256):</p><ul class='files'>{items}</ul>"
    return out


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


def _mean_history(histories: Sequence[Sequence[dict]]) -> list[dict]:
    """One seed's curve: its runs' records averaged epoch by epoch (one run: that run's)."""
    if len(histories) == 1:
        return list(histories[0])
    n = min(len(h) for h in histories)
    out = []
    for records in zip(*(h[:n] for h in histories), strict=False):
        merged = dict(records[0])
        for key, value in records[0].items():
            values = [r.get(key) for r in records]
            if isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values):
                merged[key] = float(np.mean(values)) if key != "epoch" else value
        out.append(merged)
    return out


def _figures(groups: list[dict], rows: list[dict], title: str) -> list[tuple[str, str, bytes]]:
    """``(file name, caption, PNG bytes)`` for each plot that the runs support."""
    from dropkit.lab.plots import curves_figure, save_png, sweep_figure

    figures = []
    shown = groups[:8]
    series = {}
    for g in shown:
        seeds = by_seed(g["runs"])
        series[f"{g['label']} (n={len(seeds)})"] = [
            _mean_history([r["metrics"] for r in runs]) for runs in seeds.values()
        ]
    caption = (
        "Learning curves, mean over seeds: train (dashed), validation (dotted), test (solid); "
        "bands: 95% CI over the n seeds of each variant (none for n = 1)"
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
        n = sorted({r["n"] for r in rows})
        n_text = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]}-{n[-1]}"
        fig = sweep_figure(
            points,
            axis,
            ylabel,
            f"{ylabel} vs {axis} (mean ± 95% CI over seeds, {n_text})",
            logx=axis == "train_size",
        )
        figures.append((f"{fname}_{axis}.png", f"{ylabel} vs {axis}", save_png(fig)))
    return figures


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}
table.results td{white-space:nowrap}table.results td:first-child{white-space:normal}
div.wide{overflow-x:auto}table.provenance{font-size:80%}
table.provenance td{text-align:left;
white-space:nowrap}ul.commands code{overflow-wrap:anywhere}
ul.notes{color:#444;font-size:92%}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}figcaption{color:#555;font-size:90%}
pre{background:#f7f7f7;padding:.5em;font-size:85%}details{margin:.3em 0}"""


def _notes(rows: list[dict], skipped: list[tuple[str, str]]) -> list[str]:
    """The sentences above the table: what the numbers are, and what was left out or merged."""
    pct = rows[0]["metric"] == "acc"
    notes = [
        "Each cell: mean ± half-width of the 95% Student-t interval over n seeds (n in the "
        "cell); n = 1 shows no interval. A seed trained more than once is one sample (the mean of "
        "its runs)." + (" Accuracy in %." if pct else ""),
        "time/run s: seconds of the epochs (training and evaluation), mean over seeds. It "
        "excludes a one-off warm-up step before the first epoch, in which kernels compile "
        "(numba's dropout kernels take seconds in a new process): that step is warm-up s.",
    ]
    repeated = [
        f"{r['label']}: seed {seed} ({k} runs)" for r in rows for seed, k in r["repeats"].items()
    ]
    if repeated:
        notes.append("Repeated seeds, each counted once: " + "; ".join(repeated) + ".")
    if skipped:
        notes.append(
            f"Left out ({len(skipped)} run director{'y' if len(skipped) == 1 else 'ies'}): "
            + "; ".join(f"{d}: {why}" for d, why in skipped)
        )
    return notes


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(cell, cells)) + " |" for cells in body]


def _html_table(header: list[str], body: list[list[str]], cls: str = "") -> str:
    rows = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>\n"
    rows += "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>\n" for cells in body
    )
    return f"<table{f' class={cls!r}' if cls else ''}>{rows}</table>"


def report(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    title: str = "dropkit report",
    order: Sequence[str] = (),
) -> dict:
    """Write ``report.html``, ``report.md``, ``results.json``, ``runs.csv`` and the PNG plots to
    ``out_dir``.

    Rows come in ``order`` (labels), then the remaining labels sorted. Returns
    ``{"rows": [...], "skipped": [(dir, reason)], "html": path, "markdown": path}``. Unreadable
    and unfinished run directories are left out with a :class:`SkippedRunWarning` each.
    ``FileNotFoundError`` if a path is missing, ``ValueError`` if no finished run is found.
    """
    paths = list(paths)
    skipped: list[tuple[str, str]] = []
    runs = collect_runs(paths, skipped)
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
    v_header, v_body = variants_table(groups)
    p_header, p_body = provenance_table(groups)
    summary = f"{len(runs)} runs in {len(groups)} variants."
    notes = _notes(rows, skipped)

    for name, _, png in figures:
        atomic_write(out_dir / name, lambda f, png=png: f.write(png))
    md = [f"# {title}", "", summary, "", *(f"- {n}" for n in notes), ""]
    md += _md_table(header, body)
    md += [""] + [f"![{caption}]({name})\n" for name, caption, _ in figures]
    md += ["## Variants: configuration", "", *_md_table(v_header, v_body), ""]
    commands, files = provenance_lists(groups)
    md += ["## Runs: provenance", "", *_md_table(p_header, p_body), "", "Command lines:", ""]
    md += [f"- `{c}` ({len(f)} runs: {', '.join(f)})" for c, f in commands.items()] or ["- —"]
    if files:
        md += ["", "Data files (SHA-256):", ""]
        md += [f"- `{path}`: `{digest}`" for path, digest in sorted(files.items())]
    md += [""]
    md += ["Every run, every evaluated epoch, with its config: `runs.csv`.", ""]
    write_text(out_dir / "report.md", "\n".join(md))
    write_csv(out_dir / "runs.csv", long_rows(groups))

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
        f"<p>{html.escape(summary)}</p><ul class='notes'>"
        + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        + f"</ul>{_html_table(header, body, 'results')}{imgs}"
        f"<h2>Variants: configuration</h2><div class='wide'>"
        f"{_html_table(v_header, v_body, 'variants')}</div>{configs}"
        f"<h2>Runs: provenance</h2><div class='wide'>"
        f"{_html_table(p_header, p_body, 'provenance')}</div>{_provenance_html(commands, files)}"
        "<p>Every run, every evaluated epoch, with its config: <code>runs.csv</code> beside "
        "this file.</p></body></html>\n"
    )
    write_text(out_dir / "report.html", page)
    write_json(
        out_dir / "results.json",
        {
            "title": title,
            "rows": rows,
            "runs": [r["dir"] for r in runs],
            "skipped": [{"dir": d, "reason": why} for d, why in skipped],
        },
    )
    return {
        "rows": rows,
        "skipped": skipped,
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
