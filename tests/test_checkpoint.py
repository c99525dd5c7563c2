"""Checkpoint and resume, on any grid, and the saved weights (``checkpoint.py``).

On the same grid a resumed run is the uninterrupted one bit for bit; on another grid or rank
count (one process included) it follows it to 1e-8 in f. A killed run leaves a complete
checkpoint or none. Every job runs in a subprocess with a timeout, as in test_mpi_cli.py.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dnewton_core import checkpoint, outputs, reference
from dnewton_core.data import load_dataset
from dnewton_core.environment import local_environment, local_launch

ENV = local_environment()          # one BLAS thread per rank, MPI on loopback only
EXACT = ("objective", "cg_iters", "lambda", "alpha")


def cli(*args, n=1, timeout=120):
    cmd = (local_launch(n) if n > 1 else []) + [sys.executable, "-m", "dnewton_core"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def train(tmp_path, name, *args, n=1):
    """The JSON of a train run that must succeed (and its weights in NAME.npz)."""
    out, weights = tmp_path / f"{name}.json", tmp_path / f"{name}.npz"
    p = cli("train", "--json", out, "--save", weights, *args, n=n)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


def theta(tmp_path, name):
    return np.load(tmp_path / f"{name}.npz")["theta"]


def trajectory(result, keys=EXACT):
    return [[r.get(k) for k in keys] for r in result["history"]]


def one_line_error(p):
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory):
    """On 4 ranks (splits 2,1,1,1): 8 Newton iterations in full.json and full.npz, and 4
    with a checkpoint in ck/, which the tests below only read."""
    where = tmp_path_factory.mktemp("four")
    full = train(where, "full", "--iters", 8, n=4)
    first = train(where, "first", "--iters", 4, "--checkpoint", where / "ck", n=4)
    return where, full, first


@pytest.mark.parametrize("n", [1, 4])
def test_newton_resumed_on_the_same_grid_is_the_uninterrupted_run_bit_for_bit(tmp_path, n,
                                                                               four_ranks):
    if n == 1:
        full = train(tmp_path, "full", "--iters", 8)
        first = train(tmp_path, "first", "--iters", 4, "--checkpoint", tmp_path / "ck")
        where = tmp_path
    else:
        where, full, first = four_ranks
    assert checkpoint.read(where / "ck").done == 4 and len(first["history"]) == 4
    resumed = train(tmp_path, "resumed", "--iters", 8, "--resume", where / "ck", n=n)
    assert [r["iter"] for r in resumed["history"]] == list(range(1, 9))
    assert trajectory(resumed) == trajectory(full)
    assert resumed["final"] == {**full["final"], "wall_time": resumed["final"]["wall_time"]}
    assert np.array_equal(theta(tmp_path, "resumed"), theta(where, "full"))
    if n > 1:          # the first four records were summed over ranks in the checkpoint
        assert [r["cg_iters_per_rank"] for r in resumed["history"]] == \
            [r["cg_iters_per_rank"] for r in full["history"]]
        assert all(set(r["comm"]) >= {"gradient", "cg"} for r in resumed["history"])


def relative(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("n,splits", [(1, None), (3, None), (4, "1,1,1,2"), (5, "1,1,2,1")])
def test_newton_resumed_on_another_grid_follows_the_run_to_1e_8(tmp_path, n, splits,
                                                                 four_ranks):
    where, full, _ = four_ranks                                     # splits 2,1,1,1
    resumed = train(tmp_path, "resumed", "--iters", 8, "--resume", where / "ck",
                    *(["--splits", splits] if splits else []), n=n)
    assert resumed["config"]["splits"] != full["config"]["splits"]
    assert trajectory(resumed)[:4] == trajectory(full)[:4]        # from the checkpoint
    for new, old in zip(resumed["history"][4:], full["history"][4:]):
        assert relative(new["objective"], old["objective"]) < 1e-8, (new["iter"], n, splits)
    assert np.allclose(theta(tmp_path, "resumed"), theta(where, "full"), rtol=1e-6,
                       atol=1e-9)


def test_sgd_resumed_is_bit_for_bit_and_on_another_grid_to_1e_8(tmp_path):
    sgd = ("--optimizer", "sgd", "--lr", "0.05")
    full = train(tmp_path, "full", *sgd, "--epochs", 6)
    ck = tmp_path / "ck"
    train(tmp_path, "first", *sgd, "--epochs", 3, "--checkpoint", ck, "--checkpoint-every", 2)
    assert checkpoint.read(ck).done == 3          # every 2 epochs, and after the last
    resumed = train(tmp_path, "resumed", *sgd, "--epochs", 6, "--resume", ck)
    assert trajectory(resumed, ("objective", "lr")) == trajectory(full, ("objective", "lr"))
    assert np.array_equal(theta(tmp_path, "resumed"), theta(tmp_path, "full"))
    for option, value, words in (("--lr", "0.1", "lr is 0.05, this run's 0.1"),
                                 ("--batch-size", "64", "batch_size is 128, this run's 64")):
        line = one_line_error(cli("train", *sgd, "--epochs", 6, "--resume", ck, option, value))
        assert words in line, line               # a setting changed half way: another run

    full4 = train(tmp_path, "full4", *sgd, "--epochs", 6, n=4)
    train(tmp_path, "first4", *sgd, "--epochs", 3, "--checkpoint", tmp_path / "ck4", n=4)
    assert sorted(os.listdir(tmp_path / "ck4" / "step-000003")) == \
        ["block-0.npz", "block-1.npz", "block-2.npz", "block-3.npz", "state.json"]
    one = train(tmp_path, "one", *sgd, "--epochs", 6, "--resume", tmp_path / "ck4")
    for new, old in zip(one["history"][3:], full4["history"][3:]):
        assert relative(new["objective"], old["objective"]) < 1e-8


def test_a_checkpoint_is_complete_or_absent(tmp_path):
    """A half-written step (a killed run) is never pointed at; older steps are removed
    once the manifest has moved on."""
    ck = tmp_path / "ck"
    train(tmp_path, "first", "--iters", 3, "--checkpoint", ck)
    assert sorted(os.listdir(ck)) == ["manifest.json", "step-000003"]
    partial = ck / "step-000004"
    partial.mkdir()
    (partial / "block-0.npz").write_bytes(b"half a file")
    resumed = train(tmp_path, "resumed", "--iters", 5, "--resume", ck, "--checkpoint", ck)
    assert trajectory(resumed) == trajectory(train(tmp_path, "full", "--iters", 5))
    assert sorted(os.listdir(ck)) == ["manifest.json", "step-000005"]


def test_a_damaged_block_is_named_without_numpy_words(tmp_path):
    """numpy says of a file that is not an .npz that it "contains pickled data" and suggests
    loading it unsafely: the kit says what the file is not."""
    ck = tmp_path / "ck"
    train(tmp_path, "first", "--iters", 2, "--checkpoint", ck)
    (ck / "step-000002" / "block-0.npz").write_bytes(b"garbage\n")
    line = one_line_error(cli("train", "--iters", 3, "--resume", ck))
    assert "block-0.npz: not an .npz file as the kit writes them" in line \
        and "pickle" not in line, line


def test_a_block_with_a_nan_is_named_before_the_run_resumes(tmp_path):
    """A NaN in a saved theta ended the run inside the kept pass's check (a ValueError about
    kept=True): the kit names the file instead, before any iteration."""
    ck = tmp_path / "ck"
    train(tmp_path, "first", "--iters", 2, "--checkpoint", ck)
    block = ck / "step-000002" / "block-0.npz"
    with np.load(block) as z:
        arrays = dict(z)
    arrays["theta"][3] = np.nan
    np.savez(block, **arrays)
    line = one_line_error(cli("train", "--iters", 3, "--resume", ck))
    assert re.search(r"block-0\.npz: 1 of its \d+ theta values are NaN or infinite", line), line


def test_a_run_killed_mid_way_leaves_a_complete_checkpoint_that_resumes(tmp_path):
    """SIGKILL at random moments while a checkpoint is written after every iteration: the
    manifest always points at a complete step, and resuming from it gives the run."""
    ck, rng = tmp_path / "ck", random.Random(1)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "dnewton_core", "train", "--iters",
                                 "1000", "--checkpoint", ck, "--overwrite"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        try:
            deadline = time.monotonic() + 60
            while not (ck / "manifest.json").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        saved = checkpoint.read(ck)              # the manifest names a whole step
        assert saved.done >= 1 and len(saved.state["records"]) == saved.done
        assert checkpoint.whole(saved, "theta").shape == (reference.n_params([64, 64, 64, 10]),)
    done = saved.done
    resumed = train(tmp_path, "resumed", "--iters", done + 2, "--resume", ck)
    full = train(tmp_path, "full", "--iters", done + 2)
    assert trajectory(resumed) == trajectory(full)
    assert np.array_equal(theta(tmp_path, "resumed"), theta(tmp_path, "full"))


@pytest.fixture(scope="module")
def svmlight_digits(tmp_path_factory):
    """digits as svmlight files: the same layers under another data set's name."""
    from sklearn.datasets import dump_svmlight_file
    d, where = load_dataset("digits"), tmp_path_factory.mktemp("svm")
    X_train, X_test = d.X_train.copy(), d.X_test.copy()
    X_train[0, -1] = X_test[0, -1] = 1.0           # every file reaches feature 64
    wide = np.hstack([X_test, np.zeros((len(X_test), 6))])
    wide[3, -1] = 1.0                                  # one line with index 70
    for X, y, name in ((X_train, d.y_train, "train"), (X_test, d.y_test, "test"),
                       (d.X_test[:, :63], d.y_test, "narrow"), (wide, d.y_test, "wide")):
        dump_svmlight_file(X, y, str(where / f"{name}.svm"), zero_based=False)
    return f"{where / 'train.svm'},{where / 'test.svm'}", *(str(where / f"{name}.svm")
                                                           for name in ("narrow", "wide"))


def test_a_checkpoint_of_another_network_optimizer_or_data_set_is_refused(tmp_path,
                                                                          svmlight_digits):
    ck = tmp_path / "ck"
    train(tmp_path, "first", "--iters", 2, "--checkpoint", ck)
    cases = {"layers are 64-64-64-10, this run's 64-32-10": ("--hidden", "32"),
             "optimizer is newton, this run's sgd": ("--optimizer", "sgd"),
             "data set is digits, this run's svmlight": ("--data", "svmlight", "--data-path",
                                                     svmlight_digits[0]),
             "loss is squared, this run's cross_entropy": ("--loss", "cross_entropy"),
             "init_seed is 0, this run's 3": ("--seed", "3"),
             "dtype is float64, this run's float32": ("--dtype", "float32"),
             "subsample is 0.05, this run's 0.1": ("--subsample", "0.1"),
             "gn is full, this run's diag": ("--gn", "diag")}
    for words, args in cases.items():
        line = one_line_error(cli("train", "--iters", 4, "--resume", ck, *args))
        assert words in line and str(ck) in line, line
        assert "its seed is" not in line, line        # --seed is named once: init_seed
        assert line.endswith("give the options of the run that wrote it)"), line
    # what only trades memory for time (and the rounding, as another grid does) resumes
    resumed = train(tmp_path, "lean", "--iters", 3, "--resume", ck, "--no-keep-forward")
    assert [h["iter"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["config"]["objective.keep_forward"] is False
    line = one_line_error(cli("train", "--iters", 1, "--resume", ck))
    assert "after 2 iterations" in line
    line = one_line_error(cli("train", "--iters", 4, "--checkpoint", ck))
    assert "--overwrite" in line and "--resume" in line
    other = tmp_path / "other"                    # resuming elsewhere does not unlock ck
    train(tmp_path, "second", "--iters", 1, "--checkpoint", other)
    line = one_line_error(cli("train", "--iters", 4, "--checkpoint", ck, "--resume", other))
    assert "--overwrite" in line
    line = one_line_error(cli("train", "--resume", tmp_path / "nothing"))
    assert "no checkpoint" in line
    assert sorted(os.listdir(ck)) == ["manifest.json", "step-000002"]
    (tmp_path / "afile").write_text("x")
    assert "not a directory" in one_line_error(cli("train", "--checkpoint", tmp_path / "afile"))


def test_a_sync_fraction_s_checkpoint_resumes_on_one_process(tmp_path):
    """One process has no sync fraction (--sync is an error there): its resume of a run with
    --sync 0.5 does not ask for it, where other ranks do."""
    diag = ("--hidden", "8", "--gn", "diag")
    train(tmp_path, "first", *diag, "--sync", "0.5", "--iters", 2, "--checkpoint",
          tmp_path / "ck", n=2)
    one = train(tmp_path, "one", *diag, "--splits", "1,1,1", "--iters", 3, "--resume",
                tmp_path / "ck")
    assert [h["iter"] for h in one["history"]] == [1, 2, 3]
    line = one_line_error(cli("train", *diag, "--iters", 3, "--resume", tmp_path / "ck", n=2))
    assert "its sync is 0.5, this run's 1.0" in line, line


def test_the_same_data_set_on_other_contents_is_refused_and_evaluate_finds_it(tmp_path,
                                                                            svmlight_digits):
    """A checkpoint records the data's digest (data.Source.digest), a saved model also where
    the files were: a file of the same shape with other labels does not resume it, and
    ``evaluate`` without --data reads the files trained on, from any directory."""
    from sklearn.datasets import dump_svmlight_file, load_svmlight_file
    train_file, test_file = svmlight_digits[0].split(",")
    X, y = load_svmlight_file(train_file)
    dump_svmlight_file(X, (y + 1) % 10, str(tmp_path / "relabelled.svm"), zero_based=False)
    data, ck = ("--data", "svmlight", "--data-path"), tmp_path / "ck"
    run = train(tmp_path, "svm", "--iters", 2, "--checkpoint", ck, *data, svmlight_digits[0])
    assert len(run["config"]["data_digest"]) == 16
    line = one_line_error(cli("train", "--iters", 3, "--resume", ck, *data,
                              f"{tmp_path / 'relabelled.svm'},{test_file}"))
    assert "data digest (of its contents) is" in line and str(ck) in line, line
    assert cli("train", "--iters", 3, "--resume", ck, *data, svmlight_digits[0]).returncode == 0
    p = subprocess.run([sys.executable, "-m", "dnewton_core", "evaluate", "--model",
                        str(tmp_path / "svm.npz")], capture_output=True, text=True, env=ENV,
                       cwd="/", timeout=120)
    assert p.returncode == 0 and " on svmlight: " in p.stdout, p.stderr
    assert f"test accuracy {run['final']['test_accuracy']:.4f}," in p.stdout
    assert "warning" not in p.stderr, p.stderr
    other = cli("evaluate", "--model", tmp_path / "svm.npz", *data,
                f"{tmp_path / 'relabelled.svm'},{test_file}")
    assert other.returncode == 0, other.stderr
    assert other.stderr.startswith("warning: svmlight (") and \
        f"trained on {run['config']['data_digest']})" in other.stderr, other.stderr


def test_evaluate_says_when_the_data_holds_fewer_instances_than_the_run_s_limit(tmp_path):
    from sklearn.datasets import dump_svmlight_file
    d = load_dataset("digits")
    train_file, test_file = tmp_path / "train.svm", tmp_path / "test.svm"
    dump_svmlight_file(d.X_train[:400], d.y_train[:400], str(train_file), zero_based=False)
    dump_svmlight_file(d.X_test, d.y_test, str(test_file), zero_based=False)
    train(tmp_path, "m", "--iters", 1, "--hidden", 8, "--train-limit", 300, "--data",
          "svmlight", "--data-path", f"{train_file},{test_file}")
    lines = train_file.read_text().splitlines(keepends=True)
    train_file.write_text("".join(lines[:100]))            # the training file, cut since
    p = cli("evaluate", "--model", tmp_path / "m.npz")
    assert p.returncode == 0 and "is not the data" in p.stderr, p.stderr
    assert "on svmlight (all 100 training instances, --train-limit 300): " in p.stdout, p.stdout


def test_a_run_on_the_first_k_instances_is_recorded_resumed_and_evaluated_so(tmp_path):
    """--train-limit K is in the run's config, in its checkpoint (a resume without it, or
    with another K, is refused) and in its saved model (evaluate's train accuracy and f are
    on the same K instances as the run's)."""
    ck, small = tmp_path / "ck", ("--hidden", "8", "--train-limit", 300)
    run = train(tmp_path, "k", "--iters", 2, "--checkpoint", ck, *small)
    assert run["config"]["train_limit"] == 300
    line = one_line_error(cli("train", "--iters", 3, "--hidden", 8, "--resume", ck))
    assert "its --train-limit is 300, this run's none" in line, line
    line = one_line_error(cli("train", "--iters", 3, "--resume", ck, "--hidden", 8,
                              "--train-limit", 200))
    assert "its --train-limit is 300, this run's 200" in line, line
    p = cli("evaluate", "--model", tmp_path / "k.npz", "--json", tmp_path / "k-evaluated.json")
    assert p.returncode == 0, p.stderr
    assert "on digits (its first 300 training instances): " in p.stdout, p.stdout
    got = json.loads((tmp_path / "k-evaluated.json").read_text())
    assert (got["train_limit"], got["train_instances"]) == (300, 300)
    assert (got["train_accuracy"], got["objective"]) == (run["final"]["train_accuracy"],
                                                         run["final"]["objective"])
    # a K at or above l is no limit; a digits model saved with a path (before --data-path
    # was refused for digits) still evaluates on the bundled set
    whole = train(tmp_path, "w", "--iters", 1, "--hidden", 8, "--train-limit", 10**6,
                  "--checkpoint", tmp_path / "ck2")
    assert whole["config"]["train_limit"] is None
    assert cli("train", "--iters", 2, "--hidden", 8, "--resume", tmp_path / "ck2").returncode == 0
    with np.load(tmp_path / "k.npz") as z:
        np.savez(tmp_path / "old.npz", **{**{k: z[k] for k in z.files}, "data_path": "/x"})
    p = cli("evaluate", "--model", tmp_path / "old.npz")
    assert p.returncode == 0 and "test accuracy" in p.stdout, p.stderr


@pytest.mark.parametrize("n", [1, 4])
def test_saved_weights_evaluate_to_the_runs_final_values(tmp_path, svmlight_digits, n,
                                                         four_ranks):
    if n == 1:
        where, run = tmp_path, train(tmp_path, "full", "--iters", 5, "--hidden", "32",
                                     "--eval-batch", 300)    # f summed in 5 batches
    else:
        where, run, _ = four_ranks
    p = cli("evaluate", "--model", where / "full.npz", "--data", "digits", "--json",
            tmp_path / "evaluated.json")
    assert p.returncode == 0, p.stderr
    got = json.loads((tmp_path / "evaluated.json").read_text())
    assert f", float64, on digits: test accuracy {got['test_accuracy']:.4f}," in p.stdout
    final = run["final"]
    assert got["test_accuracy"] == final["test_accuracy"]
    assert got["train_accuracy"] == final["train_accuracy"]
    if n == 1:
        assert got["objective"] == final["objective"]
    else:              # f summed over the blocks of a grid, in another order
        assert relative(got["objective"], final["objective"]) < 1e-12
    network = f"{where / 'full.npz'} is a {'-'.join(map(str, run['config']['layers']))} network"
    line = one_line_error(cli("evaluate", "--model", where / "full.npz", "--data",
                              "svmlight", "--data-path", svmlight_digits[2]))
    assert line == f"error: {network} (64 features, 10 classes); data set svmlight has 70 " \
                   "features", line
    narrow = Path(svmlight_digits[1])        # feature 64 zero on every line, so not in it
    line = one_line_error(cli("evaluate", "--model", where / "full.npz", "--data",
                              "svmlight", "--data-path", narrow))
    assert line.endswith("data set svmlight has 63 features (svmlight files are sparse: if its "
                         "last features are zero on every line, write 64:0 on a line of each "
                         "file, or 63:0 where it numbers features from 0)"), line
    first, rest = narrow.read_text().split("\n", 1)
    (tmp_path / "narrow64.svm").write_text(f"{first} 64:0\n{rest}")      # as the hint says
    p = cli("evaluate", "--model", where / "full.npz", "--data", "svmlight", "--data-path",
            tmp_path / "narrow64.svm")
    assert p.returncode == 0 and "test accuracy" in p.stdout, p.stderr
    digits = [str(c) for c in range(10)]                # the label of each output unit
    assert got["classes"] == run["config"]["classes"] == digits
    with np.load(where / "full.npz") as z:
        assert z["classes"].tolist() == digits
    if n == 1:           # the same shapes, other labels: the output units would mean others
        from sklearn.datasets import dump_svmlight_file, load_svmlight_file
        paths = svmlight_digits[0].split(",")
        for path, name in zip(paths, ("train10.svm", "test10.svm")):
            X, y = load_svmlight_file(path)
            dump_svmlight_file(X, y + 1, str(tmp_path / name), zero_based=False)
        line = one_line_error(cli("evaluate", "--model", where / "full.npz", "--data",
                                  "svmlight", "--data-path",
                                  f"{tmp_path / 'train10.svm'},{tmp_path / 'test10.svm'}"))
        assert "output units stand for the classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 of" in line \
            and "has the classes 1, 2, 3, 4, 5, 6, 7, 8, 9, 10: its accuracy would" in line, line
        for path, name in zip(paths, ("train789.svm", "test789.svm")):   # some classes only
            X, y = load_svmlight_file(path)
            dump_svmlight_file(X[y >= 7], y[y >= 7], str(tmp_path / name), zero_based=False)
        some = cli("evaluate", "--model", where / "full.npz", "--data", "svmlight",
                   "--data-path", f"{tmp_path / 'train789.svm'},{tmp_path / 'test789.svm'}",
                   "--json", tmp_path / "some.json")
        assert some.returncode == 0, some.stderr      # labels 7, 8, 9 are units 7, 8, 9
        assert json.loads((tmp_path / "some.json").read_text())["test_accuracy"] > 0.5  # ~0 if not
        saved = dict(np.load(where / "full.npz"))
        np.savez(where / "older.npz", **{k: v for k, v in saved.items() if k != "classes"})
        older = cli("evaluate", "--model", where / "older.npz", "--data", "svmlight",
                    "--data-path", f"{tmp_path / 'train10.svm'},{tmp_path / 'test10.svm'}")
        assert older.returncode == 0 and "test accuracy" in older.stdout, older.stderr
        assert "older.npz records no classes (saved before models did): whether data set " \
            "svmlight labels its classes as the data it was trained on cannot be checked" \
            in older.stderr, older.stderr
        saved["classes"] = np.array(list("ABCDEFGHIJ"))     # names, as mlbench's: in order
        np.savez(where / "named.npz", **saved)
        named = cli("evaluate", "--model", where / "named.npz", "--data", "digits")
        assert named.returncode == 0 and "classes A, B, C, D, E, F, G, H, I, J of the data " \
            "it was trained on; data set digits has the classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9: " \
            "compared in this order" in named.stderr, named.stderr
    line = one_line_error(cli("evaluate", "--model", where / "full.json"))
    assert "cannot read a model" in line and "not an .npz file" in line, line
    np.savez(where / "block.npz", theta=np.zeros(3))          # a checkpoint's block
    np.savez(where / "other.npz", theta=np.zeros(3), layers=[1, 2])
    line = one_line_error(cli("evaluate", "--model", where / "block.npz"))
    assert "one rank's block of a checkpoint" in line and "--resume" in line, line
    line = one_line_error(cli("evaluate", "--model", where / "other.npz"))
    assert "not a model saved by train --save (no activation, loss, C," in line, line
    saved = dict(np.load(where / "full.npz"))
    saved["theta"][[0, 5]] = np.nan, np.inf                   # as from a run that diverged
    np.savez(where / "diverged.npz", **saved)
    line = one_line_error(cli("evaluate", "--model", where / "diverged.npz"))
    assert f"2 of its {saved['theta'].size} weights are NaN or infinite" in line, line
    line = one_line_error(cli("evaluate", "--model", where / "full.npz", "--json",
                              tmp_path / "evaluated.json"))
    assert "evaluated.json exists; pass --overwrite" in line, line


@pytest.mark.parametrize("grid", [{}, [], {"layers": [64, 10], "splits": None},
                                  {"layers": [64, "a", 10], "splits": None, "ranks": 1},
                                  {"layers": [64, 64, 10], "splits": [1, 2], "ranks": 2},
                                  {"layers": [64, 64, 10], "splits": [1, 2, 1], "ranks": 9}])
def test_a_malformed_grid_in_the_state_is_one_line(tmp_path, grid):
    ck = tmp_path / "ck"
    train(tmp_path, "first", "--iters", 1, "--checkpoint", ck)
    state = ck / "step-000001" / "state.json"
    saved = json.loads(state.read_text())
    saved["grid"] = grid
    state.write_text(json.dumps(saved))
    line = one_line_error(cli("train", "--iters", 2, "--resume", ck))
    assert "its grid is not layers, splits and ranks" in line


@pytest.mark.parametrize("n", [1, 3])
def test_float32_resumes_bit_for_bit_and_evaluates_in_float32(tmp_path, n):
    """--dtype float32: the checkpoint's blocks are float32 and resume the run bit for bit;
    resuming it in float64 is refused; its saved weights evaluate (in float32, the dtype
    saved with them) to the run's final values."""
    f32 = ("--dtype", "float32", "--hidden", "16")
    full = train(tmp_path, "full", *f32, "--iters", 4, n=n)
    assert full["config"]["objective.dtype"] == "float32"
    train(tmp_path, "first", *f32, "--iters", 2, "--checkpoint", tmp_path / "ck", n=n)
    resumed = train(tmp_path, "resumed", *f32, "--iters", 4, "--resume", tmp_path / "ck", n=n)
    assert trajectory(resumed) == trajectory(full)
    assert theta(tmp_path, "resumed").dtype == np.float32
    assert np.array_equal(theta(tmp_path, "resumed"), theta(tmp_path, "full"))
    if n > 1:
        return
    line = one_line_error(cli("train", "--hidden", "16", "--iters", 4, "--resume",
                              tmp_path / "ck"))
    assert "dtype is float32, this run's float64" in line, line
    p = cli("evaluate", "--model", tmp_path / "full.npz", "--json", tmp_path / "e.json")
    assert p.returncode == 0 and ", float32, on digits" in p.stdout, p.stderr
    got = json.loads((tmp_path / "e.json").read_text())
    assert got["objective"] == full["final"]["objective"] and got["dtype"] == "float32"
    assert got["test_accuracy"] == full["final"]["test_accuracy"]


@pytest.mark.parametrize("raised, status", [(None, "finished"), (KeyboardInterrupt, "interrupted"),
                                            (RuntimeError, "failed")])
def test_a_json_rewritten_during_a_run_says_how_the_run_ended(tmp_path, raised, status):
    """``JsonSaver`` as a context: the last result written stays as it is when the run
    finishes; when the run raises, it is written again with the status the run ended in."""
    from dnewton_core.outputs import LAST_WORDS
    path = tmp_path / "run.json"
    partial = {"history": [{"iter": 1}], "final": {"status": "running", "objective": 0.5}}
    try:
        with outputs.JsonSaver(str(path), overwrite=False) as saver:
            saver(partial)
            if raised is None:
                saver({**partial, "final": {**partial["final"], "status": "finished"}})
            else:
                raise raised
    except (KeyboardInterrupt, RuntimeError):
        pass
    assert json.loads(path.read_text()) == {**partial, "final": {**partial["final"],
                                                                 "status": status}}
    assert not LAST_WORDS                                # nothing left to say after the run
