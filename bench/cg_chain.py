"""CG's Gauss-Newton product on 3 ranks and 2 cores: what sharing the cores costs
(docs/performance.md).

    .venv/bin/python bench/cg_chain.py             # about a minute

One product (G_S v) of 784-300-300-10 on |S| = 3000, as the kit's 3-rank grid 1,1,1,1
computed it inside CG until 2026-11-29 (every D stored; the kit now keeps D^2 and D^3 as
``factors.py`` says, which makes the layer-2 and layer-3 ranks' part lighter still), written
with mpi4py and numpy alone so that the kit's code is not in
the measurement: every rank multiplies its own block (z^{m-1} V, then D), the |S| x n_L
sums meet in one allreduce over the world, every rank multiplies back (D^T, then z^T), and
CG's inner product is one scalar allreduce. The layer-1 rank holds 72% of the weights, so
at best a product takes its time alone. Printed, in milliseconds per product: one process
(the three blocks one after the other), the layer-1 block alone, and 3 ranks for each way
of waiting (``spin``, MPI's own; ``nap``, ``polling.Patience("nap")``, which the kit uses in
a pass this long), with the ranks left to the scheduler and pinned (the layer-1 rank alone
on one core, the other two on the other).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PRODUCTS, N_S, N_L = 30, 3000, 10
BLOCKS = [(784, 300), (300, 300), (300, N_L)]          # (rows, cols) of layer m's block


def block(m):
    """(z^{m-1} on S, V, D^m) of layer m + 1's block, random."""
    import numpy as np
    rng = np.random.default_rng(m)
    rows, cols = BLOCKS[m]
    return rng.random((N_S, rows)), rng.random((rows, cols)), rng.random((N_S, N_L, cols))


def product(z, V, D, allreduce=lambda buf: buf):
    """One block's share of G_S v, with ``allreduce`` summing J v over the blocks."""
    import numpy as np
    Jv = allreduce(np.einsum("snk,sk->sn", D, z @ V))
    return z.T @ np.einsum("sn,snk->sk", Jv, D)


def alone(which):
    """Seconds per product of the blocks ``which``, one after the other (best of rounds)."""
    blocks = [block(m) for m in which]
    best = float("inf")
    for _ in range(3):
        tic = time.perf_counter()
        for _ in range(PRODUCTS):
            for b in blocks:
                product(*b)
        best = min(best, (time.perf_counter() - tic) / PRODUCTS)
    return best


def child(mode, pinned):
    import numpy as np
    from mpi4py import MPI

    from dnewton_core.polling import Patience
    world, patience = MPI.COMM_WORLD, Patience(mode)
    rank = world.Get_rank()
    if pinned:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]} if rank == 0 else {cores[1]})

    def allreduce(buf):
        patience.complete(world.Iallreduce(MPI.IN_PLACE, buf))
        return buf

    z, V, D = block(rank)
    product(z, V, D, allreduce)                                   # warm-up
    best = float("inf")
    for _ in range(3):
        world.Barrier()
        tic = time.perf_counter()
        for _ in range(PRODUCTS):
            out = product(z, V, D, allreduce)
            allreduce(np.array([float(out[0, 0])]))               # CG's inner product
        world.Barrier()
        best = min(best, (time.perf_counter() - tic) / PRODUCTS)
    if rank == 0:
        print(best)


def main():
    from dnewton_core.environment import blas_environment, local_environment, local_launch
    os.environ.update(blas_environment())
    env = local_environment()
    cores = len(os.sched_getaffinity(0))
    print(f"# {cores} usable cores; one Gauss-Newton product of 784-300-300-10 on |S| = {N_S}, "
          f"best of 3 rounds of {PRODUCTS}")
    run = lambda *argv: float(subprocess.run(list(argv), capture_output=True, text=True,  # noqa: E731
                                             env=env, check=True).stdout)
    for label, which in (("1 process, all three blocks", "0,1,2"),
                         ("the layer-1 block alone", "0")):
        print(f"{label:>34} {1e3 * run(sys.executable, __file__, '--alone', which):8.1f} ms")
    for pinned in ([False, True] if cores >= 2 else [False]):
        for mode in ("spin", "nap"):
            argv = [*local_launch(3), sys.executable, __file__, "--child", mode] + \
                (["--pinned"] if pinned else [])
            label = f"3 ranks, {mode}, {'pinned' if pinned else 'scheduler'}"
            print(f"{label:>34} {1e3 * min(run(*argv) for _ in range(2)):8.1f} ms")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], "--pinned" in sys.argv)
    elif sys.argv[1:2] == ["--alone"]:
        print(alone([int(m) for m in sys.argv[2].split(",")]))
    else:
        main()
