"""The distributed model (docs/method.md §3-§4) against the dense one, under MPI.

Each MPI case launches ``mpiexec -n N python -m mpi4py tests/mpi_jobs.py ...`` once (in its
own process group, with a timeout, so a deadlock fails the test instead of freezing CI),
reads rank 0's JSON line, and several tests assert on it:

  products  f, grad f (all rows, with S, stochastic), G_S v (full), accuracy   rel 1e-10
  diag      G v (gn=diag) = mask_p G mask_p v of the reference on S             rel 1e-10
  newton    the same run as on the DenseModel: f per iteration 1e-8, same CG iteration
            counts, steps and accuracies, final theta blocks 1e-8
  sgd       the same run as on the DenseModel: f per epoch 1e-8, final theta 1e-8
  diag_step the steps after CG (rescale, subspace, the global CG rule; docs/method.md §6)
            as on the DenseModel with the same G (block-diagonal on the same grid): f,
            lambda, beta 1e-8, same CG counts per partition, steps; every iteration's
            messages equal to costs.py's closed forms; V^T G_S V 1e-10
  float32   (two grids) the products in float32 against the DenseModel in float32,
            model.PRODUCT_RTOL["float32"]; every array float32; each array message half
            the bytes of float64's, the scalar sums unchanged

Grids cover N = 1, 2, 3, 4, 6 ranks, one partition each, and ("b" cases) 2 and 4 ranks
holding several partitions each: split input features (7 features 3 ways: uneven),
split hidden layers, split output layers (P_L > 1 with both losses), several at once, one
to three weight layers, relu and tanh. One-rank cases (L = 1) also run in-process on
``Comm()`` (COMM_SELF). A grid needing another rank count must end every rank with a
ConfigError naming the count it needs; on one process (``Comm()``), one rank holds every
partition of a grid and matches the dense model too.
"""
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dnewton_core import costs
from dnewton_core.comm import Comm
from dnewton_core.dense import DenseModel
from dnewton_core.distributed import DistributedModel
from dnewton_core.environment import LaunchError, find_mpiexec, local_environment
from dnewton_core.ledger import TRAINING_PHASES
from dnewton_core.model import PRODUCT_RTOL, ConfigError
from dnewton_core.newton import NewtonConfig, newton
from dnewton_core.partition import Grid

HERE = Path(__file__).resolve().parent
JOBS_SCRIPT = HERE / "mpi_jobs.py"
PRODUCT_TOL = PRODUCT_RTOL["float64"]   # one product: only rounding separates the two computations
RUN_TOL = 1e-8               # a whole run: rounding may grow over the iterations
LAUNCH_TIMEOUT = 60          # seconds; a healthy launch takes about one

_spec = importlib.util.spec_from_file_location("mpi_jobs", JOBS_SCRIPT)
mpi_jobs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mpi_jobs)


def _mpiexec():
    """The launcher of local runs (environment.find_mpiexec), or None if there is none."""
    try:
        return find_mpiexec()
    except LaunchError:
        return None


MPIEXEC = _mpiexec()
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec next to python or on PATH")


def launch(n, args, timeout=LAUNCH_TIMEOUT):
    """Run mpi_jobs.py on n ranks: (returncode, parsed rank-0 JSON or None, stdout, stderr, s).

    Started in a new session so that a hang can be ended by killing the whole group."""
    env = local_environment()          # one BLAS thread per rank, MPI on loopback only
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(JOBS_SCRIPT), *args]
    tic = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=HERE.parent, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} did not finish in {timeout} s (hang?)\n"
                    f"stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    seconds = time.perf_counter() - tic
    lines = [ln for ln in out.splitlines() if ln.startswith(mpi_jobs.MARK)]
    result = json.loads(lines[-1][len(mpi_jobs.MARK):]) if lines else None
    return proc.returncode, result, out, err, seconds


# --------------------------------------------------------------------------- the MPI cases

# (id, ranks, arguments of mpi_jobs.py, extra jobs); defaults there: 7 features, 4 classes,
# l = 60, batch 13 (the last batch is short), |S| = 12, relu, squared loss.
CASES = [
    ("n1-L1-squared-relu", 1, ["--splits", "1,1"], ()),
    ("n2-features2-xent-tanh", 2, ["--splits", "2,1", "--loss", "cross_entropy", "--act", "tanh"],
     ("diag_step",)),
    ("n2-L2-unsplit-squared-relu", 2, ["--splits", "1,1,1", "--hidden", "5"], ()),
    ("n3-features7by3-squared-tanh", 3, ["--splits", "3,1", "--act", "tanh",
                                         "--l", "23", "--batch", "7", "--subsample", "1.0"], ()),
    ("n3-output4by3-xent-relu", 3, ["--splits", "1,3", "--loss", "cross_entropy"],
     ("diag_step", "float32")),
    ("n3-L2-output2-squared-tanh", 3, ["--splits", "1,1,2", "--hidden", "5", "--act", "tanh",
                                       "--sync", "0.5"], ("diag_newton", "float32")),
    ("n4-hidden5by2-squared-relu", 4, ["--splits", "1,2,1", "--hidden", "5", "--sync", "1.0"],
     ("diag_newton", "diag_step")),
    ("n4-features2-output2-xent-relu", 4, ["--splits", "2,1,2", "--hidden", "5",
                                           "--loss", "cross_entropy", "--sync", "0.5"],
     ("diag_newton", "diag_step")),     # diag_step: W^2's rows from two senders, counted
    ("n6-L3-features2-hidden2-squared-tanh", 6, ["--splits", "2,1,2,1", "--hidden", "5,4",
                                                 "--act", "tanh", "--sync", "0.5"],
     ("diag_newton", "diag_step", "float32")),
    ("n6-hidden2-output2-xent-tanh", 6, ["--splits", "1,2,2", "--hidden", "5",
                                         "--loss", "cross_entropy", "--act", "tanh",
                                         "--batch", "100", "--n-test", "0"], ()),
    ("n6-features3-output3-xent-relu", 6, ["--splits", "3,1,3", "--hidden", "3",
                                           "--loss", "cross_entropy", "--iters", "6"], ()),
    # fewer ranks than partitions, partition q on rank q mod R: each rank one block of every
    # layer; a rank adding two blocks' parts into an allreduce, the bcast root that also
    # receives (2,1,1,1), the reduce's root that also sends and the bcast root that also
    # consumes (1,1,2), two output slices on one rank (1,3), an uneven share (3,1,3 on 4)
    ("b2-L3-1,2,1,2-squared-relu", 2, ["--splits", "1,2,1,2", "--hidden", "5,4"],
     ("diag_step",)),
    ("b2-L3-2,1,2,1-xent-tanh", 2, ["--splits", "2,1,2,1", "--hidden", "5,4", "--loss",
                                    "cross_entropy", "--act", "tanh"], ("diag_step", "float32")),
    ("b2-L3-2,1,1,1-squared-tanh", 2, ["--splits", "2,1,1,1", "--hidden", "5,4", "--act",
                                       "tanh"], ()),
    ("b2-L2-1,1,2-xent-relu", 2, ["--splits", "1,1,2", "--hidden", "5", "--loss",
                                  "cross_entropy"], ("diag_step",)),
    ("b2-output4by3-xent-relu", 2, ["--splits", "1,3", "--loss", "cross_entropy"], ()),
    ("b4-features3-output3-xent-relu", 4, ["--splits", "3,1,3", "--hidden", "3",
                                           "--loss", "cross_entropy"], ()),
]
CASE_IDS = [c[0] for c in CASES]
_BY_ID = {c[0]: c for c in CASES}
BASE_JOBS = ("products", "diag", "newton", "sgd")


def case_args(case_id):
    """The parsed mpi_jobs arguments of a case (its defaults included)."""
    return mpi_jobs.parse(["products", *_BY_ID[case_id][2]])


@functools.lru_cache(maxsize=None)
def _case_outcome(case_id):
    """Launch a case once for all the tests reading it; failures are cached too."""
    _, n, args, extra = _BY_ID[case_id]
    try:
        rc, result, out, err, _ = launch(n, [",".join(BASE_JOBS + extra), *args])
    except pytest.fail.Exception as e:
        return None, str(e)
    if rc != 0 or result is None:
        return None, f"mpiexec -n {n} exited with {rc}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    if result["size"] != n:
        return None, f"ran on {result['size']} ranks, expected {n}"
    return result["jobs"], None


def case_jobs(case_id):
    jobs, error = _case_outcome(case_id)
    if error:
        pytest.fail(error)
    return jobs


def _same(a, b):
    """Equal lists, NaN equal to NaN (accuracy on an empty test set)."""
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


# ------------------------------------------------------------------- shared assertions

def check_products(r):
    assert r["coverage"], "param_slices of the ranks do not cover theta exactly once"
    assert r["init"] == 0.0, "the initial blocks are not the dense initial theta's"
    assert r["objective_spread"] == 0.0, "ranks disagree on f"
    for key in ("objective", "gradient", "stochastic_gradient", "gradient_S", "gauss_newton",
                "gauss_newton_2", "dot"):
        assert r[key] < PRODUCT_TOL, f"{key}: relative error {r[key]:.3g}"
    assert r["gauss_newton_keeps_v"], "gauss_newton modified its argument"
    assert _same(r["accuracy"], r["accuracy_ref"]), (r["accuracy"], r["accuracy_ref"])
    # from the kept forward pass (kept.py): the same f, results and accuracies
    assert r["kept_objective_bitwise"] and _same(r["kept_accuracy"], r["accuracy"])
    assert r["kept_gradient_S"] < PRODUCT_TOL and r["kept_gauss_newton"] < PRODUCT_TOL, r
    # the message log's roles (the notebooks' message-flow figure): a rank marked as only
    # receiving contributes zeros (test_products_match_dense: and the others data)
    assert r["receivers"]["receives_nonzero"] == 0, r["receivers"]


def check_diag(r, n_partitions):
    assert r["gradient_S"] < PRODUCT_TOL, r["gradient_S"]
    assert r["block_diag"] < PRODUCT_TOL, f"G v vs block-diagonal reference: {r['block_diag']:.3g}"
    assert r["cg_dot_local"] < PRODUCT_TOL, "cg_dot is not the partition's own inner product"
    if n_partitions > 1:   # otherwise the check above could not tell diag from full
        assert r["full_vs_block_diag"] > 1e-6, r["full_vs_block_diag"]
    else:             # one partition: its block is all of G
        assert r["full_vs_block_diag"] < PRODUCT_TOL, r["full_vs_block_diag"]


def check_newton(r, iters):
    assert r["n_records"] == [iters, iters]
    for key in ("objective_err", "grad_norm_err", "lambda_err", "theta"):
        assert r[key] < RUN_TOL, f"{key}: relative error {r[key]:.3g}"
    for key in ("cg_iters", "cg_status", "alpha", "train_accuracy", "test_accuracy"):
        assert _same(r[key], r[key + "_ref"]), (key, r[key], r[key + "_ref"])
    # not a vacuous comparison: the dense run did take steps and decreased f
    assert sum(r["cg_iters_ref"]) > 0 and any(a > 0 for a in r["alpha_ref"])
    assert r["objectives_ref"][-1] < r["f0_ref"]


def check_sgd(r, epochs):
    assert r["n_records"] == [epochs, epochs]
    assert r["objective_err"] < RUN_TOL, r["objective_err"]
    assert r["theta"] < RUN_TOL, r["theta"]
    assert r["diverged"] == r["diverged_ref"] and not any(r["diverged_ref"])
    assert _same(r["train_accuracy"], r["train_accuracy_ref"])
    assert _same(r["test_accuracy"], r["test_accuracy_ref"])
    assert r["theta_moved_ref"] > 1e-3        # SGD did move theta


def check_diag_steps(r, a):
    """Each step variant (docs/method.md §6) follows the one-process run with the same G."""
    g = r["gram"]
    assert g["vs_products"] < PRODUCT_TOL and g["vs_reference"] < PRODUCT_TOL, g
    assert g["same_on_every_rank"]
    for name, v in ((k, r[k]) for k in mpi_jobs.DIAG_STEP_VARIANTS):
        assert v["n_records"] == [a.iters, a.iters], name
        for key in ("objective_err", "grad_norm_err", "lambda_err", "theta", "beta_err",
                    "cg_residual_err"):
            assert v[key] < RUN_TOL, f"{name} {key}: relative error {v[key]:.3g}"
        for key in ("alpha", "cg_status", "beta_len", "cg_iters"):
            assert _same(v[key], v[key + "_ref"]), (name, key, v[key], v[key + "_ref"])
        assert v["objectives_ref"][-1] < v["f0_ref"], name           # it did descend
        # the subspace step used both directions once there was a previous step
        assert (2 in v["beta_len"]) == name.startswith(("subspace", "full-subspace")), name
        gn, options = mpi_jobs.DIAG_STEP_VARIANTS[name]
        if options.get("cg_rule") == "global":     # every share met: the global rule holds
            for res, status in zip(v["cg_residual"], v["cg_status"]):
                assert status != "converged" or res <= NewtonConfig().xi, (name, res)


def check_diag_step_messages(r, a, n_ranks):
    """Every iteration's messages, summed over ranks, are costs.py's closed forms."""
    grid = Grid((a.features, *a.hidden, a.classes), a.splits, n_ranks)
    S = NewtonConfig(subsample=a.subsample).subsample_size(a.l)
    none = {"messages": 0, "bytes": 0}
    for name, (gn, options) in mpi_jobs.DIAG_STEP_VARIANTS.items():
        v = r[name]
        for k, rec in enumerate(v["comm"]):
            trials = costs.line_search_trials(v["alpha"][k], NewtonConfig().max_halvings)
            kept = k == 0 or v["alpha"][k - 1] > 0   # the forward pass the line search kept
            want = {"gradient": costs.gradient(grid, a.l, S, a.batch, a.loss, kept=kept),
                    "jacobian": costs.jacobian(grid, S, a.batch, a.loss),
                    "cg": costs.cg(grid, S, v["cg_iters"][k][0], gn,
                                   options.get("cg_rule", "partition")),
                    "diag_step": costs.diag_step(grid, S, v["beta_len"][k]),
                    "line_search": costs.line_search(grid, a.l, a.batch, trials, a.loss),
                    "function": costs.function(grid, a.l, a.batch, a.loss) if k == 0 else none}
            for phase in TRAINING_PHASES:
                got = rec.get(phase, none)
                assert (got["messages"], got["bytes"]) == \
                    tuple(want.get(phase, none).values()), (name, k + 1, phase)
            # one |S| x n_L x k allreduce (k directions), with k = 2 one of three scalars
            sent = rec.get("diag_step", none)["messages"]
            assert sent == (grid.ranks * (1 + (v["beta_len"][k] == 2)) if grid.ranks > 1 else 0)


# --------------------------------------------------------------------------- MPI tests

@needs_mpiexec
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_products_match_dense(case_id):
    r = case_jobs(case_id)["products"]
    check_products(r)
    a = case_args(case_id)
    assert r["pipelined_bitwise"] == _BY_ID[case_id][1]      # on every rank
    if a.hidden:
        assert r["receivers"]["receives"] > 0, r["receivers"]
    if a.act != "relu":     # relu: a slice of dead units sends true zeros; tanh: only by chance
        assert r["receivers"]["sends_zeros"] == 0, r["receivers"]
    # every link sends by the collective costs.link_op names (bcast: one sender, reduce:
    # one receiver), forward and, below layer L, backward; a group of one rank sends nothing
    grid = Grid((a.features, *a.hidden, a.classes), a.splits, _BY_ID[case_id][1])
    want = {f"link({m},{j}) {costs.link_op(grid, m, j, back)[0]}"
            for m in range(1, grid.L + 1) for j in range(grid.splits[m])
            if len(grid.link_group(m, j)) > 1
            for back in ((False, True) if m < grid.L else (False,))}
    assert r["link_ops"] == sorted(want)


@needs_mpiexec
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_diag_gauss_newton_is_block_diagonal_reference(case_id):
    a = case_args(case_id)
    check_diag(case_jobs(case_id)["diag"], Grid((a.features, *a.hidden, a.classes), a.splits).size)


@needs_mpiexec
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_newton_run_follows_dense_run(case_id):
    check_newton(case_jobs(case_id)["newton"], case_args(case_id).iters)


@needs_mpiexec
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_sgd_run_follows_dense_run(case_id):
    check_sgd(case_jobs(case_id)["sgd"], case_args(case_id).epochs)


@needs_mpiexec
@pytest.mark.parametrize("case_id", [c[0] for c in CASES if "diag_newton" in c[3]])
def test_diag_newton_with_sync_fraction_runs_and_descends(case_id):
    """No dense counterpart: every rank sees the same f, which never increases, and drops."""
    r = case_jobs(case_id)["diag_newton"]
    first, *others = r["objectives"]
    assert all(o == first for o in others), "ranks disagree on the objective values"
    assert np.all(np.isfinite(first))
    assert all(b <= a for a, b in zip(first, first[1:])), first
    assert first[-1] < first[0]


@needs_mpiexec
@pytest.mark.parametrize("case_id", [c[0] for c in CASES if "diag_step" in c[3]])
def test_diag_steps_follow_the_dense_run(case_id):
    check_diag_steps(case_jobs(case_id)["diag_step"], case_args(case_id))


@needs_mpiexec
@pytest.mark.parametrize("case_id", [c[0] for c in CASES if "diag_step" in c[3]])
def test_diag_step_messages_equal_the_closed_forms(case_id):
    check_diag_step_messages(case_jobs(case_id)["diag_step"], case_args(case_id), _BY_ID[case_id][1])


@needs_mpiexec
@pytest.mark.parametrize("case_id", [c[0] for c in CASES if "float32" in c[3]])
def test_float32_follows_the_dense_model_in_float32(case_id):
    """--dtype float32: the network is the float64 one rounded; the products follow the
    one-process model in float32; no float64 array is held, returned or sent but the
    scalar sums; the same messages as in float64, each array message half the bytes."""
    r, a, n = case_jobs(case_id)["float32"], case_args(case_id), _BY_ID[case_id][1]
    assert r["init"] == 0.0 and r["init_rounded"]
    # both models in float32: they differ only in the order of their sums, so the bound is
    # tighter than PRODUCT_RTOL's against float64 (observed about 1e-7)
    for key in ("objective", "gradient", "stochastic_gradient", "gradient_S", "gauss_newton"):
        assert r[key] < PRODUCT_RTOL["float32"] / 10, f"{key}: relative error {r[key]:.3g}"
    for acc, ref, count in zip(r["accuracy"], r["accuracy_ref"], (a.l, a.n_test)):
        assert abs(acc - ref) * count <= 1 + 1e-9, (r["accuracy"], r["accuracy_ref"])
    assert r["dtypes"] == ["float32"], r["dtypes"]
    f32, f64 = r["ledger"]["float32"], r["ledger"]["float64"]
    for phase in ("gradient", "jacobian", "line_search", "cg", "sgd"):   # arrays only
        assert f32[phase]["messages"] == f64[phase]["messages"] > 0, phase
        assert 2 * f32[phase]["bytes"] == f64[phase]["bytes"], phase
    scalar = 8 * n                    # f's one float64 sum, on every rank
    assert f32["function"]["messages"] == f64["function"]["messages"]
    assert 2 * (f32["function"]["bytes"] - scalar) == f64["function"]["bytes"] - scalar


@needs_mpiexec
@pytest.mark.parametrize("n, splits, hidden, need", [(2, "1,1", "", 1), (3, "2,1", "", 2)])
def test_rank_count_mismatch_ends_every_rank_with_config_error(n, splits, hidden, need):
    rc, result, out, err, seconds = launch(n, ["mismatch", "--splits", splits, "--hidden", hidden],
                                           timeout=30)
    assert rc != 0, "a wrong rank count must end the launch with an error"
    assert result is not None, f"no report from rank 0\nstdout:\n{out}\nstderr:\n{err}"
    messages = result["jobs"]["mismatch"]["messages"]
    assert messages is not None and len(messages) == n, messages
    for message in messages:       # every rank raised, naming both counts
        assert f"for at most {need} MPI ranks" in message and f"{n} were started" in message, \
            message
    assert "ConfigError" in err and f"for at most {need} MPI ranks" in err
    assert seconds < 20, f"took {seconds:.1f} s"


@needs_mpiexec
def test_rank_0s_report_is_no_ranks_training_time():
    """Rank 0 prints and saves each record while the others go on to their next collective
    and wait there; model.line_up makes them wait outside their training clocks, so the
    slowest rank's training seconds of a record (the modeled time's sum, ledger.py) do not
    include rank 0's report (here a callback that sleeps 0.3 s)."""
    rc, result, out, err, _ = launch(3, ["line_up", "--splits", "1,1,1,1", "--hidden", "5,4"])
    assert rc == 0 and result is not None, err[-2000:]
    r = result["jobs"]["line_up"]
    for name in ("newton", "sgd"):
        assert len(r[name]) > 1 and max(r[name]) < r["sleep"] / 3, (name, r[name])


# --------------------------------------------------------------------------- one rank, in-process

ONE_RANK = [("squared", "relu"), ("squared", "tanh"), ("cross_entropy", "relu"),
            ("cross_entropy", "tanh")]


@pytest.mark.parametrize("loss, act", ONE_RANK)
def test_one_rank_in_process_matches_dense(loss, act):
    """L = 1 on Comm() (COMM_SELF): the same jobs, no mpiexec."""
    argv = ["products,diag,newton,sgd", "--splits", "1,1", "--loss", loss, "--act", act]
    jobs = mpi_jobs.run(argv, Comm())["jobs"]
    check_products(jobs["products"])
    check_diag(jobs["diag"], 1)
    a = mpi_jobs.parse(argv)
    check_newton(jobs["newton"], a.iters)
    check_sgd(jobs["sgd"], a.epochs)


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_one_rank_diag_steps_match_dense(loss):
    """L = 1 on Comm(): the step variants against the DenseModel, messages: none."""
    argv = ["diag_step", "--splits", "1,1", "--loss", loss, "--act", "tanh"]
    r = mpi_jobs.run(argv, Comm())["jobs"]["diag_step"]
    check_diag_steps(r, mpi_jobs.parse(argv))
    check_diag_step_messages(r, mpi_jobs.parse(argv), 1)


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_one_rank_diag_newton_is_full_newton(loss):
    """With one partition the block-diagonal G is G: the diag run is the dense run."""
    a = mpi_jobs.parse(["newton", "--splits", "1,1", "--loss", loss, "--act", "tanh"])
    data, obj = mpi_jobs.make_data(a), mpi_jobs.objective_config(a)
    cfg = NewtonConfig(iters=a.iters, subsample=a.subsample, seed=a.seed)
    hd = newton(DistributedModel(data, (), (1, 1), Comm(), obj, gn="diag"), cfg)
    hr = newton(DenseModel(data, (), obj), cfg)
    fd, fr = (np.array([r["objective"] for r in h.records]) for h in (hd, hr))
    np.testing.assert_allclose(fd, fr, rtol=RUN_TOL, atol=0)
    assert [r["cg_iters"] for r in hd.records] == [r["cg_iters"] for r in hr.records]
    np.testing.assert_allclose(hd.theta, hr.theta, rtol=0, atol=RUN_TOL * np.abs(hr.theta).max())


@pytest.mark.parametrize("splits, hidden, loss", [("2,1", "", "squared"),
                                                  ("2,1,2", "5", "cross_entropy")])
def test_one_rank_holding_every_partition_matches_dense(splits, hidden, loss):
    """Every partition of a grid on Comm(): the rank's links have one member, no message."""
    argv = ["products,diag,newton,sgd", "--splits", splits, "--hidden", hidden, "--loss", loss]
    jobs = mpi_jobs.run(argv, Comm())["jobs"]
    check_products(jobs["products"])
    check_diag(jobs["diag"], 2)         # several partitions: the block-diagonal G is not G
    a = mpi_jobs.parse(argv)
    check_newton(jobs["newton"], a.iters)
    check_sgd(jobs["sgd"], a.epochs)


def test_a_rank_holding_several_partitions_refuses_a_sync_fraction():
    a = mpi_jobs.parse(["products", "--splits", "2,1"])
    with pytest.raises(ConfigError, match="sync fraction below 1 needs one rank per partition: "
                                          "splits 2,1 have 2 partitions on 1 ranks"):
        DistributedModel(mpi_jobs.make_data(a), (), (2, 1), Comm(), mpi_jobs.objective_config(a),
                         gn="diag", sync=0.5)


def test_the_product_needs_the_jacobian_factors_of_a_subsample():
    """No hidden state: G_S v takes the factors gradient_and_jacobian returned, and refuses
    anything else with a message saying where they come from; another S gives another G_S."""
    a = mpi_jobs.parse(["products", "--splits", "1,1"])
    data, obj = mpi_jobs.make_data(a), mpi_jobs.objective_config(a)
    for model in (DistributedModel(data, (), (1, 1), Comm(), obj), DenseModel(data, (), obj)):
        v = np.ones_like(model.theta)
        with pytest.raises(ValueError, match=r"gradient_and_jacobian\(theta, S\)"):
            model.gauss_newton(None, v)
        _, J1 = model.gradient_and_jacobian(model.theta, np.arange(0, 10))
        _, J2 = model.gradient_and_jacobian(model.theta, np.arange(10, 20))
        assert list(J1.subsample) == list(range(10))
        assert not np.allclose(model.gauss_newton(J1, v), model.gauss_newton(J2, v))
        np.testing.assert_array_equal(model.gauss_newton(J1, v), model.gauss_newton(J1, v))


def test_with_gn_is_a_second_view_not_a_switch():
    """with_gn gives the block-diagonal product of the same partition; the model itself
    keeps its own Gauss-Newton matrix."""
    a = mpi_jobs.parse(["products", "--splits", "1,1"])
    model = DistributedModel(mpi_jobs.make_data(a), (), (1, 1), Comm(),
                             mpi_jobs.objective_config(a))
    diag = model.with_gn("diag")
    assert (model.gn, diag.gn) == ("full", "diag") and diag.theta is model.theta
    _, J = model.gradient_and_jacobian(model.theta, np.arange(12))
    v = np.linspace(-1, 1, model.theta.size)
    np.testing.assert_allclose(diag.gauss_newton(J, v), model.gauss_newton(J, v), rtol=1e-14)
    with pytest.raises(ConfigError, match="sync fraction below 1 needs"):
        model.with_gn("full", sync=0.5)
