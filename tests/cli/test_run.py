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
        (["lr=-1"], "lr: must be greater than 0, got -1"),
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
    tags = set(events.Tags()["scalars"])
    assert {"acc/test", "loss/train", "loss/val", "time/elapsed_s"} <= tags
    assert "s/elapsed" not in tags  # before: elapsed_s split at its first "_"
    saved = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = events.Scalars("acc/test")
    assert [e.step for e in logged] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([r["test_acc"] for r in saved], rel=1e-6)
    # the config as hparams (before: none), with the metric tags as the hparams' metrics
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert (
        start.hparams["lr"].number_value == 0.001 and start.hparams["widths"].string_value == "16"
    )
    assert start.hparams["dataset"].string_value == "digits"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"acc/test", "loss/val"}


def test_log_lines_do_not_land_on_the_progress_bar(tmp_path, monkeypatch):
    # stdout and stderr on one terminal: before, each epoch's line was printed after the bar's
    # text (the bar ends without a newline); through tqdm.write the bar is cleared first
    import io
    import sys

    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(sys, "stderr", screen)
    argv = ["run", "--workdir", str(tmp_path), *TINY_ARGS, "epochs=3", "--logger", "stdout"]
    assert main(argv) == 0
    logged = [line for line in screen.getvalue().split("\n") if "train_loss " in line]
    assert len(logged) == 3
    for line in logged:
        assert line.split("\r")[-1].startswith("epoch"), repr(line)  # what the terminal shows
