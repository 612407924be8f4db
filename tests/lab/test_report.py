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
