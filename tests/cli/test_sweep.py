"""`dropkit sweep`: a grid from the command line, a report at the end, errors exit 2."""

from __future__ import annotations

import json

import pytest

from dropkit.cli import main

TINY_ARGS = ["dataset=digits", "widths=16", "epochs=1", "plots=false"]


def test_sweep_and_report(tmp_path, capsys):
    argv = [
        "sweep",
        "--root",
        str(tmp_path),
        "--grid",
        "p_hidden=0,0.5",
        "--grid",
        "seed=0,1",
        *TINY_ARGS,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 of 4 grid points complete" in out
    assert (tmp_path / "report" / "report.html").is_file()
    assert len(list((tmp_path / "runs").glob("*/summary.json"))) == 4


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("p_hidden", "is not of the form key=v1,v2"),
        ("p_hiden=0,1", "unknown grid key(s) p_hiden"),
        ("p_hidden=0,1.5", "each rate must be in [0, 1)"),
    ],
)
def test_grid_errors_exit_2(tmp_path, capsys, grid, message):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--root", str(tmp_path), "--grid", grid, *TINY_ARGS])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_list_valued_axis(tmp_path, capsys):
    argv = ["sweep", "--root", str(tmp_path), "--no-report", "--grid", "widths=8;16,4", *TINY_ARGS]
    assert main(argv) == 0
    assert "2 of 2 grid points complete" in capsys.readouterr().out
    widths = sorted(
        json.loads((d / "config.json").read_text())["widths"] for d in (tmp_path / "runs").iterdir()
    )
    assert widths == [[8], [16, 4]]


def test_variant_axis_keeps_names_as_text(tmp_path, capsys):
    # "none" is a variant name here, not null; ';' separates names that hold commas
    argv = ["sweep", "--preset", "early-dropout", "--root", str(tmp_path), "--no-report"]
    argv += ["--grid", "variant=none;constant 0.1", "--grid", "seed=0", "epochs=1", "plots=false"]
    assert main(argv) == 0
    assert "2 of 2 grid points complete" in capsys.readouterr().out
    rates = sorted(
        json.loads((d / "config.json").read_text())["p_hidden"]
        for d in (tmp_path / "runs").iterdir()
    )
    assert rates == [[0.0], [0.1]]


def test_overrides_may_follow_grid_options(tmp_path, capsys):
    argv = ["sweep", "--print-config", "epochs=3", "--grid", "seed=0,1", "lr=0.5", "--grid"]
    assert main([*argv, "p_hidden=0,0.5", "widths=8"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["epochs"], config["lr"], config["widths"]) == (3, 0.5, [8])
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--grid", "seed=0", "epochs=1", "--bogus", "stray"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus stray" in capsys.readouterr().err


def test_overrides_apply_over_the_presets_variants(tmp_path, capsys):
    # "constant 0.1" sets p_hidden; the command line's p_hidden comes last and wins
    argv = ["sweep", "--preset", "early-dropout", "--root", str(tmp_path), "--no-report"]
    argv += ["--grid", "variant=constant 0.1", "--grid", "seed=0", "epochs=1", "p_hidden=0.3"]
    assert main([*argv, "plots=false"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "config.json").read_text())["p_hidden"] == [0.3]


def test_a_variant_name_holding_a_comma():
    from dropkit.cli.sweep import _parse_axis

    assert _parse_axis("variant=input 0.2, hidden 0.5;") == ("variant", ["input 0.2, hidden 0.5"])
    assert _parse_axis("variant=none;a, b") == ("variant", ["none", "a, b"])
    assert _parse_axis("variant=none,hidden 0.5") == ("variant", ["none", "hidden 0.5"])
