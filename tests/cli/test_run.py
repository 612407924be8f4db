"""`dropkit run`: one configured run; config errors exit 2 with the valid keys listed."""

from __future__ import annotations

import json

import pytest

from dropkit.cli import main

TINY_ARGS = ["dataset=digits", "widths=16", "epochs=1", "plots=false"]


def test_run_with_overrides(tmp_path, capsys):
    assert main(["run", "--quiet", "--workdir", str(tmp_path), *TINY_ARGS, "lr=0.02"]) == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["lr"] == 0.02 and saved["widths"] == [16] and saved["dataset"] == "digits"
    printed = json.loads(capsys.readouterr().out.split("run directory:")[0])
    assert printed == json.loads((tmp_path / "summary.json").read_text())


def test_config_file_and_preset(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"dataset": "digits", "widths": [8]}))
    argv = [
        "run",
        "--quiet",
        "--preset",
        "regularizers",
        "--config",
        str(tmp_path / "c.json"),
        "--workdir",
        str(tmp_path / "r"),
        "epochs=1",
        "plots=false",
    ]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["lr"] == 0.01 and saved["widths"] == [8] and saved["eval_every"] == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["learning_rate=0.1"], "unknown key(s) learning_rate; valid keys are name, seed"),
        (["lr=-1"], "lr: Input should be greater than 0"),
        (["lr"], "'lr' is not of the form key=value"),
        (["--preset", "nope"], "invalid choice: 'nope'"),
        (["--config", "/nonexistent.json"], "no config file"),
        (["dataset=fashion_mnist", "data_dir=/nonexistent"], "dataset-fashion-mnist"),
    ],
)
def test_errors_exit_2(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--quiet", "--workdir", str(tmp_path), *TINY_ARGS, *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_tensorboard_and_stdout_loggers(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["run", "--quiet", "--workdir", str(tmp_path), *TINY_ARGS, "epochs=2"]
    assert main([*argv, "--logger", "tensorboard", "--logger", "stdout"]) == 0
    out = capsys.readouterr().out
    assert "epoch    1" in out and "epoch    2" in out
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"acc/test", "loss/train", "loss/val"} <= set(events.Tags()["scalars"])
    saved = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = events.Scalars("acc/test")
    assert [e.step for e in logged] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([r["test_acc"] for r in saved], rel=1e-6)
