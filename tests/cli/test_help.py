"""What the command line says about itself: every config key in --help (type or choices, default,
range), help and a default for every option, the presets, --print-config, YAML config files,
--version, one dataset spelling, plain-text help."""

from __future__ import annotations

import json
import re

import pytest

from dropkit.cli import main
from dropkit.lab.config import Config, describe_fields

COMMANDS = ["demo", "run", "sweep", "tune", "report", "presets", "uci", "mc-vs-scaling"]


def _help(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_help_lists_every_config_key_with_type_default_and_description(capsys, command):
    text = _help(capsys, [command])
    lines = text.splitlines()
    for field in describe_fields():
        row = next(line for line in lines if line.startswith(f"  {field.key} "))
        assert field.type in row and f"default {field.default}" in row, row
        assert field.description, f"config key {field.key!r} has no description"
        assert field.description.split()[0] in text
    # the choices themselves, not a pointer into the source (before: "see lab.models.CONV_DROPOUT")
    assert re.search(
        r"conv_dropout +element\|channel\|dropblock\|dropconnect  default element", text
    )
    assert re.search(r"rnn_dropout +standard\|variational\|recurrent  default standard", text)
    assert "lab.models" not in text and "(range 0.0 <= x < 1.0)" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_its_default(command):
    # before: uci, mc-vs-scaling and report had options with neither help nor a default shown
    from dropkit.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.dest in ("help", "command_parser", "func"):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest}: no help text"
        default = action.default
        if action.option_strings and default not in (None, False, [], ()):
            shown = (
                action.help % {"default": default} if "%(default)" in action.help else action.help
            )
            assert "default" in shown, f"{command} {action.option_strings}: default not shown"


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


def test_presets_lists_title_grid_size_and_time(capsys):
    # before: --preset's choices, names only
    from dropkit.lab.presets import PRESETS
    from dropkit.lab.sweep import grid_points

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, preset in PRESETS.items():
        row = next(line for line in lines if line.startswith(f"{name} "))
        cells = row.split()
        assert cells[1] == str(len(grid_points(preset.grid))), row
        assert cells[2].startswith("~") and cells[3] in ("s", "min", "h"), row
        assert " ".join(preset.title.split()[:4]) in " ".join(out.split())


def test_option_style_config_key_is_answered_with_its_key_value_form(capsys):
    # before: "dropkit: error: unrecognized arguments: --epochs" under the top-level usage
    with pytest.raises(SystemExit) as exc:
        main(["run", "--epochs", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dropkit run ")  # the command's usage, not dropkit's
    assert "--epochs is not an option; config keys are set as KEY=VALUE, here epochs=2" in err
    with pytest.raises(SystemExit):
        main(["sweep", "--p-hiden=0.3"])
    assert "did you mean p_hidden=0.3?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--workdr", "x"])
    assert "unrecognized argument --workdr (did you mean '--workdir'?)" in capsys.readouterr().err
