"""The splits P_0..P_L of a grid: proposed for a number of MPI ranks, checked against the
rank count, read from text (docs/method.md §3). Pure bookkeeping, like ``partition.py``."""
from .model import check_gn_mode
from .partition import Grid, _as_int, _comma, _dash

__all__ = ["propose_splits", "checked_grid", "check_rank_count", "parse_splits"]


def _best_splits(layers, n_ranks):
    """Exhaustive depth-first search for propose_splits; None when no split gives exactly n_ranks.

    Branches are cut when (a) no choice of the remaining P's can make the sum of P_{m-1} P_m
    exactly n_ranks (a memoised feasibility table over (m, P_m, ranks left), at most
    L * n_ranks^2 entries), or (b) the largest partition so far already exceeds the best
    complete split found (it can only grow along a branch). Every split that is not cut is
    compared on (largest partition, P_L, the tuple itself), so the result is the exact optimum.
    """
    L = len(layers) - 1
    feasible_memo = {}

    def feasible(m, P, left):       # can P_{m+1..L} add exactly `left` partitions, given P_m = P?
        if m == L:
            return left == 0
        key = (m, P, left)
        if key not in feasible_memo:
            feasible_memo[key] = any(feasible(m + 1, Q, left - P * Q)
                                     for Q in range(1, min(layers[m + 1], left // P) + 1))
        return feasible_memo[key]

    def block(m, P_prev, P):        # largest partition of layer m: (m, 0, 0), with the biggest groups
        rows, cols = -(-layers[m - 1] // P_prev), -(-layers[m] // P)
        return rows * cols + cols

    best = [None, None]             # [key, splits]

    def extend(prefix, left, largest):
        m = len(prefix) - 1         # prefix = (P_0..P_m)
        if best[0] is not None and largest > best[0][0]:
            return
        if m == L:
            key = (largest, prefix[-1], prefix)
            if best[0] is None or key < best[0]:
                best[0], best[1] = key, prefix
            return
        P = prefix[-1]
        for Q in range(1, min(layers[m + 1], left // P) + 1):
            if feasible(m + 1, Q, left - P * Q):
                extend(prefix + (Q,), left - P * Q, max(largest, block(m + 1, P, Q)))

    for P0 in range(1, min(layers[0], n_ranks) + 1):
        if feasible(0, P0, n_ranks):
            extend((P0,), n_ranks, 0)
    return best[1]


def all_splits(layers, n_ranks):
    """Every splits P_0..P_L with sum_m P_{m-1} P_m == n_ranks and 1 <= P_m <= n_m, in
    lexicographic order (Fashion-MNIST 784-300-300-10: 308 of them for 64 ranks)."""
    layers = _valid_layers(layers)
    L, out = len(layers) - 1, []

    def extend(prefix, left):
        if len(prefix) == L + 1:
            if left == 0:
                out.append(prefix)
            return
        P, n = prefix[-1], layers[len(prefix)]
        for Q in range(1, min(n, left // P) + 1):
            extend(prefix + (Q,), left - P * Q)

    for P0 in range(1, min(layers[0], n_ranks) + 1):
        extend((P0,), n_ranks)
    return out


def _valid_layers(layers):
    """layers as a validated tuple of ints (the checks of Grid, with all splits 1)."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise ValueError(f"layers must be a sequence of integers, got {layers!r}")
    return Grid(layers, (1,) * len(layers)).layers


def propose_splits(layers, n_ranks):
    """The splits P_0..P_L for ``n_ranks`` MPI ranks: exactly ``n_ranks`` partitions with the
    smallest largest partition, or where none exist, ``n_ranks`` partitions in every layer.

    Among all splits with sum_m P_{m-1} P_m == n_ranks and 1 <= P_m <= n_m, choose the one
    that minimises the largest partition's n_params; ties prefer a smaller P_L (fewer splits
    of the output layer), then the lexicographically smallest tuple. Where none fits (fewer
    ranks than layers, for one), the splits a, R/a, a, R/a, ... give every layer R
    partitions, so that each rank holds one block of every layer (``partition.Grid``): the
    one whose ranks hold the fewest feature columns (a data set is most often far larger
    than its model), then whose rank holding the most parameters holds the fewest, then as
    above. ValueError when neither exists.
    """
    layers = _valid_layers(layers)
    n_ranks = _as_int(n_ranks, "n_ranks")
    if n_ranks < 1:
        raise ValueError(f"a grid needs at least 1 MPI rank, got {n_ranks}")
    L = len(layers) - 1
    best = _best_splits(layers, n_ranks) if n_ranks >= L else None
    best = best or _layered_splits(layers, n_ranks)
    if best is None:
        raise ValueError(f"no splits of layers {_dash(layers)} give exactly {n_ranks} partitions "
                         f"(sum over m of P_(m-1) * P_m with 1 <= P_m <= n_m), nor {n_ranks} "
                         f"in every layer (P_(m-1) * P_m = {n_ranks})")
    return best


def _layered_splits(layers, R):
    """The best splits a, R/a, a, ... (R partitions in every layer), or None."""
    L, best = len(layers) - 1, None
    for a in (a for a in range(1, R + 1) if R % a == 0):
        splits = tuple(a if m % 2 == 0 else R // a for m in range(L + 1))
        if any(P > n for P, n in zip(splits, layers)):
            continue
        grid = Grid(layers, splits, R)
        columns = max(len(grid.data_held(r)[0] or ()) for r in range(R))
        most = max(sum(p.n_params for p in grid.blocks(r)) for r in range(R))
        key = (columns, most, splits[-1], splits)
        best = min(best, key) if best else key
    return best and best[-1]


def proposal(layers):
    """A function of P: ``propose_splits(layers, P)`` where it has exactly P partitions, else
    None (the projection's machine counts: it models one machine a partition)."""
    def propose(P):
        try:
            splits = propose_splits(layers, P)
        except ValueError:
            return None
        return splits if Grid(layers, splits).size == P else None
    return propose


def checked_grid(layers, splits, gn="full", sync=1.0, n_ranks=1):
    """The grid of ``splits`` on ``n_ranks`` ranks, after every check that must hold before
    the first collective (the Gauss-Newton mode and sync fraction, the rank count)."""
    check_gn_mode(gn, sync)
    grid = Grid(layers, tuple(splits))
    check_rank_count(grid, n_ranks)
    if sync < 1 and n_ranks < grid.size:
        raise ValueError(f"a sync fraction below 1 needs one rank per partition: splits "
                         f"{_comma(grid.splits)} have {grid.size} partitions on {n_ranks} ranks: "
                         f"start {grid.size} ranks, or leave the fraction at 1")
    return Grid(grid.layers, grid.splits, n_ranks)


def check_rank_count(grid, n_ranks):
    """ValueError unless ``n_ranks`` is at most ``grid.size``: one MPI rank per partition, or
    fewer, each holding several (``partition.Grid``).

    The message proposes splits for ``n_ranks`` (see :func:`propose_splits`), or says why
    there are none.
    """
    n_ranks = _as_int(n_ranks, "n_ranks")
    if 1 <= n_ranks <= grid.size:
        return
    message = (f"splits {_comma(grid.splits)} have {grid.size} partitions, for at most "
               f"{grid.size} MPI ranks, but {n_ranks} were started")
    try:
        proposal = propose_splits(grid.layers, n_ranks)
    except ValueError as err:
        message += f"; no splits work for {n_ranks} ranks: {err}"
    else:
        message += (f"; for {n_ranks} ranks use splits {_comma(proposal)} (splits={proposal} in "
                    f"Python, --splits {_comma(proposal)} on the command line)")
    raise ValueError(message)


def parse_splits(text, layers):
    """'1,2,2,1' -> (1, 2, 2, 1), checked against ``layers`` (L+1 entries, 1 <= P_m <= n_m)."""
    layers = _valid_layers(layers)
    need = len(layers)
    example = _comma((1,) * need)
    if not isinstance(text, str):
        raise ValueError(f"splits must be text like {example!r}, got {text!r}")
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(p.isdigit() for p in parts):
        raise ValueError(f"cannot read splits {text!r}: expected {need} comma-separated positive "
                         f"integers P_0..P_{need - 1}, like {example}")
    splits = tuple(int(p) for p in parts)
    if len(splits) != need:
        raise ValueError(f"splits {text!r} has {len(splits)} entries, but the network {_dash(layers)} has "
                         f"L = {need - 1} layers and needs L+1 = {need} entries P_0..P_{need - 1}, like "
                         f"{example}")
    return Grid(layers, splits).splits
