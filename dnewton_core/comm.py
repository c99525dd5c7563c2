"""The accounting communication layer: the only module that calls MPI (METHOD.md §5).

Every message of the method goes through ``Comm``, which records, per phase (function,
gradient, jacobian, cg, line_search, sync, sgd, evaluate), the operation, the group, the
number of messages and the bytes, and times each phase.

Counting convention (what "bytes" means everywhere in the kit): a collective over a group
of g > 1 ranks counts, on each of the g ranks, one message of the size of the buffer that
rank contributes; a point-to-point send counts one message of its size on the sender.
Totals are summed over ranks. A group of one rank sends nothing and counts nothing. (What
crosses the wire depends on MPI's algorithm: a ring allreduce moves about twice the
buffer per rank.)
"""
import math
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
from mpi4py import MPI

PHASES = ("function", "gradient", "jacobian", "cg", "line_search", "sync", "sgd",
          "evaluate", "report", "setup")
MONITORING = ("evaluate", "report", "setup")   # phases that watch training, not its cost
_OPS = {"sum": MPI.SUM, "max": MPI.MAX}
_SYNC_TAG = 7


class ConfigError(ValueError):
    """A configuration or data problem, found identically (or agreed) on every rank."""


class Comm:
    """A world communicator, its sub-communicators, and the ledger of what they sent.

    ``world`` defaults to ``MPI.COMM_SELF``: one process, no messages, so everything built
    on it runs serially in a test or a notebook cell.
    """

    def __init__(self, world=None):
        self.world = world if world is not None else MPI.COMM_SELF
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        self.ledger = defaultdict(lambda: [0, 0])      # (phase, op, group) -> [messages, bytes]
        self.seconds = defaultdict(float)              # phase -> seconds on this rank
        self.current = None                            # the phase being timed, if any
        self._tic = time.perf_counter()
        self.trace = None                              # a list to log every message into
        self._mark = {}
        self._sync = None

    # -- groups -------------------------------------------------------------------------
    def split(self, groups):
        """One sub-communicator per group; ``groups`` is {name: tuple of world ranks}.

        Collective over the world: every rank passes the same groups in the same order.
        Returns {name: Group} for the groups this rank belongs to.
        """
        mine = {}
        for name, ranks in groups.items():
            member = self.rank in ranks
            sub = self.world.Split(0 if member else MPI.UNDEFINED, ranks.index(self.rank)
                                   if member else 0)
            if member:
                mine[name] = Group(name, sub, tuple(ranks))
        return mine

    def world_group(self):
        return Group("world", self.world, tuple(range(self.size)))

    # -- collectives --------------------------------------------------------------------
    def allreduce(self, buf, group, op="sum"):
        """In-place Allreduce of the numpy array ``buf`` over ``group``; returns ``buf``."""
        if group.size > 1:
            group.comm.Allreduce(MPI.IN_PLACE, buf, op=_OPS[op])
            self._count("allreduce", group.name, buf.nbytes)
        return buf

    def allreduce_scalars(self, *values):
        """Sum a few floats over the world in one message; returns a float64 array."""
        return self.allreduce(np.array(values, dtype=np.float64), self.world_group())

    def gather_objects(self, obj):
        """Small Python objects to rank 0 (for the end-of-run report); a list on rank 0."""
        if self.size == 1:
            return [obj]
        out = self.world.gather(obj, root=0)
        self._count("gather", "world", len(repr(obj)))
        return out

    def agree(self, error):
        """Collective check after validation: raise everywhere if any rank found an error.

        ``error`` is this rank's message or None. Every rank reaches this call, so a
        problem seen on one rank (a missing file on one machine) ends all of them.
        """
        errors = self.world.allgather(error) if self.size > 1 else [error]
        bad = [(r, e) for r, e in enumerate(errors) if e is not None]
        if bad:
            r, e = bad[0]
            same = all(e2 == e for _, e2 in bad) and len(bad) == self.size
            raise ConfigError(e if same or self.size == 1 else f"rank {r}: {e}")

    # -- non-blocking notification (the sync fraction of METHOD.md §4) --------------------
    def sync_pending(self):
        """The state of the current notification round, or None between rounds."""
        return self._sync

    def sync_start(self):
        """Post a receive for every other rank's one "I am done" message of this CG."""
        bufs = [np.zeros(1, dtype=np.int64) for _ in range(self.size)]
        recvs = [self.world.Irecv(bufs[r], source=r, tag=_SYNC_TAG)
                 for r in range(self.size) if r != self.rank]
        self._sync = dict(recvs=recvs, sends=[], arrived=0, sent=False)

    def sync_done_count(self, done):
        """Tell the others once that this rank is done; return how many ranks are done.

        Never blocks: completed receives are counted with Testsome.
        """
        s = self._sync
        if done and not s["sent"]:
            self._sync_send()
        while True:    # MPICH completes about one request per Testsome: drain them all
            pending = [q for q in s["recvs"] if q != MPI.REQUEST_NULL]
            done_now = MPI.Request.Testsome(pending) if pending else None
            if not done_now:
                return s["arrived"] + int(s["sent"])
            s["arrived"] += len(done_now)

    def sync_finish(self):
        """Send this rank's message if not yet sent, then wait for everyone's."""
        if not self._sync["sent"]:
            self._sync_send()
        MPI.Request.Waitall(self._sync["recvs"] + self._sync["sends"])
        self._sync = None

    def _sync_send(self):
        msg = np.ones(1, dtype=np.int64)
        s = self._sync
        s["sends"] = [self.world.Isend(msg, dest=r, tag=_SYNC_TAG)
                      for r in range(self.size) if r != self.rank]
        s["sent"] = True
        for _ in s["sends"]:
            self._count("isend", "world", msg.nbytes)

    # -- phases and the ledger ----------------------------------------------------------
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
        self.current, self._tic = name, now

    def _count(self, op, group, nbytes):
        entry = self.ledger[(self.current or "other", op, group)]
        entry[0] += 1
        entry[1] += nbytes
        if self.trace is not None:
            self.trace.append((self.current, op, group, nbytes))

    def totals(self):
        """{phase: {"messages", "bytes", "seconds"}} on this rank since the start."""
        out = defaultdict(lambda: dict(messages=0, bytes=0, seconds=0.0))
        for (phase, _, _), (n, b) in self.ledger.items():
            out[phase]["messages"] += n
            out[phase]["bytes"] += b
        for phase, s in self.seconds.items():
            out[phase]["seconds"] = s
        return dict(out)

    def take_record(self):
        """This rank's totals since the previous call (for one iteration's record)."""
        now = self.totals()
        before = self._mark
        self._mark = now
        return {p: {k: v - before.get(p, {}).get(k, 0) for k, v in d.items()}
                for p, d in now.items()}


class Group:
    """A named sub-communicator and the world ranks in it (in its rank order)."""

    def __init__(self, name, comm, ranks):
        self.name, self.comm, self.ranks = name, comm, ranks
        self.size = len(ranks)


def combine_records(per_rank):
    """Sum messages and bytes over ranks, take the slowest rank's seconds."""
    out = {}
    for record in per_rank:
        for phase, d in record.items():
            o = out.setdefault(phase, dict(messages=0, bytes=0, seconds=0.0))
            o["messages"] += d["messages"]
            o["bytes"] += d["bytes"]
            o["seconds"] = max(o["seconds"], d["seconds"])
    return out


def sync_threshold(fraction, n):
    """Number of partitions that must be done before all stop: ceil(tau N)."""
    return max(1, math.ceil(fraction * n - 1e-12))
