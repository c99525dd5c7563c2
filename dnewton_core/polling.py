"""How a rank waits for a collective to complete (docs/method.md §5).

MPI libraries wait by spinning: a waiting rank polls its messages without pause. That is
the fastest way when every rank has a core of its own, and the slowest when ranks
outnumber cores (a laptop, this kit's 2-core machine): the waiting ranks then take their
share of every core from the ranks that compute, and the layer that is working runs at
half speed while the others wait for it.

So a rank that shares its cores ``naps``: it starts the collective non-blocking, polls it
for ``SPIN`` seconds (a quick message is there by then) and then sleeps ``NAP`` seconds
between polls, leaving the core to a rank that computes. Measured here (4 ranks on 2 cores,
two computing 60 matrix products while two wait in an allreduce): the computing ranks took
0.91 s with MPI's own waiting and 0.56 s when the waiting ranks nap; a 72 MB allreduce
took 0.3 s either way. How a rank waits changes times, never which messages are sent.

``Comm.on_world`` chooses: nap when the ranks on this machine outnumber its usable cores.
On the command line, ``DNEWTON_WAIT`` = spin, nap or auto overrides the choice.
"""
import os
import time

MODES = ("spin", "nap")
SPIN = 50e-6          # seconds of polling before the first nap
NAP = 100e-6          # seconds asleep between polls (Linux adds about 50 us of timer slack)


def wait_mode(local_ranks, cores, choice=None):
    """"spin" or "nap" for a rank sharing ``cores`` usable cores with ``local_ranks`` ranks
    (itself included); ``choice`` is DNEWTON_WAIT's value (None or "auto": decide)."""
    choice = (choice or "auto").strip().lower()
    if choice == "auto":
        return "nap" if local_ranks > cores else "spin"
    if choice not in MODES:
        raise ValueError(f"DNEWTON_WAIT={choice!r}: choose spin, nap or auto")
    return choice


def usable_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                 # not Linux
        return os.cpu_count() or 1


def complete(request):
    """Return once the non-blocking MPI ``request`` is complete: poll, then poll and nap."""
    deadline = time.perf_counter() + SPIN
    while not request.Test():
        if time.perf_counter() > deadline:
            time.sleep(NAP)
