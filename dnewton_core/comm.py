"""The accounting communication layer: the only module that imports MPI (docs/method.md §5).

Every message of the method goes through ``Comm``, which sends it with mpi4py's
buffer-based collectives on numpy arrays and records it in its ``Ledger`` (``ledger.py``:
the phases, the counting convention, the records). ``Comm.guard`` starts a ``Guard``: a
thread that ends the whole job with one line when a rank waits too long in a collective
(a stalled or dead rank) or when a signal (Ctrl-C, SIGTERM) reaches any rank.
"""
import os
import signal
import socket
import sys
import threading
import time
from collections import defaultdict

import numpy as np
from mpi4py import MPI

from . import network as netmodel
from . import polling
from .ending import reporter_of, summary
from .environment import usable_cores
from .ledger import Ledger, event
from .model import ConfigError
from .outputs import WRITING, last_words

_OPS = {"sum": MPI.SUM, "max": MPI.MAX}
_SYNC_TAG, _GUARD_TAG = 7, 11           # point-to-point tags of the sync notices and the guard
_SIGNALS = {int(s) for s in signal.Signals}
STALL_EXIT, INTERRUPT_EXIT = 4, 130       # exit statuses of a stalled and an interrupted job


class Comm(Ledger):
    """A world communicator, its sub-communicators, and the ledger of what they sent.

    ``world`` defaults to ``MPI.COMM_SELF``: one process, no messages, so everything built
    on it runs serially in a test or a notebook cell. ``Comm.on_world()`` is every rank.

    With a ``network`` (``network.Network``), every collective is also charged its modeled
    time (docs/method.md §8): per phase, the seconds in MPI (``mpi_seconds``), the modeled
    ones (``network_seconds``) and the modeled minus the measured (``network_added_seconds``).
    With ``inject=True`` a collective that returns sooner than its model lasts it (the rank
    sleeps the difference). The networks of ``also`` are charged too (model mode only), as
    ``network_seconds@NAME`` and ``network_added_seconds@NAME`` (``ledger.network_key``).
    """

    def __init__(self, world=None, network=None, inject=False):
        super().__init__()
        self.network, self.inject = network, inject
        self.also = ()                      # other networks charged (model mode), see above
        self.world = world if world is not None else MPI.COMM_SELF
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        self._sync = None
        self.waiting = None                 # (op, group, its count, phase, since) while in MPI
        self._calls = defaultdict(int)      # group name -> collectives entered
        self._in_flight = {}                # group name -> (op, group, buf, request), "later"
        self._guard = None
        self.patience = polling.Patience()  # how this rank waits in a collective (polling.py)

    @classmethod
    def on_world(cls, network=None, inject=False):
        """A ``Comm`` over ``MPI.COMM_WORLD``: every rank started by mpiexec. Its ranks are
        patient when they outnumber this machine's cores (``choose_wait``)."""
        comm = cls(MPI.COMM_WORLD, network, inject)
        comm.choose_wait()
        return comm

    def choose_wait(self, choice=None):
        """Set how this rank waits (``polling.wait_mode``; ValueError for a bad ``choice``).
        Collective over the world: it counts the ranks that share this machine."""
        node = self.world.Split_type(MPI.COMM_TYPE_SHARED)
        cores = set().union(*node.allgather(usable_cores()))   # of all its ranks (bound ones)
        local = node.Get_size()
        node.Free()
        self.patience = polling.Patience(polling.wait_mode(local, len(cores), choice))

    def abort(self, code):
        """End every rank of the job now (after an error on this rank alone)."""
        self.world.Abort(code)

    def guard(self, stall_timeout):
        """Start the ``Guard`` of this job (collective; main thread; several ranks only).
        ``stall_timeout`` seconds in one collective end the job (0: never)."""
        if self.size > 1 and self._guard is None:
            self._guard = Guard(self, stall_timeout)
        return self._guard

    def _wait(self, op, group, call, nbytes=0):
        """Run the blocking MPI ``call``, telling the guard where this rank waits, and
        charge it on the network model if there is one."""
        self._calls[group.name] += 1
        tic, start = time.monotonic(), time.time()
        self.waiting = (op, group, self._calls[group.name], self.current, tic)
        try:
            out = call()
        finally:
            self.waiting = None
        modeled = None
        if self.network is not None:            # (the accounting counts as time in MPI)
            each = self._on_each(lambda net: netmodel.seconds(op, nbytes, group.size, net))
            modeled = each[self.network.name]
            self.charge(modeled, self._inject(modeled, time.monotonic() - tic), each)
        if self.timeline is not None:
            self.timeline.append(event(op, group.name, nbytes, start, time.time(), modeled))
        return out

    def _inject(self, modeled, spent):
        """Inject mode: sleep until the call has lasted ``modeled`` s; returns its seconds."""
        if self.inject and modeled > spent:
            tic = time.monotonic()
            time.sleep(modeled - spent)              # Linux oversleeps short sleeps: measure
            spent += time.monotonic() - tic
        return spent

    def _on_each(self, seconds_on):
        """{name: seconds_on(net)} for every modeled network."""
        return {net.name: seconds_on(net) for net in (self.network, *self.also)}

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
    def allreduce(self, buf, group, op="sum", receives=False):
        """In-place Allreduce of the numpy array ``buf`` over ``group``; returns ``buf``.

        ``receives=True``: ``buf`` is zeros, this rank only receives the sum (a link with
        several senders and receivers, docs/method.md §4, or a rank with nothing to add);
        the message costs the same, and the log (``trace``) marks it for the figures."""
        return self._collective("allreduce", buf, group, not receives,
                                lambda c: c.Iallreduce(MPI.IN_PLACE, buf, op=_OPS[op]))

    def bcast(self, buf, group, root, later=False):
        """In-place Bcast of ``buf`` from ``root`` (its rank in ``group``): a link with one
        sender. Counted as an allreduce is, one message of buf's size per rank."""
        return self._collective("bcast", buf, group, group.comm.Get_rank() == root,
                                lambda c: c.Ibcast(buf, root=root), later)

    def reduce(self, buf, group, root, later=False, root_adds=False):
        """The sum of every rank's ``buf`` into ``root``'s (zeros, or its part if ``root_adds``),
        which alone gets it: a link with one receiver. Counted as an allreduce is."""
        mine = group.comm.Get_rank() == root
        return self._collective("reduce", buf, group, not mine or root_adds, lambda c: c.Ireduce(
            MPI.IN_PLACE if mine else buf, buf if mine else None, op=MPI.SUM, root=root),
            later and not mine)

    def _collective(self, op, buf, group, sends, start, later=False):
        """Start the non-blocking ``op`` (``start(sub-communicator)``), wait as this rank
        waits (``polling.py``), count it; nothing on a group of one rank. ``later``, on a
        rank that only sends (a bcast's root, a reduce's other ranks), and not in inject
        mode: do not wait now but at the next collective on the group (or on the world) or
        at ``flush``, so that the message travels while the rank computes; ``buf`` must
        not change until then."""
        if group.size > 1:
            self.flush(None if group.name == "world" else group.name)
            if later and sends and not self.inject:
                self._in_flight[group.name] = (op, group, buf, start(group.comm))
            else:
                self._wait(op, group, lambda: self.patience.complete(start(group.comm)),
                           buf.nbytes)
            self.count(op, group.name, buf.nbytes, sends=sends)
        return buf

    def in_flight(self, name):      # a send on group ``name`` still travels (buffer read-only)
        return name in self._in_flight

    def flush(self, name=None):
        """Wait for the send in flight on group ``name`` (None: on every group)."""
        for key in [name] if name else list(self._in_flight):
            if self.in_flight(key):
                op, group, buf, request = self._in_flight.pop(key)
                self._wait(op, group, lambda r=request: self.patience.complete(r), buf.nbytes)

    def allreduce_scalars(self, *values, receives=False):
        """Sum a few floats over the world in one message: a float64 array (``receives``: as in
        ``allreduce``)."""
        return self.allreduce(np.array(values, dtype=np.float64), self.world_group(), receives=receives)

    def gather_objects(self, obj):
        """Small Python objects to rank 0 (for the end-of-run report); a list on rank 0."""
        if self.size == 1:
            return [obj]
        out = self._wait("gather", self.world_group(), lambda: self.world.gather(obj, root=0),
                         len(repr(obj)))
        self.count("gather", "world", len(repr(obj)))
        return out

    def agree(self, error, same=None, root_only=False):
        """Collective check after validation: raise everywhere if any rank found an error
        (``error``: this rank's message or None; found on some ranks only, it names the
        first, unless ``root_only``: a check only rank 0 makes), or if ``same`` ((name,
        value), e.g. the data's digest) differs between ranks."""
        got = self._wait("allgather", self.world_group(), lambda: self.world.allgather(
            (error, same)), len(repr((error, same)))) if self.size > 1 else [(error, same)]
        bad = [(r, e) for r, (e, _) in enumerate(got) if e is not None]
        if bad:
            r, e = bad[0]
            alike = all(e2 == e for _, e2 in bad) and len(bad) == self.size
            raise ConfigError(e if alike or root_only or self.size == 1 else f"rank {r}: {e}")
        values = [s for _, s in got]
        if (odd := next((r for r, s in enumerate(values) if s != values[0]), None)) is not None:
            raise ConfigError(f"{same[0]} differs between ranks: {values[odd][1]} on rank "
                              f"{odd}, {values[0][1]} on rank 0")

    def agree_on(self, check, same=None, root_only=False):
        """``check()``'s value on every rank, or if it raised ValueError on any rank a
        ConfigError on every rank; ``same(value)``, ``root_only``: as ``agree``'s."""
        value, error = None, None
        try:
            value = check()
        except ValueError as e:
            error = str(e)
        self.agree(error, same(value) if same and error is None else None, root_only)
        return value

    # -- non-blocking notification (the sync fraction, docs/method.md §6) ---------------
    def sync_pending(self):       # the state of the current notification round, or None
        return self._sync

    def sync_start(self):
        """Post a receive for every other rank's one "I am done" message of this CG."""
        bufs = [np.zeros(1, dtype=np.int64) for _ in range(self.size)]
        recvs = [self.world.Irecv(bufs[r], source=r, tag=_SYNC_TAG)
                 for r in range(self.size) if r != self.rank]
        self._sync = dict(recvs=recvs, sends=[], arrived=0, sent=False)

    def sync_done_count(self, done):
        """Tell the others once that this rank is done; return how many ranks are done.
        Never blocks: completed receives are counted with Testsome."""
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
        requests = self._sync["recvs"] + self._sync["sends"]
        self._wait("waitall", self.world_group(), lambda: MPI.Request.Waitall(requests))
        self._sync = None

    def _sync_send(self):
        msg = np.ones(1, dtype=np.int64)
        s = self._sync
        s["sends"] = [self.world.Isend(msg, dest=r, tag=_SYNC_TAG)
                      for r in range(self.size) if r != self.rank]
        s["sent"] = True
        for _ in s["sends"]:
            self.count("isend", "world", msg.nbytes)
        if self.network is not None:         # charged, not delayed: the sends do not block
            each = self._on_each(lambda net: len(s["sends"]) * netmodel.send(msg.nbytes, net))
            self.charge(each[self.network.name], None, each)


class Guard:
    """A thread on every rank that ends the whole job, with one line, when

    * this rank has waited more than ``stall_timeout`` seconds in one collective: the ranks
      that waited too long tell each other where (group and how many collectives into it),
      and the lowest of them names the phase, the group and the ranks that did not arrive;
      exit status 4 (``STALL_EXIT``);
    * a signal (SIGINT, SIGTERM, SIGHUP) reaches this rank, even while it is blocked in MPI
      (the signal's byte arrives on a wake-up socket the thread watches); exit status 130.

    It talks on a duplicate of the world communicator (only while the job ends; not counted).
    Needs MPI_THREAD_MULTIPLE (mpi4py's default): else each rank reports alone."""

    poll = 0.2          # seconds between the thread's looks
    grace = 1.0         # seconds to hear from the other ranks before reporting

    def __init__(self, comm, stall_timeout):
        self.comm, self.stall_timeout = comm, float(stall_timeout)
        self.talk = comm.world.Dup()
        self.multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._handlers = {sig: signal.signal(sig, lambda *_: None)   # the thread acts
                          for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self._stopped = threading.Event()
        self.ending = False               # set once this rank takes part in ending the job
        self._thread = threading.Thread(target=self._watch, name="dnewton-guard", daemon=True)
        self._thread.start()

    def stop(self):
        """End the thread and give the signals back (main thread, before MPI finalizes).
        If the thread is ending the job, wait for it: it aborts, and this never returns."""
        self._stopped.set()
        self._thread.join(timeout=None if self.ending else 2 * self.poll + 1.0)
        if self.ending:                               # the thread died before its abort
            os._exit(STALL_EXIT)
        signal.set_wakeup_fd(self._old_wakeup)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._read.close()
        self._write.close()

    def _watch(self):
        try:
            while not self._stopped.is_set():
                self._look()
                self._stopped.wait(self.poll)
        except Exception as e:                        # never die silently: end the job
            print(f"error: rank {self.comm.rank}: the guard failed ({type(e).__name__}: {e})",
                  file=sys.__stderr__, flush=True)
            self._abort(STALL_EXIT)

    def _look(self):
        try:
            got = self._read.recv(16)
        except BlockingIOError:
            got = b""
        if got:
            name = signal.Signals(got[0]).name if got[0] in _SIGNALS else f"signal {got[0]}"
            self._end(("signal", name), f"interrupted by {name}", INTERRUPT_EXIT)
        waiting = self.comm.waiting                   # read once: the call may end meanwhile
        if waiting and self.stall_timeout > 0 and \
                time.monotonic() - waiting[4] > self.stall_timeout:
            self._end(*self._state(waiting), STALL_EXIT)
        if self.multiple and self.talk.iprobe(source=MPI.ANY_SOURCE, tag=_GUARD_TAG):
            self._end(*self._state(self.comm.waiting), None)   # another rank is ending it

    def _state(self, waiting):
        """(what this rank is doing, a line saying it) for the other ranks' reports."""
        if waiting is None:
            return ("running",), f"rank {self.comm.rank} was computing"
        op, group, count, phase, since = waiting
        waited = time.monotonic() - since       # a stall beyond the limit, else just waiting
        kind = "stall" if 0 < self.stall_timeout < waited else "waiting"
        return ((kind, group.name, count, group.ranks),
                f"{kind}: rank {self.comm.rank} waited {waited:.0f} s (limit {self.stall_timeout:g} s, "
                f"--stall-timeout) in phase {phase or '-'}: {op} number {count} over {group.name} "
                f"(ranks {','.join(map(str, group.ranks))})")

    def _end(self, what, line, code):
        """Tell the others, listen for ``grace`` seconds, report once, end the job."""
        self.ending = True
        reports = {self.comm.rank: (what, line)}
        try:
            self._exchange(what, line, reports)
        except Exception:                             # a rank may be gone: report what we have
            pass
        kinds = {w[0] for w, _ in reports.values()}
        last_words("interrupted" if "signal" in kinds else "stalled")  # rank 0's --json
        reporter = reporter_of(reports)
        if reporter == self.comm.rank:
            print(f"error: {summary(reports, reporter, self.comm.size)}", file=sys.__stderr__,
                  flush=True)
            time.sleep(0.5)                          # let mpiexec forward the line first
        else:
            time.sleep(2.0)                          # the reporting rank ends the job first
        self._abort(INTERRUPT_EXIT if "signal" in kinds else code or STALL_EXIT)

    def _exchange(self, what, line, reports):
        """Send this rank's report to every other rank; collect theirs for ``grace`` s."""
        if not self.multiple:
            return
        for r in range(self.comm.size):
            if r != self.comm.rank:
                self.talk.isend((what, line), dest=r, tag=_GUARD_TAG)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            status = MPI.Status()
            if self.talk.iprobe(source=MPI.ANY_SOURCE, tag=_GUARD_TAG, status=status):
                source = status.Get_source()
                reports[source] = self.talk.recv(source=source, tag=_GUARD_TAG)
            else:
                time.sleep(0.01)

    def _abort(self, code):
        WRITING.acquire(timeout=10.0)                # let a file being written land
        try:
            self.comm.world.Abort(code)
        finally:
            os._exit(code)


class Group:
    """A named sub-communicator and the world ranks in it (in its rank order)."""

    def __init__(self, name, comm, ranks):
        self.name, self.comm, self.ranks, self.size = name, comm, ranks, len(ranks)

    def free(self):
        self.comm.Free()


def world_rank():
    """This process's rank in ``MPI.COMM_WORLD`` and the world's size."""
    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def mpi_library():
    """The MPI library's name and version, one line (for a study's provenance)."""
    import mpi4py
    first = MPI.Get_library_version().strip().splitlines()[0]
    return " ".join(first.split()), mpi4py.__version__
