"""Projection to many machines (docs/method.md §8): the seconds of one Newton iteration
(full and block-diagonal G) and of one SGD epoch on P machines, one rank each.

Assumptions (``project`` prints and writes them): one rank per machine; squared loss (the
softmax normalizer's messages are left out); every pass runs layer after layer
(no pipelining, as the kit's code does today) and no computing overlaps a message; each
layer's compute is its largest block's, at one compute rate (FLOP/s of one core, measured
by ``calibrate`` or given); each collective costs what ``network.py`` says (the slowest
rank's path); the CG iterations and line-search trials per Newton iteration are given
(defaults: the committed Fashion-MNIST study, results/fashion-mnist/long and long-others).
What it cannot know: cache and memory effects of other block sizes, the network's
contention, stragglers, and how CG behaves on another grid.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from . import network as netmodel
from .costs import F64, batch_sizes, link_sizes
from .partition import Grid


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


def _pass(grid, b, rate, net, backward=False, width=1):
    """(compute, network) seconds of a forward pass over b instances, or of the backward
    pass (``width`` outputs at once: n_L for the Jacobian)."""
    compute = comm = 0.0
    for m in range(1, grid.L + 1):
        rows, cols, link = _layer_blocks(grid, m)
        if not backward:
            compute += 2.0 * b * rows * cols / rate
            comm += _allreduce(F64 * b * cols, link, net)
        else:
            products = (2 if m > 1 else 1) if width == 1 else (1 if m > 1 else 0)
            compute += products * 2.0 * b * width * rows * cols / rate
            if m < grid.L:
                comm += _allreduce(F64 * b * width * cols, link, net)
    return compute, comm


def _allreduce(n, p, net):
    """Modeled seconds; nothing on one machine (``net`` None)."""
    return netmodel.allreduce(n, p, net) if net is not None and p > 1 else 0.0


def _scalars(count, grid, net):
    return count * _allreduce(F64, grid.size, net)


def _add(*pairs):
    return tuple(map(sum, zip(*pairs)))


def newton_iteration(grid, w, rate, net, gn="full"):
    """{phase: (compute seconds, network seconds)} of one Newton iteration (``net`` None:
    one machine, which computes every partition's product itself)."""
    function = _add(*(_pass(grid, b, rate, net) for b in batch_sizes(w.l, w.batch)),
                    (0.0, _scalars(1, grid, net)))
    sizes = batch_sizes(w.l - w.subsample, w.batch) + [w.subsample]
    gradient = _add(*(_add(_pass(grid, b, rate, net), _pass(grid, b, rate, net, True))
                      for b in sizes), (0.0, _scalars(1, grid, net)))
    n_L = grid.layers[-1]
    jacobian = _pass(grid, w.subsample, rate, net, backward=True, width=n_L)
    products = [4.0 * w.subsample * (len(p.rows) + n_L) * len(p.cols) / rate
                for p in grid.partitions]
    product = sum(products) if net is None else max(products)
    iters = w.cg_full if gn == "full" else w.cg_diag
    big = _allreduce(F64 * w.subsample * n_L, grid.size, net)
    cg = (iters * product, (iters * big + _scalars(1 + 2 * iters, grid, net)
                            if gn == "full" else 0.0) + _scalars(3, grid, net))
    trials = w.trials_full if gn == "full" else w.trials_diag
    return {"gradient": gradient, "jacobian": jacobian, "cg": cg,
            "line_search": tuple(trials * x for x in function)}


def sgd_epoch(grid, w, rate, net):
    """{phase: (compute, network)} of one SGD epoch and its evaluation of f."""
    steps = _add(*(_add(_pass(grid, b, rate, net), _pass(grid, b, rate, net, True))
                   for b in batch_sizes(w.l, w.sgd_batch)))
    function = _add(*(_pass(grid, b, rate, net) for b in batch_sizes(w.l, w.batch)),
                    (0.0, _scalars(1, grid, net)))
    return {"sgd": steps, "function": function}


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
            row[name + " seconds"] = sum(c + n for c, n in phases.values())
        rows.append(row)
    return rows


def _check(rate):
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"compute rate must be a positive number of FLOP/s, got {rate!r}")
