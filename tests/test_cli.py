"""The command line on one process: train, compare, help, and errors as one line."""
import json
import os
import subprocess
import sys

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


@pytest.mark.parametrize("args,needle", [
    (["--C", "abc"], "--C"),
    (["--subsample", "0"], "subsample"),
    (["--activation", "softsign"], "softsign"),
    (["--splits", "1,2"], "entries"),
    (["--gn", "diag"], "mpiexec"),
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
