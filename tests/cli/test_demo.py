"""The foundation's `dropkit demo` command."""

from __future__ import annotations

import pytest

from dropkit.cli import main


def test_demo_prints_both_models(capsys):
    assert main(["demo", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "no dropout" in out and "dropout (0.2 in, 0.5 hidden)" in out
    accuracies = [float(line.split()[-2]) for line in out.splitlines()[1:]]
    assert all(0.5 < a <= 1.0 for a in accuracies)  # 2 epochs already beat chance (0.1) by far


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["nonsense"], []])
def test_user_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
