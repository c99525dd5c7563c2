"""Projection to many machines (docs/method.md §8): the seconds of one Newton iteration
(full and block-diagonal G) and of one SGD epoch on P machines, one rank each.

Assumptions (``project`` prints and writes them): one rank per machine; squared loss (the
softmax normalizer's messages are left out); every pass runs layer after layer
(no pipelining, though the kit's gradient pass now overlaps the layers) and no computing
overlaps a message; each
layer's compute is its largest block's, at one compute rate (FLOP/s of one core, measured
by ``calibrate`` or given); each collective costs what ``network.py`` says (the slowest
rank's path); the CG iterations and line-search trials per Newton iteration are given
(defaults: the committed Fashion-MNIST study, results/fashion-mnist/long and long-others);
an SGD epoch's f is reported apart and not counted, as the training clock does not count it;
the gradient pass starts from the forward pass the line search kept (``kept.py``: true
after every accepted step, and an iteration after a rejected line search passes forward
again, which is not counted).
What it cannot know: cache and memory effects of other block sizes, the network's
contention, stragglers, and how CG behaves on another grid.

Below the projection: ``predict`` sets it against a run of this machine (its grid, CG
iterations and trials; ``cores`` when its ranks shared cores), ``fitted_rate`` fits the
compute rate on a run, and ``crossover`` finds where the full and the diagonal G tie.
"""
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from . import network as netmodel
from .costs import F64, batch_sizes, line_search_trials, link_op, link_sizes
from .model import jacobian_chunks
from .newton import NewtonConfig
from .partition import Grid
from .splits import all_splits

FREE = netmodel.Network("free", 0.0, 1e300, 0.0)     # messages that cost nothing
COUNT = "count"     # as a network: every collective costs 1, so the "network" counts them


@dataclass(frozen=True)
class Workload:
    """What one Newton iteration and one SGD epoch do (counts per iteration are means)."""
    layers: tuple
    l: int                       # training instances
    subsample: int               # |S|
    batch: int = 4096            # evaluation mini-batch
    sgd_batch: int = 128
    cg_full: float = 19.2        # CG iterations, full G (Fashion-MNIST, S = 5%, 100 iterations)
    cg_diag: float = 3.0         # CG iterations of the slowest partition, block-diagonal G
    trials_full: float = 1.0     # line-search trials per iteration (same runs)
    trials_diag: float = 1.9


def calibrate(layers, seconds=1.0, batch=512):
    """FLOP/s of one core on this network's forward products (b x n_{m-1} @ n_{m-1} x n_m)."""
    rng = np.random.default_rng(0)
    mats = [(rng.random((batch, a)), rng.random((a, b))) for a, b in zip(layers, layers[1:])]
    flops = sum(2.0 * batch * A.shape[1] * B.shape[1] for A, B in mats)
    done, tic = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - tic < seconds:
        for A, B in mats:
            A @ B
        done += 1
    return done * flops / (time.perf_counter() - tic)


def _layer_blocks(grid, m):
    """(rows, cols) of layer m's largest block, and the size of its link group."""
    rows = max(len(T) for T in grid.groups(m - 1))
    cols = max(len(T) for T in grid.groups(m))
    return rows, cols, link_sizes(grid)[m - 1]


def _shared(grid, m, cores):
    """How much longer layer m's blocks take when its P_{m-1} P_m ranks share ``cores``
    cores (they compute at the same time, the others wait): 1 with a core each."""
    return 1.0 if cores is None else max(1.0, grid.splits[m - 1] * grid.splits[m] / cores)


def _pass(grid, b, rate, net, backward=False, cores=None):
    """(compute, network) seconds of a forward pass over b instances, or of the backward pass."""
    compute = comm = 0.0
    for m in range(1, grid.L + 1):
        rows, cols, link = _layer_blocks(grid, m)
        products = 2 if backward and m > 1 else 1
        compute += _shared(grid, m, cores) * products * 2.0 * b * rows * cols / rate
        if not backward or m < grid.L:
            comm += _collective(link_op(grid, m, 0, backward)[0], F64 * b * cols, link, net)
    return compute, comm


def _jacobian(grid, w, rate, net, cores=None):
    """(compute, network) seconds of the factored Jacobian on S (docs/method.md §4): W^L's
    rows once over layer L-1's links, then D W^T on layers L-1..2, whose links send n_L
    numbers an instance and column, chunk by chunk of S."""
    L, n_L = grid.L, grid.layers[-1]
    compute = comm = 0.0
    for m in range(1, L):
        rows, cols, link = _layer_blocks(grid, m)
        op = link_op(grid, m, 0, backward=True)[0]
        if m == L - 1:
            comm += _collective(op, F64 * n_L * cols, link, net)
        else:
            comm += sum(_collective(op, F64 * (c.stop - c.start) * n_L * cols, link, net)
                        for c in jacobian_chunks(w.subsample, w.batch, n_L))
        if m > 1:
            compute += _shared(grid, m, cores) * 2.0 * w.subsample * n_L * rows * cols / rate
    return compute, comm


def _collective(op, n, p, net):
    """Modeled seconds of ``op`` (network.SECONDS); nothing on one machine (``net`` None);
    1 with ``net`` = COUNT."""
    if net is None or p <= 1:
        return 0.0
    return 1.0 if net is COUNT else netmodel.seconds(op, n, p, net)


def _scalars(count, grid, net):
    return count * _collective("allreduce", F64, grid.size, net)


def _add(*pairs):
    return tuple(map(sum, zip(*pairs)))


def _function(grid, w, rate, net, cores=None):
    """One evaluation of f: forward passes over all l instances, one scalar."""
    return _add(*(_pass(grid, b, rate, net, cores=cores) for b in batch_sizes(w.l, w.batch)),
                (0.0, _scalars(1, grid, net)))


def _steps(grid, sizes, rate, net, cores=None, forward=True):
    """Forward (unless kept: ``forward`` False) and backward passes over batches of these sizes."""
    return _add(*(_add(_pass(grid, b, rate, net, cores=cores) if forward else (0.0, 0.0),
                       _pass(grid, b, rate, net, True, cores=cores)) for b in sizes))


def newton_iteration(grid, w, rate, net, gn="full", cores=None):
    """{phase: (compute seconds, network seconds)} of one Newton iteration (``net`` None:
    one machine, which computes every partition's product itself). ``cores``: the ranks
    share this many cores (a check on one machine, see ``predict``); None: a core each."""
    function = _function(grid, w, rate, net, cores)
    sizes = batch_sizes(w.l, w.batch)        # the kept forward pass's batches (costs.gradient)
    gradient = _add(_steps(grid, sizes, rate, net, cores, forward=False),
                    (0.0, _scalars(1, grid, net)))
    n_L, jacobian = grid.layers[-1], _jacobian(grid, w, rate, net, cores)
    products = [4.0 * w.subsample * (len(p.rows) + n_L) * len(p.cols) / rate
                for p in grid.partitions]
    product = sum(products) if net is None else \
        max(max(products), sum(products) / (cores or len(products)))
    iters = w.cg_full if gn == "full" else w.cg_diag
    big = _collective("allreduce", F64 * w.subsample * n_L, grid.size, net)
    cg = (iters * product, (iters * big + _scalars(1 + 2 * iters, grid, net)
                            if gn == "full" else 0.0) + _scalars(3, grid, net))
    trials = w.trials_full if gn == "full" else w.trials_diag
    return {"gradient": gradient, "jacobian": jacobian, "cg": cg,
            "line_search": tuple(trials * x for x in function)}


def sgd_epoch(grid, w, rate, net, cores=None):
    """{phase: (compute, network)} of one SGD epoch and its evaluation of f (which the
    training clock leaves out: ``seconds`` counts the "sgd" phase only)."""
    return {"sgd": _steps(grid, batch_sizes(w.l, w.sgd_batch), rate, net, cores),
            "function": _function(grid, w, rate, net, cores)}


def seconds(phases):
    """The training seconds of ``newton_iteration``'s or ``sgd_epoch``'s phases: their sum
    (an SGD epoch without its f, as ``wall_time`` counts it)."""
    return sum(c + n for p, (c, n) in phases.items() if p != "function" or "sgd" not in phases)


def project(workload, machines, rate, net, propose):
    """One row per machine count: its splits and the seconds per phase of a Newton
    iteration (full, diag) and an SGD epoch. ``propose(P)`` gives the splits for P ranks
    (None when none fit exactly); one machine is the one-process model (no message)."""
    _check(rate)
    rows = []
    for P in machines:
        splits = (1,) * len(workload.layers) if P == 1 else propose(P)
        if splits is None:
            rows.append(dict(machines=P, splits=None))
            continue
        grid, on = Grid(workload.layers, splits), (net if P > 1 else None)
        row = dict(machines=P, splits=list(splits))
        for name, phases in (("newton-full", newton_iteration(grid, workload, rate, on)),
                             ("newton-diag", newton_iteration(grid, workload, rate, on, "diag")),
                             ("sgd", sgd_epoch(grid, workload, rate, on))):
            row[name] = {p: {"compute": c, "network": n} for p, (c, n) in phases.items()}
            row[name + " seconds"] = seconds(phases)
        rows.append(row)
    return rows


def fastest_splits(workload, P, rate, net):
    """Of every grid of P machines (``splits.all_splits``), the splits whose projected full-G
    Newton iteration on ``net`` is the shortest (None when no grid has P blocks)."""
    grids = [Grid(workload.layers, s) for s in all_splits(workload.layers, P)]
    if not grids:
        return None
    return min(grids, key=lambda g: seconds(newton_iteration(g, workload, rate, net))).splits


def _check(rate):
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"compute rate must be a positive number of FLOP/s, got {rate!r}")


# -- checked against a run, and where full and diagonal G tie --------------------------------

def workload_of(result, l, start=2):
    """The ``Workload`` of a run (``experiment.result``) on l training instances: its
    layers, |S| and batch sizes, and per Newton iteration the mean over its records from
    iteration ``start`` on of the CG iterations (the slowest partition's) and of the
    line-search trials (iteration 1 also evaluates f at the start: left out by default)."""
    c = result["config"]
    records = [r for r in result["history"] if r["iter"] >= start] or result["history"][-1:]
    cg = [max(r.get("cg_iters_per_rank") or [r.get("cg_iters") or 0]) for r in records]
    trials = [line_search_trials(r["alpha"], c.get("newton.max_halvings", 20))
              for r in records if r.get("alpha") is not None]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    size = NewtonConfig(subsample=c.get("newton.subsample", 0.05)).subsample_size(l)
    return Workload(tuple(c["layers"]), l, size, batch=c["objective.batch_size"],
                    sgd_batch=c.get("sgd.batch_size", 128), cg_full=mean(cg), cg_diag=mean(cg),
                    trials_full=mean(trials), trials_diag=mean(trials))


def predict(result, l, rate, net, cores=None, start=2):
    """{phase: (compute, network)} of one iteration (Newton) or epoch (SGD) of a run as the
    projection sees it: on its grid, with its own CG iterations and line-search trials
    (``workload_of``). ``net``: the network it ran on (None: messages cost nothing; one
    process sends none). ``cores``: the ranks shared this many cores (the ranks of a layer
    then compute in turn); None: a core each."""
    c = result["config"]
    w = workload_of(result, l, start)
    grid = Grid(w.layers, tuple(c["splits"] or (1,) * len(w.layers)))
    on = (net or FREE) if c["splits"] is not None else None      # None: the dense model
    if c["optimizer"] == "sgd":
        return sgd_epoch(grid, w, rate, on, cores)
    return newton_iteration(grid, w, rate, on, c.get("gn") or "full", cores)


def fitted_rate(result, l, measured, start=2):
    """The compute rate (FLOP/s) at which ``predict``'s computing takes ``measured`` seconds
    per iteration (epoch) of a run: on one process, its training seconds; on several ranks,
    its computing (seconds less MPI seconds, the slowest rank's). This code's own rate on
    this work (matrix products and all around them), where ``calibrate`` times bare ones."""
    flops = seconds(predict(result, l, 1.0, None, start=start))
    return flops / measured


def crossover(grid, workload, rate, net, vary="latency", iterations=(1.0, 1.0), cores=None):
    """Where Newton with the full and with the block-diagonal G tie: the latency (seconds)
    or the bandwidth (bytes/s) of ``net``, its other parameters kept, at which
    ``iterations[0]`` full-G iterations take as long as ``iterations[1]`` diagonal ones.
    With (1, 1), per iteration; with the iterations each needs to reach a test accuracy,
    the time to that accuracy. The times are linear in alpha and in beta = 1/bandwidth
    (``network.py``), so two evaluations find the tie exactly.

    Returns {"vary", "value" (None: no tie at a positive latency or finite bandwidth),
    "faster_below" and "faster_above" (the method that is faster with the varied
    parameter below and above the tie; the same name twice without a tie), "full" and
    "diag" (seconds at ``net``)}."""
    if vary not in ("latency", "bandwidth"):
        raise ValueError(f"crossover: vary latency or bandwidth, not {vary!r}")

    def gap(x):                        # full minus diag, with the varied parameter at x
        n = replace(net, latency=x) if vary == "latency" else replace(net, bandwidth=1.0 / x)
        return tuple(k * seconds(newton_iteration(grid, workload, rate, n, gn, cores))
                     for k, gn in zip(iterations, ("full", "diag")))
    # x: alpha for latency, beta = 1/bandwidth for bandwidth (the time is linear in both)
    x0 = 0.0 if vary == "latency" else 1e-12
    x1 = x0 + (1e-3 if vary == "latency" else 1e-9)
    (f0, d0), (f1, d1) = gap(x0), gap(x1)
    slope = ((f1 - d1) - (f0 - d0)) / (x1 - x0)
    tie = x0 - (f0 - d0) / slope if slope else None
    full, diag = gap(net.latency if vary == "latency" else net.beta)
    if tie is None or tie <= 0:
        name = "newton-full" if full < diag else "newton-diag"
        return dict(vary=vary, value=None, faster_below=name, faster_above=name,
                    full=full, diag=diag)
    low, high = ("newton-full", "newton-diag") if slope > 0 else ("newton-diag", "newton-full")
    if vary == "bandwidth":            # below the tie in bandwidth = above it in beta
        return dict(vary=vary, value=1.0 / tie, faster_below=high, faster_above=low,
                    full=full, diag=diag)
    return dict(vary=vary, value=tie, faster_below=low, faster_above=high, full=full,
                diag=diag)


def sleep_overshoot(asked=1e-4, samples=100):
    """Median seconds a sleep of ``asked`` seconds lasts too long on this machine now (the
    kernel's timer slack and the wait for a core): what each collective of an injected
    run adds to its modeled time, once per collective on the chain."""
    extra = []
    for _ in range(samples):
        tic = time.perf_counter()
        time.sleep(asked)
        extra.append(time.perf_counter() - tic - asked)
    return sorted(extra)[len(extra) // 2]
