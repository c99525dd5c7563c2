"""`make bench`: the kit's speed and memory in one run, each figure a ratio measured side by side.

Not a test: it measures and prints. The driver (no ``--part``) launches one MPI job per
measurement, through ``python -m dnewton_core.environment`` (one BLAS thread per rank,
loopback only), and prints:

  1. Gauss-Newton product (784-300-300-10 on |S| = 3000, float64, one thread): the kit's
     ``DenseModel`` (what one-process ``train`` uses) and ``DistributedModel`` (grid
     1,1,1,1, ``gn=diag``: no message; the L ranks take turns, the others asleep, so the
     sum of their times is one core's product), against the one-thread matmul rate.
     Interleaved: every round times the matmul, the dense product and each partition.
  2. A Newton iteration and an SGD epoch (Fashion-MNIST 784-300-300-10) on 1 process and
     on each 2-core candidate grid (2 ranks 2,1,2,1, each holding a block of every layer;
     3 ranks 1,1,1,1; 4 ranks 2,1,1,1): the same run on
     every grid (same f), so the times compare the same work; and 1 process and 4 ranks
     again with ``--no-keep-forward`` (kept.py: less memory, one forward pass more). The
     configurations run in turn, ``--rounds`` times, and each keeps its best. The fastest
     grid's Newton iteration is also split by phase, beside one process's, and its speed-up
     given without the run's first forward pass (paid once a run), as a long run has it.
  3. Peak memory per rank: every rank's ru_maxrss at the end of its training job, gathered.
  4. What 2 cores gave: a pass's matrix product and a pass over memory on one core, against
     the same work cut in two halves that 2 ranks start together: about the most a 2-core
     speed-up of such work reached on this machine, beside the Newton target's 1.7x.

    .venv/bin/python bench/ratios.py              # or: make bench (about 3-5 minutes)
    .venv/bin/python bench/ratios.py --quick      # digits 64-32-32-10: a smoke run
"""
import os

from dnewton_core.environment import blas_environment

os.environ.update(blas_environment())          # one BLAS thread, before numpy loads

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dnewton_core.ledger import TRAINING_PHASES  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gauss_newton import (  # noqa: E402
    blas_info,
    machine_busy,
    matmul_rates,
    polite_barrier,
    product_flops,
    random_data,
    timed,
)

MARK = "#RESULT "
# (splits, ranks, the line search's forward pass kept): 1 process first in each half
GRIDS = ((None, 1, True), ("2,1,2,1", 2, True), ("1,1,1,1", 3, True), ("2,1,1,1", 4, True),
         (None, 1, False), ("2,1,1,1", 4, False))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("product", "train", "ceiling"),
                    help="one measurement (children)")
    ap.add_argument("--data", default="fashion-mnist", help="data set of part 2 (fashion-mnist)")
    ap.add_argument("--hidden", default="300,300", help="hidden widths (300,300)")
    ap.add_argument("--splits", default=None, help="train part: the grid (none: 1 process)")
    ap.add_argument("--no-keep-forward", dest="keep_forward", action="store_false",
                    help="train part: without the kept forward pass")
    ap.add_argument("--iters", type=int, default=2, help="Newton iterations per run (2)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each configuration (2)")
    ap.add_argument("--subsample-size", type=int, default=3000, help="product's |S| (3000)")
    ap.add_argument("--repeats", type=int, default=5, help="products per round (5)")
    ap.add_argument("--quick", action="store_true", help="digits 64-32-32-10, |S| 300, 1 round")
    args = ap.parse_args(argv)
    if args.quick:
        args.data, args.hidden, args.subsample_size, args.rounds = "digits", "32,32", 300, 1
        args.iters, args.repeats = 1, 3
    args.hidden_sizes = tuple(int(h) for h in args.hidden.split(","))
    return args


def report(result):
    """Rank 0 of a child: one line the driver reads."""
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


# -- part 1: the product ----------------------------------------------------------------------
def run_product(args):
    from mpi4py import MPI

    from dnewton_core.comm import Comm
    from dnewton_core.dense import DenseModel
    from dnewton_core.distributed import DistributedModel

    world, n_S = MPI.COMM_WORLD, args.subsample_size
    rank, L = world.Get_rank(), world.Get_size()
    data = random_data(784 if not args.quick else 64, 10, n_S, 100, 0)
    layers = (data.n_features, *args.hidden_sizes, 10)
    model = DistributedModel(data, args.hidden_sizes, (1,) * (L + 1), Comm(world), gn="diag")
    S = np.arange(n_S)
    _, J = model.gradient_and_jacobian(model.theta, S)
    v = np.random.default_rng(rank).standard_normal(model.theta.shape)
    product = lambda: model.gauss_newton(J, v)                           # noqa: E731
    if rank == 0:
        dense = DenseModel(data, args.hidden_sizes)
        _, Jd = dense.gradient_and_jacobian(dense.theta, S)
        vd = np.random.default_rng(9).standard_normal(dense.theta.shape)
        dense_product = lambda: dense.gauss_newton(Jd, vd)               # noqa: E731
        dense_product()                                                  # warm-up
    product()
    times = {"dense": [], "mine": [], "matmul": []}
    busy = [machine_busy(0.5) if rank == 0 else None]
    for _ in range(args.rounds + 1):                   # interleaved rounds
        polite_barrier(world)
        if rank == 0:
            times["matmul"].append(max(g for _, _, g in matmul_rates(n_S, layers[0],
                                                                     layers[1], 3)))
            times["dense"] += timed(dense_product, args.repeats)
        for turn in range(L):
            polite_barrier(world)
            if rank == turn:
                times["mine"] += timed(product, args.repeats)
    polite_barrier(world)
    p = model.part
    flops = sum(product_flops(len(p.rows), len(p.cols), n_S, 10))
    rows = world.gather(dict(best=min(times["mine"]), flops=flops), root=0)
    if rank == 0:
        busy.append(machine_busy(0.5))
        report(dict(layers=layers, n_S=n_S, dense=min(times["dense"]),
                    matmul=max(times["matmul"]), partitions=rows, busy=busy))


# -- part 2 and 3: training and memory --------------------------------------------------------
def run_train(args):
    from dnewton_core.comm import Comm
    from dnewton_core.experiment import Problem, build_model, prepare, train
    from dnewton_core.newton import NewtonConfig
    from dnewton_core.sgd import SGDConfig

    comm = Comm.on_world()
    p = prepare(Problem(data=args.data, hidden=args.hidden_sizes, splits=args.splits,
                        keep_forward=args.keep_forward), comm)
    out = {}
    for method, config in (("newton", NewtonConfig(iters=args.iters)),
                           ("sgd", SGDConfig(epochs=1))):
        model = build_model(p.data, args.hidden_sizes, p.objective, comm, p.splits)
        out["layers"] = list(model.layers)
        history = train(model, method, config, config)
        walls = [0.0] + [r["wall_time"] for r in history.records]
        out[method] = dict(seconds=float(np.diff(walls).sum() / (len(walls) - 1)),
                           f=history.records[-1]["objective"],
                           phases=phase_seconds(history.records))
        model.close()
        del model
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024       # Linux: KiB
    peaks = comm.gather_objects(peak)
    if comm.rank == 0:
        report(dict(out, peaks=peaks, ranks=comm.size, splits=args.splits))


def phase_seconds(records):
    """{phase: this rank's mean seconds per iteration (or epoch)} over ``records``, as the
    training time is averaged (the phases divide a rank's clock, so they add up to it)."""
    out = {}
    for r in records:
        for phase, d in r["comm"].items():
            if phase in TRAINING_PHASES:
                out[phase] = out.get(phase, 0.0) + d["seconds"] / len(records)
    return out


# -- part 4: what 2 cores gave --------------------------------------------------------------
def run_ceiling(args):
    """On 2 ranks, interleaved rounds: rank 0 alone (rank 1 asleep) does the whole work, then
    both ranks, started together, do a half each, timed until the slower half ends. The work:
    a forward pass's layer-1 product on one batch, (b x n_0) @ (n_0 x n_1), cut by features
    as on the grid 2,1,2,1; and a pass over memory, D^1 u on |S| (``factors.times``: |S| n_L
    n_1 numbers read once), cut by instances. With --quick both fit in the caches and the
    calls are shorter than a rank takes to wake: the ratios then mean nothing."""
    from mpi4py import MPI

    from dnewton_core.factors import times as d_times
    world = MPI.COMM_WORLD
    rank, R = world.Get_rank(), world.Get_size()
    n_0, n_1, n_L, b = 784 if not args.quick else 64, args.hidden_sizes[0], 10, 4096
    rng = np.random.default_rng(rank)
    X, W = rng.random((b, n_0)), rng.random((n_0, n_1))
    D, u = rng.random((args.subsample_size, n_L, n_1)), rng.random((args.subsample_size, n_1))
    half_f, half_s = slice(rank * n_0 // R, (rank + 1) * n_0 // R), \
        slice(rank * len(D) // R, (rank + 1) * len(D) // R)
    Xh, Wh = np.ascontiguousarray(X[:, half_f]), W[half_f].copy()   # as a rank holds them
    work = {"matmul": (lambda: X @ W, lambda: Xh @ Wh),
            "memory": (lambda: d_times(D, u), lambda: d_times(D[half_s], u[half_s]))}
    seconds = {(name, way): [] for name in work for way in ("alone", "split")}
    for _ in range(args.rounds + 1):
        for name, (whole, half) in work.items():
            polite_barrier(world)
            if rank == 0:
                seconds[name, "alone"] += timed(whole, args.repeats)
            polite_barrier(world)
            half()                                                  # warm, then together
            for _ in range(args.repeats):
                world.Barrier()
                t0 = time.perf_counter()
                half()
                ends = world.gather((t0, time.perf_counter()), root=0)   # one clock a machine
                if rank == 0:
                    seconds[name, "split"].append(max(e for _, e in ends) - min(s for s, _ in ends))
    if rank == 0:
        report({name: dict(alone=seconds[name, "alone"], split=seconds[name, "split"], shape=shape)
                for name, shape in (("matmul", [b, n_0, n_1]), ("memory", [len(D), n_L, n_1]))})


# -- the driver -------------------------------------------------------------------------------
def launch(args, part, ranks, *extra):
    """Run one child; returns its result (or exits with its error)."""
    from dnewton_core.environment import local_environment, local_launch
    cmd = [sys.executable, str(HERE / "ratios.py"), f"--part={part}", f"--data={args.data}",
           f"--hidden={args.hidden}", f"--iters={args.iters}", f"--rounds={args.rounds}",
           f"--subsample-size={args.subsample_size}", f"--repeats={args.repeats}", *extra] + \
        (["--quick"] if args.quick else [])
    cmd = (local_launch(ranks) if ranks > 1 or part == "product" else []) + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=local_environment(),
                       cwd=HERE.parent)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if p.returncode or not lines:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def drive(args):
    from dnewton_core.environment import load_average, machine, processor_ticks, stolen_share
    m = machine()
    tic, ticks = time.perf_counter(), processor_ticks()
    print(f"# bench/ratios.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
          f"{m['platform']}, Python {m['python']}, numpy {np.__version__}")
    print(f"# BLAS: {blas_info()}")
    print(f"# load average at start: {load_average()} (a shared machine makes every time "
          "below noisy: compare the ratios, measured side by side)", flush=True)
    product = launch(args, "product", len(args.hidden_sizes) + 1)
    ceiling = launch(args, "ceiling", 2)
    runs = {}
    for _ in range(args.rounds):
        for splits, ranks, keep in GRIDS:
            extra = ([f"--splits={splits}"] if splits else []) + \
                ([] if keep else ["--no-keep-forward"])
            got = launch(args, "train", ranks, *extra)
            best = runs.setdefault((splits, keep), got)
            for method in ("newton", "sgd"):       # the best round's time and its phases
                if got[method]["seconds"] < best[method]["seconds"]:
                    best[method] = got[method]
            best["peaks"] = [max(a, b) for a, b in zip(best["peaks"], got["peaks"])]
    print_product(product)
    print_ceiling(args, ceiling)
    print_training(args, runs)
    print(f"\n# load average at end: {load_average()}; {time.perf_counter() - tic:.0f} s in all; "
          f"{100 * stolen_share(ticks):.1f}% of the processors' busy time stolen "
          "by a virtual machine's host (ranks that nap wake up late)")


def print_product(r):
    flops = sum(x["flops"] for x in r["partitions"])
    mine = sum(x["best"] for x in r["partitions"])
    rate = lambda s: flops / s / 1e9                                     # noqa: E731
    busy = ", ".join("?" if b is None else f"{100 * b:.0f}%" for b in r["busy"])
    print(f"\n== Gauss-Newton product, {'-'.join(map(str, r['layers']))}, |S| = {r['n_S']}, "
          f"float64, one thread (best of interleaved rounds; CPUs busy before, after: {busy})")
    print(f"  one-thread matmul rate               {r['matmul']:7.1f} GFLOP/s")
    print(f"  DistributedModel (sum of partitions) {mine * 1e3:7.1f} ms  {rate(mine):6.1f} GFLOP/s"
          f"  {rate(mine) / r['matmul']:5.0%} of the matmul rate")
    print(f"  DenseModel                           {r['dense'] * 1e3:7.1f} ms  "
          f"{rate(r['dense']):6.1f} GFLOP/s  {rate(r['dense']) / r['matmul']:5.0%} of the "
          f"matmul rate; dense / distributed time = {r['dense'] / mine:.2f}")


def print_ceiling(args, r):
    print("\n== What 2 cores gave: the work of one core, then cut in halves that 2 ranks start "
          "together (ms, best and median of interleaved rounds; the time of the slower half)"
          + (" -- --quick: too small to mean anything" if args.quick else ""))
    for name, what in (("matmul", "a matrix product, ({0} x {1}) @ ({1} x {2}), cut by features"),
                       ("memory", "a pass over memory, D u with D {0} x {1} x {2}, cut by instances")):
        alone, split = (np.array(r[name][way]) for way in ("alone", "split"))
        print(f"  {what.format(*r[name]['shape']):<68} {alone.min() * 1e3:6.2f} "
              f"({np.median(alone) * 1e3:.2f}) -> {split.min() * 1e3:6.2f} "
              f"({np.median(split) * 1e3:.2f})  {alone.min() / split.min():.2f}x "
              f"({np.median(alone) / np.median(split):.2f}x)")
    print("  (about the most 2 cores gave for such work here; the target for a Newton iteration "
          "on 2 cores is 1.7x one process)")


def _where(splits, keep, r):
    return ("1 process" if splits is None else f"{r['ranks']} ranks {splits}") + \
        ("" if keep else ", not kept")


def print_training(args, runs):
    one = runs[None, True]
    print(f"\n== {args.data} {'-'.join(map(str, one['layers']))}: Newton iteration (mean of "
          f"{args.iters}) and SGD epoch, best of {args.rounds} run(s) each, one BLAS thread "
          "per rank")
    print(f"  {'where':<32} {'Newton s':>9} {'speed-up':>9} {'SGD s':>8} {'speed-up':>9}  "
          f"{'f after Newton':>15}")
    for (splits, keep), r in runs.items():
        print(f"  {_where(splits, keep, r):<32} {r['newton']['seconds']:9.2f} "
              f"{one['newton']['seconds'] / r['newton']['seconds']:8.2f}x "
              f"{r['sgd']['seconds']:8.2f} {one['sgd']['seconds'] / r['sgd']['seconds']:8.2f}x  "
              f"{r['newton']['f']:15.10g}")
    print("  (speed-ups against 1 process with the kept pass)")
    grids = {k: v for (k, keep), v in runs.items() if k is not None and keep}
    fast = min(grids, key=lambda k: grids[k]["newton"]["seconds"])
    print(f"  fastest 2-core grid for Newton: {fast} ({grids[fast]['ranks']} ranks), "
          f"{one['newton']['seconds'] / grids[fast]['newton']['seconds']:.2f}x one process; "
          f"SGD there: {one['sgd']['seconds'] / grids[fast]['sgd']['seconds']:.2f}x")
    sgd = min(grids, key=lambda k: grids[k]["sgd"]["seconds"])
    print(f"  fastest 2-core grid for SGD: {sgd} ({grids[sgd]['ranks']} ranks), "
          f"{one['sgd']['seconds'] / grids[sgd]['sgd']['seconds']:.2f}x one process")
    alone, there = one["newton"]["phases"], grids[fast]["newton"]["phases"]
    print("  its Newton iteration by phase, s (1 process -> that grid, speed-up; rank 0's "
          "clock): " + "; ".join(
              f"{p} {alone[p]:.3g} -> {there[p]:.3g} ({alone[p] / there[p]:.2f}x)"
              for p in alone if alone[p] > 0 and there.get(p)))
    steady = [r["newton"]["seconds"] - phases.get("function", 0.0) for r, phases in
              ((one, alone), (grids[fast], there))]
    print(f"  without the run's first forward pass (the function phase, paid once a run, so "
          f"here {args.iters} iteration(s) share it): {steady[0]:.3g} -> {steady[1]:.3g} s, "
          f"{steady[0] / steady[1]:.2f}x one process")
    print("\n== Peak memory per rank (ru_maxrss at the end of a Newton and an SGD run), MB")
    for (splits, keep), r in runs.items():
        peaks, base = [p / 1e6 for p in r["peaks"]], sum(runs[None, keep]["peaks"]) / 1e6
        print(f"  {_where(splits, keep, r):<32} {', '.join(f'{p:.0f}' for p in peaks):<28} "
              f"sum {sum(peaks):6.0f}  = {sum(peaks) / base:.2f}x one process"
              + ("" if keep else ", not kept"))


def main(argv=None):
    args = parse_args(argv)
    if args.part == "product":
        return run_product(args)
    if args.part == "train":
        return run_train(args)
    if args.part == "ceiling":
        return run_ceiling(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
