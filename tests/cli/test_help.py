"""What the command line says about itself: every config key in --help, --print-config, YAML config
files, --version, one dataset spelling, plain-text help."""

from __future__ import annotations

import json

import pytest

from dropkit.cli import main
from dropkit.lab.config import Config, describe_fields

COMMANDS = ["demo", "run", "sweep", "report", "uci", "mc-vs-scaling"]


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_help_lists_every_config_key_with_type_default_and_description(capsys, command):
    text = _help(capsys, [command])
    lines = text.splitlines()
    for key, kind, default, description in describe_fields():
        row = next(line for line in lines if line.startswith(f"  {key} "))
        assert kind in row and f"default {default}" in row, row
        assert description, f"config key {key!r} has no description"
        assert description.split()[0] in text


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text(capsys, command):
    text = _help(capsys, [command])
    assert "``" not in text and ":func:" not in text and ":class:" not in text, text


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("dropkit ")


def test_print_config_runs_nothing(tmp_path, capsys):
    argv = ["run", "--print-config", "--workdir", str(tmp_path / "r"), "lr=0.05", "widths=8,8"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == Config.build(lr=0.05, widths=[8, 8]).model_dump(mode="json")
    assert not (tmp_path / "r").exists()


def test_yaml_config_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("dataset: digits\nwidths: [8, 4]\nlr: 0.02\n")
    assert main(["run", "--print-config", "--config", str(tmp_path / "c.yaml"), "lr=0.03"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["widths"] == [8, 4] and printed["lr"] == 0.03 and printed["dataset"] == "digits"
    (tmp_path / "bad.yml").write_text("widths: [8, 4\n")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--print-config", "--config", str(tmp_path / "bad.yml")])
    assert exc.value.code == 2
    assert f"'{tmp_path / 'bad.yml'}' is not valid YAML" in capsys.readouterr().err


def test_one_dataset_spelling(capsys):
    # fashion_mnist is canonical; the dashed spelling is accepted by every command.
    assert main(["run", "--print-config", "dataset=fashion-mnist"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "fashion_mnist"
    from dropkit.cli import build_parser

    for spelling in ("fashion-mnist", "fashion_mnist"):
        args = build_parser().parse_args(["mc-vs-scaling", "--dataset", spelling])
        assert args.dataset == "fashion_mnist"


def test_device_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["run", "--quiet", "--workdir", str(tmp_path / "r"), "dataset=digits", "device=cuda"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device='cuda' but this torch build sees no CUDA" in err
