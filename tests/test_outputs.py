"""outputs.py: the checks made before a run and the atomic writes."""
import os

import pytest

from dnewton_core.outputs import atomic_path, check_writable, write_atomic


def test_check_writable_accepts_new_paths_and_creates_nothing(tmp_path):
    check_writable([tmp_path / "a.json", tmp_path / "new" / "dir" / "b.csv", None])
    assert list(tmp_path.iterdir()) == []


def test_check_writable_names_the_bad_path(tmp_path):
    (tmp_path / "f").write_text("x")
    for path, needle in [(tmp_path / "f", "exists"), (tmp_path / "f" / "x.json", "not a directory"),
                         (tmp_path, "is a directory"), ("/proc/x.json", "not writable")]:
        with pytest.raises(ValueError, match=needle) as e:
            check_writable([path])
        assert str(path) in str(e.value)
    check_writable([tmp_path / "f"], overwrite=True)


def test_one_path_for_two_outputs_or_for_a_data_file_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "train.svm").write_text("1 1:1\n")
    with pytest.raises(ValueError, match="out.json: it is given for two outputs"):
        check_writable([tmp_path / "out.json", tmp_path / "." / "out.json"], overwrite=True)
    with pytest.raises(ValueError, match="train.svm: it is a file this run reads"):
        check_writable([tmp_path / "train.svm"], overwrite=True,
                       inputs=[str(tmp_path / "train.svm"), "test.svm"])
    check_writable([tmp_path / "a.json", tmp_path / "b.npz"], inputs=[str(tmp_path / "train.svm")])


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_atomic(path, "one")
    write_atomic(path, b"two")
    assert path.read_text() == "two" and os.listdir(path.parent) == ["r.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_write_atomic_without_replace_refuses_a_file_that_appeared(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("theirs")
    with pytest.raises(FileExistsError, match="appeared"):
        write_atomic(path, "mine", replace=False)
    assert path.read_text() == "theirs" and os.listdir(tmp_path) == ["r.json"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "fig.png"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["fig.png"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
