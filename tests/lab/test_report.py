"""Reports: the aggregated table (mean ± 95% CI over seeds), the plots, HTML and Markdown."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from dropkit.lab import Config, run
from dropkit.lab.report import mean_ci, report
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
    out = report([runs], tmp_path / "rep", title="tiny sweep")
    rows = out["rows"]
    assert [r["label"] for r in rows] == ["p_hidden=0", "p_hidden=0.25", "p_hidden=0.5"]
    summaries = [json.loads((runs / f"p0.25_s{s}" / "summary.json").read_text()) for s in (0, 1)]
    expected = mean_ci([s["test_acc"] for s in summaries])
    assert (rows[1]["test_acc"], rows[1]["test_acc_ci"]) == pytest.approx(expected, rel=1e-12)
    assert rows[1]["n"] == 2

    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3  # curves, test acc vs p, gap vs p
    assert f"{100 * expected[0]:.2f} ± {100 * expected[1]:.2f}" in html
    md = (tmp_path / "rep" / "report.md").read_text()
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (tmp_path / "rep" / name).read_bytes()[:4] == b"\x89PNG"
    assert "| p_hidden=0.5 | 2 |" in md
    assert set(json.loads((tmp_path / "rep" / "results.json").read_text())) == {
        "title",
        "rows",
        "runs",
    }


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
    assert "Variants: configuration and provenance" in page
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
    header = (tmp_path / "report" / "report.md").read_text().splitlines()[4]
    assert "val acc." not in header and "test acc." in header
    assert out["rows"][0]["n"] == 2


def _browser() -> str | None:
    import shutil

    return next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )


def test_html_report_renders_in_headless_chromium(two_variants, tmp_path):
    import subprocess

    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium)")
    root, out = two_variants
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
    assert dom.count("<table>") == 2 and dom.count("<img") == 1 and "plain" in dom
