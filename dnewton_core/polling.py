"""How a rank waits for a collective to complete (docs/method.md §4).

MPI libraries wait by spinning: a waiting rank polls its messages without pause. That is
the fastest way when every rank has a core of its own, and a slow one when ranks outnumber
cores (a laptop, this kit's 2-core machine): the waiting ranks then take their share of
every core from the ranks that compute, and the layer that is working runs at half speed
while the others wait for it. Napping is no cure for every wait either: a rank that sleeps
wakes up late, and a run of many short collectives (digits, SGD's small batches) pays that
at every one.

So every collective starts non-blocking (``Iallreduce``, ``Ibcast``, ``Ireduce``: the same
algorithms, hence the same sums, however the rank waits), and a rank that shares its cores
is ``Patience``'s "patient": before a pass whose largest block product is long
(``LONG_FLOP``: a Newton pass over 4096 Fashion-MNIST images, not an SGD step of 128 nor a
digits batch) the model says so (``expect``), and the rank then naps in its collectives
(polls for ``SPIN`` seconds, then sleeps ``NAP`` seconds between polls); otherwise it leaves
the waiting to MPI. Measured here
with 4 ranks on 2 cores (``bench/waiting.py``): two ranks computing 60 matrix products while
two wait took 0.89 s with MPI's waiting and 0.51 s with napping, and 72 MB allreduces no
longer; but a run of short collectives is slower napping (docs/performance.md).

``Comm.on_world`` chooses "auto" (patient when the ranks on this machine outnumber its
usable cores, MPI's waiting otherwise); on the command line ``DNEWTON_WAIT`` = spin, nap or
auto overrides it.
"""
import time

MODES = ("spin", "nap", "auto")
SPIN = 50e-6          # seconds of polling before the first nap
NAP = 100e-6          # seconds asleep between polls (Linux adds about 50 us of timer slack)
LONG_FLOP = 1e8       # a pass whose largest block product has more FLOPs makes a rank nap


def wait_mode(local_ranks, cores, choice=None):
    """"spin", "nap" or "patient" for a rank sharing ``cores`` usable cores with
    ``local_ranks`` ranks (itself included); ``choice`` is DNEWTON_WAIT's value (None or
    "auto": patient when the ranks outnumber the cores, else spin)."""
    choice = (choice or "auto").strip().lower()
    if choice not in MODES:
        raise ValueError(f"DNEWTON_WAIT={choice!r}: choose spin, nap or auto")
    if choice == "auto":
        return "patient" if local_ranks > cores else "spin"
    return choice


class Patience:
    """How a rank waits: ``mode`` "spin" (MPI's own waiting), "nap" (always napping) or
    "patient" (napping while the pass at hand is long, ``expect``)."""

    def __init__(self, mode="spin"):
        self.mode, self.long = mode, False

    def expect(self, flops):
        """The pass about to start multiplies a block in ``flops`` floating-point operations:
        its collectives will keep ranks waiting about that long."""
        self.long = flops > LONG_FLOP

    def naps(self):
        return self.mode == "nap" or (self.mode == "patient" and self.long)

    def complete(self, request):
        """Return once the non-blocking MPI ``request`` is complete."""
        if not self.naps():
            request.Wait()
            return
        deadline = time.perf_counter() + SPIN
        while not request.Test():
            if time.perf_counter() > deadline:
                time.sleep(NAP)
