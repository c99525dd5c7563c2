"""The accounting communication layer: the only module that imports MPI (docs/method.md §5).

Every message of the method goes through ``Comm``, which sends it with mpi4py's
buffer-based collectives on numpy arrays and records it in its ``Ledger`` (``ledger.py``:
the phases, the counting convention, the records).
"""
import numpy as np
from mpi4py import MPI

from .ledger import Ledger
from .model import ConfigError

_OPS = {"sum": MPI.SUM, "max": MPI.MAX}
_SYNC_TAG = 7


class Comm(Ledger):
    """A world communicator, its sub-communicators, and the ledger of what they sent.

    ``world`` defaults to ``MPI.COMM_SELF``: one process, no messages, so everything built
    on it runs serially in a test or a notebook cell. ``Comm.world()`` is every rank.
    """

    def __init__(self, world=None):
        super().__init__()
        self.world = world if world is not None else MPI.COMM_SELF
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        self._sync = None

    @classmethod
    def on_world(cls):
        """A ``Comm`` over ``MPI.COMM_WORLD``: every rank started by mpiexec."""
        return cls(MPI.COMM_WORLD)

    def abort(self, code):
        """End every rank of the job now (after an error on this rank alone)."""
        self.world.Abort(code)

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
            self.count("allreduce", group.name, buf.nbytes)
        return buf

    def allreduce_scalars(self, *values):
        """Sum a few floats over the world in one message; returns a float64 array."""
        return self.allreduce(np.array(values, dtype=np.float64), self.world_group())

    def gather_objects(self, obj):
        """Small Python objects to rank 0 (for the end-of-run report); a list on rank 0."""
        if self.size == 1:
            return [obj]
        out = self.world.gather(obj, root=0)
        self.count("gather", "world", len(repr(obj)))
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

    def agree_on(self, check):
        """``check()``'s value on every rank, or, if it raised ValueError on any rank, a
        ConfigError on every rank (``agree``)."""
        value, error = None, None
        try:
            value = check()
        except ValueError as e:
            error = str(e)
        self.agree(error)
        return value

    # -- non-blocking notification (the sync fraction, docs/method.md §6) ---------------
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
            self.count("isend", "world", msg.nbytes)


class Group:
    """A named sub-communicator and the world ranks in it (in its rank order)."""

    def __init__(self, name, comm, ranks):
        self.name, self.comm, self.ranks = name, comm, ranks
        self.size = len(ranks)

    def free(self):
        self.comm.Free()


def world_rank():
    """This process's rank in ``MPI.COMM_WORLD`` and the world's size, and the MPI library."""
    world = MPI.COMM_WORLD
    return world.Get_rank(), world.Get_size()


def mpi_library():
    """The MPI library's name and version, one line (for a study's provenance)."""
    import mpi4py
    first = MPI.Get_library_version().strip().splitlines()[0]
    return " ".join(first.split()), mpi4py.__version__
