"""Working and waiting: how each rank spent its CG time (notebook 5, docs/method.md §6).

The ledger's seconds of a phase are wall-clock time on one rank: computing, and sitting in
an MPI call until the slowest member of the group arrives. A run trained with
``lessons.fit(..., waits=True)`` also has, per phase, the seconds inside blocking MPI calls
("mpi_seconds"); this module splits each rank's CG time into the two. Runs on the client.
"""
from ..ledger import sync_threshold
from .tables import Table, format_seconds

CG_PHASES = ("cg", "sync")       # CG itself, and the sync fraction's notifications


def split_waiting(run, phases=CG_PHASES):
    """Per rank, seconds "computing" and "waiting" over ``phases`` of one run (from
    ``tables.gather_run`` of reports made with ``waits=True``).

    Returns a copy of ``run`` whose "per_rank" is [{"computing": {"seconds"}, "waiting":
    {"seconds"}}], the shape ``figures.seconds_by_rank`` draws. ValueError if the run was
    not trained with ``waits=True``.
    """
    per_rank = []
    for totals in run["per_rank"]:
        spent = [totals.get(p, {}) for p in phases]
        if any(d.get("seconds") and "mpi_seconds" not in d for d in spent):
            raise ValueError("this run has no waiting times: train it with waits=True")
        total = sum(d.get("seconds", 0.0) for d in spent)
        waiting = min(total, sum(d.get("mpi_seconds", 0.0) for d in spent))
        per_rank.append({"computing": {"seconds": total - waiting}, "waiting": {"seconds": waiting}})
    return dict(run, per_rank=per_rank)


def cg_seconds(run, kind="waiting"):
    """[seconds] per rank, in rank order, of ``kind`` ("waiting" or "computing") in CG."""
    return [t[kind]["seconds"] for t in split_waiting(run)["per_rank"]]


def waiting_rows(runs, slow_rank=None):
    """[(run, rank label, CG iterations, seconds computing, seconds waiting)] of every rank of
    every run, in rank order; ``slow_rank`` is marked "(slow)"."""
    rows = []
    for name, run in runs.items():
        split = split_waiting(run)["per_rank"]
        for rank, (t, iters) in enumerate(zip(split, run["cg_iters_per_rank"])):
            label = f"{rank} (slow)" if rank == slow_rank else str(rank)
            rows.append((name, label, sum(i or 0 for i in iters), t["computing"]["seconds"],
                         t["waiting"]["seconds"]))
    return rows


def waiting_table(runs, slow_rank=None):
    """A ``tables.Table`` of the runs' CG time, rank by rank: CG iterations (total over the
    run), seconds computing in CG (the slow rank's sleeps included) and seconds waiting in MPI
    calls (for the others' results after CG, and with tau < 1 for their notifications)."""
    header = ["run", "stop when done", "rank", "CG iters", "computing", "waiting"]
    rows, previous = [], None
    for name, label, iters, computing, waiting in waiting_rows(runs, slow_rank):
        n = len(runs[name]["per_rank"])
        stop = f"{sync_threshold(runs[name]['config'].get('sync', 1.0), n)} of {n}"
        first = name != previous                       # the run's name on its first row only
        rows.append((name if first else "", stop if first else "", label, iters, computing, waiting))
        previous = name
    return Table(header, rows, formats=(None,) * 4 + (format_seconds, format_seconds))
