"""Errors from the command line: exit code 2, one line on stderr naming the file or argument, no
traceback; Ctrl-C exits 130; a failed or killed run leaves its directory usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dropkit.cli import main
from dropkit.lab._io import lock_dir
from tests.lab._helpers import interrupted_at

TINY_ARGS = ["dataset=digits", "widths=16", "epochs=1", "plots=false"]
SRC = Path(__file__).resolve().parents[2] / "src"


def cli_error(capsys, argv) -> str:
    """Run ``dropkit argv``; assert exit code 2 and a single stderr line; return that line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def run_argv(workdir, *extra):
    return ["run", "--quiet", "--workdir", str(workdir), *TINY_ARGS, *extra]


def test_failed_run_does_not_poison_its_workdir(tmp_path, capsys):
    line = cli_error(capsys, run_argv(tmp_path / "r", "dataset=fashion_mnist", "data_dir=/nope"))
    assert "/nope" in line
    assert "--data-dir" not in line  # before: named a flag that `dropkit run` does not have
    assert "set data_dir to that folder" in line
    # before: the folder stayed, holding only .lock; now a failed start leaves nothing
    assert not (tmp_path / "r").exists()
    assert main(run_argv(tmp_path / "r")) == 0  # the corrected command is accepted


def test_failed_start_keeps_folders_it_did_not_make(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    cli_error(capsys, run_argv(tmp_path / "mine", "dataset=uci", "data_dir=/nope"))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    cli_error(capsys, run_argv(tmp_path / "new" / "deep" / "r", "dataset=uci", "data_dir=/nope"))
    assert not (tmp_path / "new").exists()


def test_bad_choice_fails_before_any_folder_or_training(tmp_path, capsys):
    # before: conv_dropout=bar passed --print-config and failed only when training began; a sweep
    # trained its first points, then stopped
    line = cli_error(capsys, ["run", "--print-config", "model=cnn", "conv_dropout=bar"])
    assert (
        "conv_dropout: must be one of element, channel, dropblock, dropconnect; got 'bar'" in line
    )
    argv = ["sweep", "--root", str(tmp_path / "s"), "--grid", "conv_dropout=element,bar"]
    line = cli_error(capsys, [*argv, *TINY_ARGS, "model=cnn"])
    assert "got 'bar'" in line and not (tmp_path / "s").exists()
    line = cli_error(capsys, ["run", "--print-config", "rnn_dropout=foo", "p_hiden=0.2"])
    assert "did you mean 'p_hidden'?" in line  # unknown keys are named first


def test_default_workdir_holds_one_folder_per_config(tmp_path, capsys, monkeypatch):
    # before: runs/run for every config, so a second experiment was refused ("holds a run with a
    # different config")
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--quiet", *TINY_ARGS]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert main([*argv, "lr=0.05"]) == 0
    second = capsys.readouterr()
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.startswith("run-") for f in folders), folders
    assert first.err != second.err and "run directory: runs/run-" in first.err
    assert main(argv) == 0  # the same command again: the same folder, the finished run
    assert capsys.readouterr().err == first.err
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_workdir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    line = cli_error(capsys, run_argv(tmp_path / "f"))
    assert f"workdir '{tmp_path / 'f'}' is a file" in line
    line = cli_error(capsys, run_argv(tmp_path / "f" / "sub"))
    assert f"a parent of workdir '{tmp_path / 'f'}' is a file" in line


def test_report_out_that_is_a_file(tmp_path, capsys):
    assert main(run_argv(tmp_path / "r")) == 0
    (tmp_path / "out").write_text("x")
    capsys.readouterr()
    line = cli_error(capsys, ["report", str(tmp_path / "r"), "--out", str(tmp_path / "out")])
    assert str(tmp_path / "out") in line


@pytest.mark.parametrize("name", ["config.json", "summary.json", "checkpoint.pt"])
def test_corrupt_run_files_are_named(tmp_path, capsys, monkeypatch, name):
    workdir = tmp_path / "r"
    if name == "checkpoint.pt":
        # An interrupted two-epoch run keeps its checkpoint; then the checkpoint is damaged.
        with interrupted_at(monkeypatch, 2):
            assert main(run_argv(workdir, "epochs=2")) == 130
        argv = run_argv(workdir, "epochs=2")
    else:
        assert main(run_argv(workdir)) == 0
        argv = run_argv(workdir)
    capsys.readouterr()
    data = (workdir / name).read_bytes()
    (workdir / name).write_bytes(data[: len(data) // 2] + b"\x00garbage")
    line = cli_error(capsys, argv)
    assert str(workdir / name) in line


@pytest.mark.parametrize("name", ["provenance.json", "metrics.jsonl", "config.json"])
def test_report_skips_a_corrupt_run_with_a_warning_naming_it(tmp_path, capsys, name):
    # before: one corrupt file stopped the whole report (exit 2)
    for seed in (0, 1, 2):
        assert main(run_argv(tmp_path / "runs" / f"s{seed}", f"seed={seed}")) == 0
    bad = tmp_path / "runs" / "s1" / name
    bad.write_bytes(bad.read_bytes()[:20] + b"\x00garbage")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    out, err = capsys.readouterr()
    (warning,) = err.strip().splitlines()
    assert warning.startswith(f"dropkit report: warning: skipping '{tmp_path / 'runs' / 's1'}'")
    assert str(bad) in warning and "Traceback" not in err
    row = next(line for line in out.splitlines() if "(n=2)" in line)
    assert "0,2" in row  # the two readable seeds
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Left out (1 run directory)" in page and str(bad) in page


def test_uci_errors_name_the_file(tmp_path, capsys):
    folder = tmp_path / "toy"
    folder.mkdir()
    np.savetxt(folder / "data.txt", np.arange(30.0).reshape(10, 3))
    (folder / "index_features.txt").write_text("0\n1\n")
    (folder / "index_target.txt").write_text("2\n")
    (folder / "n_splits.txt").write_text("1\n")
    (folder / "index_train_0.txt").write_text("")  # before: ZeroDivisionError traceback
    (folder / "index_test_0.txt").write_text("8\n9\n")
    argv = ["run", "--quiet", "--workdir", str(tmp_path / "r"), "dataset=uci", "plots=false"]
    line = cli_error(capsys, [*argv, f"data_dir={folder}"])
    assert f"'{folder / 'index_train_0.txt'}' is empty" in line


def test_second_process_on_a_workdir_is_refused(tmp_path, capsys):
    workdir = tmp_path / "r"
    workdir.mkdir()
    with lock_dir(workdir):  # another open of the lock file: flock treats it as another process
        line = cli_error(capsys, run_argv(workdir))
    assert f"'{workdir}' is in use by another process" in line
    assert main(run_argv(workdir)) == 0  # free again


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    workdir = tmp_path / "r"
    workdir.mkdir()
    stale = workdir / ".checkpoint.pt.k1ll3d.tmp"  # what a SIGKILL mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    assert main(run_argv(workdir)) == 0
    assert not stale.exists() and not list(workdir.glob(".*.tmp"))


@pytest.fixture
def ctrl_c_interrupts():
    """SIGINT handled as in a terminal: Python's KeyboardInterrupt handler.

    A test run started in the background by a non-interactive shell (``bash .ci/run &``, a CI
    runner) inherits SIGINT ignored, and there a Ctrl-C rightly does nothing at all.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_checkpoint_write_exits_130(
    tmp_path, capsys, monkeypatch, ctrl_c_interrupts
):
    # Ctrl-C arrives while torch serialises the checkpoint. Before: torch wrapped the
    # KeyboardInterrupt in a RuntimeError (exit 1). Now it waits for the file, then exits 130.
    real_save = torch.save

    class Interrupting:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:  # mid-file: torch's zip writer then fails with a RuntimeError
                # raise(3): the signal goes to this (the main) thread at once; os.kill lets the
                # kernel pick any thread of the process, which made the test timing-dependent
                signal.raise_signal(signal.SIGINT)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def save(obj, f, *args, **kwargs):
        return real_save(obj, Interrupting(f), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main(run_argv(tmp_path / "r", "epochs=2")) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    monkeypatch.setattr(torch, "save", real_save)
    assert not list((tmp_path / "r").glob(".*.tmp"))
    # The checkpoint written during the interrupt is whole: the rerun resumes from it.
    assert main(run_argv(tmp_path / "r", "epochs=2")) == 0
    metrics = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in metrics] == [1, 2]


def test_disk_full_and_read_only_workdir(tmp_path, capsys):
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        # A 2048x2048 layer: a 16 MB checkpoint on a 2 MB disk.
        line = cli_error(capsys, run_argv(mnt / "r", "widths=2048,2048"))
        assert "No space left on device" in line and str(mnt / "r") in line
        # The finished epoch's metrics stay; no partial checkpoint, no temporary file.
        assert not list((mnt / "r").glob(".*.tmp")) and not (mnt / "r" / "checkpoint.pt").exists()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        line = cli_error(capsys, run_argv(mnt / "r"))
        assert "Read-only file system" in line and str(mnt / "r") in line
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_base_install_names_the_extra():
    # pydantic absent, as in `pip install dropkit` without extras.
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "from dropkit.cli import main\n"
        "rc = main(['--help'])\n"
        "try:\n    import dropkit.lab\n"
        "except ModuleNotFoundError as err:\n    print(err)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        "dropkit: this command needs the 'lab' extra (module 'pydantic' is not installed): "
        "pip install 'dropkit[lab]'"
    )
    assert "dropkit.lab needs the 'lab' extra (pydantic is not installed)" in out.stdout
