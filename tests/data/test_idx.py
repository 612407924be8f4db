"""IDX files (MNIST, Fashion-MNIST): gz and raw, clear errors, and the shared copy when present."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from dropkit.data import load_idx, read_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def _write_set(folder, gz, n_train=6, n_test=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
    arrays = _write_set(tmp_path / "set", gz)
    x_tr, y_tr, x_te, y_te = load_idx(tmp_path / "set")
    np.testing.assert_array_equal(x_tr, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_te, arrays["t10k-labels-idx1-ubyte"])
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int64


def test_missing_and_corrupt_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_idx(tmp_path / "absent")
    _write_set(tmp_path / "set", gz=True)
    (tmp_path / "set" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[.gz\]"):
        load_idx(tmp_path / "set")
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(ValueError, match=r"truncated or corrupt: header says shape \(5, 5, 5\)"):
        read_idx(bad)
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(bad)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read .*dataset-fashion-mnist"):
        read_idx(broken)


def test_shared_fashion_mnist(shared_data):
    x_tr, y_tr, x_te, y_te = load_idx(shared_data / "fashion-mnist")
    assert x_tr.shape == (60000, 28, 28) and x_te.shape == (10000, 28, 28)
    # Fashion-MNIST is balanced: 6,000 and 1,000 images per class.
    assert np.bincount(y_tr).tolist() == [6000] * 10
    assert np.bincount(y_te).tolist() == [1000] * 10


@pytest.mark.parametrize("label", [10, 255])
def test_label_outside_ten_classes_is_refused(tmp_path, label):
    # Before: a 255 built a 256-class model without a word.
    _write_set(tmp_path / "set", gz=False)
    path = tmp_path / "set" / "t10k-labels-idx1-ubyte"
    labels = read_idx(path).copy()
    labels[2] = label
    path.write_bytes(_idx_bytes(labels))
    with pytest.raises(
        ValueError,
        match=rf"t10k-labels-idx1-ubyte' has 1 label\(s\) outside 0..9.*{label} at index 2",
    ):
        load_idx(tmp_path / "set")
