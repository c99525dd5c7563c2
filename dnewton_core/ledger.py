"""The ledger of the accounting layer: what every phase sent and how long it took.

No MPI here (``comm.py`` sends the messages and records them here), so tables and tests
read phases and records without loading an MPI library. Counting convention
(docs/method.md §5): a collective over a group of g > 1 ranks counts, on each of the g
ranks, one message of the size of the buffer that rank contributes; a point-to-point send
counts one message of its size on the sender. Totals are summed over ranks. A group of one
rank sends nothing and counts nothing.
"""
import math
import time
from collections import defaultdict
from contextlib import contextmanager

# The phases of a run, in the order tables show them (docs/method.md §5).
TRAINING_PHASES = ("function", "gradient", "jacobian", "cg", "sync", "diag_step", "line_search",
                   "sgd")
MONITORING = ("evaluate", "report", "setup")      # phases that watch training, not its cost
PHASES = TRAINING_PHASES + MONITORING
LEDGER_PHASES = PHASES + ("other",)               # "other": outside any phase (none expected)


class Ledger:
    """Messages and bytes per (phase, operation, group), and seconds per phase, on one rank."""

    def __init__(self):
        self.ledger = defaultdict(lambda: [0, 0])      # (phase, op, group) -> [messages, bytes]
        self.seconds = defaultdict(float)              # phase -> seconds on this rank
        self.extra = defaultdict(lambda: defaultdict(float))  # name -> phase -> seconds
        self.current = None                            # the phase being timed, if any
        self.trace = None                              # a list to log every message into
        self.timeline = None                           # a list of trace events, when kept
        self._tic = time.perf_counter()
        self._mark = {}

    def keep_timeline(self):
        """Log from now on every phase span and every message, with its time, into
        ``self.timeline`` (Chrome trace events, see ``trace_events``)."""
        self.timeline = []
        self._span_start = time.time()

    @contextmanager
    def phase(self, name):
        """Attribute the messages and the time inside this block to phase ``name``."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
        outer = self.current
        self._switch(name)
        try:
            yield
        finally:
            self._switch(outer)

    def _switch(self, name):
        """Charge the time since the last switch to the current phase (nested phases
        pause their outer phase, so seconds never count twice)."""
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] += now - self._tic
        if self.timeline is not None:
            wall = time.time()
            if self.current is not None:
                self.timeline.append(dict(name=self.current, ph="X", tid=0,
                                          ts=1e6 * self._span_start,
                                          dur=1e6 * (wall - self._span_start)))
            self._span_start = wall
        self.current, self._tic = name, now

    def count(self, op, group, nbytes, sends=True):
        """Record one message of ``nbytes`` in the current phase; ``sends=False``: this
        rank's part of the collective carries no data (it contributes zeros to receive the
        sum), which only the message log keeps."""
        entry = self.ledger[(self.current or "other", op, group)]
        entry[0] += 1
        entry[1] += nbytes
        if self.trace is not None:
            self.trace.append((self.current, op, group, nbytes, sends))

    def charge(self, modeled, spent, on_each=None):
        """Charge one message's ``modeled`` seconds on the network of the run, ``spent`` the
        seconds its call took (None: a message that does not block), and the seconds by
        which the modeled call outlasts the measured one (``network_added_seconds``: the
        modeled time of a run is its measured time plus these, docs/method.md §8);
        ``on_each``: {network name: modeled seconds}, the same under each one's keys."""
        phase, waited = self.current or "other", spent or 0.0
        if spent is not None:
            self.extra["mpi_seconds"][phase] += spent
        for key, add, s in [("network_seconds", "network_added_seconds", modeled)] + \
                [(network_key(n), added_key(n), s) for n, s in (on_each or {}).items()]:
            self.extra[key][phase] += s
            self.extra[add][phase] += max(0.0, s - waited)

    def totals(self):
        """{phase: {"messages", "bytes", "seconds"}} on this rank since the start."""
        out = defaultdict(lambda: dict(messages=0, bytes=0, seconds=0.0))
        for (phase, _, _), (n, b) in self.ledger.items():
            out[phase]["messages"] += n
            out[phase]["bytes"] += b
        for phase, s in self.seconds.items():
            out[phase]["seconds"] = s
        for name, per_phase in self.extra.items():       # with a network model, see comm.py
            for phase, s in per_phase.items():
                out[phase][name] = s
        return dict(out)

    def take_record(self):
        """This rank's totals since the previous call (for one iteration's record)."""
        now = self.totals()
        before, self._mark = self._mark, now
        return difference(now, before)


def event(op, group, nbytes, start, end, modeled=None):
    """A trace event for one message: its group and bytes, and its modeled seconds."""
    args = {"group": group, "bytes": nbytes}
    if modeled is not None:
        args["modeled_us"] = round(1e6 * modeled, 3)
    return dict(name=op, ph="X", tid=1, ts=1e6 * start, dur=1e6 * (end - start), args=args)


def trace_events(per_rank, names=None):
    """A Chrome trace (the JSON Perfetto and chrome://tracing open) from every rank's
    timeline: one process row per rank (named by ``names[rank]``), a thread for its phases
    and one for its messages; times in microseconds from the earliest event."""
    origin = min((e["ts"] for events in per_rank for e in events), default=0.0)
    out = []
    for rank, events in enumerate(per_rank):
        label = names[rank] if names else f"rank {rank}"
        out += [dict(name="process_name", ph="M", pid=rank, args={"name": label}),
                dict(name="thread_name", ph="M", pid=rank, tid=0, args={"name": "phases"}),
                dict(name="thread_name", ph="M", pid=rank, tid=1, args={"name": "messages"})]
        out += [dict(e, pid=rank, ts=round(e["ts"] - origin, 3), dur=round(e["dur"], 3))
                for e in events]
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def difference(after, before):
    """{phase: {key: after - before}} of two ``Ledger.totals``."""
    return {p: {k: v - before.get(p, {}).get(k, 0) for k, v in d.items()}
            for p, d in after.items()}


def network_key(name):
    """The key, in a phase of a record, of the modeled seconds on network ``name`` (every
    modeled network has one; ``network_seconds`` is the one ``--network-mode`` acts on)."""
    return f"network_seconds@{name}"


def added_key(name):
    """The key of the seconds the modeled network ``name`` adds to the measured ones."""
    return f"network_added_seconds@{name}"


def _is_seconds(key):
    return key.split("@")[0].endswith("seconds")


def combine_records(per_rank):
    """Sum messages and bytes over ranks; of every kind of seconds, the slowest rank's."""
    out = {}
    for record in per_rank:
        for phase, d in record.items():
            o = out.setdefault(phase, dict(messages=0, bytes=0, seconds=0.0))
            for key, value in d.items():
                o[key] = max(o.get(key, 0.0), value) if _is_seconds(key) else \
                    o.get(key, 0) + value
    return out


def modeled_seconds(record, network=None):
    """One rank's time for one record on the modeled network (``network``: a name, for
    one of several modeled at once; None: the one ``network_added_seconds`` holds): per
    training phase, the seconds it measured, each collective made to last at least its
    modeled time (``Ledger.charge``), as mode inject makes it on the real clock. So the
    waits for other ranks and for a shared core stay, and the shared-memory transfer gives
    way to the network's when that is longer. An SGD epoch's f is left out, as its
    ``wall_time`` leaves it out (it only watches the training). None without that model."""
    key = "network_added_seconds" if network is None else added_key(network)
    phases = [d for p, d in record.items() if p in TRAINING_PHASES
              and not (p == "function" and "sgd" in record)]
    if not any(key in d for p, d in record.items() if p in TRAINING_PHASES):
        return None
    return sum(d.get("seconds", 0.0) + d.get(key, 0.0) for d in phases)


def modeled_networks(record):
    """The names of the networks modeled in a record (in the order they were charged)."""
    names = {}
    for d in record.values():
        names.update((k.split("@", 1)[1], None) for k in d if k.startswith("network_seconds@"))
    return list(names)


def modeled_over_ranks(per_rank):
    """{"modeled_seconds": the slowest rank's, "modeled_seconds_on": {network: the slowest
    rank's}} for one record given by every rank; {} without a network model."""
    primary = [modeled_seconds(r) for r in per_rank]
    if None in primary:
        return {}
    names = list(dict.fromkeys(n for r in per_rank for n in modeled_networks(r)))
    return {"modeled_seconds": max(primary), "modeled_seconds_on": {
        name: max(modeled_seconds(r, name) or 0.0 for r in per_rank) for name in names}}


def accumulate_modeled(records):
    """Give each record with modeled seconds its running sums: ``modeled_time`` and, per
    network, ``modeled_time_on`` (the records' time axes on the modeled networks)."""
    total, on = 0.0, {}
    for r in records:
        if "modeled_seconds" in r:
            total += r["modeled_seconds"]
            r["modeled_time"] = total
        if "modeled_seconds_on" in r:
            for name, s in r["modeled_seconds_on"].items():
                on[name] = on.get(name, 0.0) + s
            r["modeled_time_on"] = dict(on)
    return records


def training_bytes(records):
    """Bytes the training sent (every phase but the monitoring ones) in these records."""
    return sum(d["bytes"] for rec in records for phase, d in rec["comm"].items()
               if phase not in MONITORING)


def sync_threshold(fraction, n):
    """Number of partitions that must be done before all stop: ceil(tau N) (docs/method.md §6)."""
    return max(1, math.ceil(fraction * n - 1e-12))
