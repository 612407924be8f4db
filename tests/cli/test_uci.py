"""``dropkit uci`` and ``dropkit mc-vs-scaling``: thin shells; user errors exit with code 2."""

from __future__ import annotations

import json

import pytest

from dropkit.cli import main
from tests.uncertainty.test_ensemble import fake_fashion
from tests.uncertainty.test_uci import make_dataset


def test_uci_command(tmp_path, capsys):
    make_dataset(tmp_path / "data")
    args = [
        "uci", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--max-epochs", "2",
        "--val-samples", "4", "--test-samples", "8", "--splits", "1",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| toy | 1 |" in out and "datasets agree" in out
    assert json.loads((tmp_path / "out" / "toy" / "summary.json").read_text())["n_splits"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["uci", "/nonexistent/uci"],
        ["uci", ".", "--val-samples", "0"],
        ["mc-vs-scaling", "--dataset", "cifar"],
        ["mc-vs-scaling", "--dataset", "fashion-mnist"],  # needs --data-dir
    ],
)
def test_user_errors_exit_2(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_mc_vs_scaling_command(tmp_path, capsys):
    data = fake_fashion(tmp_path / "fm")
    args = [
        "mc-vs-scaling", "--dataset", "fashion-mnist", "--data-dir", str(data), "--out",
        str(tmp_path / "out"), "--epochs", "1", "--hidden", "8", "--max-k", "3", "--repeats", "2",
    ]  # fmt: skip
    assert main(args) == 0
    assert "weight scaling: test error" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.json").is_file()


def test_help_defaults_are_the_configs_defaults():
    # written out in the CLI so that --help imports no torch; they must not drift
    import dataclasses

    from dropkit.cli import mc_vs_scaling, uci
    from dropkit.uncertainty.ensemble import MCvsScalingConfig
    from dropkit.uncertainty.uci import UCIConfig

    for defaults, cls in ((uci.DEFAULTS, UCIConfig), (mc_vs_scaling.DEFAULTS, MCvsScalingConfig)):
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, value in defaults.items():
            want = fields[key]
            assert (list(want) if isinstance(want, tuple) else want) == value, key
