"""The notebooks' tables: the engines' answers (``lessons.py``), put in rank order and
checked against the reference. Runs on the client, which loads no MPI library.
"""
import numpy as np

from .. import reference as ref
from ..ledger import TRAINING_PHASES, sync_threshold


def gather_run(reports):
    """One run from the per-rank reports of :func:`fit`: rank 0's result, plus
    "per_rank" = [{phase: messages, bytes, seconds}] and "cg_iters_per_rank"."""
    reports = sorted(reports, key=lambda r: r["rank"])
    run = dict(reports[0]["result"])
    run["per_rank"] = [r["totals"] for r in reports]
    run["cg_iters_per_rank"] = [r["cg_iters"] for r in reports]
    return run


def assemble(blocks, grid):
    """The whole vector from per-rank blocks (in rank order), placed by ``grid.param_slices``."""
    out = np.zeros(grid.n_params)
    for rank, block in enumerate(blocks):
        out[grid.param_slices(rank)] = block
    return out


def relative_error(a, b):
    """max |a - b| / max |b|: normwise, as the kit's tests measure."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


def _table(header, rows):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _shape(shape):
    return "-" if shape is None else "x".join(str(s) for s in shape)


def holdings_table(reports):
    """The engines' own account of what they hold, one row per rank."""
    rows = [[r["rank"], "({}, {}, {})".format(*r["mij"]), _shape(r["W"]),
             "-" if r["b"] is None else r["b"], _shape(r["X"]), _shape(r["Y"]),
             r["param_bytes"], r["data_bytes"]] for r in sorted(reports, key=lambda r: r["rank"])]
    return _table(["rank", "(m, i, j)", "W block", "bias", "X held", "Y held", "param bytes",
                   "data bytes"], rows)


def holdings_match(reports, grid, n_instances):
    """True when every engine holds exactly what ``grid`` (``Grid.describe``) says it should."""
    for r in reports:
        p = grid.partition(r["rank"])
        want_X = (n_instances, len(p.rows)) if p.holds_features else None
        want_Y = (n_instances, len(p.cols)) if p.holds_labels else None
        data = n_instances * ((len(p.rows) if p.holds_features else 0)
                              + (len(p.cols) if p.holds_labels else 0)) * 8
        if ((p.m, p.i, p.j) != tuple(r["mij"]) or tuple(r["W"]) != p.block_shape
                or r["b"] != (len(p.cols) if p.has_bias else None) or r["X"] != want_X
                or r["Y"] != want_Y or r["param_bytes"] != 8 * p.n_params
                or r["data_bytes"] != data):
            return False
    return True


def message_steps(reports):
    """The messages of one step, merged over ranks in the order they happen.

    Every member of a group runs that group's collectives in the same order, so the k-th
    (group, op, bytes) of one rank is the k-th of every other member: one row per such
    collective, ordered consistently with every rank's own order (ties: lowest rank first).
    Returns [(phase, op, group, ranks, bytes per message)].
    """
    sequences, members, phase_of = [], {}, {}
    for r in sorted(reports, key=lambda r: r["rank"]):
        seen, seq = {}, []
        for phase, op, group, nbytes in r["trace"]:
            k = seen[(op, group)] = seen.get((op, group), -1) + 1
            key = (op, group, k)
            seq.append(key)
            members.setdefault(key, []).append(r["rank"])
            phase_of[key] = (phase, nbytes)
        sequences.append(seq)
    after = {key: set() for key in members}          # key -> keys that must come before it
    first = {}
    for seq in sequences:
        for pos, key in enumerate(seq):
            first[key] = min(first.get(key, (pos,)), (pos,))
            if pos:
                after[key].add(seq[pos - 1])
    order, done = [], set()
    while len(order) < len(members):
        ready = [k for k in members if k not in done and after[k] <= done]
        key = min(ready, key=lambda k: (first[k], members[k][0]))
        order.append(key)
        done.add(key)
    return [(phase_of[k][0], k[0], k[1], tuple(members[k]), phase_of[k][1]) for k in order]


def message_table(reports, floats_per_row=None):
    """:func:`message_steps` as a table; with ``floats_per_row`` = {rows: label}, a column
    reads each buffer as rows x columns (e.g. {1437: "l", 72: "|S|"})."""
    rows, total_msgs, total_bytes = [], 0, 0
    for step, (phase, op, group, ranks, nbytes) in enumerate(message_steps(reports), 1):
        n = nbytes // 8
        shape = str(n)
        for count, label in (floats_per_row or {}).items():
            if n % count == 0 and n >= count:
                shape = f"{label} x {n // count}" if n > count else label
                break
        rows.append([step, phase, f"{op} over {group}", ",".join(map(str, ranks)), shape,
                     nbytes, len(ranks), nbytes * len(ranks)])
        total_msgs += len(ranks)
        total_bytes += nbytes * len(ranks)
    rows.append(["", "total", "", "", "", "", total_msgs, total_bytes])
    return _table(["step", "phase", "collective", "ranks", "floats", "bytes each", "messages",
                   "bytes"], rows)


def measured(reports):
    """{phase: {"messages", "bytes"}} summed over ranks, from :func:`traced_step` reports."""
    out = {}
    for r in reports:
        for phase, d in r["record"].items():
            o = out.setdefault(phase, {"messages": 0, "bytes": 0})
            o["messages"] += d["messages"]
            o["bytes"] += d["bytes"]
    return out


def bytes_per_iteration(run, key="bytes"):
    """{phase: mean bytes (or ``key="messages"``) per iteration (epoch for SGD), summed over
    ranks} of one run."""
    history = run["history"]
    return {p: sum(rec["comm"].get(p, {}).get(key, 0) for rec in history) / len(history)
            for p in TRAINING_PHASES
            if any(rec["comm"].get(p, {}).get(key, 0) for rec in history)}


def _cg_total(run):
    """CG iterations over a run; with one CG per rank (block-diagonal G), each iteration
    counts its slowest rank's."""
    per_rank = run.get("cg_iters_per_rank")
    if per_rank:
        return sum(max(c or 0 for c in iteration) for iteration in zip(*per_rank))
    return sum(rec.get("cg_iters") or 0 for rec in run["history"])


def runs_table(runs, seconds=False):
    """One row per run: iterations, CG iterations (per iteration the slowest rank's, when each
    rank runs its own CG), MB sent per iteration, final f, accuracies.

    Seconds (which vary from run to run) only with ``seconds=True``, printed as "x.xx s".
    """
    header = ["run", "iters", "CG iters", "MB/iter", "final f", "train acc", "test acc"]
    rows = []
    for name, run in runs.items():
        h = run["history"]
        cg_iters = _cg_total(run)
        mb = sum(bytes_per_iteration(run).values()) / 1e6
        f = run["final"]
        row = [name, len(h), cg_iters if cg_iters else "-", f"{mb:.3f}",
               "-" if f["objective"] is None else f"{f['objective']:.4g}",
               "-" if f["train_accuracy"] is None else f"{f['train_accuracy']:.3f}",
               "-" if f["test_accuracy"] is None else f"{f['test_accuracy']:.3f}"]
        if seconds:
            row.append(f"{f['wall_time']:.2f} s")
        rows.append(row)
    return _table(header + (["time"] if seconds else []), rows)


def jacobian_table(factors):
    """The factored Jacobian blocks (:func:`jacobian_factors`), one row per rank."""
    rows = [[r["rank"], "({}, {}, {})".format(*r["mij"]), _shape(r["D"]), _shape(r["z"]),
             r["factored_bytes"], r["dense_bytes"]]
            for r in sorted(factors, key=lambda r: r["rank"])]
    return _table(["rank", "(m, i, j)", "D_ij", "z^{m-1} on S", "bytes kept", "dense J block bytes"],
                  rows)


def reference_block_diagonal(theta, X_S, v, C, grid, activation="relu", loss="squared"):
    """The dense oracle of the block-diagonal product on ``grid``'s partitions
    (``reference.block_diagonal_gauss_newton_product``)."""
    blocks = [grid.param_slices(rank) for rank in range(grid.size)]
    return ref.block_diagonal_gauss_newton_product(theta, X_S, v, C, grid.layers, blocks,
                                                   activation, loss)


def phase_table(runs, key="bytes"):
    """Bytes (or ``key="messages"``) per iteration, summed over ranks, by phase; one column
    per run."""
    per = {name: bytes_per_iteration(run, key) for name, run in runs.items()}
    phases = [p for p in TRAINING_PHASES if any(p in d for d in per.values())]
    rows = [[p] + [f"{per[name].get(p, 0):.0f}" for name in runs] for p in phases]
    rows.append(["total"] + [f"{sum(per[name].values()):.0f}" for name in runs])
    return _table([f"{key} per iteration"] + list(runs), rows)


def directions_table(points):
    """Full against block-diagonal Newton directions (:func:`newton_directions`), one row per
    point: ``points`` is {name: the engines' reports at that point}."""
    rows = []
    for name, reports in points.items():
        r0 = min(reports, key=lambda r: r["rank"])
        rows.append([name, f"{r0['cos']:.3f}", f"{r0['cos_full_g']:.3f}", f"{r0['cos_diag_g']:.3f}",
                     r0["cg_full"], " ".join(str(r["cg_diag"]) for r in
                                             sorted(reports, key=lambda r: r["rank"]))])
    return _table(["point", "cos(d_full, d_diag)", "cos(d_full, -g)", "cos(d_diag, -g)",
                   "CG full", "CG diag (each rank)"], rows)


def sync_table(runs, slow_rank):
    """One row per run of the block-diagonal method with a slow rank: the stopping threshold
    ceil(tau N), CG iterations of the slow rank and of the others (totals over the run), and
    seconds: the slow rank's in CG, the others' mean in CG + sync (mostly waiting)."""
    rows = []
    for name, run in runs.items():
        per_rank, iters = run["per_rank"], run["cg_iters_per_rank"]
        n = len(per_rank)
        others = [r for r in range(n) if r != slow_rank]
        wait = sum(waiting_seconds(run, r) for r in others) / len(others)
        tau = run["config"].get("sync", 1.0)
        rows.append([name, f"{sync_threshold(tau, n)} of {n}", sum(iters[slow_rank]),
                     " ".join(str(sum(iters[r])) for r in others),
                     f"{per_rank[slow_rank].get('cg', {}).get('seconds', 0.0):.2f} s", f"{wait:.2f} s"])
    return _table(["run", "stop when done", f"CG iters rank {slow_rank}", "CG iters others",
                   f"rank {slow_rank} in CG", "others in CG + sync"], rows)


def waiting_seconds(run, rank):
    """Seconds ``rank`` spent in the cg and sync phases of a run (from ``gather_run``)."""
    totals = run["per_rank"][rank]
    return sum(totals.get(p, {}).get("seconds", 0.0) for p in ("cg", "sync"))
