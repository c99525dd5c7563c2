"""Benchmark of the Gauss-Newton product and of the bytes per Newton iteration (prints figures).

Not a test: it measures and prints. Two parts, each an MPI program:

  product  grid 1,1,...,1 (one rank per layer, L ranks), --gn diag, so the product
           ``DistributedModel.gauss_newton`` sends nothing. The ranks take turns: while one
           rank times its products the others sleep (a polling Ibarrier, not MPI's busy
           wait), so each partition's time is that of one core with nobody else running.
           The sum over partitions of those times is what ONE core needs for the whole
           product: that is the "one rank" figure (timed apart, so that each partition's
           time is its own). It is compared with
           this machine's one-thread dense matmul rate (in --dtype). The ranks are also timed
           running at once (the parallel figure), which is only fair with >= L cores.
  comm     grid --comm-splits (default 2,1,1,1: 4 ranks); --iters Newton iterations with
           gn=full and then gn=diag; prints the bytes (and messages) per phase of each
           iteration, summed over ranks: ``record["comm"]`` of every rank, gathered and
           combined with ``ledger.combine_records``.

Run both (launches mpiexec itself; BLAS is pinned to one thread per process):

    .venv/bin/python bench/gauss_newton.py                 # or: make bench
    .venv/bin/python bench/gauss_newton.py --quick         # small sizes, a few seconds
    .venv/bin/python bench/gauss_newton.py --dtype float32 # the model and the matmul in float32

or one part by hand:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/mpiexec -n 3 .venv/bin/python -m mpi4py bench/gauss_newton.py --part product
    ... mpiexec -n 4 ... bench/gauss_newton.py --part comm

FLOPs of one product, per partition (m, i, j) with r = |T_{m-1,i}| rows and c = |T_{m,j}|
columns of W^m, on |S| instances and n_L outputs:
    2|S| r c      u = z^{m-1} V_ij
    2|S| n_L c    J v = D_ij u          (|S| small matrix-vector products)
    2|S| n_L c    D_ij^T w
    2|S| r c      z^{m-1}^T (D_ij^T w)
(lower-order terms, O(|S| c) and O(|S| n_L), are not counted).
"""
import os

from dnewton_core.environment import blas_environment, find_mpiexec

# One BLAS thread per process, before numpy is imported anywhere (here or in a child).
os.environ.update(blas_environment())

import argparse
import functools
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:      # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


# -- command line -------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("all", "product", "comm"), default="all",
                    help="all (default, launches mpiexec for both parts), or one part when "
                         "already running under mpiexec")
    ap.add_argument("--features", type=int, default=784, help="n_0 (default 784)")
    ap.add_argument("--hidden", default="300,300", help="hidden widths (default 300,300)")
    ap.add_argument("--classes", type=int, default=10, help="n_L (default 10)")
    ap.add_argument("--subsample-size", "-S", type=int, default=3000,
                    help="|S|, instances in the Gauss-Newton subsample (default 3000)")
    ap.add_argument("--repeats", type=int, default=10,
                    help="timed products per rank (default 10; best and median reported)")
    ap.add_argument("--matmul-repeats", type=int, default=7,
                    help="repeats of each reference matmul, best taken (default 7)")
    ap.add_argument("--profile", action="store_true",
                    help="product part: also time the pieces of the product and equivalent "
                         "formulations of the two batched contractions")
    ap.add_argument("--train", type=int, default=6000,
                    help="comm part: l, random training instances (default 6000)")
    ap.add_argument("--comm-splits", default="2,1,1,1",
                    help="comm part: P_0..P_L (default 2,1,1,1, i.e. 4 ranks)")
    ap.add_argument("--iters", type=int, default=2, help="comm part: Newton iterations (default 2)")
    ap.add_argument("--cg-max", type=int, default=250,
                    help="comm part: CG iteration limit (default 250, simpleNN's)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="numbers of the model, and of the reference matmul (default float64)")
    ap.add_argument("--mpiexec", default=None, help="launcher for --part all (default: the "
                    "mpiexec next to this python, else the one on PATH)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for a smoke run: 64-32-32-10, |S| 300, l 600, 3 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.features, args.hidden, args.subsample_size = 64, "32,32", 300
        args.train, args.repeats, args.matmul_repeats = 600, 3, 3
    args.hidden_sizes = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    args.layers = (args.features, *args.hidden_sizes, args.classes)
    args.splits = tuple(int(p) for p in args.comm_splits.split(","))
    if len(args.splits) != len(args.layers):
        ap.error(f"--comm-splits needs {len(args.layers)} entries P_0..P_L for layers "
                 f"{args.layers}, got {args.splits}")
    if args.subsample_size > args.train:
        ap.error(f"--subsample-size {args.subsample_size} exceeds --train {args.train}")
    return args


def child_argv(args, part):
    """The flags that reproduce this run's sizes for one part."""
    out = [f"--part={part}", f"--features={args.features}", f"--hidden={args.hidden}",
           f"--classes={args.classes}", f"--subsample-size={args.subsample_size}",
           f"--seed={args.seed}", f"--dtype={args.dtype}"]
    if part == "product":
        out += [f"--repeats={args.repeats}", f"--matmul-repeats={args.matmul_repeats}"]
        out += ["--profile"] if args.profile else []
    else:
        out += [f"--train={args.train}", f"--comm-splits={args.comm_splits}",
                f"--iters={args.iters}", f"--cg-max={args.cg_max}"]
    return out


# -- the driver: one mpiexec per part -----------------------------------------------------
def drive(args):
    from dnewton_core.partition import Grid
    launcher = args.mpiexec or _find_mpiexec()
    product_ranks = len(args.layers) - 1
    comm_ranks = Grid(args.layers, args.splits).size
    script = str(Path(__file__).resolve())
    print("# bench/gauss_newton.py", shlex.join(sys.argv[1:]))
    print(f"# this machine: {os.cpu_count()} logical CPUs; BLAS threads pinned to 1 per process")
    status = 0
    for part, n in (("product", product_ranks), ("comm", comm_ranks)):
        cmd = [launcher, "-n", str(n), sys.executable, "-m", "mpi4py", script,
               *child_argv(args, part)]
        print("\n$ OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "
              + shlex.join(_short(cmd)), flush=True)
        status |= subprocess.call(cmd, cwd=ROOT, env=os.environ.copy())
    return status


def _find_mpiexec():
    try:
        return find_mpiexec()
    except RuntimeError:
        return "mpiexec"


def _short(cmd):
    """Paths relative to the project root where possible, for a command line one can paste."""
    out = []
    for c in cmd:
        try:
            out.append(str(Path(c).relative_to(ROOT)) if os.path.isabs(c) else c)
        except ValueError:
            out.append(c)
    return out


# -- shared helpers ------------------------------------------------------------------------
def random_data(n_features, n_classes, n_train, n_test, seed):
    """Uniform [0, 1) features, uniform labels: fixed by ``seed``, the same on every rank."""
    from dnewton_core.data import Dataset
    rng = np.random.default_rng(seed)
    X = rng.random((n_train + n_test, n_features))
    y = rng.integers(0, n_classes, n_train + n_test)
    return Dataset("random", X[:n_train], y[:n_train], X[n_train:], y[n_train:],
                   tuple(range(n_classes)), f"bench/gauss_newton.py, seed {seed}")


def product_flops(rows, cols, n_S, n_L):
    """(FLOPs of the two GEMMs, FLOPs of the two batched D contractions) of one product."""
    return 4 * n_S * rows * cols, 4 * n_S * n_L * cols


def ran_as(size):
    return ("# ran as: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "
            f"mpiexec -n {size} python -m mpi4py bench/gauss_newton.py {shlex.join(sys.argv[1:])}")


def polite_barrier(world):
    """A barrier that sleeps while it waits, so waiting ranks leave the cores alone."""
    req = world.Ibarrier()
    while not req.Test():
        time.sleep(2e-4)


def machine_busy(seconds=1.0):
    """Fraction of all CPUs busy over ``seconds`` (Linux /proc/stat), or None elsewhere."""
    def sample():
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:8]]
        return sum(ticks), ticks[3] + ticks[4]          # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except OSError:
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def _pct(x):
    return "?" if x is None else f"{100 * x:.0f}%"


def timed(fn, repeats):
    """Seconds of each of ``repeats`` calls."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed; BLAS threads set by the OMP/OPENBLAS/MKL variables"
    rows = [f"{d.get('internal_api')} {d.get('version')} ({d.get('user_api')}, "
            f"{d.get('architecture', '?')}, threading {d.get('threading_layer', '?')}): "
            f"num_threads = {d.get('num_threads')}" for d in threadpool_info()]
    return "; ".join(rows) or "no BLAS found by threadpoolctl"


def matmul_rates(n_S, n_0, n_1, repeats, dtype="float64"):
    """One-thread ``dtype`` GFLOP/s of (|S| x n_0) @ (n_0 x n_1) and of 1000^2 @ 1000^2 (best)."""
    rng = np.random.default_rng(1)
    out = []
    for m, k, n in ((n_S, n_0, n_1), (1000, 1000, 1000)):
        A, B = rng.random((m, k)).astype(dtype), rng.random((k, n)).astype(dtype)
        product = functools.partial(np.matmul, A, B)
        product()                                    # warm-up
        best = min(timed(product, repeats))
        out.append(((m, k, n), best, 2.0 * m * k * n / best / 1e9))
    return out


# -- part 1: the product on one core ------------------------------------------------------
def run_product(args):
    from mpi4py import MPI

    from dnewton_core.comm import Comm
    from dnewton_core.distributed import DistributedModel
    from dnewton_core.model import ObjectiveConfig

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    L = len(args.layers) - 1
    splits = (1,) * (L + 1)
    if size != L:
        if rank == 0:
            print(f"--part product runs on grid {','.join(map(str, splits))}: it needs "
                  f"mpiexec -n {L}, got {size}", file=sys.stderr)
        return 2
    n_S, n_L = args.subsample_size, args.classes
    data = random_data(args.features, n_L, n_S, 100, args.seed)
    model = DistributedModel(data, args.hidden_sizes, splits, Comm(world),
                             ObjectiveConfig(dtype=args.dtype), gn="diag")
    S = np.arange(n_S)
    with model.phase("gradient"):
        _, J = model.gradient_and_jacobian(model.theta, S)
    v = np.random.default_rng(100 + rank).standard_normal(model.theta.shape).astype(args.dtype)
    p = model.part
    gemm_f, batched_f = product_flops(len(p.rows), len(p.cols), n_S, n_L)
    for _ in range(2):
        model.gauss_newton(J, v)                       # warm-up

    # each rank alone, in turn; rank 0 also measures the matmul reference in its turn
    solo, mm, prof, busy = None, None, None, [None, None]
    polite_barrier(world)
    if rank == 0:
        busy[0] = machine_busy()
    polite_barrier(world)
    for turn in range(size):
        if rank == turn:
            solo = timed(lambda: model.gauss_newton(J, v), args.repeats)
            if args.profile:
                prof = profile_product(model, J, v, args.repeats)
            if rank == 0:
                mm = matmul_rates(n_S, args.features, args.layers[1], args.matmul_repeats,
                                  args.dtype)
        polite_barrier(world)
    if rank == 0:
        busy[1] = machine_busy()
    polite_barrier(world)
    # all ranks at once
    world.Barrier()
    together = timed(lambda: model.gauss_newton(J, v), args.repeats)
    polite_barrier(world)

    rows = world.gather(dict(rank=rank, part=str(p), m=p.m, shape=(len(p.rows), len(p.cols)),
                             gemm=gemm_f, batched=batched_f, solo=solo, together=together,
                             prof=prof), root=0)
    if rank == 0:
        print(ran_as(size))
        report_product(args, rows, mm, busy)
    return 0


def report_product(args, rows, mm, busy):
    n_S = args.subsample_size
    print(f"\n== 1. Gauss-Newton product G_S v, {args.dtype}, network {'-'.join(map(str, args.layers))}, "
          f"|S| = {n_S}, grid {','.join(['1'] * len(args.layers))}, gn=diag (no message) ==")
    print("FLOPs per partition: 2|S| r c (z V) + 2|S| n_L c (D u) + 2|S| n_L c (D^T w) "
          "+ 2|S| r c (z^T .),  r x c = block of W^m")
    print(f"BLAS: {blas_info()}")
    print(f"other jobs: the CPUs were {_pct(busy[0])} busy just before the timings and "
          f"{_pct(busy[1])} just after ({os.cpu_count()} logical CPUs, measured with our ranks "
          "asleep); anything well above 0% makes every figure below smaller")
    print(f"{'rank':>4} {'block r x c':>12} {'GFLOP':>8} {'best s':>9} {'median s':>9} "
          f"{'GFLOP/s':>8}   (each rank alone on a core, the others asleep)")
    total_f, total_best, total_med = 0.0, 0.0, 0.0
    for r in rows:
        f = r["gemm"] + r["batched"]
        best, med = min(r["solo"]), float(np.median(r["solo"]))
        total_f, total_best, total_med = total_f + f, total_best + best, total_med + med
        print(f"{r['rank']:>4} {r['shape'][0]:>5} x {r['shape'][1]:<5} {f / 1e9:>8.3f} "
              f"{best:>9.4f} {med:>9.4f} {f / best / 1e9:>8.2f}")
    rate = total_f / total_best / 1e9
    print(f"{'sum':>4} {'':>12} {total_f / 1e9:>8.3f} {total_best:>9.4f} {total_med:>9.4f} "
          f"{rate:>8.2f}")
    print(f"one core, whole product (sum of the partitions' times): "
          f"{1 / total_best:.2f} products/s best, {1 / total_med:.2f} median; "
          f"{rate:.2f} GFLOP/s")
    print(f"one-thread dense {args.dtype} matmul on this machine (best of "
          f"{args.matmul_repeats}):")
    for (m, k, n), best, gf in mm:
        print(f"    ({m} x {k}) @ ({k} x {n}): {best * 1e3:8.2f} ms  {gf:6.2f} GFLOP/s")
    ref_rate = max(g for _, _, g in mm)
    frac = rate / ref_rate
    print(f"product / best matmul rate = {rate:.2f} / {ref_rate:.2f} = {100 * frac:.0f}% "
          f"(target >= 50%: {'met' if frac >= 0.5 else 'NOT met'})")
    slowest = max(float(np.median(r["together"])) for r in rows)
    print(f"all {len(rows)} ranks at once on {os.cpu_count()} logical CPUs: slowest rank's median "
          f"{slowest:.4f} s -> {1 / slowest:.2f} products/s, {total_f / slowest / 1e9:.2f} "
          "GFLOP/s summed over ranks"
          + ("  [more ranks than CPUs: not a fair figure]" if len(rows) > (os.cpu_count() or 1)
             else ""))
    if any(r["prof"] for r in rows):
        report_profile(rows)


# -- optional profile of the product's pieces and of equivalent formulations --------------
def profile_product(model, J, v, repeats):
    """Times of the product's pieces on this rank's real shapes, and of alternatives.

    Reads the factored Jacobian (``J.factors``): a benchmark's look inside, not an
    interface. Every alternative is checked against the current code; the stored forms of
    a D kept otherwise (``factors.LastHiddenD``, ``OutputD``) are timed on the array it
    stands for.
    """
    from dnewton_core.factors import rows_of, times, transposed_times
    p, (z, D, _) = model.part, J.factors               # this rank's one partition
    z_in, kept = z[p.m, p.i], D[p.m, p.j]
    D = rows_of(kept, slice(None))                     # as if stored, (|S|, n_L, c)
    VW, _ = model.block(v)
    n_S, n_L, c = D.shape
    u = z_in @ VW
    w = (np.random.default_rng(7).standard_normal((n_S, n_L)) / n_S).astype(D.dtype)
    Dt = np.ascontiguousarray(D.transpose(0, 2, 1))              # (|S|, c, n_L) layout
    ref_Du, ref_Dtw = times(kept, u), transposed_times(kept, w)   # as in gauss_newton
    DtB = ref_Dtw
    cand = {
        "u = z V (GEMM)": (lambda: z_in @ VW, None),
        "z^T (D^T w) (GEMM)": (lambda: z_in.T @ DtB, None),
        f"Du  factors.times ({type(kept).__name__})  [current]": (lambda: times(kept, u), ref_Du),
        f"Dtw factors.transposed_times ({type(kept).__name__})  [current]": (
            lambda: transposed_times(kept, w), ref_Dtw),
        "Du  np.matmul(D, u[:,:,None])": (
            lambda: np.matmul(D, u[:, :, None])[:, :, 0], ref_Du),
        "Du  np.einsum('snk,sk->sn', D, u)": (
            lambda: np.einsum("snk,sk->sn", D, u), ref_Du),
        "Du  np.einsum(..., optimize=True)": (
            lambda: np.einsum("snk,sk->sn", D, u, optimize=True), ref_Du),
        "Du  (D * u[:,None,:]).sum(2)": (lambda: (D * u[:, None, :]).sum(axis=2), ref_Du),
        "Du  np.matmul(u[:,None,:], Dt)  (D stored |S| x c x n_L)": (
            lambda: np.matmul(u[:, None, :], Dt)[:, 0, :], ref_Du),
        "Dtw np.matmul(w[:,None,:], D)": (
            lambda: np.matmul(w[:, None, :], D)[:, 0, :], ref_Dtw),
        "Dtw np.einsum('sn,snk->sk', w, D)": (
            lambda: np.einsum("sn,snk->sk", w, D), ref_Dtw),
        "Dtw np.einsum(..., optimize=True)": (
            lambda: np.einsum("sn,snk->sk", w, D, optimize=True), ref_Dtw),
        "Dtw (w[:,:,None] * D).sum(1)": (lambda: (w[:, :, None] * D).sum(axis=1), ref_Dtw),
        "Dtw loop over n_L: sum_n w[:,n,None] * D[:,n,:]": (lambda: _dtw_axpy(w, D), ref_Dtw),
        "Dtw np.matmul(Dt, w[:,:,None])  (D stored |S| x c x n_L)": (
            lambda: np.matmul(Dt, w[:, :, None])[:, :, 0], ref_Dtw),
    }
    cand["whole gauss_newton(v)"] = (lambda: model.gauss_newton(J, v), None)
    errs = {}
    for name, (fn, ref) in cand.items():
        errs[name] = None if ref is None else float(
            np.max(np.abs(fn() - ref)) / max(1.0, float(np.max(np.abs(ref)))))
    best = dict.fromkeys(cand, np.inf)
    for _ in range(repeats):        # interleaved, so that a burst of load hits every variant
        for name, (fn, _) in cand.items():
            best[name] = min(best[name], timed(fn, 1)[0])
    out = {name: (best[name], errs[name]) for name in cand}
    return dict(shape=D.shape, D_bytes=kept.nbytes, times=out)


def _dtw_axpy(w, D):
    out = w[:, 0, None] * D[:, 0, :]
    for n in range(1, D.shape[1]):
        out += w[:, n, None] * D[:, n, :]
    return out


def report_profile(rows):
    print("\n-- profile: pieces of the product and equivalent formulations "
          "(best of the repeats; err = max |alt - current| / max(1, max |current|)) --")
    for r in rows:
        pr = r["prof"]
        if not pr:
            continue
        s, n_L, c = pr["shape"]
        print(f"{r['part']}: D is {s} x {n_L} x {c} "
              f"({pr['D_bytes'] / 2**20:.1f} MiB kept)")
        for name, (t, err) in pr["times"].items():
            e = "" if err is None else f"  err {err:.1e}"
            print(f"    {name:<58} {t * 1e3:9.2f} ms{e}")


# -- part 2: bytes per Newton iteration, full against diag ---------------------------------
def run_comm(args):
    from mpi4py import MPI

    from dnewton_core.comm import Comm
    from dnewton_core.distributed import DistributedModel
    from dnewton_core.ledger import combine_records
    from dnewton_core.model import ObjectiveConfig
    from dnewton_core.newton import NewtonConfig, newton
    from dnewton_core.partition import Grid

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    grid = Grid(args.layers, args.splits)
    if size != grid.size:
        if rank == 0:
            print(f"--part comm on grid {args.comm_splits} needs mpiexec -n {grid.size}, "
                  f"got {size}", file=sys.stderr)
        return 2
    data = random_data(args.features, args.classes, args.train, 200, args.seed)
    frac = args.subsample_size / args.train
    for _ in range(4):          # so that ceil(frac * l) is exactly |S| despite rounding
        cfg = NewtonConfig(iters=args.iters, subsample=frac, cg_max=args.cg_max)
        if cfg.subsample_size(args.train) <= args.subsample_size:
            break
        frac = float(np.nextafter(frac, 0.0))
    n_S = cfg.subsample_size(args.train)
    results = {}
    for gn in ("full", "diag"):
        world.Barrier()
        model = DistributedModel(data, args.hidden_sizes, args.splits, Comm(world),
                                 ObjectiveConfig(dtype=args.dtype), gn=gn)
        hist = newton(model, cfg)
        mine = [dict(comm=r["comm"], cg=r["cg_iters"], wall=r["wall_time"])
                for r in hist.records]
        results[gn] = world.gather(mine, root=0)
    if rank == 0:
        print(ran_as(size))
        report_comm(args, grid, n_S, results, combine_records)
    return 0


def report_comm(args, grid, n_S, results, combine_records):
    n_L = args.classes
    print(f"\n== 2. Bytes per Newton iteration by phase, summed over ranks: network "
          f"{'-'.join(map(str, args.layers))}, grid {args.comm_splits} ({grid.size} ranks), "
          f"l = {args.train} random instances, |S| = {n_S}, CG_max = {args.cg_max} ==")
    per_iter = {gn: [combine_records([ranks[k]["comm"] for ranks in per_rank])
                     for k in range(args.iters)] for gn, per_rank in results.items()}
    phases = [ph for ph in ("function", "gradient", "jacobian", "cg", "line_search", "sync",
                            "evaluate")
              if any(ph in rec for recs in per_iter.values() for rec in recs)]
    cols = [(gn, k) for gn in ("full", "diag") for k in range(args.iters)]
    head = "".join(f"{f'{gn} it{k + 1}':>22}" for gn, k in cols)
    print(f"{'phase':<12}{head}      (bytes / messages)")
    for ph in phases:
        cells = []
        for gn, k in cols:
            d = per_iter[gn][k].get(ph, dict(bytes=0, messages=0))
            cells.append(f"{d['bytes']:>14,} / {d['messages']:<5}")
        print(f"{ph:<12}" + "".join(f"{c:>22}" for c in cells))
    totals = []
    for gn, k in cols:
        recs = per_iter[gn][k]
        totals.append(f"{sum(d['bytes'] for d in recs.values()):>14,} / "
                      f"{sum(d['messages'] for d in recs.values()):<5}")
    print(f"{'total':<12}" + "".join(f"{c:>22}" for c in totals))
    cg = []
    for gn, k in cols:
        its = [ranks[k]["cg"] for ranks in results[gn]]
        cg.append(f"{min(its)}" if min(its) == max(its) else f"{min(its)}..{max(its)}")
    print(f"{'CG iters':<12}" + "".join(f"{c:>22}" for c in cg))
    wall = [f"{max(ranks[k]['wall'] for ranks in results[gn]):.2f}" for gn, k in cols]
    print(f"{'wall s (cum)':<12}" + "".join(f"{c:>22}" for c in wall))
    jv = n_S * n_L * np.dtype(args.dtype).itemsize
    print(f"full: each CG iteration allreduces J v ({n_S} x {n_L} {args.dtype} = {jv:,} bytes) on "
          f"every one of the {grid.size} ranks = {grid.size * jv:,} bytes, plus scalar inner "
          "products; diag: only scalars after CG.")
    print("function in it1 is the objective at the starting point (later values come from the "
          "line search); evaluate is the accuracy check after each iteration, not training. "
          f"Wall times: {grid.size} ranks on {os.cpu_count()} logical CPUs.")


def main(argv=None):
    args = parse_args(argv)
    under_mpi = any(v in os.environ for v in _LAUNCHER_VARS)
    if args.part == "all":
        if under_mpi:
            print("under mpiexec, choose --part product (mpiexec -n L) or --part comm",
                  file=sys.stderr)
            return 2
        return drive(args)
    if args.part == "product":
        return run_product(args)
    return run_comm(args)


if __name__ == "__main__":
    sys.exit(main())
