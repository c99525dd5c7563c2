"""Closed-form message counts per phase (docs/method.md §5), summed over ranks. No MPI here.

Counting convention as in ``comm.py``: a collective over g > 1 ranks (an allreduce, or
the bcast or reduce of a link with one sender or one receiver, ``link_op``) counts g
messages, one per rank, each of the buffer's size; a group of one rank counts nothing. With

    g_m = P_{m-1} + P_{m+1}  (m < L),   g_L = P_{L-1}      the size of each link(m, j)
    [x] = 1 if x > 1 else 0,            N = sum_m P_{m-1} P_m,   E bytes per number

one forward pass over b instances sends, over the P_m links of each layer,
    messages  sum_m [g_m] P_m g_m,        bytes  E b sum_m [g_m] g_m n_m
plus, for softmax with P_L > 1, two (b,) allreduces over the P_{L-1} P_L output ranks.
A backward pass sends the same as the forward pass over layers 1..L-1 only; the Jacobian's
backward pass the same over layers 1..L-2 with every buffer n_L times larger, and over layer
L-1 one message as if of b = n_L instances (W^L's rows, once). The world's allreduces
count N messages each. On R < N ranks (a rank holding several partitions) g_{m,j} is the
number of distinct ranks holding the partitions of link(m, j), the link sums become
sum_{m,j} [g_{m,j}] g_{m,j} and E b sum_{m,j} [g_{m,j}] g_{m,j} |T_{m,j}|, the world and the
output group count their ranks; a link held by one rank sends nothing.
E is the model's element size (``dtype``: 8 for float64, 4 for float32) for the arrays;
the scalar sums (f, inner products) and the sync notifications are 8 bytes in either type.
Every function returns {"messages": int, "bytes": int}.
"""
import math

from .model import element_bytes, jacobian_chunks

F64 = 8                     # bytes of a scalar sum (always float64) or a notification (int64)


def _cost(messages=0, nbytes=0):
    return {"messages": int(messages), "bytes": int(nbytes)}


def _add(*costs):
    return _cost(sum(c["messages"] for c in costs), sum(c["bytes"] for c in costs))


def _scale(cost, k):
    return _cost(cost["messages"] * k, cost["bytes"] * k)


def link_sizes(grid):
    """g_m for m = 1..L: ranks in each link(m, j) when every rank holds one partition."""
    P, L = grid.splits, grid.L
    return [P[m - 1] + (P[m + 1] if m < L else 0) for m in range(1, L + 1)]


def link_op(grid, m, j, backward=False):
    """(collective, root's rank in the link group or None) of link(m, j) (docs/method.md §4).

    Forward, the ranks holding (m, ., j) send and every rank of the link needs the sum: a
    bcast from the one sending rank, else an allreduce. Backward (m < L), the ranks holding
    (m + 1, j, .) send to those holding (m, ., j): a bcast from the one sending rank, else a
    reduce to the one receiving rank, else an allreduce. All are counted alike (one message
    per rank); a link of one rank sends nothing. With one partition a rank the sending ranks
    are the P_{m-1} of layer m forward and the P_{m+1} of layer m + 1 backward.
    """
    link = grid.link_group(m, j)
    producers = grid.column_group(m, j)
    senders = grid.row_group(m + 1, j) if backward else producers
    if len(senders) == 1:
        return "bcast", link.index(senders[0])
    if backward and len(producers) == 1:
        return "reduce", link.index(producers[0])
    return "allreduce", None


def _links(grid, b, layers, width=1, dtype="float64"):
    """The link collectives of one pass over ``layers`` with b instances (x ``width``)."""
    E, msgs, nbytes = element_bytes(dtype), 0, 0
    for m in layers:
        for j, T in enumerate(grid.groups(m)):
            g = len(grid.link_group(m, j))
            if g > 1:
                msgs, nbytes = msgs + g, nbytes + E * b * width * g * len(T)
    return _cost(msgs, nbytes)


def _world(grid, count, floats_each, dtype="float64"):
    """``count`` allreduces over all R ranks of ``floats_each`` numbers of ``dtype`` each
    (the scalar sums: float64)."""
    N = grid.ranks
    return _cost(N * count, N * count * floats_each * element_bytes(dtype)) if N > 1 \
        else _cost()


def _softmax_normalizer(grid, b, loss, dtype):
    ranks = len(grid.output_group)
    if loss != "cross_entropy" or grid.splits[-1] == 1 or ranks == 1:
        return _cost()
    return _cost(2 * ranks, 2 * ranks * b * element_bytes(dtype))


def batch_sizes(n, batch_size):
    """Sizes of the mini-batches of n instances."""
    return [min(batch_size, n - k) for k in range(0, n, batch_size)]


def forward(grid, b, loss="squared", dtype="float64"):
    """One forward pass over b instances (with the softmax normalizer when it is split)."""
    return _add(_links(grid, b, range(1, grid.L + 1), dtype=dtype),
                _softmax_normalizer(grid, b, loss, dtype))


def backward(grid, b, dtype="float64"):
    """One backward pass over b instances: the links of layers 1..L-1."""
    return _links(grid, b, range(1, grid.L), dtype=dtype)


def function(grid, l, batch_size, loss="squared", dtype="float64"):
    """One evaluation of f: forward passes over all l instances, one scalar allreduce."""
    return _add(*(forward(grid, b, loss, dtype) for b in batch_sizes(l, batch_size)),
                _world(grid, 1, 1))


def gradient(grid, l, subsample, batch_size, loss="squared", dtype="float64", kept=False):
    """grad f with S as the last batch, and the norm ||g|| (one scalar allreduce);
    ``kept``: at the point of the line search's kept forward pass, the backward passes only,
    over the kept pass's own batches (S among them)."""
    sizes = batch_sizes(l, batch_size) if kept else \
        batch_sizes(l - subsample, batch_size) + [subsample]
    return _add(*(_add(_cost() if kept else forward(grid, b, loss, dtype),
                       backward(grid, b, dtype)) for b in sizes), _world(grid, 1, 1))


def jacobian(grid, subsample, batch_size, loss="squared", dtype="float64"):
    """The factored Jacobian on S: W^L's rows once over the links of layer L - 1 (n_L numbers
    a column: D^{L-1} is W^{L T} sigma', ``factors.LastHiddenD``), then the backward links of
    layers 1..L-2 x n_L, chunk by chunk of S (``model.jacobian_chunks``); + p on S for softmax."""
    n_L, L = grid.layers[-1], grid.L
    softmax = _world(grid, 1, subsample * n_L, dtype) if loss == "cross_entropy" else _cost()
    last = _links(grid, n_L, [L - 1], dtype=dtype) if L > 1 else _cost()
    return _add(last, *(_links(grid, c.stop - c.start, range(1, L - 1), width=n_L, dtype=dtype)
                        for c in jacobian_chunks(subsample, batch_size, n_L)), softmax)


def cg(grid, subsample, iterations, gn="full", rule="partition", dtype="float64"):
    """CG with ``iterations`` products, then the three scalars g'd, d'r, d'd.

    full: per product one |S| x n_L allreduce and two scalar ones (+1 for ||b||);
    diag: nothing inside CG, only the three scalars after it. The "global" rule of the
    diagonal G adds one scalar after CG, r'r (docs/method.md §6).
    """
    after = _world(grid, 4 if rule == "global" else 3, 1)
    if gn == "diag":
        return after
    return _add(_world(grid, iterations, subsample * grid.layers[-1], dtype),
                _world(grid, 1 + 2 * iterations, 1), after)


def diag_step(grid, subsample, directions, dtype="float64"):
    """The step after CG (docs/method.md §6) along ``directions`` (0: none; 1: rescale, or
    subspace without a previous step; 2: subspace): one allreduce of the |S| x n_L x
    ``directions`` products J v, and with two directions one of three scalars."""
    if directions == 0:
        return _cost()
    return _add(_world(grid, 1, directions * subsample * grid.layers[-1], dtype),
                _world(grid, 1, 3) if directions == 2 else _cost())


def sync(grid, fraction):
    """The notification of one CG with sync fraction < 1: every rank tells every other once."""
    N = grid.ranks
    return _cost(N * (N - 1), N * (N - 1) * F64) if fraction < 1 and N > 1 else _cost()


def line_search(grid, l, batch_size, trials, loss="squared", dtype="float64"):
    """``trials`` evaluations of f."""
    return _scale(function(grid, l, batch_size, loss, dtype), trials)


def sgd_epoch(grid, l, batch_size, loss="squared", dtype="float64"):
    """One epoch of SGD: forward and backward over each mini-batch."""
    return _add(*(_add(forward(grid, b, loss, dtype), backward(grid, b, dtype))
                  for b in batch_sizes(l, batch_size)))


def line_search_trials(alpha, max_halvings):
    """Trials the backtracking made to accept ``alpha`` (alpha = 0: all of them)."""
    return max_halvings + 1 if alpha == 0 else round(-math.log2(alpha)) + 1
