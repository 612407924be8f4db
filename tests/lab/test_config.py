"""The typed config: defaults, overrides from the command line, and errors that list valid keys."""

from __future__ import annotations

import json

import pytest

from dropkit.lab import Config, load_config, parse_overrides


def test_overrides_are_typed():
    cfg = load_config(
        overrides=[
            "lr=0.05",
            "widths=256,128",
            "p_hidden=[0.5, 0.2]",
            "max_norm=3",
            "data_dir=none",
            "plots=false",
            "name=my run",
        ]
    )
    assert cfg.lr == 0.05 and cfg.widths == (256, 128) and cfg.p_hidden == (0.5, 0.2)
    assert cfg.max_norm == 3.0 and cfg.data_dir is None and cfg.plots is False
    assert cfg.name == "my run"
    assert cfg.rates(2) == (0.5, 0.2) and Config.build(p_hidden=0.3).rates(3) == (0.3, 0.3, 0.3)


def test_layering_preset_file_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 0.1, "epochs": 7}))
    cfg = load_config(path, ["epochs=9"], base={"lr": 0.2, "seed": 4})
    assert (cfg.lr, cfg.epochs, cfg.seed) == (0.1, 9, 4)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(
        ValueError, match=r"unknown key\(s\) dropuot, lrr; valid keys are name, seed,"
    ):
        Config.build({"lrr": 1, "dropuot": 0.5})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"p_input": 1.0}, r"p_input: Input should be less than 1"),
        ({"p_hidden": "0.5,1.5"}, r"each rate must be in \[0, 1\)"),
        ({"widths": [10, 10], "p_hidden": [0.1, 0.2, 0.3]}, "give one rate for all or one per"),
        (
            {"dataset": "cifar"},
            r"dataset: .*must be one of mnist1d, fashion_mnist, .*pkg.module:load; got 'cifar'",
        ),
        ({"early_stopping": 5, "val_fraction": 0.0}, "early_stopping needs a validation set"),
        ({"lr": "fast"}, r"lr: .*got 'fast'"),
        ({"dataset": "uci", "model": "cnn"}, "only model=mlp"),
    ],
)
def test_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        Config.build(values)


def test_override_syntax_and_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="'lr0.1' is not of the form key=value"):
        parse_overrides(["lr0.1"])
    with pytest.raises(FileNotFoundError, match="no config file"):
        load_config(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        load_config(tmp_path / "bad.json")


def test_replace_validates_and_config_is_frozen():
    cfg = Config()
    assert cfg.replace(lr=0.5).lr == 0.5 and cfg.lr == 1e-3
    with pytest.raises(ValueError, match="unknown key"):
        cfg.replace(learning_rate=0.5)
    with pytest.raises(Exception, match="frozen"):
        cfg.lr = 0.5


def test_every_key_has_a_description():
    # --help shows them; a new key without one would show a bare name.
    missing = [k for k, f in Config.model_fields.items() if not f.description]
    assert not missing, f"config keys without a description: {missing}"
