"""What the notebooks ask each engine (one MPI rank) to do: build its partition of a
model, trace one step of the method, train. Every function here runs on the engines, through
``MPICluster.run``; each returns a small dict that ``tables.py`` turns into a table.
(``experiment`` and ``comm`` are imported inside the functions that need them: the client
imports this module too, and loads no MPI library.)
"""
import math

import numpy as np

from ..ledger import difference
from ..model import ObjectiveConfig, default_C, parse_C
from ..newton import NewtonConfig, direction, draw_subsample
from ..sgd import SGDConfig

# -- run on the engines ----------------------------------------------------------------------

def partitioned_model(data, hidden, splits=None, gn="full", sync=1.0, slow=None, C=None,
                      **objective):
    """This rank's ``DistributedModel`` of a network on ``data`` over every rank.

    ``C`` defaults to the data set's (``model.default_C``: 0.1 l for digits, where simpleNN's
    0.01 l over-regularizes); other ``ObjectiveConfig`` fields as keywords.
    Without ``splits``, ``splits.propose_splits`` picks them for the number of ranks.
    """
    from ..comm import Comm
    from ..experiment import build_model
    l = len(data.y_train)
    config = ObjectiveConfig(C=parse_C(default_C(data.name), l) if C is None else C, **objective)
    comm = Comm.on_world()
    return build_model(data, tuple(hidden), config, comm, splits, gn=gn, sync=sync, slow=slow)


def the_partition(model):
    """The one partition of this rank; ValueError where it holds several (fewer engines than
    partitions: the lessons show one partition an engine)."""
    if model.part is None:
        raise ValueError(f"rank {model.comm.rank} holds {len(model.parts)} partitions: the "
                         f"lessons show one an engine; start {model.grid.size} engines")
    return model.part


def holdings(model):
    """What this rank holds: its partition (m, i, j), the shapes of its arrays, their bytes."""
    p, rank = the_partition(model), model.comm.rank
    W, b = model.block(model.theta)
    Y = next(iter(model.Y.values()), None)          # its label columns, on layer L
    shape = lambda A: None if A is None else tuple(A.shape)
    data_bytes = sum(A.nbytes for A in (model.X, Y) if A is not None)
    return {"rank": rank, "mij": (p.m, p.i, p.j), "W": tuple(W.shape),
            "b": None if b is None else len(b), "X": shape(model.X), "Y": shape(Y),
            "param_bytes": model.theta.nbytes, "data_bytes": data_bytes,
            "weights": p.weights, "bias": p.bias}


def parameters(model):
    """This rank's block of theta (W_ij row-major, then its bias if it holds one)."""
    return model.theta.copy()


def traced_step(model, step, arg=None):
    """One step of the method on this rank with the message log on.

    step "function": f(theta) (phase function); "gradient": grad f with ``arg`` = S the
    last batch, so J is factored on S (kept on the engine as ``model_jacobian[model]``
    for the next steps), and ||grad f|| as in ``newton`` (phase gradient, the factoring in
    phase jacobian); "gauss_newton": G_S v for ``arg`` = the whole v (phase cg; after a
    "gradient" step of this model, or of the model it was made from by ``with_gn``).
    Returns {"rank", "value", "trace", "record"}: value is f or this rank's block, trace
    the (phase, op, group, bytes, sends) of every message in order (``Ledger.count``),
    record {phase: {"messages", "bytes"}} on this rank.
    """
    comm, theta = model.comm, model.theta
    comm.take_record()
    comm.trace = []
    try:
        if step == "function":
            with comm.phase("function"):
                value = model.objective(theta)
        elif step == "gradient":
            with comm.phase("gradient"):
                value, _JACOBIANS[_key(model)] = model.gradient_and_jacobian(theta, np.asarray(arg))
                math.sqrt(model.dot(value, value))
        elif step == "gauss_newton":
            with comm.phase("cg"):
                v = np.asarray(arg)[model.grid.param_slices(comm.rank)]
                value = model.gauss_newton(last_jacobian(model), v)
        else:
            raise ValueError(f"unknown step {step!r}; choose function, gradient or gauss_newton")
        trace = list(comm.trace)
    finally:
        comm.trace = None
    record = {phase: {"messages": d["messages"], "bytes": d["bytes"]}
              for phase, d in comm.take_record().items() if d["messages"]}
    return {"rank": comm.rank, "value": value, "trace": trace, "record": record}


_JACOBIANS = {}      # (model's ledger, partition) -> JacobianFactors of its last "gradient" step


def _key(model):
    return id(model.comm), model.part        # shared by a model and its with_gn copies


def last_jacobian(model):
    """The Jacobian factors of this engine's last traced "gradient" step of ``model``."""
    if _key(model) not in _JACOBIANS:
        raise ValueError('no Jacobian factors yet: trace a "gradient" step with S first')
    return _JACOBIANS[_key(model)]


def jacobian_factors(model):
    """The factored Jacobian this rank keeps after a gradient with S (docs/method.md §4):
    D_ij (|S|, n_L, |T_{m,j}|) and z^{m-1}[S, T_{m-1,i}], against the dense block."""
    p, (z, D, _) = the_partition(model), last_jacobian(model).factors
    z_in, D, n_block = z[p.m, p.i], D[p.m, p.j], model.theta.size
    return {"rank": model.comm.rank, "mij": (p.m, p.i, p.j),
            "D": tuple(D.shape), "z": tuple(z_in.shape), "factored_bytes": D.nbytes + z_in.nbytes,
            "dense_bytes": D.shape[0] * D.shape[1] * n_block * 8}


def subsample(l, fraction=0.05, seed=0):
    """The S of a Newton run's first iteration: |S| = ceil(fraction l) sorted indices, drawn
    as ``newton`` draws them (the same on every rank and on the client)."""
    size = NewtonConfig(subsample=fraction).subsample_size(l)
    return draw_subsample(np.random.default_rng(seed), l, size)


def newton_directions(model, lam=1.0, fraction=0.05, seed=0, xi=0.1, cg_max=250):
    """Both Newton directions at this model's theta, on the same S and lambda.

    Solves (G_S + lam I) d = -g by CG with the full G (one CG over all ranks) and with the
    block-diagonal G (each rank its own CG), as ``newton.direction`` finds them for
    ``model.with_gn("full")`` and ``model.with_gn("diag")``. Returns the cosine of the angle
    between them (over all of theta and on this rank's block), each direction's cosine
    with -g, and the CG iterations.
    """
    S = subsample(model.n_train, fraction, seed)
    g, J = model.gradient_and_jacobian(model.theta, S)
    d, iters = {}, {}
    for mode in ("full", "diag"):
        res = direction(model.with_gn(mode), J, g, lam, xi, cg_max)
        d[mode], iters[mode] = res.x, res.iterations

    def cos(a, b, dot):
        return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))
    local = lambda a, b: float(a @ b)
    return {"rank": model.comm.rank, "cos": cos(d["full"], d["diag"], model.dot),
            "cos_block": cos(d["full"], d["diag"], local),
            "cos_full_g": cos(d["full"], -g, model.dot), "cos_diag_g": cos(d["diag"], -g, model.dot),
            "cg_full": iters["full"], "cg_diag": iters["diag"]}


def fit(model, method="newton", newton=None, sgd=None, waits=False):
    """Train this rank's model (it keeps the trained theta); a report for :func:`gather_run`.

    Collective. Returns {"rank", "result", "totals", "cg_iters"}: ``result`` is
    ``experiment.result`` (rank 0 only, None elsewhere), ``totals`` this rank's
    {phase: messages, bytes, seconds} of the run, ``cg_iters`` this rank's CG iterations per
    Newton iteration. With ``waits=True`` each phase of ``totals`` also has "mpi_seconds",
    the seconds this rank spent inside blocking MPI calls (mostly waiting for the others).
    """
    from ..experiment import run
    newton, sgd = newton or NewtonConfig(), sgd or SGDConfig()
    comm = model.comm
    before = comm.totals()
    watch = waits and comm.timeline is None and comm.network is None   # a network records them
    if watch:
        comm.keep_timeline()
    try:
        history, out = run(model, method, newton, sgd)
    finally:
        timeline = comm.timeline if watch else None
        if watch:
            comm.timeline = None
    totals = difference(comm.totals(), before)
    for phase, seconds in mpi_seconds(timeline or []).items():
        totals.setdefault(phase, {"messages": 0, "bytes": 0, "seconds": 0.0})["mpi_seconds"] = seconds
    model.theta = history.theta
    return {"rank": comm.rank, "result": out, "totals": totals,
            "cg_iters": [r.get("cg_iters") for r in history.records]}


def train_new(data, hidden, method="newton", newton=None, sgd=None, waits=False, **model_options):
    """A fresh model (``partitioned_model(data, hidden, **model_options)``), trained by
    :func:`fit` (``waits``: see there): one run of an experiment."""
    return fit(partitioned_model(data, hidden, **model_options), method, newton, sgd, waits)


def mpi_seconds(timeline):
    """{phase: seconds inside blocking MPI calls} from a ``Ledger.timeline``.

    The timeline holds phase spans (tid 0) and, for every blocking call, a message event
    (tid 1) with its start and duration; a call counts in the span that contains its middle.
    """
    spans = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in timeline if e["tid"] == 0)
    calls = sorted((e["ts"] + e["dur"] / 2, e["dur"]) for e in timeline if e["tid"] == 1)
    out, k = {}, 0
    for middle, duration in calls:
        while k < len(spans) and spans[k][1] < middle:
            k += 1
        phase = spans[k][2] if k < len(spans) and spans[k][0] <= middle else "other"
        out[phase] = out.get(phase, 0.0) + duration / 1e6          # trace times are in us
    return out


