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
        ValueError,
        match=r"unknown key\(s\) dropuot \(did you mean 'rnn_dropout'\?\), lrr \(did you mean "
        r"'lr'\?\); valid keys are name, seed,",
    ):
        Config.build({"lrr": 1, "dropuot": 0.5})
    # before: no hint for a one-letter slip
    with pytest.raises(ValueError, match=r"p_hiden \(did you mean 'p_hidden'\?\)"):
        Config.build({"p_hiden": 0.2})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"p_input": 1.0}, r"p_input: must be less than 1, got 1.0"),
        ({"p_hidden": "0.5,1.5"}, r"each rate must be in \[0, 1\)"),
        ({"widths": [10, 10], "p_hidden": [0.1, 0.2, 0.3]}, "give one rate for all or one per"),
        (
            {"dataset": "cifar"},
            r"dataset: .*must be one of mnist1d, fashion_mnist, .*pkg.module:load; got 'cifar'",
        ),
        ({"early_stopping": 5, "val_fraction": 0.0}, "early_stopping needs a validation set"),
        ({"lr": "fast"}, r"lr: .*got 'fast'"),
        ({"dataset": "uci", "model": "cnn"}, "only model=mlp"),
        # before: accepted here, refused only when the model was built (after loading the data)
        ({"model": "gru", "batchnorm": "before_dropout"}, "batchnorm is for mlp and cnn"),
        (
            {"model": "lstm", "rnn_dropout": "recurrent", "weight_dropout": 0.2},
            "cannot be combined",
        ),
    ],
)
def test_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        Config.build(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # before: any text passed, and a sweep failed only when a point began training
        (
            {"conv_dropout": "bar"},
            r"conv_dropout: must be one of element, channel, dropblock, dropconnect; got 'bar'$",
        ),
        ({"rnn_dropout": "foo"}, r"rnn_dropout: must be one of standard, variational, recurrent"),
        ({"conv_dropout": "chanel"}, r"got 'chanel' \(did you mean 'channel'\?\)"),
    ],
)
def test_choice_keys_are_checked_with_the_config(values, message):
    with pytest.raises(ValueError, match=message):
        Config.build(values)


@pytest.mark.parametrize(
    "values",
    [
        {"p_hidden": "0.5,1.5"},
        {"widths": "8,0"},
        {"dataset": "cifar"},
        {"early_stopping": 2, "val_fraction": 0.0},
        {"p_input": 1.5},
        {"batch_size": 2.5},
    ],
)
def test_messages_are_dropkits_not_pydantics(values):
    # before: "p_hidden: Value error, each rate must be in [0, 1), got [0.5, 1.5] (got '0.5,1.5')"
    with pytest.raises(ValueError) as exc:
        Config.build(values)
    text = str(exc.value)
    assert "Value error" not in text and "Input should" not in text, text
    assert text.count("got ") <= 1, text  # the value once, not twice


def test_choices_match_the_model_tables():
    # Config lists the choices without importing torch; lab.models holds the layers.
    from dropkit.lab.config import CONV_DROPOUTS, RNN_DROPOUTS
    from dropkit.lab.models import CONV_DROPOUT, RNN_DROPOUT

    assert set(CONV_DROPOUTS) == set(CONV_DROPOUT)
    assert set(RNN_DROPOUTS) == set(RNN_DROPOUT)


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


def test_describe_fields_is_the_model_in_words():
    import typing

    from dropkit.lab.config import describe_fields

    rows = {r.key: r for r in describe_fields()}
    assert list(rows) == list(Config.model_fields)
    for key, field in Config.model_fields.items():
        row = rows[key]
        assert row.description == field.description and row.type
        # the default, as written on the command line, parses back to the default
        assert load_config(overrides=[f"{key}={row.default}"]).model_dump()[key] == field.default
        if typing.get_origin(field.annotation) is typing.Literal:
            assert row.choices == tuple(map(str, typing.get_args(field.annotation)))
            assert row.type == "|".join(row.choices)
    assert rows["conv_dropout"].choices == ("element", "channel", "dropblock", "dropconnect")
    assert rows["dataset"].choices[:2] == ("mnist1d", "fashion_mnist")
    assert rows["p_input"].bounds == "0.0 <= x < 1.0" and rows["lr"].bounds == "x > 0.0"
    assert rows["p_hidden"].bounds == "each 0 <= p < 1" and rows["max_norm"].type == "float or none"
