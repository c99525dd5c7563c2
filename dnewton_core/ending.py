"""The one line a job ended by the guard prints (``comm.Guard``): which rank reports, and
what it says. Pure functions of the ranks' reports {rank: (what, line)}, where ``what`` is
("signal", name), ("stall" or "waiting", group, count, its world ranks): in a collective
for longer or not yet longer than the stall timeout, or ("running",)."""


def reporter_of(reports):
    """The rank that prints: the lowest that got a signal, else that waited beyond the stall
    timeout, else that waits, else the lowest."""
    for kind in ("signal", "stall", "waiting", "running"):
        ranks = [r for r, (w, _) in reports.items() if w[0] == kind]
        if ranks:
            return min(ranks)


def summary(reports, reporter, size):
    """One line from the ranks' reports {rank: (what, line)}: the reporter's line and, for a
    stall, the ranks of its group that were not waiting in the same collective."""
    what, line = reports[reporter]
    if what[0] != "stall":
        ranks = sorted(r for r, (w, _) in reports.items() if w[0] == what[0])
        return f"{line} (rank{'s' if len(ranks) > 1 else ''} {','.join(map(str, ranks))})"
    arrived = {r for r, (w, _) in reports.items()          # in the same collective
               if w[0] in ("stall", "waiting") and tuple(w[1:]) == tuple(what[1:])}
    missing = [r for r in what[3] if r not in arrived]
    silent = [r for r in range(size) if r not in reports]
    return (f"{line}; did not arrive: rank{'s' if len(missing) != 1 else ''} "
            f"{','.join(map(str, missing)) or '-'}"
            + (f"; no answer from rank{'s' if len(silent) != 1 else ''} "
               f"{','.join(map(str, silent))}" if silent else ""))
