"""`dropkit report`: table on stdout, files written; a missing folder exits 2."""

from __future__ import annotations

import pytest

from dropkit.cli import main
from dropkit.lab import Config, run
from tests.lab._helpers import TINY


def test_report_command(tmp_path, capsys):
    for seed in (0, 1):
        run(Config.build({**TINY, "seed": seed}), tmp_path / "runs" / f"s{seed}")
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("variant") and "±" in out.splitlines()[1]
    assert (tmp_path / "rep" / "report.html").is_file()


def test_missing_folder_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "absent")])
    assert exc.value.code == 2
    assert "no such run directory" in capsys.readouterr().err
