"""Sends left in flight (``Comm._collective``'s ``later``): a rank that only sends goes on
at once, and waits for its send before its next collective on the same group, before any
collective on the world, and at ``flush``; receivers and inject mode wait at once. Checked
on stand-in sub-communicators that log when each request is waited for."""
import numpy as np
import pytest

from dnewton_core import network as net
from dnewton_core.comm import Comm, Group


class Sub:
    """A stand-in sub-communicator: this rank is ``rank`` in it; its requests log waits."""

    def __init__(self, rank, log):
        self.rank, self.log = rank, log

    def Get_rank(self):
        return self.rank

    def Ibcast(self, buf, root):
        return Request(self.log, ("bcast", root))

    def Ireduce(self, sendbuf, recvbuf, op, root):
        return Request(self.log, ("reduce", root))

    def Iallreduce(self, sendbuf, recvbuf, op):
        return Request(self.log, ("allreduce",))


class Request:
    def __init__(self, log, what):
        self.log, self.what = log, what
        log.append(("start",) + what)

    def Wait(self):
        self.log.append(("wait",) + self.what)

    def Test(self):
        self.Wait()
        return True


def groups(log, rank=0):
    link = Group("link(1,0)", Sub(rank, log), (0, 1))
    other = Group("link(2,0)", Sub(rank, log), (1, 2))
    world = Group("world", Sub(rank, log), (0, 1, 2))
    return link, other, world


def test_a_root_goes_on_and_waits_before_its_next_collective_on_the_group():
    log, comm = [], Comm()
    link, other, _ = groups(log)
    buf = np.ones(4)
    assert comm.bcast(buf, link, root=0, later=True) is buf
    assert log == [("start", "bcast", 0)]                    # started, not waited for
    comm.allreduce(np.zeros(2), other)                       # another group: still in flight
    assert ("wait", "bcast", 0) not in log
    comm.bcast(buf, link, root=0, later=True)                # the same group: the first ends
    assert log[-2:] == [("wait", "bcast", 0), ("start", "bcast", 0)]
    comm.flush()
    assert log[-1] == ("wait", "bcast", 0) and not comm._in_flight
    assert comm.ledger[("other", "bcast", "link(1,0)")] == [2, 64]   # counted when started


def test_a_collective_on_the_world_waits_for_every_send_in_flight():
    log, comm = [], Comm()
    link, other, world = groups(log)
    comm.bcast(np.ones(3), link, root=0, later=True)
    comm.reduce(np.ones(3), other, root=1, later=True)      # rank 0 of 2 sends to rank 1
    comm.allreduce(np.zeros(1), world)
    assert [e[:2] for e in log] == [("start", "bcast"), ("start", "reduce"), ("wait", "bcast"),
                                    ("wait", "reduce"), ("start", "allreduce"),
                                    ("wait", "allreduce")]


@pytest.mark.parametrize("case", ["bcast receiver", "reduce root", "inject"])
def test_receivers_and_inject_mode_wait_at_once(case):
    log = []
    comm = Comm(network=net.PRESETS["1gbe"], inject=True) if case == "inject" else Comm()
    link, _, _ = groups(log, rank=1 if case == "bcast receiver" else 0)
    if case == "reduce root":
        comm.reduce(np.zeros(3), link, root=0, later=True)
    else:
        comm.bcast(np.ones(3), link, root=0, later=True)
    assert log[-1][0] == "wait" and not comm._in_flight
