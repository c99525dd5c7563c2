"""The command line under mpiexec: ledger against the closed forms, the sync fraction with a
slow rank, and errors that end the whole job quickly with one clear message.

Every job runs in a subprocess with a timeout, so a hang fails the test instead of CI.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnewton_core import costs, environment, polling
from dnewton_core.data import load_dataset
from dnewton_core.environment import local_environment, local_launch
from dnewton_core.ledger import training_bytes
from dnewton_core.newton import NewtonConfig
from dnewton_core.partition import Grid

ENV = local_environment()          # one BLAS thread per rank, MPI on loopback only
HERE = Path(__file__).parent


def mpirun(n, *args, timeout=120, script=None):
    cmd = local_launch(n) + [sys.executable]
    cmd += [str(script)] if script else ["-m", "dnewton_core"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def run_json(tmp_path, n, *args):
    """(the JSON of a train run that must succeed, its standard output)."""
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}.json"
    p = mpirun(n, "train", "--json", out, *args)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text()), p.stdout


def train_json(tmp_path, n, *args):
    return run_json(tmp_path, n, *args)[0]


L_DIGITS = len(load_dataset("digits").y_train)


def expected_iteration(grid, rec, loss, gn, sync, S, batch, first, kept, dtype="float64"):
    """What docs/method.md §5's formulas say one Newton iteration sends, per phase
    (``kept``: its gradient starts from the line search's kept forward pass)."""
    trials = costs.line_search_trials(rec["alpha"], NewtonConfig().max_halvings)
    out = {"gradient": costs.gradient(grid, L_DIGITS, S, batch, loss, dtype, kept),
           "jacobian": costs.jacobian(grid, S, batch, loss, dtype),
           "cg": costs.cg(grid, S, rec["cg_iters"], gn, dtype=dtype),
           "sync": costs.sync(grid, sync),
           "line_search": costs.line_search(grid, L_DIGITS, batch, trials, loss, dtype)}
    if first:
        out["function"] = costs.function(grid, L_DIGITS, batch, loss, dtype)
    return out


def test_train_shows_the_megabytes_sent(tmp_path):
    """Each iteration's line ends with the MB rank 0 sent in it (a share of every rank's
    total in the JSON); the final line gives all ranks' total."""
    out = tmp_path / "r.json"
    p = mpirun(2, "train", "--json", out, "--hidden", "8", "--iters", 3)
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    r = json.loads(out.read_text())
    assert len(rows) == len(r["history"]) == 3
    for row, rec in zip(rows, r["history"]):
        assert 0 < float(row[8]) <= training_bytes([rec]) / 1e6 + 5e-4, (row, rec["comm"])
    assert f"{training_bytes(r['history']) / 1e6:.3f} MB sent (all ranks)" in p.stdout


NEWTON_CASES = [   # ranks, hidden, splits, loss, activation, gn, sync, eval batch, dtype, keep
    (4, "64,64", "2,1,1,1", "squared", "relu", "full", 1.0, 4096, "float64", True),
    (6, "8,8", "1,2,1,2", "cross_entropy", "tanh", "full", 1.0, 500, "float64", True),
    (5, "9", "2,1,3", "cross_entropy", "relu", "diag", 0.5, 700, "float64", True),
    (4, "8,8", "1,1,1,2", "squared", "sigmoid", "diag", 1.0, 4096, "float64", False),
    (6, "8,8", "1,2,1,2", "cross_entropy", "tanh", "full", 1.0, 500, "float32", False),
    (5, "9", "2,1,3", "cross_entropy", "relu", "diag", 0.5, 700, "float32", True),
    # fewer ranks than partitions: a rank's parts added before each link's collective
    (2, "8,8", "1,2,1,2", "cross_entropy", "tanh", "full", 1.0, 500, "float64", True),
    (3, "9", "2,1,3", "squared", "relu", "diag", 1.0, 700, "float64", True),
]


@pytest.mark.parametrize("n,hidden,splits,loss,act,gn,sync,batch,dtype,keep", NEWTON_CASES)
def test_measured_messages_equal_the_closed_forms(tmp_path, n, hidden, splits, loss, act, gn,
                                                  sync, batch, dtype, keep):
    r = train_json(tmp_path, n, "--hidden", hidden, "--splits", splits, "--loss", loss,
                   "--activation", act, "--gn", gn, "--sync", sync, "--iters", 3,
                   "--eval-batch", batch, "--subsample", 0.1, "--dtype", dtype,
                   *([] if keep else ["--no-keep-forward"]))
    assert r["config"]["objective.dtype"] == dtype
    assert r["config"]["objective.keep_forward"] == keep
    grid = Grid(r["config"]["layers"], r["config"]["splits"], n)
    S = NewtonConfig(subsample=0.1).subsample_size(L_DIGITS)
    for k, rec in enumerate(r["history"]):
        # the gradient starts from the kept pass but after a rejected line search
        kept = keep and (k == 0 or r["history"][k - 1]["alpha"] > 0)
        want = expected_iteration(grid, rec, loss, gn, sync, S, batch, k == 0, kept, dtype)
        for phase, cost in want.items():
            got = rec["comm"].get(phase, {"messages": 0, "bytes": 0})
            assert (got["messages"], got["bytes"]) == (cost["messages"], cost["bytes"]), \
                (rec["iter"], phase)
    if gn == "diag":      # docs/method.md §6: nothing but three scalars per rank after CG
        assert all(rec["comm"]["cg"]["bytes"] == 3 * 8 * n for rec in r["history"])


def test_sgd_messages_equal_the_closed_form(tmp_path):
    r = train_json(tmp_path, 4, "--optimizer", "sgd", "--hidden", "8,8", "--splits", "1,1,1,2",
                   "--loss", "cross_entropy", "--epochs", 2, "--batch-size", 100)
    grid = Grid(r["config"]["layers"], r["config"]["splits"])
    want = costs.sgd_epoch(grid, L_DIGITS, 100, "cross_entropy")
    for rec in r["history"]:
        assert rec["comm"]["sgd"]["messages"] == want["messages"]
        assert rec["comm"]["sgd"]["bytes"] == want["bytes"]


def test_diagonal_saves_the_cg_messages_but_full_matches_one_process(tmp_path):
    one = train_json(tmp_path, 1, "--iters", 4)
    full = train_json(tmp_path, 4, "--iters", 4, "--gn", "full")
    diag = train_json(tmp_path, 4, "--iters", 4, "--gn", "diag")
    for a, b in zip(one["history"], full["history"]):
        assert b["objective"] == pytest.approx(a["objective"], rel=1e-10)
        assert b["cg_iters"] == a["cg_iters"]
    first = one["history"][0]["comm"]          # one process: phases timed, nothing sent
    assert {"gradient", "jacobian", "cg", "line_search"} <= set(first) and first["cg"]["seconds"] > 0
    assert all(d["messages"] == 0 and d["bytes"] == 0 for d in first.values())
    cg_bytes = lambda r: sum(rec["comm"]["cg"]["bytes"] for rec in r["history"])
    assert cg_bytes(diag) < cg_bytes(full) / 20
    splits = diag["config"]["splits"]                # one process, G's blocks of that grid
    alone = train_json(tmp_path, 1, "--iters", 4, "--gn", "diag", "--splits",
                       ",".join(map(str, splits)))
    for a, b in zip(alone["history"], diag["history"]):
        assert b["objective"] == pytest.approx(a["objective"], rel=1e-10)
        # each partition runs its own CG: the record's count is the slowest's, on one
        # process as on the ranks
        assert b["cg_iters_per_rank"] == a["cg_iters_per_rank"]
        assert b["cg_iters"] == a["cg_iters"] == max(b["cg_iters_per_rank"])
    assert any(len(set(r["cg_iters_per_rank"])) > 1 for r in diag["history"])


def test_two_ranks_train_three_layers_as_one_process_does(tmp_path):
    """2 ranks, 3 layers: the proposed splits 2,1,2,1 put a block of every layer on each
    rank; Newton (full G), Newton with the block-diagonal G of that grid (one CG a
    partition, counted by partition) and SGD follow the one-process runs."""
    net = ["--hidden", "16,16"]
    for gn in ("full", "diag"):
        two, said = run_json(tmp_path, 2, *net, "--iters", 4, "--gn", gn)
        assert two["config"]["splits"] == [2, 1, 2, 1]
        assert "2 ranks, splits 2,1,2,1 (6 partitions, partition q on rank q mod 2: 3 a " \
            "rank)" in said.splitlines()[0]
        one = train_json(tmp_path, 1, *net, "--iters", 4, "--gn", gn,
                         *(["--splits", "2,1,2,1"] if gn == "diag" else []))
        for a, b in zip(one["history"], two["history"], strict=True):
            assert b["objective"] == pytest.approx(a["objective"], rel=1e-10)
            assert b["cg_iters"] == a["cg_iters"]
            assert b.get("cg_iters_per_rank", [b["cg_iters"]] * 2) == \
                a.get("cg_iters_per_rank", [a["cg_iters"]] * 2)
    sgd = ["--optimizer", "sgd", "--epochs", 2]
    one, two = (train_json(tmp_path, n, *net, *sgd) for n in (1, 2))
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["objective"] == pytest.approx(a["objective"], rel=1e-10)


def cg_seconds(run):
    """The CG phase's time, slowest rank, summed over iterations. A rank's wait for the
    others' notifications is timed apart, in phase "sync"."""
    return sum(rec["comm"]["cg"]["seconds"] for rec in run["history"])


def test_sync_fraction_cuts_waiting_for_a_slow_rank(tmp_path):
    # rank 2 holds W^2 (64 x 64), the block whose CG takes the most iterations
    common = ["--iters", 20, "--gn", "diag", "--slow-rank", "2:0.05"]
    wait_all = train_json(tmp_path, 4, *common, "--sync", 1.0)
    half = train_json(tmp_path, 4, *common, "--sync", 0.5)
    # the slow rank's CG is cut short once half of the partitions are done ...
    slow_iters = lambda r: [rec["cg_iters_per_rank"][2] for rec in r["history"]]
    assert sum(slow_iters(half)) < sum(slow_iters(wait_all))
    assert min(slow_iters(half)) >= 1               # every partition takes a CG step
    assert cg_seconds(half) < 0.7 * cg_seconds(wait_all)
    assert half["final"]["wall_time"] < wait_all["final"]["wall_time"]
    # ... and the run ends in the same accuracy band
    assert abs(half["final"]["test_accuracy"] - wait_all["final"]["test_accuracy"]) < 0.05
    assert all(rec["comm"]["sync"]["messages"] == 4 * 3 for rec in half["history"])
    assert all("sync" not in rec["comm"] for rec in wait_all["history"])


# -- errors end the whole job within seconds, with one clear line ----------------------------

def assert_fails_fast(p, started, *needles):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert time.monotonic() - started < 30
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_wrong_rank_count_names_the_need_and_proposes_splits():
    t = time.monotonic()
    p = mpirun(3, "train", "--splits", "1,1,1", "--hidden", "8", timeout=60)
    assert_fails_fast(p, t, "have 2 partitions, for at most 2 MPI ranks", "3 were started",
                      "for 3 ranks use splits")


def test_compare_refuses_a_sync_fraction_on_ranks_holding_several_partitions_first(tmp_path):
    t, out = time.monotonic(), tmp_path / "cmp"
    p = mpirun(2, "compare", "--hidden", "16,16", "--sync", 0.5, "--out", out, timeout=60)
    assert_fails_fast(p, t, "a sync fraction below 1 needs one rank per partition: splits "
                            "2,1,2,1 have 6 partitions on 2 ranks")
    assert not out.exists() and "newton" not in p.stdout      # refused before the first run


def test_missing_data_file(tmp_path):
    t = time.monotonic()
    p = mpirun(3, "train", "--data", "fashion-mnist", "--data-path", tmp_path / "nothing",
               timeout=60)
    assert_fails_fast(p, t, "nothing")


def test_nan_in_the_data_names_file_and_row(tmp_path):
    bad = tmp_path / "bad.svm"
    bad.write_text("1 1:0.5 2:0.25\n2 1:nan 2:1\n1 1:0.1 2:0.2\n2 1:0.3 2:0.9\n" * 3)
    t = time.monotonic()
    p = mpirun(3, "train", "--data", "svmlight", "--data-path", bad, "--hidden", "4",
               timeout=60)
    assert_fails_fast(p, t, "bad.svm")


def test_a_rank_raising_inside_a_collective_phase_ends_the_job(tmp_path):
    t = time.monotonic()
    p = mpirun(4, "train", "--iters", 3, script=HERE / "failing_rank.py", timeout=60)
    assert_fails_fast(p, t, "rank 1", "injected failure")


def test_unknown_data_set_on_one_process_lists_the_known_ones():
    p = subprocess.run([sys.executable, "-m", "dnewton_core", "train", "--data", "nosuch"],
                       capture_output=True, text=True, timeout=60, env=ENV)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "nosuch" in p.stderr and "digits" in p.stderr and "fashion-mnist" in p.stderr


# -- outputs checked first; divergence ends every rank with exit status 3 -------------------

def test_unwritable_json_is_refused_on_every_rank_before_training(tmp_path):
    (tmp_path / "afile").write_text("x")
    for path in ("/proc/x.json", tmp_path / "afile" / "x.json"):
        t = time.monotonic()
        p = mpirun(4, "train", "--iters", 1000, "--json", path, timeout=60)
        assert_fails_fast(p, t, str(path))
        assert time.monotonic() - t < 10 and "iter" not in p.stdout
    assert sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.parametrize("args", [
    ["--iters", 3, "--C", "1e-300"],
    ["--iters", 3, "--lambda0", "1e308", "--gn", "diag", "--sync", 0.5],
    ["--optimizer", "sgd", "--lr", "1e6", "--epochs", 3, "--splits", "1,1,1,2",
     "--hidden", "8,8"],
])
def test_a_diverging_run_ends_every_rank_with_status_3(tmp_path, args):
    out = tmp_path / "r.json"
    t = time.monotonic()
    p = mpirun(4, "train", "--json", out, "--save", tmp_path / "w.npz", *args, timeout=60)
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert time.monotonic() - t < 60
    assert "diverged at" in p.stderr and "Traceback" not in p.stderr
    r = json.loads(out.read_text())
    assert r["final"]["status"] == "diverged" and r["history"][-1]["diverged"] is True
    assert r["config"]["ranks"] == 4 and r["history"][-1]["comm"]   # summed over ranks
    if "sgd" in args:                 # its weights are NaN: not written, and said so
        assert not (tmp_path / "w.npz").exists()
        assert re.search(r"warning: --save \S+w.npz not written: \d+ of the final weights "
                         "are NaN or infinite", p.stderr), p.stderr


def test_the_final_json_is_the_one_combined_over_ranks(tmp_path):
    r = train_json(tmp_path, 4, "--iters", 2, "--hidden", "8")
    assert r["final"]["status"] == "finished" and len(r["history"]) == 2
    assert "cg_iters_per_rank" in r["history"][0]    # not rank 0's per-iteration snapshot


def test_ranks_that_ask_for_more_blas_threads_than_cores_are_warned():
    if 4 * 4 <= (os.cpu_count() or 1):
        pytest.skip("16 BLAS threads fit this machine's cores: nothing to warn about")
    many = dict(ENV, OMP_NUM_THREADS="4", OPENBLAS_NUM_THREADS="4", MKL_NUM_THREADS="4")
    p = subprocess.run(local_launch(4) + [sys.executable, "-m", "dnewton_core", "train",
                                          "--iters", "1"], capture_output=True, text=True,
                       timeout=120, env=many)
    assert p.returncode == 0, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "4 ranks with 4 BLAS thread(s)" in warnings[0]
    assert "warning:" not in mpirun(4, "train", "--iters", 1).stderr      # one thread each


def test_waiting_ranks_nap_or_spin_and_train_alike(tmp_path, monkeypatch):
    """DNEWTON_WAIT: 4 ranks on this machine's cores, waiting in MPI's own way, napping or
    patient (polling.py): every collective is the same Iallreduce whichever way a rank waits,
    so the messages and the run are the same to the last bit."""
    runs = {}
    for mode in ("spin", "nap", "auto"):
        monkeypatch.setitem(ENV, "DNEWTON_WAIT", mode)
        r = train_json(tmp_path, 4, "--iters", 3, "--hidden", "16,16", "--splits", "2,1,1,1")
        runs[mode] = r["history"]
        # the JSON says how the ranks waited ("auto": patient when 4 ranks share fewer cores)
        want = mode if mode != "auto" else \
            polling.wait_mode(4, len(environment.usable_cores()), "auto")
        assert r["config"]["wait"] == want, (mode, r["config"]["wait"])
    # (not "report": the gathers of --json's records, pickled with the seconds they hold)
    sent = lambda history: [{p: (v["messages"], v["bytes"]) for p, v in r["comm"].items()
                             if p != "report"} for r in history]
    path = lambda history: [(r["objective"], r["cg_iters"], r["alpha"]) for r in history]
    assert len(runs["spin"]) == 3
    assert sent(runs["spin"]) == sent(runs["nap"]) == sent(runs["auto"])
    assert path(runs["spin"]) == path(runs["nap"]) == path(runs["auto"])
    monkeypatch.setitem(ENV, "DNEWTON_WAIT", "doze")
    p = mpirun(4, "train", "--iters", 1, "--hidden", "8")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == \
        ["error: DNEWTON_WAIT='doze': choose spin, nap or auto"], p.stderr


def test_wait_mode_and_patience():
    """Patient ranks (auto, more ranks than cores) nap only while the pass at hand is long."""
    from dnewton_core.polling import LONG_FLOP, Patience, wait_mode
    assert wait_mode(4, 2) == "patient" and wait_mode(2, 2) == "spin" == wait_mode(1, 8)
    assert wait_mode(4, 2, "spin") == "spin" and wait_mode(1, 2, " NAP ") == "nap"
    with pytest.raises(ValueError, match="DNEWTON_WAIT='x': choose spin, nap or auto"):
        wait_mode(1, 1, "x")
    patient = Patience("patient")
    assert not patient.naps()                        # nothing known yet: MPI waits
    patient.expect(2 * 4096 * 392 * 300)             # a Newton batch of Fashion-MNIST
    assert patient.naps() and LONG_FLOP < 2 * 4096 * 392 * 300
    patient.expect(2 * 128 * 392 * 300)              # an SGD step
    assert not patient.naps()
    patient.expect(2 * 1438 * 64 * 64)               # a digits batch
    assert not patient.naps()
    assert Patience("nap").naps() and not Patience("spin").naps()
