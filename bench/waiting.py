"""How a waiting rank should wait when ranks outnumber cores (dnewton_core/polling.py).

    .venv/bin/python bench/waiting.py          # 4 ranks: about 20 s

Four ranks: ranks 0 and 1 compute (60 products of two 600 x 600 matrices) while ranks 2 and
3 wait for them in an allreduce, then all four run 5 allreduces of 72 MB. Each way of waiting
(``spin``: MPI's own, ``nap``: polling.Patience("nap")) runs 3 times; the script prints the
best seconds the computing ranks took and the best seconds of the big allreduces. On a
machine with fewer cores than ranks, the spinning ranks take a share of the cores the
computing ranks need.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(mode):
    import numpy as np
    from mpi4py import MPI

    from dnewton_core.polling import Patience
    world, patience = MPI.COMM_WORLD, Patience(mode)
    rank = world.Get_rank()
    a, big = np.random.default_rng(rank).random((600, 600)), np.ones(9_000_000)
    world.Barrier()
    tic = time.perf_counter()
    if rank < 2:
        for _ in range(60):
            a @ a
    computed = time.perf_counter() - tic
    patience.complete(world.Iallreduce(MPI.IN_PLACE, np.zeros(1)))
    tic = time.perf_counter()
    for _ in range(5):
        patience.complete(world.Iallreduce(MPI.IN_PLACE, big))
    moved = time.perf_counter() - tic
    out = world.gather((computed, moved))
    if rank == 0:
        print(max(c for c, _ in out[:2]), max(m for _, m in out))


def main():
    from dnewton_core.environment import local_environment, local_launch
    env = local_environment()
    print(f"# {os.cpu_count()} cores, 4 ranks: 2 compute while 2 wait, then 5 allreduces of 72 MB")
    print(f"{'wait':>5} {'computing s':>12} {'allreduces s':>13}")
    for mode in ("spin", "nap"):
        best = [float("inf"), float("inf")]
        for _ in range(3):
            got = subprocess.run([*local_launch(4), sys.executable, __file__, "--child", mode],
                                 capture_output=True, text=True, env=env, check=True)
            best = [min(b, float(x)) for b, x in zip(best, got.stdout.split())]
        print(f"{mode:>5} {best[0]:>12.3f} {best[1]:>13.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
