"""The command line on one process: train, compare, help, and errors as one line."""
import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "dnewton_core", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def test_train_prints_one_line_per_iteration_and_writes_json(tmp_path):
    out = tmp_path / "r.json"
    p = cli("train", "--iters", 4, "--hidden", "16", "--json", out)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    rows = [line for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3, 4]
    r = json.loads(out.read_text())
    assert set(r) == {"config", "history", "final"}
    assert r["config"]["newton.iters"] == 4 and r["config"]["layers"] == [64, 16, 10]
    assert len(r["history"]) == 4
    for key in ("objective", "grad_norm", "cg_iters", "lambda", "alpha", "ratio",
                "train_accuracy", "test_accuracy", "wall_time"):
        assert key in r["history"][0]
    assert r["final"]["test_accuracy"] == r["history"][-1]["test_accuracy"]
    # the printed test accuracy of the last iteration is the JSON's
    assert float(rows[-1].split()[6]) == pytest.approx(r["final"]["test_accuracy"], abs=1e-4)
    # one process sends nothing: no megabytes per iteration, none in total
    assert [row.split()[8] for row in rows] == ["-"] * 4
    assert "0.000 MB sent (all ranks)" in p.stdout.split("final:")[1]


def test_a_run_no_better_than_the_most_frequent_class_is_warned():
    """140 digits with C = 0.01 l = 1.4 keep every weight near zero (a tester's wine set
    did so silently); C = 1 l trains, and says nothing."""
    import types

    import numpy as np

    from dnewton_core.data import load_dataset
    from dnewton_core.experiment import learned_nothing  # what compare warns of too
    majority = np.bincount(load_dataset("digits").y_train[:140]).max() / 140
    flat = cli("train", "--train-limit", 140, "--C", "0.01l", "--iters", 5)
    assert flat.returncode == 0, flat.stderr
    accuracy = float(flat.stdout.split("final: test accuracy")[1].split("train accuracy ")[1]
                     .split(",")[0])
    assert accuracy <= majority
    assert f"warning: train accuracy {accuracy:.4f} is no better than always answering the " \
        f"most frequent class ({majority:.4f} of the training instances)" in flat.stderr
    assert "C = 1.4 (0.01 l) may hold the weights near zero: try a larger --C such as 1l; " \
        "or check the iterations (--iters)" in flat.stderr, flat.stderr
    trained = cli("train", "--train-limit", 140, "--C", "1l", "--iters", 5)
    assert trained.returncode == 0 and "warning" not in trained.stderr, trained.stderr
    p = types.SimpleNamespace(majority=0.5, data=types.SimpleNamespace(n_train=100))
    sgd = {"final": {"train_accuracy": 0.5, "objective": 1.0},
           "config": {"optimizer": "sgd", "C": 200.0}, "history": [{"objective": 2.0}]}
    assert ". Check the learning rate (--lr) (docs" in learned_nothing(sgd, p)   # C > l: not C
    small = dict(sgd, config={"optimizer": "sgd", "C": 10.0})
    assert ". C = 10 (0.1 l) may hold the weights near zero: try a larger --C such as 1l; or " \
        "check the learning rate (--lr) (docs" in learned_nothing(small, p)
    grew = dict(small, final={"train_accuracy": 0.5, "objective": 1.1e112})
    assert ". The objective rose from 2 to 1.1e+112: try a smaller --lr (docs" in \
        learned_nothing(grew, p)
    assert learned_nothing(dict(sgd, final={"train_accuracy": 0.51}), p) is None
    assert learned_nothing(dict(sgd, final={"train_accuracy": None}), p) is None   # diverged
    assert learned_nothing(dict(sgd, final={"train_accuracy": 0.1, "status": "diverged"}),
                           p) is None


def test_train_refuses_to_overwrite_a_saved_result(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("precious")
    p = cli("train", "--iters", 1, "--json", out)
    assert p.returncode == 2 and "exists" in p.stderr and "--overwrite" in p.stderr
    assert out.read_text() == "precious"
    assert cli("train", "--iters", 1, "--hidden", "8", "--json", out, "--overwrite").returncode == 0
    assert json.loads(out.read_text())["history"]


def test_sgd_and_C_as_multiple_of_l(tmp_path):
    out = tmp_path / "s.json"
    p = cli("train", "--optimizer", "sgd", "--epochs", 2, "--hidden", "8", "--C", "0.5l",
            "--json", out)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["config"]["C"] == pytest.approx(0.5 * 1438) and len(r["history"]) == 2


def test_compare_writes_table_json_and_figure(tmp_path):
    p = cli("compare", "--iters", 3, "--epochs", 2, "--hidden", "8", "--out", tmp_path / "c")
    assert p.returncode == 0, p.stderr
    assert "newton-full" in p.stdout and "sgd" in p.stdout
    results = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert set(results) == {"newton-full", "sgd"}
    png = (tmp_path / "c" / "accuracy_vs_time.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # one process with --splits: the diagonal G of those blocks too, as train --gn diag has it
    p = cli("compare", "--iters", 3, "--epochs", 1, "--hidden", "8", "--splits", "2,1,1",
            "--out", tmp_path / "d")
    assert p.returncode == 0, p.stderr
    assert "one process (dense model), diag Gauss-Newton on the blocks of splits 2,1,1\n" in \
        p.stdout, p.stdout
    assert "unused" not in p.stdout
    p = cli("train", "--iters", 1, "--hidden", "8", "--splits", "2,1,1", "--train-limit", 10**6)
    assert p.returncode == 0 and ", full Gauss-Newton, all 1438 training instances (--train-limit "\
        "1000000) (--splits unused: one process has no grid; --gn diag takes its blocks)\n" in \
        p.stdout, p.stdout
    diag = json.loads((tmp_path / "d" / "compare.json").read_text())["newton-diag"]
    assert diag["config"]["gn"] == "diag" and len(diag["history"]) == 3
    assert "error: compare: unrecognized arguments: --gn diag (see python -m dnewton_core " \
        "compare --help)" in cli("compare", "--gn", "diag").stderr


@pytest.mark.parametrize("args,needle", [
    (["--C", "abc"], "--C"),
    (["--subsample", "0"], "error: --subsample 0.0 must be in (0, 1]"),
    (["--optimizer", "sgd", "--lr", "-1"], "error: --lr -1.0 must be > 0"),
    (["--json", "same.out", "--save", "same.out"], "same.out: it is given for two outputs"),
    (["--activation", "softsign"], "softsign"),
    (["--splits", "1,2"], "entries"),
    (["--gn", "diag"], "mpiexec"),
    (["--dtype", "float16"], "--dtype: invalid choice: 'float16' (choose from 'float64', 'float32')"),
    (["--network", "-5:10"], "expected at least one argument (a value that starts with '-' is "
                             "given as --network=VALUE)"),
    (["--hidden", " , "], "--hidden: expected comma-separated integers, got ' , ' (see "),
])
def test_bad_settings_are_one_line_errors(args, needle):
    p = cli("train", "--iters", 1, *args)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr
    assert "Traceback" not in p.stderr


def test_help_explains_the_options():
    p = cli("train", "--help")
    assert p.returncode == 0
    for flag in ("--splits", "--gn", "--sync", "--subsample", "--lr", "--json"):
        assert flag in p.stdout


# -- outputs: checked before the first iteration, written atomically -----------------------

def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _fails_on_path(p, started, path):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert time.monotonic() - started < 10
    assert len(p.stderr.strip().splitlines()) == 1 and str(path) in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "iter" not in p.stdout


@pytest.mark.parametrize("case", ["proc", "parent_file", "grandparent_file", "directory",
                                  "read_only"])
def test_bad_json_path_is_refused_before_training(tmp_path, case):
    (tmp_path / "afile").write_text("x")
    path = {"proc": "/proc/x.json", "parent_file": tmp_path / "afile" / "x.json",
            "grandparent_file": tmp_path / "afile" / "sub" / "x.json",
            "directory": tmp_path, "read_only": tmp_path / "ro" / "x.json"}[case]
    if case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only directory")
        (tmp_path / "ro").mkdir(mode=0o555)
    before = _files(tmp_path)
    t = time.monotonic()
    p = cli("train", "--iters", 1000, "--json", path, timeout=60)
    _fails_on_path(p, t, path)
    assert _files(tmp_path) == before and not os.path.exists("/proc/x.json")


@pytest.mark.parametrize("command", ["compare", "reproduce"])
def test_out_directory_that_is_a_file_is_refused_before_training(tmp_path, command):
    out = tmp_path / "out"
    out.write_text("precious")
    t = time.monotonic()
    p = cli(command, "--iters", 50, "--epochs", 50, "--out", out, timeout=60)
    _fails_on_path(p, t, out)
    assert _files(tmp_path) == ["out"] and out.read_text() == "precious"


def test_compare_refuses_to_replace_an_existing_figure(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    figure = out / "accuracy_vs_time.png"
    figure.write_bytes(b"someone's figure")
    t = time.monotonic()
    p = cli("compare", "--iters", 50, "--epochs", 50, "--out", out, timeout=60)
    _fails_on_path(p, t, figure)
    assert "--overwrite" in p.stderr
    assert figure.read_bytes() == b"someone's figure" and _files(out) == [figure.name]


def test_json_is_rewritten_each_iteration_and_survives_sigkill(tmp_path):
    out = tmp_path / "f.json"
    proc = subprocess.Popen([sys.executable, "-m", "dnewton_core", "train", "--iters", "1000",
                             "--json", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline, seen = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                seen = json.loads(out.read_text())   # atomic: never half a file
                if len(seen["history"]) >= 2:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = json.loads(out.read_text())
    assert set(r) == {"config", "history", "final"} and len(r["history"]) >= 2
    assert r["final"]["status"] == "running" and r["config"]["newton.iters"] == 1000
    assert [h["iter"] for h in r["history"]] == list(range(1, len(r["history"]) + 1))
    assert r["final"]["test_accuracy"] == r["history"][-1]["test_accuracy"]


def appears_during_the_run(path, *outputs):
    """A short train run writing ``outputs``; once its header says training starts,
    someone else writes ``path``. Returns (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "dnewton_core", "train", "--iters", "2",
                             "--hidden", "8", "--cg-max", "3", "--slow-rank", "0:0.4",
                             *map(str, outputs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        for line in proc.stdout:                 # the header: checks done, training starts
            if line.split()[:2] == ["iter", "f"]:
                break
        path.write_text("someone else's")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_json_that_appears_during_the_run_is_not_replaced(tmp_path):
    out = tmp_path / "f.json"
    code, err = appears_during_the_run(out, "--json", out)
    assert code == 2 and "appeared during the run" in err and str(out) in err
    assert out.read_text() == "someone else's"


def test_weights_that_cannot_be_saved_leave_a_finished_json_and_one_error(tmp_path):
    out, weights = tmp_path / "f.json", tmp_path / "w.npz"
    code, err = appears_during_the_run(weights, "--json", out, "--save", weights)
    assert code == 2 and err.strip() == (
        f"error: --save {weights} not written: {weights} appeared during the run; pass "
        "--overwrite to replace it"), err
    assert weights.read_text() == "someone else's"
    assert json.loads(out.read_text())["final"]["status"] == "finished"


# -- runs that fail numerically end as results ---------------------------------------------

def test_diverging_sgd_exits_3_and_keeps_its_history(tmp_path):
    out = tmp_path / "r.json"
    p = cli("train", "--optimizer", "sgd", "--lr", 1e6, "--epochs", 5, "--hidden", "8",
            "--json", out)
    assert p.returncode == 3, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "diverged at epoch 1" in p.stderr
    assert "Traceback" not in p.stderr
    r = json.loads(out.read_text())
    assert set(r) == {"config", "history", "final"}
    assert r["final"]["status"] == "diverged" and r["final"]["diverged_at"] == 1
    assert len(r["history"]) == 1 and r["history"][-1]["diverged"] is True


@pytest.mark.parametrize("args", [["--iters", 0], ["--optimizer", "sgd", "--epochs", 0]])
def test_empty_runs_end_normally_and_write_json(tmp_path, args):
    out = tmp_path / "r.json"
    p = cli("train", *args, "--hidden", "8", "--json", out)
    assert p.returncode == 0, p.stderr
    step = "epoch" if "sgd" in args else "iteration"
    assert f"final: no {step} run: nothing to measure\n" in p.stdout, p.stdout
    assert "Traceback" not in p.stderr
    r = json.loads(out.read_text())
    assert r["history"] == [] and r["final"]["status"] == "finished"


@pytest.mark.parametrize("args", [["--lambda0", "1e308"], ["--C", "1e-300"]])
def test_non_finite_newton_exits_3_without_nan_accuracy(tmp_path, args):
    out = tmp_path / "r.json"
    p = cli("train", "--iters", 3, "--hidden", "8", *args, "--json", out)
    assert p.returncode == 3, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "diverged at iteration 1: non-finite" in p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.split()[:1] == ["1"]]
    assert len(rows) == 1 and rows[0][6] != "nan"
    assert "nan" not in p.stdout.split("final:")[1].split(", f")[0]
    r = json.loads(out.read_text())
    assert r["final"]["status"] == "diverged" and r["history"][-1]["diverged"] is True
    assert r["final"]["test_accuracy"] is not None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lambda_stops_at_its_bound_and_the_run_finishes(tmp_path, dtype):
    """newton.LAMBDA_MAX: a run whose lambda is boosted past the bound (float32's CG
    products overflowed near 1e36) stays at it and finishes, status 0."""
    out = tmp_path / "r.json"
    p = cli("train", "--iters", 40, "--hidden", "8", "--lambda0", "1e18", "--dtype", dtype,
            "--json", out)
    assert p.returncode == 0, p.stderr
    lambdas = [r["lambda"] for r in json.loads(out.read_text())["history"]]
    assert max(lambdas) == 1e20 and json.loads(out.read_text())["final"]["status"] == "finished"


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_non_finite_constant_is_a_config_error(value):
    p = cli("train", "--iters", 3, "--lambda0", value)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "lambda0" in p.stderr


def test_compare_keeps_the_other_runs_when_sgd_diverges(tmp_path):
    p = cli("compare", "--iters", 2, "--epochs", 3, "--hidden", "8", "--lr", 1e6,
            "--out", tmp_path / "c")
    assert p.returncode == 0, p.stderr
    results = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert results["sgd"]["final"]["status"] == "diverged"
    assert results["newton-full"]["final"]["status"] == "finished"
    assert len(results["newton-full"]["history"]) == 2
    assert (tmp_path / "c" / "accuracy_vs_time.png").read_bytes()[:4] == b"\x89PNG"


def test_reproduce_keeps_a_diverged_newton_run(tmp_path):
    from dnewton_core.study import records
    out = tmp_path / "study"
    p = cli("reproduce", "--settings", "newton-full:0.05,sgd:0.01", "--seeds", 1,
            "--iters", 2, "--epochs", 1, "--lambda0", 1e308, "--out", out)
    assert p.returncode == 0, p.stderr
    rows = {r["method"]: r for r in records.read_runs(out / "runs.csv")}
    assert rows["newton-full"]["diverged"] is True and rows["sgd"]["diverged"] is False
    assert _files(out) == sorted(["runs.csv", "curves.csv", "summary.md",
                                  "accuracy_vs_time.png", "robustness.png"])


def test_reproduce_continue_runs_only_what_is_missing(tmp_path):
    """A study run in two parts (--continue) has the rows of one run in one part."""
    from dnewton_core.study import records, runner
    study = ("reproduce", "--settings", "newton-full:0.05,sgd:0.01", "--iters", 2,
             "--epochs", 1, "--hidden", 8)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert cli(*study, "--seeds", 2, "--out", whole).returncode == 0
    assert cli(*study, "--seeds", 1, "--out", parts).returncode == 0
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue")
    assert p.returncode == 0, p.stderr
    assert "(2 finished before: --continue)" in p.stdout
    assert [line.split("]")[0] for line in p.stdout.splitlines() if line.startswith("[")] \
        == ["[  3/4", "[  4/4"]
    kept = ("run", "setting", "seed", "iterations", "objective", "test_accuracy", "bytes_total")
    one, two = records.read_runs(whole / "runs.csv"), records.read_runs(parts / "runs.csv")
    assert [[r[k] for k in kept] for r in two] == [[r[k] for k in kept] for r in one]
    curve = lambda path: [(c["run"], c["iter"], c["objective"])
                          for c in records.read_runs(path / "curves.csv")]
    assert curve(parts) == curve(whole)
    assert "it continued 2 runs finished before (--continue)" in \
        (parts / "summary.md").read_text()
    assert [r["part"] for r in two] == [1, 1, 2, 2] and "part 2, runs 3-4 from " in \
        (parts / "summary.md").read_text()

    before = (parts / "runs.csv").read_bytes()
    settings = ("reproduce", "--settings", "newton-full:0.05,sgd:0.01", "--hidden", 8)
    for changed, message in (
            (("--iters", 3, "--epochs", 1, "--seeds", 2), "budget is '2', this study's is '3' (--iters)"),
            (("--iters", 2, "--epochs", 1, "--seeds", 1), "line 4: 'newton-full S=5%' seed 1 is not a run"),
            (("--iters", 2, "--epochs", 1, "--seeds", 2, "--activation", "tanh"),
             "line 2: options is 'relu squared eval_batch=4096"),
            (("--iters", 2, "--epochs", 1, "--seeds", 2, "--overwrite"), "choose one")):
        p = cli(*settings, *changed, "--out", parts, "--continue")
        assert p.returncode == 2 and message in p.stderr, (changed, p.stderr)
    assert (parts / "runs.csv").read_bytes() == before
    p = cli(*study, "--seeds", 2, "--out", tmp_path / "none", "--continue")
    assert p.returncode == 2 and "does not exist: no study to continue" in p.stderr
    assert not (tmp_path / "none").exists()
    charged = cli(*study, "--seeds", 1, "--out", tmp_path / "cut2", "--network", "10gbe")
    assert charged.returncode == 0 and (tmp_path / "cut2" / "accuracy_vs_modeled_time.png").exists()
    replaced = cli(*study, "--seeds", 1, "--out", tmp_path / "cut2", "--overwrite")
    assert replaced.returncode == 0 and "removed " in replaced.stdout
    assert sorted(os.listdir(tmp_path / "cut2")) == sorted(runner.OUTPUTS)   # none of the old
    (tmp_path / "mine").mkdir()     # a directory of other files is no study to continue
    (tmp_path / "mine" / "summary.md").write_text("my notes")
    p = cli(*study, "--seeds", 1, "--out", tmp_path / "mine", "--continue")
    assert p.returncode == 2 and "no study to continue" in p.stderr
    assert (tmp_path / "mine" / "summary.md").read_text() == "my notes"
    (tmp_path / "cut").mkdir()      # a study stopped before its first run ended: runs it all
    p = cli(*study, "--seeds", 1, "--out", tmp_path / "cut", "--continue")
    assert p.returncode == 0 and len(records.read_runs(tmp_path / "cut" / "runs.csv")) == 2, \
        p.stderr
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue", "--network", "10gbe")
    assert p.returncode == 2 and "has no column 'modeled_time_10gbe'" in p.stderr, p.stderr
    (parts / "runs.csv").write_text(before.decode().replace(
        f",{records.read_runs(parts / 'runs.csv')[0]['test_accuracy']!r},", ",abc,", 1))
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue")
    assert p.returncode == 2 and "line 2: " in p.stderr and "is 'abc', not a number" in \
        p.stderr, p.stderr
    table = list(csv.reader(io.StringIO(before.decode())))       # run 4 back in part 1
    table[4][table[0].index("part")] = "1"
    with open(parts / "runs.csv", "w", newline="") as f:
        csv.writer(f).writerows(table)
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue")
    assert p.returncode == 2 and "line 5: part is 1, after 2: parts are whole numbers" in \
        p.stderr, p.stderr
    (parts / "runs.csv").write_bytes(before)
    curves = (parts / "curves.csv").read_text().splitlines(keepends=True)
    (parts / "curves.csv").write_text("".join(curves[:-1]))        # cut inside run 4's rows
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue")
    assert p.returncode == 2 and "has 0 rows of run 4" in p.stderr, p.stderr
    (parts / "runs.csv").write_text("seed,accuracy\n0,0.5\n")     # not a study's file
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue")
    assert p.returncode == 2 and "has no column 'run'" in p.stderr, p.stderr
    (parts / "curves.csv").unlink()
    p = cli(*study, "--seeds", 2, "--out", parts, "--continue")
    assert p.returncode == 2 and "curves.csv is not: the runs' curves are lost" in p.stderr


def test_compare_prints_progress_per_method_and_iteration(tmp_path):
    p = cli("compare", "--iters", 3, "--epochs", 2, "--hidden", "8", "--out", tmp_path / "c")
    assert p.returncode == 0, p.stderr
    for line in ("newton-full iteration 3: f", "sgd epoch 2: f"):
        assert line in p.stdout


def test_hidden_widths_default_by_data_set_as_the_studies():
    from dnewton_core.options import parser, with_defaults
    hidden = lambda *argv: with_defaults(parser().parse_args(argv)).hidden   # noqa: E731
    assert hidden("train") == (64, 64)
    assert hidden("train", "--data", "satimage") == (300, 300)
    assert hidden("compare", "--data", "fashion-mnist") == (300, 300)
    assert hidden("project", "--data", "svmlight") == (300, 300)
    assert hidden("train", "--data", "letter", "--hidden", "8") == (8,)
    assert hidden("reproduce", "--data", "dna") is None            # its plan chooses
    assert hidden("train", "--hidden", "none") == ()                # said, not by accident
    p = cli("train", "--hidden", "")
    assert p.returncode == 2 and "--hidden: expected widths such as 300,300, or none" in p.stderr


def test_the_other_optimizer_s_options_are_named_as_unused():
    p = cli("train", "--optimizer", "sgd", "--epochs", 0, "--iters", 3, "--xi", "0.2",
            "--hidden", "8")
    assert p.returncode == 0, p.stderr
    assert p.stderr == "warning: --iters, --xi: newton's options, unused by this sgd run\n"
    p = cli("train", "--iters", 0, "--lr=0.1", "--mom", "0.5", "--hidden", "8")  # abbreviated
    assert p.stderr == "warning: --lr, --momentum: sgd's options, unused by this newton run\n"
    assert cli("train", "--iters", 0, "--hidden", "8").stderr == ""
    assert cli("train", "--iters", 0, "--epochs", 20, "--hidden", "8").stderr == ""  # default
    p = cli("train", "--iters", 0, "--lr=0.1", "--checkpoint-every", 2, "--hidden", "8")
    assert p.stderr == ("warning: --lr: sgd's option, unused by this newton run; "
                        "--checkpoint-every: unused without --checkpoint\n")


@pytest.mark.parametrize("command", ["module", "script"])
def test_every_way_to_start_gives_each_rank_one_blas_thread(command):
    """``python -m dnewton_core`` and the installed ``dnewton`` command set the BLAS threads
    to 1 where the user did not: 2 ranks with a thread per core each would be warned of."""
    from dnewton_core.environment import BLAS_THREADS, find_mpiexec, local_environment
    script = os.path.join(os.path.dirname(sys.executable), "dnewton")
    if command == "script" and not os.path.exists(script):
        pytest.skip("no dnewton command next to python (the kit is not installed)")
    start = [sys.executable, "-m", "dnewton_core"] if command == "module" else [script]
    env = {k: v for k, v in local_environment().items() if k not in BLAS_THREADS}
    launch = [find_mpiexec(), "-n", "2"]          # mpiexec itself: the kit's launcher sets them
    p = subprocess.run([*launch, *start, "train", "--iters", "0", "--hidden", "8"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0 and "BLAS thread" not in p.stderr, p.stderr
    p = subprocess.run([*launch, *start, "train", "--iters", "0", "--hidden", "8"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(env, OMP_NUM_THREADS="4"))        # the user's choice is kept
    assert "2 ranks with 4 BLAS thread(s) each" in p.stderr, p.stderr


def test_no_output_is_written_over_a_file_the_run_reads(tmp_path):
    """Nor over a file in a named set's directory (a tester's `--json DIR/pendigits.t
    --overwrite` replaced the test file with JSON), in any of its variants, nor over the data
    or the model that evaluate reads."""
    d, rows = tmp_path / "pd", "".join(f"{i % 3} 1:{i % 7} 2:{i % 5}\n" for i in range(30))
    d.mkdir()
    for name in ("pendigits", "pendigits.t", "pendigits.t.gz"):
        (d / name).write_bytes(gzip.compress(rows.encode()) if name.endswith(".gz")
                               else rows.encode())
    run = ("train", "--data", "pendigits", "--data-path", d, "--hidden", "4", "--iters", 1)
    for target in (d / "pendigits.t", d / "pendigits.t.gz"):
        p = cli(*run, "--json", target, "--overwrite")
        assert p.returncode == 2 and p.stderr.splitlines() == [
            f"error: cannot write {target}: it is a file this run reads"], p.stderr
    assert (d / "pendigits.t").read_text() == rows
    assert cli(*run, "--save", tmp_path / "m.npz").returncode == 0
    for target in (d / "pendigits", tmp_path / "m.npz"):
        p = cli("evaluate", "--model", tmp_path / "m.npz", "--json", target, "--overwrite")
        assert p.returncode == 2 and p.stderr.splitlines() == [
            f"error: cannot write {target}: it is a file this run reads"], p.stderr
    assert (d / "pendigits").read_text() == rows
    p = cli(*run, "--json", d / "pendigits.bz2", "--overwrite")       # none there: read next
    assert p.returncode == 2 and "pendigits.bz2: it is a file this run reads" in p.stderr
