"""SGD's chain of layers on 2 cores: what a waiting rank costs (docs/performance.md).

    .venv/bin/python bench/sgd_chain.py [MODE ...]   # about two minutes; default: every mode

One SGD step of 784-300-300-10, batch 128, as the kit's 4-rank grid 2,1,1,1 runs it, written
with mpi4py alone: layer 1's two halves sum their products into layer 2 (an allreduce among
ranks 0, 1, 2), layer 2 sends to layer 3 (a broadcast between ranks 2 and 3), and the
backward messages return the same way. Nothing can overlap: every layer waits for the one
before. Printed: milliseconds per step on one process (the same products), and on 4 ranks
and on 3 ranks 1,1,1,1 (layer 1 whole), for each way of waiting: ``spin`` (MPI's own), ``nap``
(``polling.Patience("nap")``), ``doorbell`` (a FIFO per group and rank that every member
writes to when it joins and when it completes a collective; a waiting rank sleeps in
``select`` on it, 1 ms at most, and polls when woken) and ``join`` (the same FIFOs, rung only
on joining: a rank sleeps until every other member has joined, then waits as MPI does). Then
the same step on 2 ranks that each hold a block of every layer (``--halves``: what the kit
cannot do yet), and what one hop costs, 2 ranks on 2 cores, spinning or asleep until rung. The doorbells are
probes, not part of the kit: ``doorbell`` shows why a sleeping rank cannot simply be woken
by its peers (MPICH moves a collective in steps, the stages of its schedule and the pieces
of a large message, that each need both sides to poll), ``join`` what waking costs. MPICH's
variables pass through (``MPIR_CVAR_...``): larger shared-memory cells and switching on its
single-copy transport changed nothing (docs/performance.md).
"""
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STEPS, BATCH = 1000, 128


def weights(seed, shape):
    import numpy as np
    return np.random.default_rng(seed).standard_normal(shape) * 0.01


def steps(batch):
    """Steps timed for a batch size: STEPS of BATCH, fewer of a larger batch (20 at least)."""
    return max(20, STEPS * BATCH // batch)


def one_process(batch=BATCH):
    import numpy as np
    X, W1 = weights(0, (batch, 784)), weights(1, (784, 300))
    W2, W3 = weights(2, (300, 300)), weights(3, (300, 10))
    tic = time.perf_counter()
    for _ in range(steps(batch)):
        z1 = np.maximum(X @ W1, 0)
        z2 = np.maximum(z1 @ W2, 0)
        dxi = z2 @ W3 - 1.0
        _ = z2.T @ dxi, z1.T @ (d2 := dxi @ W3.T), X.T @ (d2 @ W2.T)
    return (time.perf_counter() - tic) / steps(batch)


class Doorbells:
    """One FIFO per (group, rank) in a directory rank 0 makes; ``ring`` writes a byte to
    every other member's; ``complete`` rings, then polls the request and sleeps on its own
    FIFO (1 ms at most) between polls, and rings again when the request is complete."""

    def __init__(self, world, groups):
        rank = world.Get_rank()
        self.dir = world.bcast(tempfile.mkdtemp(prefix="dnewton-bells-") if rank == 0 else None)
        self.read, self.peers = {}, {}
        for name, members in groups.items():
            if rank in members:
                path = f"{self.dir}/{name}-{rank}"
                os.mkfifo(path)
                self.read[name] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                os.open(path, os.O_WRONLY | os.O_NONBLOCK)       # never at end of file
        world.Barrier()
        for name, members in groups.items():
            if rank in members:
                self.peers[name] = [os.open(f"{self.dir}/{name}-{q}", os.O_WRONLY | os.O_NONBLOCK)
                                    for q in members if q != rank]

    def ring(self, name):
        for fd in self.peers[name]:
            try:
                os.write(fd, b"x")
            except BlockingIOError:          # the FIFO is full: the peer has bells to read
                pass

    def complete(self, request, name):
        self.ring(name)
        while not request.Test():
            select.select([self.read[name]], [], [], 1e-3)
            try:
                os.read(self.read[name], 4096)
            except BlockingIOError:
                pass
        self.ring(name)


class JoinBells(Doorbells):
    """Doorbells rung only when a member joins a collective: a waiting rank sleeps in
    ``select`` until every other member has joined, then leaves the rest to MPI's own
    waiting, so that no stage of the transfer waits on a sleeping rank. The bells are counted
    per group (a member rings once per collective, in the order every member runs them)."""

    def __init__(self, world, groups):
        super().__init__(world, groups)
        self.heard = dict.fromkeys(self.read, 0)     # bells read, less the ones used up

    def complete(self, request, name):
        self.ring(name)
        self.heard[name] -= len(self.peers[name])   # this collective's: one from each other
        while self.heard[name] < 0 and not request.Test():
            select.select([self.read[name]], [], [], 1e-3)
            try:
                self.heard[name] += len(os.read(self.read[name], 4096))
            except BlockingIOError:
                pass
        request.Wait()


def child(mode):
    import numpy as np
    from mpi4py import MPI

    from dnewton_core.polling import Patience
    world = MPI.COMM_WORLD
    rank, halves = world.Get_rank(), world.Get_size() - 2        # ranks of layer 1: 2 or 1
    two, three = halves, halves + 1                              # the ranks of layers 2 and 3
    members = {"link1": tuple(range(halves + 1)), "link2": (two, three)}
    comms = {name: world.Split(0 if rank in m else MPI.UNDEFINED, rank)
             for name, m in members.items()}
    if mode in ("doorbell", "join"):
        bells = (Doorbells if mode == "doorbell" else JoinBells)(world, members)
        complete = bells.complete
    else:
        patience = Patience(mode)
        complete = lambda request, name: patience.complete(request)      # noqa: E731
    link1, link2 = comms["link1"], comms["link2"]
    X, W1 = weights(rank, (BATCH, 784 // halves)), weights(10 + rank, (784 // halves, 300))
    W2, W3 = weights(2, (300, 300)), weights(3, (300, 10))
    back = np.empty((BATCH, 300))
    world.Barrier()
    tic = time.perf_counter()
    for _ in range(STEPS):
        if rank < two:                                        # layer 1, one half each
            s1 = X @ W1                         # a buffer stays referenced until complete
            complete(link1.Iallreduce(MPI.IN_PLACE, s1), "link1")
            complete(link1.Ibcast(back, root=two), "link1")
            _ = X.T @ back
        elif rank == two:                                     # layer 2
            s1 = np.zeros((BATCH, 300))
            complete(link1.Iallreduce(MPI.IN_PLACE, s1), "link1")
            z1 = np.maximum(s1, 0)
            s2 = z1 @ W2
            complete(link2.Ibcast(s2, root=0), "link2")
            complete(link2.Ibcast(back, root=1), "link2")
            _ = z1.T @ back
            up = back @ W2.T
            complete(link1.Ibcast(up, root=two), "link1")
        else:                                                 # layer 3
            complete(link2.Ibcast(back, root=0), "link2")
            z2 = np.maximum(back, 0)
            dxi = z2 @ W3 - 1.0
            _ = z2.T @ dxi
            up = dxi @ W3.T
            complete(link2.Ibcast(up, root=1), "link2")
    world.Barrier()
    seconds = time.perf_counter() - tic
    if rank == 0:
        print(seconds / STEPS)
        if mode in ("doorbell", "join"):
            shutil.rmtree(bells.dir, ignore_errors=True)


def hop(mode, hops=300):
    """Microseconds one hop of a chain costs beyond its products, on 2 ranks (a core each):
    the ranks take turns to multiply (3 products of 128 x 300 by 300 x 300) and broadcast
    300 KB to the other, who waits in ``mode`` (spin, or join: asleep until it is rung)."""
    import numpy as np
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    bells = JoinBells(world, {"all": (0, 1)}) if mode == "join" else None
    buf, A, B = np.ones((BATCH, 300)), weights(0, (BATCH, 300)), weights(1, (300, 300))
    world.Barrier()
    tic, busy = time.perf_counter(), 0.0
    for k in range(hops):
        if rank == k % 2:
            start = time.perf_counter()
            for _ in range(3):
                A @ B
            busy += time.perf_counter() - start
        request = world.Ibcast(buf, root=k % 2)
        bells.complete(request, "all") if bells else request.Wait()
    busy = world.reduce(busy)
    if rank == 0:
        print(1e6 * (time.perf_counter() - tic - busy) / hops)
        if bells:
            shutil.rmtree(bells.dir, ignore_errors=True)


def halves(batch=BATCH):
    """One SGD step on 2 ranks that each hold one block of every layer (grid 1,2,1,2, rank r
    holding blocks (1, 0, r), (2, r, 0) and (3, 0, r)): what a rank holding several blocks,
    which the kit cannot do yet, would cost. Link(1, r) then has one member and sends
    nothing; link(2, 0) is an allreduce of batch x 300 between the two ranks, forward (s^2)
    and backward (dz^2); the output columns are split, so the loss needs no message. SGD's
    batch is 128; a batch of 4096 is one of a Newton iteration's function and gradient passes."""
    import numpy as np
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    X, W1 = weights(0, (batch, 784)), weights(10 + rank, (784, 150))
    W2, W3 = weights(20 + rank, (150, 300)), weights(30 + rank, (300, 5))
    world.Barrier()
    tic = time.perf_counter()
    for _ in range(steps(batch)):
        z1 = np.maximum(X @ W1, 0)                              # my 150 columns of z^1
        s2 = z1 @ W2                                            # my part of s^2
        world.Allreduce(MPI.IN_PLACE, s2)
        z2 = np.maximum(s2, 0)
        dxi = z2 @ W3 - 1.0                                     # my 5 outputs
        dz2 = dxi @ W3.T
        world.Allreduce(MPI.IN_PLACE, dz2)
        _ = z2.T @ dxi, z1.T @ dz2, X.T @ (dz2 @ W2.T)
    world.Barrier()
    if rank == 0:
        print((time.perf_counter() - tic) / steps(batch))


def main():
    from dnewton_core.environment import blas_environment, local_environment, local_launch
    os.environ.update(blas_environment())
    env = local_environment()
    print(f"# {os.cpu_count()} cores; SGD steps of 784-300-300-10, batch {BATCH}, best of 2 runs "
          f"of {STEPS}")
    best = min(float(subprocess.run([sys.executable, __file__, "--one"], capture_output=True,
                                    text=True, env=env, check=True).stdout) for _ in range(2))
    print(f"{'1 process':>20} {1e3 * best:8.2f} ms a step")
    for mode in sys.argv[1:] or ("spin", "nap", "doorbell", "join"):
        for n in (4, 3):                # grids 2,1,1,1 and 1,1,1,1
            best = min(float(subprocess.run([*local_launch(n), sys.executable, __file__,
                                             "--child", mode], capture_output=True, text=True,
                                            env=env, check=True).stdout) for _ in range(2))
            print(f"{f'{n} ranks, ' + mode:>20} {1e3 * best:8.2f} ms a step")
    for batch in (BATCH, 4096):          # SGD's, and a batch of Newton's gradient pass
        one, two = (min(float(subprocess.run([*launch, sys.executable, __file__, *mode,
                                              str(batch)], capture_output=True, text=True,
                                             env=env, check=True).stdout) for _ in range(2))
                    for launch, mode in (([], ["--one"]), (local_launch(2), ["--halves"])))
        print(f"{'2 ranks, halves':>20} {1e3 * two:8.2f} ms a step of {batch} (a rank holding "
              f"a block of every layer), one process {1e3 * one:.2f} ms: {one / two:.2f}x")
    for mode in ("spin", "join"):
        best = min(float(subprocess.run([*local_launch(2), sys.executable, __file__, "--hop",
                                         mode], capture_output=True, text=True, env=env,
                                        check=True).stdout) for _ in range(2))
        print(f"{'one hop, ' + mode:>20} {best:8.0f} us beyond its products (2 ranks)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    elif sys.argv[1:2] == ["--hop"]:
        hop(sys.argv[2])
    elif sys.argv[1:2] == ["--halves"]:
        halves(*map(int, sys.argv[2:3]))
    elif sys.argv[1:2] == ["--one"]:
        print(one_process(*map(int, sys.argv[2:3])))
    else:
        main()
