"""A job under ``Comm.guard`` for test_guard.py: ranks loop over world and link allreduces;
``--stop RANK`` makes that rank stop itself (SIGSTOP) at iteration 3, ``--hang RANK`` makes
it compute forever there (it never reaches the next collective), ``--iters`` bounds the loop.
Prints ``ready`` on rank 0 once the guard runs."""
import argparse
import os
import signal
import sys
import time

import numpy as np

from dnewton_core.comm import Comm

p = argparse.ArgumentParser()
p.add_argument("--stall-timeout", type=float, default=2.0)
p.add_argument("--stop", type=int, default=None)
p.add_argument("--hang", type=int, default=None)
p.add_argument("--iters", type=int, default=10**9)
a = p.parse_args()

comm = Comm.on_world()
pairs = comm.split({"pair(0,1)": (0, 1), "pair(2,3)": (2, 3)})
guard = comm.guard(a.stall_timeout)
if comm.rank == 0:
    print("ready", flush=True)
for k in range(a.iters):
    with comm.phase("cg"):
        if k == 3 and comm.rank == a.stop:
            os.kill(os.getpid(), signal.SIGSTOP)
        while k == 3 and comm.rank == a.hang:
            time.sleep(0.01)
        comm.allreduce(np.ones(8), comm.world_group())
        for group in pairs.values():
            comm.allreduce(np.ones(4), group)
guard.stop()
sys.exit(0)
