"""Equivalence jobs of the distributed model against the dense one, run under MPI.

    mpiexec -n N python -m mpi4py tests/mpi_jobs.py JOB[,JOB...] [options]

Every rank builds the same seeded random data set, a ``DistributedModel`` on
``Comm(MPI.COMM_WORLD)`` and a ``DenseModel`` on the same data, runs the jobs, and rank 0
prints ONE line: ``MPI_JOBS_RESULT {json}`` with the measured errors (no verdicts: the
tolerances live in ``test_distributed.py``). Jobs:

  products   init theta, f, grad f (all rows / with S), stochastic gradient, G_S v (gn=full),
             accuracy: distributed blocks, gathered by ``grid.param_slices``, vs DenseModel
  diag       gn=diag: each rank's G v vs the reference's block-diagonal product
             mask_p(G (mask_p v)), G from ``reference.gauss_newton_product`` on S
  newton     a whole Newton run (gn=full) vs the same run on the DenseModel
  sgd        a whole SGD run vs the same run on the DenseModel
  diag_newton  a Newton run with gn=diag and sync fraction --sync (no dense counterpart):
             every rank's objective values, and whether they ever increase
  diag_step  Newton with the steps after CG (rescale, subspace; docs/method.md §6) vs the
             same run on the DenseModel with the same G (block-diagonal: the same grid), the
             messages of each iteration summed over ranks, and V^T G_S V from
             curvature_gram vs two full products and the reference
  mismatch   build a DistributedModel whose splits need another rank count: every rank's
             ConfigError message is reported, then re-raised (the launch must end non-zero)
  line_up    Newton and SGD with rank 0 slow to report each record: every record's training
             seconds, the slowest rank's (the report's time is no rank's training time)
  float32    the products of "products" with dtype float32, against the DenseModel in
             float32; the dtypes of every array they return, hold or send (the buffers of
             every collective; the scalar sums excepted); the messages and bytes per phase of the
             same calls in float32 and float64, summed over ranks

``run(argv, comm)`` does the same in-process (the one-rank tests call it with ``Comm()``).
Relative errors are normwise: max |distributed - dense| / max |dense| over the whole vector.
"""
import argparse
import dataclasses
import json
import sys
from types import SimpleNamespace

import numpy as np
from mpi4py import MPI

from dnewton_core import reference as ref
from dnewton_core.comm import Comm
from dnewton_core.dense import DenseModel
from dnewton_core.distributed import DistributedModel
from dnewton_core.factors import LastHiddenD
from dnewton_core.ledger import combine_records
from dnewton_core.model import ConfigError, ObjectiveConfig, batches
from dnewton_core.newton import NewtonConfig, newton
from dnewton_core.sgd import SGDConfig, sgd

MARK = "MPI_JOBS_RESULT "


def _ints(text):
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jobs", help="comma-separated: products,diag,newton,sgd,mismatch")
    p.add_argument("--splits", type=_ints, required=True, help="P_0,...,P_L")
    p.add_argument("--hidden", type=_ints, default=(), help="hidden widths, '' for L = 1")
    p.add_argument("--loss", default="squared")
    p.add_argument("--act", default="relu")
    p.add_argument("--features", type=int, default=7)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--l", type=int, default=60, help="training instances")
    p.add_argument("--n-test", type=int, default=15)
    p.add_argument("--batch", type=int, default=13, help="ObjectiveConfig.batch_size")
    p.add_argument("--C", type=float, default=30.0, help="regularization (weak: the loss dominates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subsample", type=float, default=0.2)
    p.add_argument("--iters", type=int, default=4, help="Newton iterations")
    p.add_argument("--epochs", type=int, default=3, help="SGD epochs")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--sgd-batch", type=int, default=16)
    p.add_argument("--sync", type=float, default=1.0, help="sync fraction of diag_newton")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- set-up

class RandomData(SimpleNamespace):
    """The arrays of a problem (the DenseModel reads them whole) and what a rank of the
    DistributedModel asks for: the sizes, and ``share`` (its feature columns, labels)."""

    @property
    def n_train(self):
        return len(self.y_train)

    @property
    def n_test(self):
        return len(self.y_test)

    def share(self, features=None, labels=False, limit=None, dtype="float64"):
        cols = lambda X: None if features is None else \
            X[:, features.start:features.stop].astype(dtype)
        return SimpleNamespace(X_train=cols(self.X_train), X_test=cols(self.X_test),
                               y_train=self.y_train.copy() if labels else None,
                               y_test=self.y_test.copy() if labels else None)


def make_data(a):
    """A seeded random problem, identical on every rank."""
    rng = np.random.default_rng(1000 + a.seed)
    return RandomData(
        X_train=rng.standard_normal((a.l, a.features)),
        y_train=rng.integers(0, a.classes, a.l),
        X_test=rng.standard_normal((a.n_test, a.features)),
        y_test=rng.integers(0, a.classes, a.n_test),
        n_features=a.features, n_classes=a.classes)


def objective_config(a):
    return ObjectiveConfig(activation=a.act, loss=a.loss, C=a.C, batch_size=a.batch)


def build(a, comm, gn="full"):
    data, obj = make_data(a), objective_config(a)
    return data, DistributedModel(data, a.hidden, a.splits, comm, obj, gn=gn), \
        DenseModel(data, a.hidden, obj)


def random_point(a, dense):
    """theta near the initial point, a direction v, another v, and a sorted subsample S."""
    rng = np.random.default_rng(2000 + a.seed)
    n = len(dense.theta)
    theta = dense.theta + 0.5 * rng.standard_normal(n)
    v, v2 = rng.standard_normal(n), rng.standard_normal(n)
    S = np.sort(rng.choice(a.l, size=NewtonConfig(subsample=a.subsample).subsample_size(a.l),
                           replace=False))
    return theta, v, v2, S


def assemble(comm, grid, local, n):
    """The flat vector from every rank's block (NaN where no rank wrote), and whether every
    position was written exactly once."""
    blocks = comm.world.allgather(np.asarray(local, dtype=np.float64))
    full, hits = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    for r, block in enumerate(blocks):
        idx = grid.param_slices(r)
        if len(block) != len(idx):
            return full, False
        full[idx] = block
        np.add.at(hits, idx, 1)
    return full, bool((hits == 1).all())


def rel(a, b):
    """max |a - b| / max |b| (NaN anywhere makes it NaN)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    scale = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


def world_max(comm, x):
    x = float(x)
    xs = comm.world.allgather(x)
    return float("nan") if any(np.isnan(xs)) else max(xs)


# --------------------------------------------------------------------------- jobs

def watch_receivers(comm):
    """Count, from now on, the collectives (allreduce, bcast, reduce) this rank joins only
    to receive, those of them whose buffer is not zeros (a rank marked as receiving that
    does add to a sum; a bcast receiver's buffer is only written, so it is not looked at),
    and the unmarked ones whose buffer is all zeros (a receiver not marked): either is a
    wrong message log."""
    seen, collective = {"receives": 0, "receives_nonzero": 0, "sends_zeros": 0}, comm._collective

    def watched(op, buf, group, sends, start, later=False):
        if group.size > 1:
            seen["receives"] += not sends
            seen["receives_nonzero"] += not sends and op != "bcast" and bool(np.any(buf))
            seen["sends_zeros"] += sends and not np.any(buf)
        return collective(op, buf, group, sends, start, later)
    comm._collective = watched
    return seen


def job_products(a, comm):
    receivers = watch_receivers(comm)
    _, dm, dense = build(a, comm, "full")
    grid, n = dm.grid, len(dense.theta)
    idx = grid.param_slices(comm.rank)
    theta, v, v2, S = random_point(a, dense)
    out = {}
    full, covered = assemble(comm, grid, dm.theta, n)
    out["coverage"] = covered
    out["init"] = rel(full, dense.theta)

    f, f_ref = dm.objective(theta[idx]), dense.objective(theta)
    out["objective"] = rel(f, f_ref)
    fs = comm.world.allgather(f)
    out["objective_spread"] = max(fs) - min(fs)           # the same float on every rank

    g = dm.gradient(theta[idx])
    out["gradient"] = rel(assemble(comm, grid, g, n)[0], dense.gradient(theta))
    # the pipelined pass adds the same batches in the same order as one batch at a time
    one_by_one = theta[idx] / dm.C
    for rows in batches(np.arange(a.l), dm.config.batch_size):
        dm._pass(theta[idx], rows, 1.0 / a.l, one_by_one)
    out["pipelined_bitwise"] = int(sum(comm.world.allgather(int(np.array_equal(g, one_by_one)))))
    b = np.sort(np.random.default_rng(3000 + a.seed).choice(a.l, size=min(a.l, 9), replace=False))
    out["stochastic_gradient"] = rel(assemble(comm, grid, dm.stochastic_gradient(theta[idx], b),
                                              n)[0], dense.stochastic_gradient(theta, b))
    # gradient with S: S is taken out of the batches and done last (the Jacobian is factored)
    g_S, J = dm.gradient_and_jacobian(theta[idx], S)
    g_ref, J_ref = dense.gradient_and_jacobian(theta, S)
    out["gradient_S"] = rel(assemble(comm, grid, g_S, n)[0], g_ref)
    v_local = v[idx].copy()
    Gv = dm.gauss_newton(J, v_local)
    out["gauss_newton"] = rel(assemble(comm, grid, Gv, n)[0], dense.gauss_newton(J_ref, v))
    out["gauss_newton_keeps_v"] = bool(world_max(comm, rel(v_local, v[idx])) == 0.0)
    # a second product on the same factorization (nothing in it may have been overwritten)
    out["gauss_newton_2"] = rel(assemble(comm, grid, dm.gauss_newton(J, v2[idx]), n)[0],
                                dense.gauss_newton(J_ref, v2))
    out["dot"] = rel(dm.dot(v[idx], v2[idx]), float(v @ v2))
    out["accuracy"] = list(dm.accuracy(theta[idx]))
    out["accuracy_ref"] = list(dense.accuracy(theta))
    # at the point of objective(keep=True), the gradient, J and the accuracy from the kept pass
    out["kept_objective_bitwise"] = dm.objective(theta[idx], keep=True) == f
    g_K, J_K = dm.gradient_and_jacobian(theta[idx], S, kept=True)
    out["kept_gradient_S"] = rel(assemble(comm, grid, g_K, n)[0], g_ref)
    out["kept_gauss_newton"] = rel(assemble(comm, grid, dm.gauss_newton(J_K, v[idx].copy()), n)[0],
                                   dense.gauss_newton(J_ref, v))
    out["kept_accuracy"] = list(dm.accuracy(theta[idx], kept=True))
    del comm._collective
    ops = {f"{g} {op}" for _, op, g in comm.ledger if g.startswith("link(")}
    out["link_ops"] = sorted(set().union(*comm.world.allgather(ops)))
    out["receivers"] = {k: int(sum(comm.world.allgather(v))) for k, v in receivers.items()}
    return out


def job_diag(a, comm):
    data, dm, dense = build(a, comm, "diag")
    grid, n = dm.grid, len(dense.theta)
    idx = grid.param_slices(comm.rank)
    theta, v, _, S = random_point(a, dense)
    g_S, J = dm.gradient_and_jacobian(theta[idx], S)
    g_ref, J_ref = dense.gradient_and_jacobian(theta, S)
    out = {"gradient_S": rel(assemble(comm, grid, g_S, n)[0], g_ref)}
    Gv = dm.gauss_newton(J, v[idx])
    # mask_p (G mask_p v) for every p, G from the dense oracle on S
    blocks = [grid.block_slices(q) for q in range(grid.size)]
    block_diag = ref.block_diagonal_gauss_newton_product(theta, data.X_train[S], v, dense.C,
                                                         grid.layers, blocks, a.act, a.loss)
    out["block_diag"] = rel(assemble(comm, grid, Gv, n)[0], block_diag)
    # how far the block-diagonal product is from the full one (must be > 0 when N > 1,
    # else the check above could not tell the two apart)
    out["full_vs_block_diag"] = rel(block_diag, dense.gauss_newton(J_ref, v))
    out["cg_dot_local"] = world_max(comm, rel(dm.cg_dot(v[idx], v[idx]), float(v[idx] @ v[idx])))
    return out


def _compare_histories(comm, grid, hd, hr, keys_equal, keys_close):
    n = len(hr.theta)
    out = {"n_records": [len(hd.records), len(hr.records)]}
    close = {k: 0.0 for k in keys_close}
    for rd, rr in zip(hd.records, hr.records):
        for k in keys_close:
            close[k] = max(close[k], rel(rd[k], rr[k]))
    out.update({f"{k}_err": e for k, e in close.items()})
    for k in keys_equal:
        out[k] = [r[k] for r in hd.records]
        out[k + "_ref"] = [r[k] for r in hr.records]
    out["theta"] = rel(assemble(comm, grid, hd.theta, n)[0], hr.theta)
    return out


def job_newton(a, comm):
    _, dm, dense = build(a, comm, "full")
    cfg = NewtonConfig(iters=a.iters, subsample=a.subsample, seed=a.seed)
    hd, hr = newton(dm, cfg), newton(dense, cfg)
    out = _compare_histories(comm, dm.grid, hd, hr,
                             ["cg_iters", "cg_status", "alpha", "train_accuracy", "test_accuracy"],
                             ["objective", "grad_norm", "lambda"])
    out["f0_ref"] = dense.objective(dense.theta)
    out["objectives_ref"] = [r["objective"] for r in hr.records]
    return out


def job_sgd(a, comm):
    _, dm, dense = build(a, comm, "full")
    cfg = SGDConfig(lr=a.lr, batch_size=a.sgd_batch, epochs=a.epochs, seed=a.seed)
    hd, hr = sgd(dm, cfg), sgd(dense, cfg)
    out = _compare_histories(comm, dm.grid, hd, hr,
                             ["diverged", "train_accuracy", "test_accuracy"], ["objective"])
    out["theta_moved_ref"] = rel(hr.theta, dense.theta)
    return out


def job_diag_newton(a, comm):
    data, obj = make_data(a), objective_config(a)
    dm = DistributedModel(data, a.hidden, a.splits, comm, obj, gn="diag", sync=a.sync)
    f0 = dm.objective(dm.theta)
    h = newton(dm, NewtonConfig(iters=a.iters, subsample=a.subsample, seed=a.seed))
    fs = [f0] + [r["objective"] for r in h.records]
    return {"objectives": comm.world.allgather(fs),
            "cg_iters": comm.world.allgather([r["cg_iters"] for r in h.records]),
            "cg_status": comm.world.allgather([r["cg_status"] for r in h.records])}


# the step after CG (docs/method.md §6): name -> (Gauss-Newton matrix, NewtonConfig options)
DIAG_STEP_VARIANTS = {"rescale": ("diag", dict(diag_step="rescale")),
                      "subspace-global": ("diag", dict(diag_step="subspace", cg_rule="global")),
                      "full-subspace": ("full", dict(diag_step="subspace"))}


def by_partition(each):
    """Every CG's count in partition order from each rank's list (partition q: rank q mod R)."""
    return [each[q % len(each)][q // len(each)] for q in range(sum(map(len, each)))]


def job_diag_step(a, comm):
    """Each variant of DIAG_STEP_VARIANTS on the distributed model and on the one-process
    model with the same G (the block-diagonal G of the same grid for "diag"), and every
    iteration's messages summed over ranks; "gram": V^T G_S V from ``curvature_gram`` and
    V^T V / C against two full products (``with_gn("full")``) and the dense reference."""
    data, obj = make_data(a), objective_config(a)
    out = {"gram": _gram_errors(a, comm, data, obj)}
    for name, (gn, options) in DIAG_STEP_VARIANTS.items():
        cfg = NewtonConfig(iters=a.iters, subsample=a.subsample, seed=a.seed, **options)
        dm = DistributedModel(data, a.hidden, a.splits, comm, obj, gn=gn)
        dense = DenseModel(data, a.hidden, obj, gn=gn, splits=a.splits if gn == "diag" else None)
        comm.take_record()                      # this run's messages only
        hd, hr = newton(dm, cfg), newton(dense, cfg)
        r = _compare_histories(comm, dm.grid, hd, hr, ["alpha", "cg_status"],
                               ["objective", "grad_norm", "lambda"])
        r["beta_err"] = max(rel(x["beta"], y["beta"]) for x, y in zip(hd.records, hr.records))
        r["beta_len"] = [len(x["beta"]) for x in hd.records]
        r["beta_len_ref"] = [len(x["beta"]) for x in hr.records]
        r["cg_residual_err"] = max((rel(x["cg_residual"], y["cg_residual"]) for x, y in
                                    zip(hd.records, hr.records) if "cg_residual" in y), default=0.0)
        r["cg_residual"] = [x.get("cg_residual") for x in hd.records]
        r["cg_iters"] = [by_partition(comm.world.allgather(x.get("cg_iters_per_rank",
                                                                 [x["cg_iters"]])))
                         for x in hd.records]
        r["cg_iters_ref"] = [x.get("cg_iters_per_rank", [x["cg_iters"]] * comm.size)  # full G:
                             for x in hr.records]                   # one CG, on every rank
        r["comm"] = [combine_records(comm.world.allgather(x["comm"])) for x in hd.records]
        r["f0_ref"] = dense.objective(dense.theta)
        r["objectives_ref"] = [x["objective"] for x in hr.records]
        dm.close()
        out[name] = r
    return out


def _gram_errors(a, comm, data, obj):
    dm = DistributedModel(data, a.hidden, a.splits, comm, obj, gn="diag")
    dense = DenseModel(data, a.hidden, obj)
    idx = dm.grid.param_slices(comm.rank)
    theta, v, v2, S = random_point(a, dense)
    _, J = dm.gradient_and_jacobian(theta[idx], S)
    V = [v[idx], v2[idx]]
    VV = np.array([[x @ y for y in (v, v2)] for x in (v, v2)])
    gram = dm.curvature_gram(J, V) + VV / dm.C
    full = dm.with_gn("full")
    products = [full.gauss_newton(J, x) for x in V]
    by_products = dm.dots([(x, Gy) for x in V for Gy in products]).reshape(2, 2)
    params, X = ref.unflatten(theta, dense.layers), data.X_train[S]
    GV = [ref.flatten(ref.gauss_newton_product(params, X, ref.unflatten(x, dense.layers), dm.C,
                                               a.act, a.loss)) for x in (v, v2)]
    reference = np.array([[x @ Gy for Gy in GV] for x in (v, v2)])
    dm.close()
    return {"vs_products": rel(gram, by_products), "vs_reference": rel(gram, reference),
            "same_on_every_rank": world_max(comm, rel(gram, comm.world.bcast(gram))) == 0.0}


def job_mismatch(a, comm):
    try:
        build(a, comm, "full")
    except ConfigError as e:
        messages = comm.world.allgather(str(e))
        if comm.rank == 0:
            _emit({"size": comm.size, "jobs": {"mismatch": {"messages": messages}}})
        raise
    return {"messages": None}     # no error: the test fails on this


def watch_dtypes(comm):
    """The dtypes, from now on, of the buffers of the collectives (allreduce, bcast, reduce)
    this rank joins, but for the scalar sums of ``allreduce_scalars`` (float64 by design)."""
    seen, collective, scalars = set(), comm._collective, comm.allreduce_scalars
    inside = []

    def watched(op, buf, group, sends, start, later=False):
        if not inside:
            seen.add(str(buf.dtype))
        return collective(op, buf, group, sends, start, later)

    def watched_scalars(*values, receives=False):
        inside.append(1)
        try:
            return scalars(*values, receives=receives)
        finally:
            inside.pop()
    comm._collective, comm.allreduce_scalars = watched, watched_scalars
    return seen


def _phase_calls(model, theta, v, S, batch):
    """One call of each product, each in its own phase; this rank's record of them."""
    model.comm.take_record()
    with model.phase("function"):
        model.objective(theta)
    with model.phase("gradient"):
        model.gradient(theta)
    with model.phase("line_search"):        # grad f with S: its Jacobian in phase "jacobian"
        _, J = model.gradient_and_jacobian(theta, S)
    with model.phase("cg"):
        model.gauss_newton(J, v)
    with model.phase("sgd"):
        model.stochastic_gradient(theta, batch)
    return model.comm.take_record()


def job_float32(a, comm):
    obj64 = objective_config(a)
    obj32 = dataclasses.replace(obj64, dtype="float32")
    data = make_data(a)
    seen = watch_dtypes(comm)
    dm = DistributedModel(data, a.hidden, a.splits, comm, obj32)
    dense, dense64 = DenseModel(data, a.hidden, obj32), DenseModel(data, a.hidden, obj64)
    grid, n = dm.grid, len(dense.theta)
    idx = grid.param_slices(comm.rank)
    theta, v, _, S = random_point(a, dense64)
    theta, v = theta.astype(np.float32), v.astype(np.float32)
    b = np.sort(np.random.default_rng(3000 + a.seed).choice(a.l, size=min(a.l, 9), replace=False))
    whole = lambda local: assemble(comm, grid, local, n)[0]
    out = {"init": rel(whole(dm.theta), dense.theta),            # the float64 draw, rounded
           "init_rounded": bool(world_max(comm, rel(dm.theta, dense64.theta[idx].astype(
               np.float32))) == 0.0),
           "objective": rel(dm.objective(theta[idx]), dense.objective(theta)),
           "gradient": rel(whole(dm.gradient(theta[idx])), dense.gradient(theta))}
    g, sg = dm.gradient(theta[idx]), dm.stochastic_gradient(theta[idx], b)
    out["stochastic_gradient"] = rel(whole(sg), dense.stochastic_gradient(theta, b))
    g_S, J = dm.gradient_and_jacobian(theta[idx], S)
    g_ref, J_ref = dense.gradient_and_jacobian(theta, S)
    out["gradient_S"] = rel(whole(g_S), g_ref)
    Gv = dm.gauss_newton(J, v[idx])
    out["gauss_newton"] = rel(whole(Gv), dense.gauss_newton(J_ref, v))
    out["accuracy"], out["accuracy_ref"] = list(dm.accuracy(theta[idx])), list(dense.accuracy(theta))
    held = [dm.theta, g, sg, g_S, Gv, dm.X, dm.X_test, *dm.Y.values(), *dm.Y_test.values(),
            *(x for f in J.factors if f is not None for x in
              (f.values() if isinstance(f, dict) else [f]))]
    held = [y for x in held for y in ((x.WT, x.slope) if isinstance(x, LastHiddenD) else (x,))]
    seen.update(str(x.dtype) for x in held if x is not None and x.dtype != bool)  # relu's masks
    del comm._collective, comm.allreduce_scalars
    out["dtypes"] = sorted(set().union(*comm.world.allgather(seen)))
    dm64 = DistributedModel(data, a.hidden, a.splits, comm, obj64)
    out["ledger"] = {
        dtype: combine_records(comm.world.allgather(_phase_calls(
            model, theta[idx].astype(dtype), v[idx].astype(dtype), S, b)))
        for dtype, model in (("float32", dm), ("float64", dm64))}
    dm.close()
    dm64.close()
    return out


def job_line_up(a, comm):
    """Newton and SGD with rank 0 slow to report each record (a callback that sleeps
    ``REPORT_SLEEP`` s): every rank's training seconds per record (the phases of
    ledger.TRAINING_PHASES, an SGD epoch's f left out as its wall_time leaves it out),
    the largest over ranks."""
    import time

    from dnewton_core.ledger import TRAINING_PHASES
    _, dm, _ = build(a, comm, "full")
    slow = lambda record: time.sleep(REPORT_SLEEP) if comm.rank == 0 else None
    out = {}
    for name, run in (("newton", lambda: newton(dm, NewtonConfig(iters=a.iters,
                                                                 subsample=a.subsample), slow)),
                      ("sgd", lambda: sgd(dm, SGDConfig(lr=a.lr, batch_size=a.sgd_batch,
                                                        epochs=a.epochs), slow))):
        mine = [sum(d["seconds"] for p, d in r["comm"].items() if p in TRAINING_PHASES
                    and not (p == "function" and "sgd" in r["comm"]))
                for r in run().records]
        out[name] = [world_max(comm, s) for s in mine]
    out["sleep"] = REPORT_SLEEP
    return out


REPORT_SLEEP = 0.3

JOBS = {"products": job_products, "diag": job_diag, "newton": job_newton, "sgd": job_sgd,
        "diag_newton": job_diag_newton, "diag_step": job_diag_step, "mismatch": job_mismatch,
        "float32": job_float32, "line_up": job_line_up}


def run(argv, comm):
    """Run the jobs of ``argv`` on ``comm``; the result dict (the same on every rank)."""
    a = parse(argv)
    names = a.jobs.split(",")
    unknown = [j for j in names if j not in JOBS]
    if unknown:
        raise SystemExit(f"unknown job(s) {unknown}; choose from {', '.join(JOBS)}")
    return {"size": comm.size, "jobs": {j: JOBS[j](a, comm) for j in names}}


def _emit(result):
    print(MARK + json.dumps(result), flush=True)


def main():
    comm = Comm(MPI.COMM_WORLD)
    comm.choose_wait("nap")      # the napping path on every machine (polling.py); the same sums
    result = run(sys.argv[1:], comm)
    if comm.rank == 0:
        _emit(result)


if __name__ == "__main__":
    main()
