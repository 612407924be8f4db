"""The UCI split-format loader, on a generated folder and on the shared copy when present."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit.data import UCI_DATASETS, load_uci


def _write(folder, rows, features, target, splits, extra=True):
    folder.mkdir()
    np.savetxt(folder / "data.txt", rows)
    np.savetxt(folder / "index_features.txt", features, fmt="%d")
    (folder / "index_target.txt").write_text(f"{target}\n")
    (folder / "n_splits.txt").write_text(f"{len(splits)}\n")
    for i, (tr, te) in enumerate(splits):
        np.savetxt(folder / f"index_train_{i}.txt", tr, fmt="%d")
        np.savetxt(folder / f"index_test_{i}.txt", te, fmt="%d")
    if extra:
        (folder / "n_hidden.txt").write_text("7\n")
        (folder / "dropout_rates.txt").write_text("0.01\n0.05\n")
        (folder / "tau_values.txt").write_text("0.5\n")


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(10, 4))
    splits = [(np.arange(0, 8), np.arange(8, 10)), (np.arange(2, 10), np.arange(0, 2))]
    _write(tmp_path / "tiny", rows, [0, 2, 3], 1, splits)
    return tmp_path / "tiny", rows


def test_tiny_folder(tiny):
    folder, rows = tiny
    ds = load_uci(folder)
    assert ds.name == "tiny" and ds.n_splits == 2 and ds.n_hidden == 7 and ds.n_epochs == 40
    assert ds.dropout_rates == (0.01, 0.05) and ds.tau_values == (0.5,)
    x_tr, y_tr, x_te, y_te = ds.split(1)
    np.testing.assert_allclose(x_tr, rows[2:10][:, [0, 2, 3]], rtol=1e-15)
    np.testing.assert_allclose(y_te, rows[0:2, 1], rtol=1e-15)


def test_errors(tiny, tmp_path):
    folder, _ = tiny
    with pytest.raises(FileNotFoundError, match="no dataset folder"):
        load_uci(tmp_path / "absent")
    ds = load_uci(folder)
    with pytest.raises(ValueError, match=r"splits 0..1, but got i=2"):
        ds.split(2)
    with pytest.raises(TypeError, match="must be an int"):
        ds.split(0.5)
    (folder / "index_test_1.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks index_test_1.txt"):
        load_uci(folder)


def test_overlap_and_range_are_refused(tmp_path):
    rows = np.zeros((5, 3))
    _write(tmp_path / "a", rows, [0, 1], 2, [(np.arange(0, 4), np.arange(3, 5))], extra=False)
    with pytest.raises(ValueError, match="both train and test"):
        load_uci(tmp_path / "a")
    _write(tmp_path / "b", rows, [0, 1], 2, [(np.arange(0, 4), np.array([9]))], extra=False)
    with pytest.raises(ValueError, match="outside 0..4"):
        load_uci(tmp_path / "b")


@pytest.mark.parametrize("name", UCI_DATASETS)
def test_shared_copy(shared_data, name):
    ds = load_uci(shared_data / "uci" / name)
    data = np.loadtxt(shared_data / "uci" / name / "data.txt")
    assert ds.n_splits == (5 if name.startswith("protein") else 20)
    features = np.loadtxt(shared_data / "uci" / name / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(shared_data / "uci" / name / "index_target.txt"))
    assert target not in features
    np.testing.assert_array_equal(ds.x, data[:, features])
    np.testing.assert_array_equal(ds.y, data[:, target])
    for i in range(ds.n_splits):
        x_tr, y_tr, x_te, y_te = ds.split(i)
        # Train and test partition the rows (the protocol uses 90/10 splits of every row).
        assert len(y_tr) + len(y_te) == len(ds.y)
        assert abs(len(y_te) / len(ds.y) - 0.1) < 0.01
    assert len(ds.dropout_rates) == 4 and len(ds.tau_values) == 3


def _good(tmp_path):
    rows = np.arange(30, dtype=float).reshape(10, 3)
    _write(tmp_path / "d", rows, [0, 1], 2, [(np.arange(8), np.arange(8, 10))], extra=False)
    return tmp_path / "d"


def _set_cell(folder, text):
    lines = (folder / "data.txt").read_text().splitlines()
    lines[3] = text
    (folder / "data.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        # silent wrong results before: NaN RMSE, a target that is also a feature
        (lambda d: _set_cell(d, "1 nan 3"), r"data.txt' has 1 non-finite cell.*row 4, column 1"),
        (lambda d: _set_cell(d, "1 2 inf"), r"non-finite cell.*row 4, column 2"),
        (
            lambda d: (d / "index_target.txt").write_text("-1\n"),
            r"index_target.txt' has column indices outside 0..2",
        ),
        (
            lambda d: (d / "index_features.txt").write_text("0\n-2\n"),
            r"index_features.txt' has column indices outside 0..2",
        ),
        (
            lambda d: (d / "index_features.txt").write_text("0\n2\n"),
            r"column 2 is both the target .* and a feature",
        ),
        # unclear errors before: ZeroDivisionError, numpy's or int()'s messages without the file
        (lambda d: (d / "index_train_0.txt").write_text(""), r"index_train_0.txt' is empty"),
        (lambda d: _set_cell(d, "1 2"), r"data.txt' line 4 has 2 columns, the first row 3"),
        (lambda d: _set_cell(d, "1 x 3"), r"data.txt' line 4 has a non-numeric cell 'x'"),
        (
            lambda d: (d / "index_test_0.txt").write_text("8\n9.5\n"),
            r"index_test_0.txt' should hold integers only, but has '9.5'",
        ),
        (
            lambda d: (d / "n_splits.txt").write_text("abc\n"),
            r"n_splits.txt' should hold integers only, but has 'abc'",
        ),
    ],
)
def test_malformed_files_are_named(tmp_path, corrupt, message):
    folder = _good(tmp_path)
    load_uci(folder)  # the untouched folder loads
    corrupt(folder)
    with pytest.raises(ValueError, match=message):
        load_uci(folder)
