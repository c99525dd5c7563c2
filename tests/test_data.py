"""Tests of dnewton_core.data: real digits, IDX and svmlight readers on small files written here,
and the opt-in downloader against files served locally. Nothing here touches the network."""
import bz2
import dataclasses
import gzip
import hashlib
import http.server
import importlib.util
import shutil
import struct
import subprocess
import sys
import threading
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
from sklearn.datasets import load_digits

from dnewton_core import data, memory
from dnewton_core.data import (
    DATASETS,
    DataError,
    Dataset,
    DataWarning,
    coded_as,
    download_libsvm,
    load_dataset,
    load_idx,
    load_svmlight_pair,
    open_dataset,
    svm_scale,
)

# ------------------------------------------------------------------ digits and Dataset

def test_digits_shapes_ranges_and_labels():
    ds = load_dataset("digits")
    assert (ds.name, ds.n_features, ds.n_classes) == ("digits", 64, 10)
    assert ds.source == "scikit-learn bundled digits"
    assert ds.X_train.shape == (1438, 64) and ds.X_test.shape == (359, 64)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    both = np.vstack([ds.X_train, ds.X_test])
    assert both.min() == 0.0 and both.max() == 1.0
    assert ds.classes == tuple(range(10))
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))


def test_digits_split_is_a_partition_of_the_bundled_data():
    ds = load_dataset("digits")
    bunch = load_digits()
    original = np.column_stack([bunch.data / 16.0, bunch.target])
    ours = np.column_stack([np.vstack([ds.X_train, ds.X_test]),
                            np.concatenate([ds.y_train, ds.y_test])])
    assert np.array_equal(original[np.lexsort(original.T)], ours[np.lexsort(ours.T)])


def test_digits_are_read_from_scikit_learns_file_as_load_digits_reads_them(monkeypatch):
    bunch = load_digits()
    X, target = data._bundled_digits()
    assert X.dtype == np.float64 and X.tobytes() == bunch.data.astype(np.float64).tobytes()
    assert np.array_equal(target, bunch.target)
    # without importing scikit-learn (every rank of a digits run saves its import)
    code = ("import sys; from dnewton_core.data import load_dataset; load_dataset('digits'); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    # where the file is not found, through load_digits: the same numbers
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    X2, target2 = data._bundled_digits()
    assert X2.tobytes() == X.tobytes() and np.array_equal(target2, target)


def test_digits_split_is_stratified():
    ds = load_dataset("digits", seed=3)
    total = np.bincount(load_digits().target)
    assert ds.y_test.size == round(0.2 * total.sum()) == 359
    assert np.all(np.abs(np.bincount(ds.y_test) - 0.2 * total) < 1)
    assert np.array_equal(np.bincount(ds.y_train) + np.bincount(ds.y_test), total)


def test_digits_split_is_deterministic_and_seeded():
    a, b, c = load_dataset("digits"), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert np.array_equal(a.X_test, b.X_test) and np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_test, c.X_test)
    # seed 0 must give this very split forever (results in notebooks and papers depend on it)
    digest = hashlib.sha256(a.X_test.tobytes() + a.y_test.tobytes()).hexdigest()
    assert digest == "418f335721a932ff10f782aed69f231c099e74b9297ff80e1af74f2e6bfa47b2"


def test_dataset_checks_its_arrays():
    X, y = np.zeros((2, 3)), np.array([0, 1])
    ds = Dataset("t", X, y, X, y, (5, 6), "here")
    assert (ds.n_features, ds.n_classes) == (3, 2)
    with pytest.raises(DataError, match="labels"):
        Dataset("t", X, np.array([0, 2]), X, y, (5, 6), "here")
    with pytest.raises(DataError, match="features"):
        Dataset("t", X, y, np.zeros((2, 4)), y, (5, 6), "here")
    with pytest.raises(DataError, match="non-finite"):
        Dataset("t", np.array([[0, 0, 0], [0, np.nan, 0]]), y, X, y, (5, 6), "here")


def test_dataset_with_one_training_class_is_an_error():
    X = np.zeros((3, 2))
    with pytest.raises(DataError, match=r"^t \(here\): the training part has only one class "
                                        r"\(6, all 3 samples\)"):
        Dataset("t", X, np.array([1, 1, 1]), X, np.array([0, 1, 1]), (5, 6), "here")


def test_dataset_warns_about_test_classes_never_seen_in_training():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.warns(DataWarning, match=r"^t \(here\): the test part has classes never seen in "
                                         r"training: 'c', 'd' \(2 of 4 test samples\)"):
        ds = Dataset("t", X, y, X, np.array([0, 3, 2, 1]), ("a", "b", "c", "d"), "here")
    assert ds.y_test.tolist() == [0, 3, 2, 1]  # a warning, not an error
    with pytest.warns(DataWarning, match="never seen in training") as record:
        dataclasses.replace(ds, name="u")      # built anew: shown here, not in dataclasses.py
    assert record[0].filename == __file__


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError) as err:
        load_dataset("nosuch")
    assert "unknown data set 'nosuch'" in str(err.value)
    for name in DATASETS:
        assert name in str(err.value)
    assert {"digits", "fashion-mnist", "mnist", "satimage", "letter", "shuttle", "dna",
            "letter-libsvm", "satimage-libsvm", "pendigits", "usps", "sensit-vehicle",
            "mnist-libsvm", "svmlight"} <= set(DATASETS)


# ------------------------------------------------------------------ IDX

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(arr):
    """IDX encoding of arr, written independently of the reader under test."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[arr.dtype], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False):
    raw = idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("dtype,gz", [("u1", False), ("u1", True), ("i1", False), ("i2", True),
                                      ("i4", False), ("f4", False), ("f8", True)])
def test_idx_round_trip(tmp_path, dtype, gz):
    arr = (np.arange(2 * 3 * 4) * 7 - 20).reshape(2, 3, 4)
    arr = (arr / 3 if dtype[0] == "f" else arr % 256 if dtype == "u1" else arr).astype(dtype)
    got = load_idx(write_idx(tmp_path / "a.idx", arr, gz))
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    assert np.array_equal(got, arr)


def corrupt_cases(tmp_path):
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    zipped = gzip.compress(good)
    flipped = bytearray(zipped)
    flipped[12] ^= 0xFF  # inside the deflate stream
    return {
        "missing": (None, "cannot read"),
        "bad_magic": (b"\x08\x03" + good[2:], "magic"),
        "bad_type": (good[:2] + b"\x07" + good[3:], "magic"),
        "empty": (b"", "magic"),
        "short_header": (good[:6], "truncated IDX header"),
        "truncated": (good[:-1], "truncated IDX data"),
        "trailing": (good + b"\x00\x00", "trailing garbage"),
        "cut_gzip": (zipped[:len(zipped) // 2], "gzip"),
        "bad_gzip": (bytes(flipped), "gzip"),
    }


@pytest.mark.parametrize("case", ["missing", "bad_magic", "bad_type", "empty", "short_header",
                                  "truncated", "trailing", "cut_gzip", "bad_gzip"])
def test_idx_corrupt_files(tmp_path, case):
    content, expected = corrupt_cases(tmp_path)[case]
    path = tmp_path / f"{case}.idx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        load_idx(path)
    assert str(path) in str(err.value)


def fake_idx_dir(directory, n_train=6, n_test=4, gz_train=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([3, 0, 9, 3, 1, 0], dtype=np.uint8)[:n_train],
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([9, 1, 0, 3], dtype=np.uint8)[:n_test],
    }
    directory.mkdir(exist_ok=True)
    for base, arr in arrays.items():
        gz = gz_train and base.startswith("train")
        write_idx(directory / (base + (".gz" if gz else "")), arr, gz)
    return arrays


def test_fashion_mnist_from_a_fake_directory(tmp_path):
    arrays = fake_idx_dir(tmp_path / "fm")
    ds = load_dataset("fashion-mnist", path=str(tmp_path / "fm"))
    assert ds.name == "fashion-mnist" and ds.source == str(tmp_path / "fm")
    assert ds.X_train.shape == (6, 784) and ds.X_test.shape == (4, 784)
    assert np.array_equal(ds.X_train, arrays["train-images-idx3-ubyte"].reshape(6, 784) / 255.0)
    assert np.array_equal(ds.X_test[2], arrays["t10k-images-idx3-ubyte"][2].ravel() / 255.0)
    assert ds.classes == (0, 1, 3, 9)
    assert ds.y_train.tolist() == [2, 0, 3, 2, 1, 0] and ds.y_test.tolist() == [3, 1, 0, 2]


def test_idx_images_labels_count_mismatch(tmp_path):
    fake_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2, 3], dtype=np.uint8))
    with pytest.raises(DataError, match="4 images but .*t10k-labels-idx1-ubyte has 3 labels"):
        load_dataset("mnist", path=str(tmp_path))


def test_an_idx_label_outside_0_to_9_is_named(tmp_path):
    """A label file with a 200 gave an 11-class network without a word."""
    fake_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([9, 200, 0, 10], dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: item 1 \(from 0\) has the "
                                        r"label 200, 2 in all are not among the classes 0-9 of 'mnist'"):
        load_dataset("mnist", path=str(tmp_path))


def test_idx_directory_missing_file_names_expected_files(tmp_path):
    fake_idx_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", path=str(tmp_path))
    assert f"{tmp_path}: missing t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz" in \
        str(err.value)
    assert "train-labels-idx1-ubyte" in str(err.value) and data.ZALANDO_URL in str(err.value)


@pytest.mark.parametrize("gz_train", [True, False])
def test_a_share_reads_only_its_columns_of_the_idx_files(tmp_path, gz_train):
    fake_idx_dir(tmp_path, gz_train=gz_train)
    whole = load_dataset("mnist", path=str(tmp_path))
    source = data.open_dataset("mnist", path=str(tmp_path))
    assert (source.n_features, source.n_train, source.n_test) == (784, 6, 4)
    mine = source.share(range(100, 350), labels=False)
    assert np.array_equal(mine.X_train, whole.X_train[:, 100:350])
    assert np.array_equal(mine.X_test, whole.X_test[:, 100:350])
    assert mine.y_train is None and mine.y_test is None and mine.n_train == 6
    with pytest.warns(DataWarning, match="never seen in training: 1 "):   # not in the first 4
        labels = source.share(None, labels=True, limit=4)
    assert labels.X_train is None and labels.n_train == 4 and labels.n_test == 4
    assert labels.y_train.tolist() == whole.y_train[:4].tolist()
    assert labels.y_test.tolist() == whole.y_test.tolist()
    small = source.images["train"].columns(range(700, 784), chunk=784 * 2 + 5)   # 2 rows a time
    assert np.array_equal(small, whole.X_train[:, 700:])
    # float32 (--dtype): read into float32 directly, the float64 values rounded
    mine32, whole32 = source.share(range(100, 350), dtype="float32"), source.load(dtype="float32")
    assert mine32.X_train.dtype == whole32.X_test.dtype == np.float32
    assert np.array_equal(mine32.X_train, whole.X_train[:, 100:350].astype(np.float32))
    assert np.array_equal(whole32.X_test, whole.X_test.astype(np.float32))


@pytest.mark.parametrize("cut, problem", [(-5, "truncated IDX data"),
                                          (3, "3 bytes of trailing garbage")])
def test_a_gzipped_idx_file_of_the_wrong_length_is_found_while_its_columns_are_read(
        tmp_path, cut, problem):
    fake_idx_dir(tmp_path)
    raw = idx_bytes(np.zeros((6, 28, 28), dtype=np.uint8))
    raw = raw[:cut] if cut < 0 else raw + b"\0" * cut
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    source = data.open_dataset("mnist", path=str(tmp_path))        # the header is fine
    assert source.share(None, labels=True).y_train is not None     # pixels never read
    with pytest.raises(DataError, match=problem):
        source.share(range(0, 10))


def test_a_plain_idx_file_of_the_wrong_length_is_refused_on_opening(tmp_path):
    fake_idx_dir(tmp_path, gz_train=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated IDX data: dimensions"):
        data.open_dataset("mnist", path=str(tmp_path))


def test_a_share_is_a_copy_and_refuses_another_partition():
    X = np.arange(24, dtype=float).reshape(6, 4)
    ds = Dataset("t", X, np.array([0, 1, 0, 1, 0, 1]), X[:2], np.array([1, 0]), (0, 1), "here")
    mine = ds.share(range(1, 3), labels=True)
    assert np.array_equal(mine.X_train, X[:, 1:3]) and not np.shares_memory(mine.X_train, X)
    assert mine.y_train.tolist() == [0, 1, 0, 1, 0, 1] and mine.n_classes == 2
    assert mine.share(range(1, 3), labels=True) is mine
    with pytest.raises(ValueError, match=r"this rank read X\[:, 1:3\] and the labels of 6 "
                                         r"training instances of t; its partition needs "
                                         r"X\[:, 0:2\]"):
        mine.share(range(0, 2))
    with pytest.raises(DataError, match="only one class"):         # the first 1: class 0 only
        ds.share(range(0, 4), limit=1)


def test_a_share_of_an_svmlight_set_equals_its_columns(tmp_path):
    (tmp_path / "tr").write_bytes(TRAIN)
    (tmp_path / "te").write_bytes(TEST)
    with unseen_9():
        whole = load_dataset("svmlight", path=f"{tmp_path / 'tr'},{tmp_path / 'te'}")
        source = data.open_dataset("svmlight", path=f"{tmp_path / 'tr'},{tmp_path / 'te'}")
    with unseen_9():
        mine = source.share(range(5, 8), labels=True, limit=3)
    assert np.array_equal(mine.X_train, whole.X_train[:3, 5:8])
    assert np.array_equal(mine.X_test, whole.X_test[:, 5:8])
    assert mine.y_train.tolist() == whole.y_train[:3].tolist()


def test_fashion_mnist_default_path_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    with pytest.raises(DataError, match="needs path=DIR"):
        load_dataset("mnist")


# ------------------------------------------------------------------ svmlight / LIBSVM

TRAIN = b"""# a comment line
-1 1:0.5 3:1.5
3 2:-2 5:4
7 1:1 8:0
3 4:0.25
"""
TEST = b"""7 8:9
-1 1:1 2:2
9 3:3
"""
# TRAIN's explicit 8:0 gives it TEST's width 8 (a sparse file names its last feature that way);
# TEST's label 9 is not in TRAIN: loading the pair warns.


def unseen_9():
    return pytest.warns(DataWarning, match="classes never seen in training: 9 ")


def test_svmlight_pair_widths_and_label_mapping(tmp_path):
    (tmp_path / "tr").write_bytes(TRAIN)
    (tmp_path / "te").write_bytes(TEST)
    with unseen_9():
        ds = load_svmlight_pair(tmp_path / "tr", tmp_path / "te")
    assert ds.classes == (-1, 3, 7, 9)
    assert ds.y_train.tolist() == [0, 1, 2, 1] and ds.y_test.tolist() == [2, 0, 3]
    assert ds.X_train.shape == (4, 8) and ds.X_test.shape == (3, 8)  # widest index is 8
    expected_train = np.zeros((4, 8))
    expected_train[0, [0, 2]] = 0.5, 1.5
    expected_train[1, [1, 4]] = -2, 4
    expected_train[2, 0] = 1
    expected_train[3, 3] = 0.25
    assert np.array_equal(ds.X_train, expected_train)
    assert ds.X_test[0, 7] == 9 and ds.X_test[2, 2] == 3 and ds.X_test.sum() == 15
    with unseen_9():
        wide = load_svmlight_pair(tmp_path / "tr", tmp_path / "te", n_features=10)
    assert wide.n_features == 10 and np.array_equal(wide.X_train[:, :8], expected_train)


def test_svmlight_user_width_smaller_than_test_file(tmp_path):
    (tmp_path / "tr").write_bytes(TRAIN.replace(b" 8:0", b""))  # width 5
    (tmp_path / "te").write_bytes(TEST)
    load_svmlight_pair(tmp_path / "tr", n_features=5)  # train alone fits in 5
    with pytest.raises(DataError, match=rf"{tmp_path / 'te'}: needs 8 features but n_features "
                                        "is 5"):
        load_svmlight_pair(tmp_path / "tr", tmp_path / "te", n_features=5)


def test_svmlight_zero_based_file_keeps_column_zero(tmp_path):
    (tmp_path / "tr").write_bytes(b"1 0:2 2:3\n2 1:1\n")
    (tmp_path / "te").write_bytes(b"1 2:5\n")
    ds = load_svmlight_pair(tmp_path / "tr", tmp_path / "te")
    assert np.array_equal(ds.X_train, [[2, 0, 3], [0, 1, 0]])
    assert np.array_equal(ds.X_test, [[0, 0, 5]])


def test_svmlight_test_file_numbered_from_zero_beside_a_libsvm_training_file(tmp_path):
    """The training file numbers from 1 (LIBSVM), the test file from 0: read as zero-based
    both, every training column would sit one place off from the test's."""
    tr, te = write_pair(tmp_path, b"1 1:-0.13 2:0.10\n2 3:1\n", b"1 0:-0.2 1:0.3\n2 2:1\n")
    with pytest.raises(DataError, match=rf"^{te} uses feature index 0 and {tr} never does: "
                                        rf".*write 0:0 on a line of {tr}$"):
        load_svmlight_pair(tr, te)
    (tmp_path / "tr0").write_bytes(b"1 0:-0.13 1:0.10 2:0\n2 2:1\n")   # numbered from 0
    assert load_svmlight_pair(tmp_path / "tr0", te).X_test.tolist() == [[-0.2, 0.3, 0],
                                                                       [0, 0, 1]]
    with pytest.raises(DataError, match=rf"or {tr} numbers features from 1 \(LIBSVM's way\) "
                                        rf"and {tmp_path / 'tr0'}, which uses index 0, from 0"):
        load_svmlight_pair(tmp_path / "tr0", tr)


def test_svmlight_single_file_is_split_with_the_seed(tmp_path):
    lines = [f"{c} 1:{i} 2:{c}" for i in range(20) for c in (1, 2)][:20]
    (tmp_path / "all").write_text("\n".join(lines) + "\n")
    a = load_dataset("svmlight", path=str(tmp_path / "all"), seed=5)
    b = load_dataset("svmlight", path=str(tmp_path / "all"), seed=5)
    c = load_dataset("svmlight", path=str(tmp_path / "all"), seed=6)
    assert a.X_train.shape == (16, 2) and a.X_test.shape == (4, 2)
    assert np.bincount(a.y_test).tolist() == [2, 2]
    assert np.array_equal(a.X_test, b.X_test) and not np.array_equal(a.X_test, c.X_test)
    together = np.sort(np.concatenate([a.X_train[:, 0], a.X_test[:, 0]]))
    assert np.array_equal(together, np.sort([float(i) for i in range(20) for _ in (0, 1)][:20]))


def test_svmlight_train_comma_test_path(tmp_path):
    (tmp_path / "tr").write_bytes(TRAIN)
    (tmp_path / "te").write_bytes(TEST)
    with unseen_9():
        ds = load_dataset("svmlight", path=f"{tmp_path / 'tr'},{tmp_path / 'te'}")
    assert ds.X_test.shape == (3, 8) and ds.classes == (-1, 3, 7, 9)


@pytest.mark.parametrize("bad,problem", [
    (b"2 2:abc", "feature value 'abc' of index 2 is not a number"),
    (b"1 3:1 2:1", "increasing"),
    (b"1 2:1 2:1", "increasing"),
    (b"x 1:1", "label 'x' is not a number"),
    (b"1 1:2:3", "not a number"),
    (b"1 oops", "not of the form index:value"),
    (b"1 1.5:2", "not an integer"),
    (b"1 -3:2", "out of range"),
    (b"1.5 1:2", "label 1.5 is not an integer"),
    (b"9007199254740993 1:2", "label 9007199254740992 is too large to be told apart"),  # 2^53+1
    (b"\x89PNG\r\x1a\x00\x01", "binary bytes, not svmlight text"),    # not echoed back
    (b"1 1:\xff\xfe", "binary bytes, not svmlight text"),
])
def test_svmlight_malformed_line_names_file_and_line(tmp_path, bad, problem):
    path = tmp_path / "bad.txt"                # a Latin-1 comment on line 2 is no problem
    path.write_bytes(b"# header\n1 1:0.5 # caf\xe9\n\n" + bad + b"\n2 2:1\n")  # bad: line 4
    with pytest.raises(DataError) as err:
        load_svmlight_pair(path)
    assert str(err.value).startswith(f"{path}:4: ")
    assert problem in str(err.value)


def test_svmlight_malformed_line_in_bz2_test_file(tmp_path):
    (tmp_path / "tr").write_bytes(TRAIN)
    with bz2.open(tmp_path / "te.bz2", "wb") as f:
        f.write(b"1 1:1\n1 1:1 1:2\n")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'te.bz2'}:2: "):
        load_svmlight_pair(tmp_path / "tr", tmp_path / "te.bz2")


def _samples(dataset):
    return dataset.n_train + dataset.n_test


def _limit(monkeypatch, have, why="a test's limit"):
    """This process may allocate ``have`` bytes more, as ``memory.available_bytes`` says."""
    monkeypatch.setattr(memory, "available_bytes", lambda n_local=1: (have, why))


@pytest.mark.parametrize("name", ["tr", "tr.gz"])
def test_an_svmlight_file_too_large_to_read_is_refused_before_it_is_read(
        tmp_path, monkeypatch, name):
    """Every rank reads every file, NONZERO_BYTES a nonzero and LINE_BYTES a line: at most
    TRAIN's 7 colons and 5 line ends (and one line more, for a file without a last line end),
    and TEST's 4 and 3, counted together before either file is read."""
    for variable in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):   # one rank here
        monkeypatch.delenv(variable, raising=False)
    path = tmp_path / name
    with (gzip.open if name.endswith(".gz") else open)(path, "wb") as f:
        f.write(TRAIN)
    (tmp_path / "te").write_bytes(TEST)
    pair = f"{path},{tmp_path / 'te'}"
    for paths, nonzeros, lines in ((str(path), 7, 5 + 1), (pair, 7 + 4, 5 + 1 + 3 + 1)):
        need = data.NONZERO_BYTES * nonzeros + data.LINE_BYTES * lines
        _limit(monkeypatch, need)
        with pytest.warns(DataWarning) if paths == pair else warnings.catch_warnings():
            assert _samples(load_dataset("svmlight", path=paths)) == 4 + 3 * (paths == pair)
        _limit(monkeypatch, need - 1)
        with monkeypatch.context() as m:
            m.setattr(sklearn.datasets, "load_svmlight_file",
                      lambda *a, **k: pytest.fail("a file was read"))
            with pytest.raises(DataError) as e:
                load_dataset("svmlight", path=paths)
        assert str(e.value) == (
            f"not enough memory: reading {paths} (at most {nonzeros} nonzeros, "
            f"{data.NONZERO_BYTES} bytes each, and {lines} lines, {data.LINE_BYTES} bytes "
            f"each) needs {need:,} bytes (0 MiB: nonzeros 0 MiB, lines 0 MiB) and has "
            f"{need - 1:,} bytes (0 MiB: a test's limit); use a machine with more memory")
    monkeypatch.setenv("MPI_LOCALNRANKS", "4")
    with pytest.raises(DataError, match="; every rank reads every file: start fewer ranks on "
                                        "this machine, or use one with more memory$"):
        load_dataset("svmlight", path=pair)
    _limit(monkeypatch, 1, "address-space limit 600 MiB (ulimit -v, prlimit --as) less 599 MiB")
    with pytest.raises(DataError, match=r"less 599 MiB\); raise the limit$"):
        load_dataset("svmlight", path=pair)


def test_a_file_name_with_a_stray_space_says_so(tmp_path):
    """`--data-path "TRAIN, TEST"`: the space after the comma is not seen in the message."""
    (tmp_path / "tr").write_bytes(TRAIN)
    with pytest.raises(DataError, match=rf"^ {tmp_path}/te: no such file \(its name "
                                        rf"' {tmp_path}/te' starts or ends with a space\)$"):
        load_dataset("svmlight", path=f"{tmp_path / 'tr'}, {tmp_path / 'te'}")


def test_an_svmlight_file_whose_size_shows_it_fits_is_read_once(tmp_path, monkeypatch):
    path = tmp_path / "tr"
    path.write_bytes(TRAIN)
    _limit(monkeypatch, data.LINE_BYTES * (len(TRAIN) + 1))      # a line a byte fits
    monkeypatch.setattr(data, "_open_binary", lambda p: pytest.fail("counted"))
    assert _samples(load_svmlight_pair(path)) == 4


@pytest.mark.parametrize("value", [b"nan", b"inf", b"-inf"])
def test_svmlight_non_finite_feature(tmp_path, value):
    path = tmp_path / "nan.txt"
    path.write_bytes(b"1 1:1\n# c\n2 1:2 3:" + value + b"\n")
    with pytest.raises(DataError, match=rf"^{path}:3: non-finite feature value"):
        load_svmlight_pair(path)


def test_svmlight_missing_file(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'nope'}: no such file"):
        load_svmlight_pair(tmp_path / "nope")
    with pytest.raises(DataError, match=rf"{tmp_path}: a directory, not an svmlight file"):
        load_svmlight_pair(tmp_path)
    (tmp_path / "tr").write_bytes(TRAIN)
    with pytest.raises(DataError, match=r"path=TRAIN\[,TEST\], got '.*tr,a,b'"):
        load_dataset("svmlight", f"{tmp_path / 'tr'},a,b")


def test_the_digest_of_a_data_set_follows_its_contents(tmp_path):
    """data.Source.digest, which checkpoints, saved models and studies record: the same
    files give the same digest, other labels or other features another one; IDX images
    are hashed unpacked (gzipped or not: the same digest)."""
    for name, text in (("a", b"1 1:0.5\n2 2:1\n1 3:2\n"), ("same", b"1 1:0.5\n2 2:1\n1 3:2\n"),
                       ("labels", b"2 1:0.5\n1 2:1\n1 3:2\n"), ("values", b"1 1:0.5\n2 2:1\n1 3:3\n")):
        (tmp_path / name).write_bytes(text)
    digest = {name: open_dataset("svmlight", f"{tmp_path / name},{tmp_path / name}").digest()
              for name in ("a", "same", "labels", "values")}
    assert digest["a"] == digest["same"] and len(digest["a"]) == 16
    assert len({digest["a"], digest["labels"], digest["values"]}) == 3
    fake_idx_dir(tmp_path / "fm", gz_train=False)
    first = open_dataset("fashion-mnist", str(tmp_path / "fm")).digest()
    fake_idx_dir(tmp_path / "gz", gz_train=True)
    assert open_dataset("fashion-mnist", str(tmp_path / "gz")).digest() == first
    assert open_dataset("fashion-mnist", str(tmp_path / "fm")).digest() == first
    images = tmp_path / "fm" / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 1                                         # one pixel of the last image
    images.write_bytes(bytes(raw))
    assert open_dataset("fashion-mnist", str(tmp_path / "fm")).digest() != first


def test_named_libsvm_set_from_a_directory_with_bz2(tmp_path):
    with bz2.open(tmp_path / "letter.scale.bz2", "wb") as f:
        f.write(TRAIN)
    (tmp_path / "letter.scale.t").write_bytes(TEST)
    with unseen_9():
        ds = load_dataset("letter-libsvm", path=str(tmp_path))
    assert ds.name == "letter-libsvm" and ds.source == str(tmp_path)
    assert ds.X_train.shape == (4, 8) and ds.classes == (-1, 3, 7, 9)


def test_a_file_both_plain_and_packed_is_read_plain_with_a_warning(tmp_path):
    with bz2.open(tmp_path / "letter.scale.t.bz2", "wb") as f:
        f.write(b"9 1:5\n")                       # another test set: not the one read
    (tmp_path / "letter.scale").write_bytes(TRAIN)
    (tmp_path / "letter.scale.t").write_bytes(TEST)
    with unseen_9(), pytest.warns(DataWarning, match=rf"^{tmp_path}: letter.scale.t and "
                                  r"letter.scale.t.bz2 are both there; reading letter.scale.t "):
        ds = load_dataset("letter-libsvm", path=str(tmp_path))
    assert ds.X_test.shape[0] == TEST.count(b"\n")


def test_mnist_without_a_path_points_to_its_libsvm_copy_too():
    with pytest.raises(DataError, match=r"needs path=DIR holding the IDX files .*'mnist-libsvm'"):
        load_dataset("mnist")


def test_named_libsvm_set_without_files_says_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cache/usps here
    with pytest.raises(DataError) as err:
        load_dataset("usps")
    assert "usps" in str(err.value) and "usps.t" in str(err.value)
    assert data.LIBSVM_URL in str(err.value) and "download_libsvm" in str(err.value)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "usps").write_bytes(TRAIN)
    with pytest.raises(DataError, match="missing usps.t or usps.t.bz2"):
        load_dataset("usps", path=str(tmp_path / "d"))


# ------------------------------------------------------------------ bad pairs: widths, classes

def write_pair(directory, train, test, names=("tr", "te")):
    paths = [directory / n for n in names]
    for path, content in zip(paths, (train, test)):
        path.write_bytes(content)
    return paths


def test_svmlight_test_file_wider_than_train_is_an_error(tmp_path):
    tr, te = write_pair(tmp_path, b"1 1:1 10:2\n2 3:1\n", b"1 2:1 25:1\n2 1:1\n")
    message = rf"^{tr} has at most 10 features, {te} has 25 \({te}:1 uses index 25 first\): "
    with pytest.raises(DataError, match=message):
        load_svmlight_pair(tr, te)
    with pytest.raises(DataError, match=message):
        load_dataset("svmlight", path=f"{tr},{te}")
    wide = load_svmlight_pair(tr, te, n_features=25)  # declared: both files fit
    assert wide.X_train.shape == (2, 25) and wide.X_test[0, 24] == 1
    with pytest.raises(DataError, match=rf"^{te}: needs 25 features but n_features is 20"):
        load_svmlight_pair(tr, te, n_features=20)
    with pytest.raises(DataError, match=rf"^{tr}: needs 10 features but n_features is 8"):
        load_svmlight_pair(tr, n_features=8)


def test_svmlight_test_file_narrower_than_train_is_fine(tmp_path):
    tr, te = write_pair(tmp_path, b"1 1:1 10:2\n2 3:1\n", b"1 2:1\n2 4:1\n")
    ds = load_svmlight_pair(tr, te)
    assert ds.X_train.shape == (2, 10) and ds.X_test.shape == (2, 10)
    assert np.array_equal(ds.X_test[:, [1, 3]], np.eye(2)) and ds.X_test.sum() == 2


def test_data_files_are_those_a_data_set_may_read(tmp_path):
    """Every name the loader looks for, existing or not: an output written as pendigits.t
    beside pendigits.t.bz2 would be the file the next run reads."""
    assert sorted(p.name for p in data.data_files("pendigits", tmp_path)) == [
        "pendigits", "pendigits.bz2", "pendigits.gz", "pendigits.t", "pendigits.t.bz2",
        "pendigits.t.gz"]
    assert {p.parent for p in data.data_files("pendigits", tmp_path)} == {tmp_path}
    assert len(data.data_files("mnist", tmp_path)) == 8 and data.data_files("mnist") == []
    assert data.data_files("svmlight", "a.svm,b.svm") == ["a.svm", "b.svm"]
    assert data.data_files("satimage", tmp_path) == [] and data.data_files("digits") == []


def test_libsvm_directory_with_a_wider_test_file_names_both_files(tmp_path):
    tr, te = write_pair(tmp_path, b"1 1:1 10:2\n2 3:1\n", b"1 11:1\n",
                        names=("pendigits", "pendigits.t"))
    with pytest.raises(DataError, match=rf"^{tr} has at most 10 features, {te} has 11 \("):
        load_dataset("pendigits", path=str(tmp_path))


def test_a_stray_huge_feature_index_is_warned_with_its_line(tmp_path):
    """One typo (500:1 among indices up to 3) makes the input 500 wide: said, with the line;
    the same index as an explicit zero, which is how a file states its width, is not."""
    import warnings
    tr, te = write_pair(tmp_path, b"1 1:1 3:2\n# a comment\n2 2:1 500:7\n1 3:1\n",
                        b"1 2:1\n2 1:1\n")
    with pytest.warns(DataWarning, match=rf"^{tr}:3: feature index 500 is more than twice any "
                                         r"other the data uses \(3\): it alone makes the input "
                                         "500 features wide instead of 3; ") as record:
        assert load_svmlight_pair(tr, te).n_features == 500
    assert record[0].filename == __file__      # shown at this line, not inside the kit
    tr, te = write_pair(tmp_path, b"1 1:1 3:2\n2 250:1\n1 3:1 500:2\n", b"1 2:1\n")
    with pytest.warns(DataWarning, match=rf"^feature indices 500 \({tr}:3\), 250 \({tr}:2\) "
                                         r"are more than twice any other the data uses \(3\): "
                                         "they alone make the input 500 features wide instead "
                                         "of 3; "):                # two typos, each named
        load_svmlight_pair(tr, te)
    tr, te = write_pair(tmp_path, b"1 0:1 3:2\n2 2:1 600:1\n", b"1 2:1\n2 1:1\n")
    with pytest.warns(DataWarning, match=rf"^{tr}:2: feature index 600 .* input 601 features "
                                         "wide instead of 4; "):   # zero-based: 0..600
        load_svmlight_pair(tr, te)
    for train, test in ((b"1 1:1 3:2\n2 2:1 500:0\n", b"1 2:1\n"),      # stated width
                        (b"1 1:1 3:2\n2 2:1 500:0\n", b"1 2:1 500:4\n"),  # and used
                        (b"1 1:1 3:2\n2 2:1 90:1\n", b"1 2:1\n"),       # within STRAY_GAP
                        (b"1 1:1 100:2\n2 50:1 200:1 350:1\n", b"1 2:1\n")):   # spread
        tr, te = write_pair(tmp_path, train, test)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_svmlight_pair(tr, te)
    tr, te = write_pair(tmp_path, b"1 1:1 3:2\n2 2:1 500:7\n", b"1 2:1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_svmlight_pair(tr, te, n_features=600).n_features == 600   # a chosen width


def test_a_rare_feature_index_0_is_warned_with_its_line(tmp_path):
    """One line with index 0 in a file numbered from 1 makes the kit read it as numbered from
    0, a feature wider: said, with the line; a file that uses 0 on many lines, or states 0:0,
    is not warned."""
    import warnings
    lines = [b"%d 1:1 4:2\n" % (i % 2) for i in range(150)]
    lines[70] = b"1 0:0.5 4:1\n"
    (tmp_path / "one").write_bytes(b"".join(lines))
    with pytest.warns(DataWarning, match=rf"^{tmp_path / 'one'}:71: feature index 0, used by 1 "
                                         r"of 150 samples, makes the kit number the features "
                                         r"from 0 \(5 features\); if the file numbers them from 1"):
        assert load_svmlight_pair(tmp_path / "one").n_features == 5
    (tmp_path / "zero").write_bytes(b"".join(b"%d 0:1 3:2\n" % (i % 2) for i in range(150)))
    lines[0] = b"0 0:0 1:1 4:2\n"                        # 0:0: numbered from 0, and meant
    (tmp_path / "stated").write_bytes(b"".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_svmlight_pair(tmp_path / "zero").n_features == 4
        assert load_svmlight_pair(tmp_path / "stated").n_features == 5


def test_svmlight_one_training_class_is_an_error(tmp_path):
    tr, te = write_pair(tmp_path, b"3 1:1\n3 2:1\n", b"3 1:1\n5 2:1\n")
    with pytest.raises(DataError, match=rf"^svmlight \({tr},{te}\): the training part has only "
                                        r"one class \(3, all 2 samples\)"):
        load_svmlight_pair(tr, te)
    (tmp_path / "all").write_bytes(b"-1 1:1\n" * 10)  # one file, split 80/20
    with pytest.raises(DataError, match=rf"^svmlight \({tmp_path / 'all'}\): .* only one class "
                                        r"\(-1, all 8 samples\)"):
        load_dataset("svmlight", path=str(tmp_path / "all"))


def test_libsvm_directory_with_one_training_class_names_set_and_directory(tmp_path):
    write_pair(tmp_path, b"2 1:1\n2 2:1\n", b"2 1:1\n", names=("usps", "usps.t"))
    with pytest.raises(DataError, match=rf"^usps \({tmp_path}\): the training part has only "
                                        r"one class \(2,"):
        load_dataset("usps", path=str(tmp_path))


def test_svmlight_test_classes_never_seen_in_training_warn_once(tmp_path):
    tr, te = write_pair(tmp_path, b"1 1:1\n2 2:1\n", b"1 1:1\n7 2:1\n8 1:2\n",
                        names=("satimage.scale", "satimage.scale.t"))
    with pytest.warns(DataWarning, match=rf"^svmlight \({tr},{te}\): the test part has classes "
                                         r"never seen in training: 7, 8 \(2 of 3 test samples\)"):
        ds = load_svmlight_pair(tr, te)
    assert ds.classes == (1, 2, 7, 8) and ds.y_test.tolist() == [0, 2, 3]
    with pytest.warns(DataWarning) as record:
        load_dataset("satimage-libsvm", path=str(tmp_path))
    assert len(record) == 1  # the directory loader builds its Dataset once
    assert str(record[0].message).startswith(f"satimage-libsvm ({tmp_path}): the test part has "
                                             "classes never seen in training: 7, 8")
    assert record[0].filename == __file__  # the caller's line, not the kit's (data.warn)
    with warnings.catch_warnings(record=True) as again:      # evaluate's coding, warned before
        warnings.simplefilter("always")
        coded = coded_as(ds, ["1", "2", "7", "8", "9"])
    assert again == [] and coded.classes == ("1", "2", "7", "8", "9")
    assert coded.y_test.tolist() == [0, 2, 3]


# ------------------------------------------------------------------ downloader (local only)

def serve_letter(remote, train=TRAIN, test=TEST):
    remote.mkdir(exist_ok=True)
    (remote / "letter.scale").write_bytes(train)
    (remote / "letter.scale.t").write_bytes(test)
    return remote.as_uri() + "/"


def no_partial_files(directory):
    return not [p for p in directory.rglob("*") if p.name.endswith((".part", ".tmp"))]


def test_download_caches_records_sums_and_does_not_download_again(tmp_path):
    url, cache = serve_letter(tmp_path / "remote"), tmp_path / "cache"
    train, test = download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)
    assert (train, test) == (str(cache / "letter-libsvm" / "letter.scale"),
                             str(cache / "letter-libsvm" / "letter.scale.t"))
    assert Path(train).read_bytes() == TRAIN and Path(test).read_bytes() == TEST
    sums = (cache / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{hashlib.sha256(TRAIN).hexdigest()}  letter-libsvm/letter.scale",
                    f"{hashlib.sha256(TEST).hexdigest()}  letter-libsvm/letter.scale.t"]
    assert no_partial_files(cache)
    with unseen_9():
        assert load_dataset("letter-libsvm", path=str(cache / "letter-libsvm")).X_train.shape == (4, 8)

    shutil.rmtree(tmp_path / "remote")  # a second download would now fail
    assert download_libsvm("letter-libsvm", cache_dir=cache, base_url=url) == (train, test)


def test_download_checks_against_the_recorded_sum(tmp_path):
    url, cache = serve_letter(tmp_path / "remote"), tmp_path / "cache"
    train, _ = download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)
    (cache / "letter-libsvm" / "letter.scale").unlink()
    serve_letter(tmp_path / "remote", train=TRAIN + b"1 1:1\n")  # the server's copy changed
    with pytest.raises(DataError, match="SHA-256 .* differs from") as err:
        download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)
    assert "letter.scale" in str(err.value)
    assert not (cache / "letter-libsvm" / "letter.scale").exists() and no_partial_files(cache)


def test_download_refuses_a_changed_cached_file(tmp_path):
    url, cache = serve_letter(tmp_path / "remote"), tmp_path / "cache"
    _, test = download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)
    with open(test, "ab") as f:
        f.write(b"3 1:1\n")
    with pytest.raises(DataError, match=rf"{test}: SHA-256 .* differs"):
        download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)


def pin_sum(cache, digest):
    """Write letter.scale's sum into SHA256SUMS before any download (pinning it)."""
    cache.mkdir()
    (cache / "SHA256SUMS").write_text(f"{digest}  letter-libsvm/letter.scale\n")
    return (cache / "SHA256SUMS").read_text()


def test_download_pinned_sum_mismatch_deletes_the_download(tmp_path):
    url, cache = serve_letter(tmp_path / "remote"), tmp_path / "cache"
    pinned = pin_sum(cache, "0" * 64)
    with pytest.raises(DataError, match=rf"differs from 0{{64}} recorded in {cache}/SHA256SUMS"):
        download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)
    assert list((cache / "letter-libsvm").iterdir()) == []
    assert (cache / "SHA256SUMS").read_text() == pinned  # nothing recorded


def test_download_pinned_right_sum_is_accepted_and_kept(tmp_path):
    url, cache = serve_letter(tmp_path / "remote"), tmp_path / "cache"
    pinned = pin_sum(cache, hashlib.sha256(TRAIN).hexdigest())
    download_libsvm("letter-libsvm", cache_dir=cache, base_url=url)
    assert (cache / "SHA256SUMS").read_text() == \
        pinned + f"{hashlib.sha256(TEST).hexdigest()}  letter-libsvm/letter.scale.t\n"


def test_libsvm_registry_is_shared_by_loader_and_downloader(tmp_path):
    assert data.LIBSVM_FILES["sensit-vehicle"] == ("vehicle/combined_scale.bz2",
                                                   "vehicle/combined_scale.t.bz2")
    assert set(data.LIBSVM_FILES) == set(DATASETS) - {"digits", "fashion-mnist", "mnist",
                                                      "svmlight"} - set(data.STATLOG_FILES)
    with pytest.raises(DataError, match="needs combined_scale and combined_scale.t "):
        load_dataset("sensit-vehicle", path=str(tmp_path))


def test_download_failure_leaves_nothing(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="download failed"):
        download_libsvm("letter-libsvm", cache_dir=cache, base_url=(tmp_path / "empty").as_uri())
    assert list((cache / "letter-libsvm").iterdir()) == []


def test_download_unknown_set(tmp_path):
    with pytest.raises(DataError, match="known: letter-libsvm"):
        download_libsvm("digits", cache_dir=tmp_path)


def test_download_over_http_subdirectory_and_request_count(tmp_path):
    remote = tmp_path / "remote" / "vehicle"
    remote.mkdir(parents=True)
    (remote / "combined_scale.bz2").write_bytes(bz2.compress(TRAIN))
    (remote / "combined_scale.t.bz2").write_bytes(bz2.compress(TEST))
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(tmp_path / "remote")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        cache = tmp_path / "cache"
        paths = download_libsvm("sensit-vehicle", cache_dir=cache, base_url=url)
        assert requests == ["/vehicle/combined_scale.bz2", "/vehicle/combined_scale.t.bz2"]
        assert download_libsvm("sensit-vehicle", cache_dir=cache, base_url=url) == paths
        assert len(requests) == 2  # the second call used the cache
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    with unseen_9():
        ds = load_dataset("sensit-vehicle", path=str(cache / "sensit-vehicle"))
    assert ds.name == "sensit-vehicle" and ds.classes == (-1, 3, 7, 9)


# ------------------------------------------------------------------ Statlog sets (R data files)

SAT_LEVELS = ["red soil", "cotton crop", "grey soil", "damp grey soil", "vegetation stubble",
              "very damp grey soil"]  # mlbench's factor levels: Statlog codes 1, 2, 3, 4, 5, 7
SMALL_SAT = data.StatlogFile("Satellite.rda", "Satellite", "classes", 5, 3, 3)
SMALL_X = np.array([[0, 5, 7], [10, 5, 9], [4, 5, 8], [2, 5, 7], [6, 5, 9],  # train
                    [12, 5, 8], [-5, 6, 7], [5, 4, 9]], dtype=float)        # test
SMALL_Y = ["very damp grey soil", "red soil", "grey soil", "red soil", "very damp grey soil",
           "grey soil", "red soil", "very damp grey soil"]


def r_frame(X, labels, levels=SAT_LEVELS, label="classes", prefix="x."):
    """A pandas data frame as mlbench's: numeric columns x.1, x.2, ... and a factor column."""
    import pandas as pd
    columns = {f"{prefix}{j + 1}": np.asarray(X, dtype=float)[:, j] for j in range(np.shape(X)[1])}
    columns[label] = pd.Categorical(labels, categories=levels)
    return pd.DataFrame(columns)


def write_rda(path, objects, **options):
    """An R data file written by rdata (R 4.2's load() reads these files: checked by hand when the
    tests were written; mlbench's own files, R-written, are read by the tests at the end)."""
    import rdata
    rdata.write_rda(str(path), objects, **options)
    return path


@pytest.fixture
def small_satimage(tmp_path, monkeypatch):
    """'satimage' with a 5 + 3 row split and 3 features, its file in tmp_path/Satellite.rda."""
    monkeypatch.setitem(data.STATLOG_FILES, "satimage", SMALL_SAT)
    return write_rda(tmp_path / "Satellite.rda", {"Satellite": r_frame(SMALL_X, SMALL_Y)},
                     format_version=2, compression="xz")  # mlbench's format and compression


def test_svm_scale_uses_training_ranges_and_zeroes_constant_features():
    train, test = svm_scale(SMALL_X[:5], SMALL_X[5:])
    assert np.allclose(train, [[-1, 0, -1], [1, 0, 1], [-0.2, 0, 0], [-0.6, 0, -1], [0.2, 0, 1]])
    assert np.allclose(test, [[1.4, 0, 0], [-2, 0, -1], [0, 0, 1]])  # beyond [-1, 1]: kept
    assert np.allclose(svm_scale([[1.0, 3.0], [3.0, 3.0]], lower=0.0)[0], [[0, 0], [1, 0]])


def test_standardize_uses_training_statistics_and_zeroes_constant_features():
    train, test = data.standardize([[1.0, 5.0], [3.0, 5.0]], [[5.0, 2.0]])
    assert np.array_equal(train, [[-1, 0], [1, 0]]) and np.array_equal(test, [[3, 0]])


def test_statlog_small_file_split_scaling_and_labels(small_satimage):
    for path in (small_satimage.parent, small_satimage):  # the directory, or the file itself
        ds = load_dataset("satimage", path=str(path))
        assert (ds.name, ds.source) == ("satimage", str(small_satimage))
        assert ds.X_train.shape == (5, 3) and ds.X_test.shape == (3, 3)
        train, test = svm_scale(SMALL_X[:5], SMALL_X[5:])
        assert np.array_equal(ds.X_train, train) and np.array_equal(ds.X_test, test)
        # the factor's order (Statlog codes 1, 3, 7), not the alphabet; unused levels dropped
        assert ds.classes == ("red soil", "grey soil", "very damp grey soil")
        assert ds.y_train.tolist() == [2, 0, 1, 0, 2] and ds.y_test.tolist() == [1, 0, 2]


def test_statlog_set_with_standard_scaling(small_satimage, monkeypatch):
    monkeypatch.setitem(data.STATLOG_FILES, "satimage",
                        dataclasses.replace(SMALL_SAT, scaling="standard"))
    ds = load_dataset("satimage", path=str(small_satimage))
    train, test = data.standardize(SMALL_X[:5], SMALL_X[5:])
    assert np.array_equal(ds.X_train, train) and np.array_equal(ds.X_test, test)
    assert not np.array_equal(train, svm_scale(SMALL_X[:5])[0])


def test_statlog_file_of_any_name_and_from_the_mlbench_directories(tmp_path, small_satimage,
                                                                      monkeypatch):
    mine = tmp_path / "mine.rda"
    mine.write_bytes(small_satimage.read_bytes())
    assert load_dataset("satimage", path=str(mine)).source == str(mine)
    monkeypatch.setattr(data, "MLBENCH_DIRS", (str(tmp_path / "nowhere"), str(tmp_path)))
    assert load_dataset("satimage").source == str(small_satimage)


def test_statlog_dna_keeps_its_binary_factors_as_0_1(tmp_path, monkeypatch):
    import pandas as pd
    monkeypatch.setitem(data.STATLOG_FILES, "dna",
                        data.StatlogFile("DNA.rda", "DNA", "Class", 3, 2, 4, binary=True))
    bits = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1], [1, 0, 0, 0]])
    frame = pd.DataFrame({f"V{j + 1}": pd.Categorical(bits[:, j].astype(str), categories=["0", "1"])
                          for j in range(4)})
    frame["Class"] = pd.Categorical(["n", "ei", "ie", "ei", "n"], categories=["ei", "ie", "n"])
    write_rda(tmp_path / "DNA.rda", {"DNA": frame})
    ds = load_dataset("dna", path=str(tmp_path))
    assert np.array_equal(ds.X_train, bits[:3]) and np.array_equal(ds.X_test, bits[3:])
    assert ds.classes == ("ei", "ie", "n") and ds.y_train.tolist() == [2, 0, 1]
    frame["V2"] = pd.Categorical(np.where(bits[:, 1], "G", "A"))  # a nucleotide, not an indicator
    write_rda(tmp_path / "DNA.rda", {"DNA": frame})
    with pytest.raises(DataError, match=r"feature column 'V2' is a factor \(levels 'A', 'G'\)"):
        load_dataset("dna", path=str(tmp_path))


def statlog_bad_file(case, path):
    """Write the broken Satellite.rda of ``case`` to ``path``; returns the expected message."""
    good = r_frame(SMALL_X, SMALL_Y)
    unreadable = "cannot read as an R data file, truncated or corrupt"
    raw = write_rda(path, {"Satellite": good}).read_bytes()  # gzip-compressed
    if case.startswith("truncated") or case in ("empty", "not_rdata"):
        plain = gzip.decompress(raw)
        path.write_bytes({"truncated_half": raw[:len(raw) // 2], "truncated_last_byte": raw[:-1],
                          "truncated_header": raw[:4], "truncated_uncompressed": plain[:-5],
                          "empty": b"", "not_rdata": b"RDX2\nX\nnot really\n"}[case])
        return unreadable
    broken = good.copy()
    if case == "no_class_column":
        broken = broken.rename(columns={"classes": "Class"})
        expected = r"no class column 'classes' \(columns: 'x.1', 'x.2', 'x.3', 'Class'\)"
    elif case == "class_not_a_factor":
        broken["classes"] = np.arange(8.0)
        expected = r"class column 'classes' is not a factor \(float64\)"
    elif case == "too_few_features":
        broken = broken.drop(columns="x.2")
        expected = r"2 feature columns besides 'classes', expected 3 \('x.1', 'x.3'\)"
    elif case == "text_feature":
        broken["x.2"] = ["a", "b", "c", "d", "e", "f", "g", "h"]
        expected = r"feature column 'x.2' holds .*, not numbers"
    elif case in ("nan_feature", "inf_feature"):
        broken.loc[3, "x.3"] = np.nan if case == "nan_feature" else -np.inf
        expected = rf"missing or non-finite value \({'nan' if case == 'nan_feature' else '-inf'}\) " \
                   r"in feature column 'x.3', row 4$"
    elif case in ("too_few_rows", "too_many_rows"):
        broken = r_frame(np.zeros((7 if case == "too_few_rows" else 9, 3)), ["red soil"] * 9
                         if case == "too_many_rows" else ["red soil"] * 7)
        expected = (rf"{7 if case == 'too_few_rows' else 9} rows, "
                    rf"too {'few' if case == 'too_few_rows' else 'many'} for the standard split of "
                    r"'satimage' \(the first 5 rows train, the last 3 test\)")
    elif case == "another_sets_frame":
        write_rda(path, {"DNA": good})
        return r"no data frame 'Satellite' in the file \(it holds: DNA\): the file of the 'dna' set"
    elif case == "no_such_frame":
        write_rda(path, {"foo": good, "bar": np.arange(3.0)})
        return r"no data frame 'Satellite' in the file \(it holds: foo, bar\)"
    write_rda(path, {"Satellite": broken})
    return expected


STATLOG_BAD = ["truncated_half", "truncated_last_byte", "truncated_header", "truncated_uncompressed",
               "empty", "not_rdata", "no_class_column", "class_not_a_factor", "too_few_features",
               "text_feature", "nan_feature", "inf_feature", "too_few_rows", "too_many_rows",
               "no_such_frame", "another_sets_frame"]


@pytest.mark.parametrize("case", STATLOG_BAD)
def test_statlog_bad_files_name_the_file(tmp_path, monkeypatch, case):
    monkeypatch.setitem(data.STATLOG_FILES, "satimage", SMALL_SAT)
    expected = statlog_bad_file(case, tmp_path / "Satellite.rda")
    with pytest.raises(DataError, match=expected) as err:
        load_dataset("satimage", path=str(tmp_path))
    assert str(err.value).startswith(f"{tmp_path / 'Satellite.rda'}: ")
    assert "\n" not in str(err.value)


def test_statlog_file_too_large_for_the_memory_says_so(tmp_path, monkeypatch, small_satimage):
    """Not "truncated or corrupt": a tester's satimage under prlimit --as=300M said so."""
    import rdata

    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(rdata, "read_rda", no_memory)
    with pytest.raises(DataError, match=rf"^{small_satimage}: not enough memory to read it"):
        load_dataset("satimage", path=str(small_satimage))


def test_statlog_missing_class_is_an_error():
    import pandas as pd
    frame = r_frame(SMALL_X, SMALL_Y)
    frame["classes"] = pd.Categorical([*SMALL_Y[:2], None, *SMALL_Y[3:]], categories=SAT_LEVELS)
    with pytest.raises(DataError, match=r"^here.rda: missing class \(NA\) in row 3$"):
        data._statlog_arrays("here.rda", frame, SMALL_SAT)


def test_statlog_real_split_sizes_are_checked(tmp_path):
    """The registry's split, not the file, decides: a short file is refused, naming both."""
    write_rda(tmp_path / "Shuttle.rda", {"Shuttle": r_frame(np.ones((100, 9)), ["High"] * 100,
                                                            levels=["High"], label="Class",
                                                            prefix="V")})
    with pytest.raises(DataError, match=r"Shuttle.rda: 100 rows, too few for the standard split "
                                        r"of 'shuttle' \(the first 43500 rows train, the last "
                                        r"14500 test\)"):
        load_dataset("shuttle", path=str(tmp_path / "Shuttle.rda"))


def test_statlog_without_mlbench_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MLBENCH_DIRS", (str(tmp_path / "a"), str(tmp_path / "b")))
    for name, spec in data.STATLOG_FILES.items():
        with pytest.raises(DataError) as err:
            load_dataset(name)
        message = str(err.value)
        assert message.startswith(f"no {spec.file} in {tmp_path / 'a'} or {tmp_path / 'b'}. ")
        assert data.MLBENCH_INSTALL in message and "--data-path" in message
        assert "\n" not in message
        assert (f"'{name}-libsvm'" in message) == (name in ("letter", "satimage"))
    with pytest.raises(DataError, match=rf"^{tmp_path}: no LetterRecognition.rda in this "
                                        r"directory\. .*'letter-libsvm'"):
        load_dataset("letter", path=str(tmp_path))  # e.g. a directory of LIBSVM files
    with pytest.raises(DataError, match=rf"^{tmp_path / 'nope'}: no such file or directory\. "):
        load_dataset("dna", path=str(tmp_path / "nope"))


# The class counts of the standard splits of the real files, per class in the order of the
# Statlog codes (= mlbench's factor levels). Which of them were checked against which source:
# data/README.md ("The Statlog sets").
STATLOG_COUNTS = {
    "satimage": ([1072, 479, 961, 415, 470, 1038], [461, 224, 397, 211, 237, 470]),
    "letter": ([583, 593, 565, 589, 577, 581, 565, 556, 550, 564, 562, 556, 605, 585, 572, 596,
                566, 550, 550, 612, 598, 596, 585, 601, 603, 540],
               [206, 173, 171, 216, 191, 194, 208, 178, 205, 183, 177, 205, 187, 198, 181, 207,
                217, 208, 198, 184, 215, 168, 167, 186, 183, 194]),
    "shuttle": ([34108, 37, 132, 6748, 2458, 6, 11], [11478, 13, 39, 2155, 809, 4, 2]),
    "dna": ([464, 485, 1051], [303, 280, 603]),
}
# letter-recognition.names (UCI): the 20000 letters per class, A to Z
LETTER_TOTALS = [789, 766, 736, 805, 768, 775, 773, 734, 755, 747, 739, 761, 792, 783, 753, 803,
                 783, 758, 748, 796, 813, 764, 752, 787, 786, 734]


@pytest.mark.parametrize("name", sorted(STATLOG_COUNTS))
def test_statlog_real_files_standard_splits(name):
    spec = data.STATLOG_FILES[name]
    if not any((Path(d) / spec.file).is_file() for d in data.MLBENCH_DIRS):
        pytest.skip(f"no {spec.file}: Debian's r-cran-mlbench is not installed")
    ds = load_dataset(name)
    train, test = STATLOG_COUNTS[name]
    assert ds.X_train.shape == (spec.n_train, spec.n_features) and len(ds.y_test) == spec.n_test
    assert np.bincount(ds.y_train).tolist() == train and np.bincount(ds.y_test).tolist() == test
    if name == "dna":  # A, C, G, T -> 100, 010, 001, 000: at most one 1 per nucleotide
        assert set(np.unique(np.vstack([ds.X_train, ds.X_test]))) == {0.0, 1.0}
        assert ds.X_train.reshape(-1, 60, 3).sum(axis=2).max() == 1
    elif spec.scaling == "standard":  # mean 0 and std 1 over the training part
        assert np.allclose(ds.X_train.mean(axis=0), 0, atol=1e-12)
        assert np.allclose(ds.X_train.std(axis=0), 1, atol=1e-12)
    else:  # svm_scale from the training part: every feature spans exactly [-1, 1] there
        assert np.all(ds.X_train.min(axis=0) == -1) and np.all(ds.X_train.max(axis=0) == 1)
    assert spec.scaling == ("standard" if name in ("shuttle", "letter") else "minmax")
    if name == "letter":
        assert ds.classes == tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        assert (np.bincount(ds.y_train) + np.bincount(ds.y_test)).tolist() == LETTER_TOTALS
    if name == "satimage":
        assert ds.classes == tuple(SAT_LEVELS)
