"""Reports: the aggregated table (mean ± 95% CI over seeds, n stated), the plots, HTML and Markdown,
each run's provenance, and the run directories left out."""

from __future__ import annotations

import html
import json
import math
import re

import numpy as np
import pytest
import torch
from scipy import stats

from dropkit.lab import Config, run
from dropkit.lab.report import SkippedRunWarning, mean_ci, report
from tests.lab._helpers import TINY


def test_mean_ci_is_student_t():
    values = [0.7, 0.72, 0.75]
    mean, half = mean_ci(values)
    sd = np.std(values, ddof=1)
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3), rel=1e-12)
    assert math.isnan(mean_ci([0.5])[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for p in (0.0, 0.25, 0.5):
        for seed in (0, 1):
            cfg = Config.build({**TINY, "epochs": 2, "p_hidden": p, "seed": seed})
            run(cfg, root / f"p{p}_s{seed}")
    (root / "unfinished").mkdir()  # a run without summary.json is left out
    (root / "unfinished" / "config.json").write_text(Config.build(TINY).to_json())
    return root


def test_report_table_and_plots(runs, tmp_path):
    with pytest.warns(SkippedRunWarning, match=r"skipping '.*unfinished': unfinished"):
        out = report([runs], tmp_path / "rep", title="tiny sweep")
    rows = out["rows"]
    assert [r["label"] for r in rows] == ["p_hidden=0", "p_hidden=0.25", "p_hidden=0.5"]
    summaries = [json.loads((runs / f"p0.25_s{s}" / "summary.json").read_text()) for s in (0, 1)]
    expected = mean_ci([s["test_acc"] for s in summaries])
    assert (rows[1]["test_acc"], rows[1]["test_acc_ci"]) == pytest.approx(expected, rel=1e-12)
    assert rows[1]["n"] == 2

    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3  # curves, test acc vs p, gap vs p
    assert f"{100 * expected[0]:.2f} ± {100 * expected[1]:.2f} (n=2)" in html
    md = (tmp_path / "rep" / "report.md").read_text()
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (tmp_path / "rep" / name).read_bytes()[:4] == b"\x89PNG"
    assert "| p_hidden=0.5 | 2 | 0-1 |" in md
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert set(results) == {"title", "rows", "runs", "skipped"}
    # the unfinished run is left out, and said to be (before: silently)
    assert [s["dir"] for s in results["skipped"]] == [str(runs / "unfinished")]
    assert "unfinished: 0 of 1 epochs logged, no summary.json" in results["skipped"][0]["reason"]


def test_repeated_seed_is_one_sample(tmp_path):
    # before: two runs of seed 0 counted as 2 seeds, shown as "71.17 ± 0.00", a zero-width interval
    cfg = Config.build({**TINY, "epochs": 2, "p_hidden": 0.3})
    for copy in ("a", "b"):
        run(cfg, tmp_path / "runs" / f"seed0-{copy}")
    run(cfg.replace(seed=1), tmp_path / "runs" / "seed1")
    out = report([tmp_path / "runs"], tmp_path / "rep")
    (row,) = out["rows"]
    assert row["n"] == 2 and row["seeds"] == [0, 1] and row["repeats"] == {0: 2}
    tests = [
        json.loads((tmp_path / "runs" / d / "summary.json").read_text())["test_acc"]
        for d in ("seed0-a", "seed1")  # seed 0's two runs are identical: training is seeded
    ]
    assert (row["test_acc"], row["test_acc_ci"]) == pytest.approx(mean_ci(tests), rel=1e-12)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| 2 | 0 (2 runs),1 |" in md and "Repeated seeds, each counted once" in md

    # one seed, run twice: n = 1 and no interval at all
    only = report([tmp_path / "runs" / "seed0-a", tmp_path / "runs" / "seed0-b"], tmp_path / "r1")
    (row,) = only["rows"]
    assert row["n"] == 1
    line = next(
        ln for ln in (tmp_path / "r1" / "report.md").read_text().splitlines() if "(n=1)" in ln
    )
    assert "±" not in line and "| 1 | 0 (2 runs) |" in line


def test_every_interval_states_its_n():
    from dropkit.lab.report import results_table

    row = {"label": "v", "n": 3, "seeds": [0, 1, 2], "repeats": {}, "metric": "acc"}
    row.update(test_acc=0.9, test_acc_ci=0.01, test_acc_n=3, val_acc=0.8, val_acc_ci=0.0)
    row.update(val_acc_n=1, wall_s=2.0, warmup_s=0.5, final_epoch=5)
    header, (cells,) = results_table([row])
    assert cells[header.index("test acc. %")] == "90.00 ± 1.00 (n=3)"
    assert cells[header.index("val acc. %")] == "80.00 (n=1)"  # a value of one seed: no interval
    assert cells[header.index("seeds")] == "0-2"
    assert cells[header.index("time/run s")] == "2.0" and cells[header.index("warm-up s")] == "0.5"


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        report([tmp_path / "absent"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no finished runs"):
        report([tmp_path / "empty"], tmp_path / "out")


@pytest.fixture(scope="module")
def two_variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    for name, extra in (("plain", {}), ("dropout", {"p_hidden": 0.5})):
        for seed in (0, 1):
            cfg = Config.build({**TINY, "epochs": 2, "name": name, "seed": seed, **extra})
            run(cfg, root / "runs" / f"{name}-{seed}")
    out = report([root / "runs"], root / "report", title="two variants")
    return root, out


def test_long_format_csv_of_all_runs(two_variants):
    import csv

    root, _ = two_variants
    with open(root / "report" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 2  # 4 runs x 2 epochs
    config_keys = set(Config.model_fields)
    assert config_keys <= set(rows[0]) and {"variant", "run_dir", "epoch", "test_acc"} <= set(
        rows[0]
    )
    by_run = {(r["variant"], r["seed"], r["epoch"]) for r in rows}
    assert len(by_run) == 8
    for r in rows:
        saved = [json.loads(line) for line in open(f"{r['run_dir']}/metrics.jsonl")]
        record = next(m for m in saved if str(m["epoch"]) == r["epoch"])
        assert float(r["test_acc"]) == record["test_acc"]
        assert r["p_hidden"] == ("0.5" if r["variant"] == "dropout" else "0.0")


def test_variants_show_config_and_provenance(two_variants):
    import torch

    root, _ = two_variants
    page = (root / "report" / "report.html").read_text()
    assert "Variants: configuration" in page and "Runs: provenance" in page
    assert torch.__version__ in page and "full config" in page
    md = (root / "report" / "report.md").read_text()
    row = next(
        line for line in md.splitlines() if line.startswith("| dropout |") and "adam" in line
    )
    assert "| digits | mlp | 32 | adam | 0.01 | 64 | 2 | 0.5 |" in row


def test_all_empty_columns_are_left_out(tmp_path):
    for seed in (0, 1):
        run(
            Config.build({**TINY, "val_fraction": 0.0, "seed": seed}), tmp_path / "runs" / str(seed)
        )
    out = report([tmp_path / "runs"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| variant |"))
    assert "val acc." not in header and "test acc." in header
    assert out["rows"][0]["n"] == 2


def _browser() -> str | None:
    import shutil

    return next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )


@pytest.fixture(scope="module")
def slow_runs(tmp_path_factory):
    """Two variants of a model whose first forward sleeps 1 s (as a kernel compiling does):
    "plain" trained twice on seed 0, "dropout" on seeds 0 and 1."""
    root = tmp_path_factory.mktemp("slow")
    model = {"model": "tests.lab._user_lab:slow_first_call"}
    for name, extra, seed, folder in (
        ("plain", {}, 0, "plain-0a"),
        ("plain", {}, 0, "plain-0b"),
        ("dropout", {"p_hidden": 0.5}, 0, "dropout-0"),
        ("dropout", {"p_hidden": 0.5}, 1, "dropout-1"),
    ):
        cfg = Config.build({**TINY, **model, "epochs": 2, "name": name, "seed": seed, **extra})
        run(cfg, root / "runs" / folder)
    return root, report([root / "runs"], root / "report", title="slow first call")


def _cells(dom: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table class="{table}">(.*?)</table>', dom, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", r, re.S)] for r in rows]


def test_html_report_renders_in_headless_chromium(slow_runs, tmp_path):
    import platform
    import subprocess

    from dropkit.lab.provenance import cpu_model
    from tests.lab._user_lab import SLOW_SECONDS

    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium)")
    root, out = slow_runs
    page = (root / "report" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # self-contained
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run(
        [
            browser,
            *flags,
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            f"file://{out['html']}",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]  # (H, W, 3) in [0, 1]
    # The plots were drawn: the default cycle's blue and orange lines are on the page.
    blue = (pixels[..., 2] > 0.6) & (pixels[..., 0] < 0.3)
    orange = (pixels[..., 0] > 0.9) & (pixels[..., 2] < 0.2)
    assert blue.sum() > 200 and orange.sum() > 200
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", f"file://{out['html']}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<table") == 3 and dom.count("<img") == 1 and "plain" in dom

    # the n shown: seed 0 trained twice is one sample, with no interval (before: n = 2, "± 0.00")
    header, *rows = _cells(dom, "results")
    row = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert row["plain"]["n"] == "1" and row["plain"]["seeds"] == "0 (2 runs)"
    assert row["plain"]["test acc. %"].endswith("(n=1)") and "±" not in row["plain"]["test acc. %"]
    assert row["dropout"]["n"] == "2" and " ± " in row["dropout"]["test acc. %"]
    assert row["dropout"]["test acc. %"].endswith("(n=2)")
    # timing excludes the one-off first call (before: time/run held it)
    for r in row.values():
        assert float(r["time/run s"]) < SLOW_SECONDS <= float(r["warm-up s"]), r
    assert "excludes a one-off warm-up step" in dom

    # provenance of each run: machine, code, libraries, data, command
    header, *runs = _cells(dom, "provenance")
    assert len(runs) == 4
    saved = json.loads((root / "runs" / "dropout-1" / "provenance.json").read_text())
    shown = dict(zip(header, next(r for r in runs if r[2] == "dropout-1"), strict=True))
    assert shown["host"] == platform.node() and shown["CPU"] == cpu_model()
    assert shown["threads"] == "1" and shown["device"] == "cpu"
    assert shown["torch"] == torch.__version__ and shown["numba"] == saved["numba"] is not None
    assert shown["data SHA-256"] == saved["data_sha256"][:16]
    # the command line, once for the runs it made (here: this test process, all four)
    assert saved["command"] and html.escape(saved["command"], quote=False) in dom
    assert "(4 runs: dropout-0, dropout-1, plain-0a, plain-0b)" in dom
    commit = saved["git_commit"]  # None when dropkit does not run from a git checkout
    assert shown["git commit"] == ("—" if commit is None else shown["git commit"])
    if commit is not None:
        assert shown["git commit"].startswith(commit[:12])
