"""`dropkit demo`: MNIST-1D, MLP with and without dropout and with L2, table + report."""

from __future__ import annotations

import pytest

from dropkit.cli import main


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs", "1", "--seeds", "2", "--workers", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    # Rows in the demo's order, each over 2 seeds, with a ± CI on the test accuracy.
    rows = [
        line
        for line in lines
        if line.split("  ")[0].strip() in ("no regularization", "dropout 0.2", "L2 1e-4")
    ]
    assert [r.split("  ")[0].strip() for r in rows] == [
        "no regularization",
        "dropout 0.2",
        "L2 1e-4",
    ]
    assert all(" 2 " in r and "±" in r for r in rows)
    assert (out / "report" / "report.html").is_file() and (out / "report" / "report.md").is_file()
    assert len(list((out / "runs").glob("*/summary.json"))) == 6


@pytest.mark.parametrize(
    "argv", [["demo", "--epochs", "0"], ["demo", "--seeds", "x"], ["nonsense"], []]
)
def test_user_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
