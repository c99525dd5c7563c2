"""MPI engines for the notebooks: one ipyparallel engine per MPI rank, one rank per partition.

Client side (the notebook's kernel)::

    with MPICluster(n=4) as cl:          # or cl = MPICluster(4).start(); ...; cl.stop()
        cl.run(func, *args)              # func(*args) on every rank: a list in rank order
        cl.run(func, cl.ref("model"))    # pass a variable that lives on the engines
        cl.push(data=data)               # copies of client variables on every engine
        cl.view                          # the DirectView (rank order) behind %px / %%px

``MPICluster`` starts a controller and ``mpiexec -n N python -m ipyparallel.engine --mpi``
with this environment's own ``mpiexec`` (``sys.prefix/bin``, so a kernel whose PATH lacks
it still works) and one BLAS thread per rank (several ranks on few cores are many times
slower otherwise). It asks every engine its MPI rank and orders the view by it, so
results and ``%%px`` output come back rank 0, 1, 2, ... It stops on ``stop()``, at the end
of a ``with`` block, and when the kernel exits (a watchdog process ends the engines even
if the kernel dies without running its exit handlers). Problems (no ``mpiexec``, no ``mpi4py``,
``mpiexec`` failing, engines not registering within ``timeout``) raise ``ClusterError``
with a message saying what to do.

Engine side: the functions below the line ``# -- run on the engines`` are what the
notebooks ask each rank to do (build its partition of a network on the digits data, say
what it holds, run one step of the method with the message log on). They take this rank's
``DistributedModel`` and return small, picklable results; the maths stays in the model.
The table-printing helpers after them run on the client.
"""
import atexit
import importlib.util
import logging
import math
import os
import shutil
import sys
import time
import weakref

import numpy as np

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CLUSTER_MARK = "DNEWTON_CLUSTER_ID"     # set in the environment of every process of a cluster
_RUNNING = weakref.WeakSet()            # clusters to stop when the kernel exits


class ClusterError(RuntimeError):
    """The engines could not be started (or asked): the message says why and what to do."""


def find_mpiexec(mpiexec=None):
    """Path of ``mpiexec``: the given one, else this environment's own, else the one on PATH.

    ``pip install mpich`` puts ``mpiexec`` in ``sys.prefix/bin``; a Jupyter kernel's PATH
    often lacks that directory, so it is looked for there first.
    """
    if mpiexec is not None:
        path = shutil.which(str(mpiexec))
        if path is None:
            raise ClusterError(f"mpiexec {mpiexec!r} not found or not executable; pass the path "
                               f"of a working mpiexec, or mpiexec=None for this environment's own")
        return path
    own = os.path.join(sys.prefix, "bin", "mpiexec")
    if os.access(own, os.X_OK):
        return own
    path = shutil.which("mpiexec")
    if path is None:
        raise ClusterError(f"no mpiexec in {os.path.dirname(own)} or on PATH: install an MPI into "
                           f"this environment ({sys.executable} -m pip install mpich mpi4py)")
    return path


def cluster_processes(**environ):
    """Live processes whose environment has every ``KEY=value`` given (psutil.Process list).

    Every process an ``MPICluster`` starts (controller, mpiexec, its proxies, engines)
    carries ``DNEWTON_CLUSTER_ID=<cluster id>``, and inherits the kernel's environment:
    ``cluster_processes(DNEWTON_CLUSTER_ID=cl.cluster_id)`` lists what is left of one
    cluster; a test that exports a marker of its own finds everything its notebooks started.
    """
    import psutil
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            env = proc.environ()
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.Error, OSError):
            continue
        if all(env.get(k) == str(v) for k, v in environ.items()):
            found.append(proc)
    return found


# A small process that ends a cluster if the kernel dies without stopping it (atexit
# handlers do not run then). It exits by itself once the cluster is gone.
_WATCHDOG = r"""
import os, sys, time
import psutil
parent, key, value = int(sys.argv[1]), sys.argv[2], sys.argv[3]
watched = [int(p) for p in sys.argv[4:]]

def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

while alive(parent) and any(alive(p) for p in watched):
    time.sleep(1.0)
if not alive(parent):
    procs = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(key) == value:
                procs.append(proc)
        except psutil.Error:
            pass
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, rest = psutil.wait_procs(procs, timeout=5)
    for proc in rest:
        try:
            proc.kill()
        except psutil.Error:
            pass
"""


class MPICluster:
    """``n`` MPI engines driven from this process; results in MPI rank order.

    n        number of engines = MPI ranks (one per partition of the network)
    timeout  seconds to wait for every engine to register before giving up
    mpiexec  path of mpiexec (default: this environment's own, see :func:`find_mpiexec`)
    threads  BLAS threads per rank (1: the ranks share few cores)
    activate register ``%px``/``%%px`` (in IPython) on the rank-ordered view
    """

    def __init__(self, n=4, timeout=60.0, mpiexec=None, threads=1, activate=True):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive number of engines, got {n!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive (seconds), got {timeout!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.n, self.timeout, self.threads, self.activate = n, float(timeout), threads, activate
        self.mpiexec = mpiexec
        self.cluster = self.client = self.view = None
        self.ranks = None            # engine ids in rank order (they equal the ranks for --mpi)
        self._cluster_id = None
        self._watchdog = None

    # -- starting and stopping ----------------------------------------------------------
    def start(self):
        """Start the controller and the engines; wait for all n; order them by rank."""
        if self.cluster is not None:
            raise ClusterError("this cluster is already started; stop() it first")
        mpiexec = find_mpiexec(self.mpiexec)
        if importlib.util.find_spec("mpi4py") is None:
            raise ClusterError(f"mpi4py is not installed for {sys.executable}, which the engines "
                               f"run: {sys.executable} -m pip install mpi4py")
        import ipyparallel as ipp

        blas = {name: str(self.threads) for name in BLAS_THREADS}
        os.environ.update(blas)                 # for anything this kernel starts later, too
        cluster = ipp.Cluster(engines="mpi", n=self.n, log_level=logging.ERROR,
                              engine_timeout=max(1, math.ceil(self.timeout)))
        cluster.config.MPILauncher.mpi_cmd = [mpiexec]
        cluster.config.BaseLauncher.environment = dict(blas, **{CLUSTER_MARK: cluster.cluster_id})
        self.cluster, self._cluster_id = cluster, cluster.cluster_id
        _RUNNING.add(self)
        try:
            cluster.start_cluster_sync()
            _register_atexit()               # after ipyparallel's own, so it runs before it
            self.client = cluster.connect_client_sync()
            self._wait_for_engines(mpiexec)
            self._order_by_rank()
            self._start_watchdog()
        except BaseException:
            self.stop()
            raise
        if self.activate and _in_ipython():
            self.view.activate()
        return self

    def _start_watchdog(self):
        """A process that stops this cluster if this process dies without stopping it."""
        import subprocess
        launchers = [self.cluster.controller, *self.cluster.engines.values()]
        pids = [str(launcher.process.pid) for launcher in launchers
                if getattr(launcher, "process", None) is not None]
        env = {k: v for k, v in os.environ.items() if k != CLUSTER_MARK}
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), CLUSTER_MARK, self.cluster_id, *pids],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True)

    def _stop_watchdog(self):
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.poll() is None:
            watchdog.terminate()
            try:
                watchdog.wait(timeout=5)
            except Exception:
                watchdog.kill()

    def _engine_launcher(self):
        return next(iter(self.cluster.engines.values()), None)

    def _wait_for_engines(self, mpiexec):
        """Until n engines registered; fail early if mpiexec has ended, late on the timeout."""
        import psutil
        deadline = time.monotonic() + self.timeout
        while len(self.client.ids) < self.n:
            launcher = self._engine_launcher()
            process = getattr(launcher, "process", None)
            try:
                ended = process is None or process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                ended = True
            if ended:
                for _ in range(20):          # ipyparallel records the exit status soon after
                    if getattr(launcher, "stop_data", None):
                        break
                    time.sleep(0.05)
                code = (getattr(launcher, "stop_data", None) or {}).get("exit_code")
                status = f" with exit status {code}" if code is not None else ""
                raise ClusterError(f"{mpiexec} -n {self.n} ended{status} before the engines "
                                   f"registered; its output:\n{self._engine_output()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"only {len(self.client.ids)} of {self.n} engines registered "
                                   f"within {self.timeout:g} s; try a longer timeout (a loaded "
                                   f"machine starts slowly) or fewer engines. mpiexec output:\n"
                                   f"{self._engine_output()}")
            time.sleep(0.05)

    def _engine_output(self, limit=2000):
        launcher = self._engine_launcher()
        try:
            text = launcher.get_output() if launcher is not None else ""
        except Exception:           # the output file may be gone already
            text = ""
        text = (text or "(none)").strip()
        return text[-limit:]

    def _order_by_rank(self):
        """Ask every engine its MPI rank; the view lists engines in rank order."""
        replies = self.client[:].apply_sync(whoami)
        ranks = sorted(replies, key=lambda r: r["rank"])
        if [r["rank"] for r in ranks] != list(range(self.n)) or {r["size"] for r in ranks} != {self.n}:
            raise ClusterError(f"the engines are not one MPI world of {self.n} ranks: "
                               f"{[(r['rank'], r['size']) for r in replies]}")
        by_engine = dict(zip(self.client.ids, replies))
        self.ranks = sorted(by_engine, key=lambda e: by_engine[e]["rank"])
        self.view = self.client[self.ranks]
        self.view.block = True

    stop_timeout = 10.0   # seconds for mpiexec to end after the engines were asked to exit

    def stop(self):
        """Stop the engines and the controller (idempotent): ask the engines to exit, give
        mpiexec ``stop_timeout`` seconds to end by itself (an engine stuck in a collective
        will not), then stop whatever is left (TERM, then KILL after 5 s)."""
        cluster, client = self.cluster, self.client
        self.cluster = self.client = self.view = self.ranks = None
        _RUNNING.discard(self)
        self._stop_watchdog()
        if cluster is None:
            return
        try:
            if client is not None:
                if len(client.ids) == self.n:    # all registered: they can exit by themselves
                    try:                         # (not waiting for replies: an engine may hang)
                        client.shutdown(targets="all", hub=False, block=False)
                    except Exception:
                        pass
                    self._join_mpiexec(cluster, seconds=self.stop_timeout)
                client.close()
        finally:
            cluster.stop_cluster_sync()

    @staticmethod
    def _join_mpiexec(cluster, seconds):
        import psutil
        for launcher in cluster.engines.values():
            process = getattr(launcher, "process", None)
            if process is None:
                continue
            try:
                process.wait(timeout=seconds)
            except (psutil.TimeoutExpired, psutil.Error, ChildProcessError):
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        state = "running" if self.cluster is not None else "stopped"
        return f"MPICluster(n={self.n}, {state})"

    # -- using the engines --------------------------------------------------------------
    @property
    def cluster_id(self):
        """The id of the last cluster started (kept after stop, to look for leftovers)."""
        return self._cluster_id

    def _running_view(self):
        if self.view is None:
            raise ClusterError("the cluster is not running: call start() (or use `with MPICluster(...)`)")
        return self.view

    def run(self, func, *args, **kwargs):
        """``func(*args, **kwargs)`` on every engine at once; the results in MPI rank order.

        ``func`` must be importable on the engines (a function of ``dnewton_core``), or a
        self-contained function; ``MPICluster.ref(name)`` passes an engine variable.
        """
        return self._running_view().apply_sync(func, *args, **kwargs)

    def push(self, **variables):
        """Send copies of these variables to every engine's namespace (for ``%%px`` cells)."""
        self._running_view().push(variables, block=True)

    @staticmethod
    def ref(name):
        """A reference to the variable ``name`` in each engine's namespace (e.g. a model
        built by a ``%%px`` cell), to pass to :meth:`run`."""
        import ipyparallel as ipp
        return ipp.Reference(name)

    def processes(self):
        """The live processes of this cluster (controller, mpiexec, proxies, engines); after
        ``stop()``, whatever is left of it (nothing, normally)."""
        return cluster_processes(**{CLUSTER_MARK: self.cluster_id}) if self.cluster_id else []


def _in_ipython():
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def _stop_all():
    """Stop every running cluster when the kernel exits. ipyparallel's own clean-up would
    stop the launchers too, but by TERM and KILL; this asks the engines to exit first."""
    for cl in list(_RUNNING):
        try:
            cl.stop()
        except Exception:
            pass


def _register_atexit():
    """Register :func:`_stop_all` once, after ipyparallel registered its handler (which it
    does when a first controller starts): handlers run last-registered first."""
    if not _register_atexit.done:
        atexit.register(_stop_all)
        _register_atexit.done = True


_register_atexit.done = False


# -- run on the engines ----------------------------------------------------------------------

def whoami():
    """This engine's MPI rank and world size, and its process id."""
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    return {"rank": world.Get_rank(), "size": world.Get_size(), "pid": os.getpid()}


def partitioned_model(data, hidden, splits=None, gn="full", sync=1.0, slow=None, C=None,
                      **objective):
    """This rank's ``DistributedModel`` of a network on ``data`` over ``MPI.COMM_WORLD``.

    ``C`` defaults to 0.1 l, the kit's choice for digits (``cli.KIT_C``: simpleNN's 0.01 l
    over-regularizes on 1437 instances); other ``ObjectiveConfig`` fields as keywords.
    Without ``splits``, ``partition.propose_splits`` picks them for the number of ranks.
    """
    from mpi4py import MPI
    from .comm import Comm
    from .experiment import build_model
    from .model import ObjectiveConfig
    l = len(data.y_train)
    config = ObjectiveConfig(C=0.1 * l if C is None else C, **objective)
    comm = Comm(MPI.COMM_WORLD)
    return build_model(data, tuple(hidden), config, comm, splits, gn=gn, sync=sync, slow=slow)


def holdings(model):
    """What this rank holds: its partition (m, i, j), the shapes of its arrays, their bytes."""
    p, rank = model.part, model.comm.rank
    W, b = model.block(model.theta)
    shape = lambda A: None if A is None else tuple(A.shape)       # noqa: E731
    data_bytes = sum(A.nbytes for A in (model.X, model.Y) if A is not None)
    return {"rank": rank, "mij": (p.m, p.i, p.j), "W": tuple(W.shape),
            "b": None if b is None else len(b), "X": shape(model.X), "Y": shape(model.Y),
            "param_bytes": model.theta.nbytes, "data_bytes": data_bytes,
            "weights": p.weights, "bias": p.bias}


def parameters(model):
    """This rank's block of theta (W_ij row-major, then its bias if it holds one)."""
    return model.theta.copy()


def traced_step(model, step, arg=None):
    """One step of the method on this rank with the message log on.

    step "function": f(theta) (phase function); "gradient": grad f with ``arg`` = S the
    last batch, so J is factored on S, and ||grad f|| as in ``newton`` (phase gradient,
    the factoring in phase jacobian); "gauss_newton": G_S v for ``arg`` = the whole v
    (phase cg; after a "gradient" step). Returns {"rank", "value", "trace", "record"}:
    value is f or this rank's block, trace the (phase, op, group, bytes) of every message
    in order, record {phase: {"messages", "bytes"}} on this rank.
    """
    comm, theta = model.comm, model.theta
    comm.take_record()
    comm.trace = []
    try:
        if step == "function":
            with comm.phase("function"):
                value = model.objective(theta)
        elif step == "gradient":
            with comm.phase("gradient"):
                value = model.gradient(theta, np.asarray(arg))
                math.sqrt(model.dot(value, value))
        elif step == "gauss_newton":
            with comm.phase("cg"):
                value = model.gauss_newton(np.asarray(arg)[model.grid.param_slices(comm.rank)])
        else:
            raise ValueError(f"unknown step {step!r}; choose function, gradient or gauss_newton")
        trace = list(comm.trace)
    finally:
        comm.trace = None
    record = {phase: {"messages": d["messages"], "bytes": d["bytes"]}
              for phase, d in comm.take_record().items() if d["messages"]}
    return {"rank": comm.rank, "value": value, "trace": trace, "record": record}


def jacobian_factors(model):
    """The factored Jacobian this rank keeps after a gradient with S (METHOD.md §4):
    D_ij (|S|, n_L, |T_{m,j}|) and z^{m-1}[S, T_{m-1,i}], against the dense block."""
    z_in, D, _ = model.jacobian_factors
    n_block = model.theta.size
    return {"rank": model.comm.rank, "mij": (model.part.m, model.part.i, model.part.j),
            "D": tuple(D.shape), "z": tuple(z_in.shape), "factored_bytes": D.nbytes + z_in.nbytes,
            "dense_bytes": D.shape[0] * D.shape[1] * n_block * 8}


def subsample(l, fraction=0.05, seed=0):
    """The S of a Newton run's first iteration: |S| = ceil(fraction l) sorted indices, drawn
    as ``newton`` draws them (the same on every rank and on the client)."""
    from .newton import NewtonConfig
    size = NewtonConfig(subsample=fraction).subsample_size(l)
    return np.sort(np.random.default_rng(seed).choice(l, size=size, replace=False))


def newton_directions(model, lam=1.0, fraction=0.05, seed=0, xi=0.1, cg_max=250):
    """Both Newton directions at this model's theta, on the same S and lambda.

    Solves (G_S + lam I) d = -g by CG with the full G (one CG over all ranks) and with the
    block-diagonal G (each rank its own CG), switching ``model.gn`` in between. Returns
    the cosine of the angle between them (over all of theta and on this rank's block),
    each direction's cosine with -g, and the CG iterations.
    """
    from .cg import cg
    S = subsample(model.n_train, fraction, seed)
    g = model.gradient(model.theta, S)
    gn, d, iters = model.gn, {}, {}
    try:
        for mode in ("full", "diag"):
            model.gn = mode
            res = cg(lambda v: model.gauss_newton(v) + lam * v, -g, model.cg_dot, xi, cg_max,
                     model.cg_stop)
            d[mode], iters[mode] = res.x, res.iterations
    finally:
        model.gn = gn

    def cos(a, b, dot):
        return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))
    local = lambda a, b: float(a @ b)                              # noqa: E731
    return {"rank": model.comm.rank, "cos": cos(d["full"], d["diag"], model.dot),
            "cos_block": cos(d["full"], d["diag"], local),
            "cos_full_g": cos(d["full"], -g, model.dot), "cos_diag_g": cos(d["diag"], -g, model.dot),
            "cg_full": iters["full"], "cg_diag": iters["diag"]}


def fit(model, method="newton", newton=None, sgd=None):
    """Train this rank's model (it keeps the trained theta); a report for :func:`gather_run`.

    Collective. Returns {"rank", "result", "totals", "cg_iters"}: ``result`` is
    ``experiment.result`` (rank 0 only, None elsewhere), ``totals`` this rank's
    {phase: messages, bytes, seconds} of the run, ``cg_iters`` this rank's CG iterations per
    Newton iteration.
    """
    from .experiment import config_dict, result, train
    from .newton import NewtonConfig
    from .sgd import SGDConfig
    newton, sgd = newton or NewtonConfig(), sgd or SGDConfig()
    comm = model.comm
    before = comm.totals()
    history = train(model, method, newton, sgd)
    after = comm.totals()
    model.theta = history.theta
    config = config_dict(method=method, gn=model.gn, sync=model.sync, ranks=comm.size,
                         objective=model.config, **({"newton": newton} if method == "newton"
                                                   else {"sgd": sgd}))
    out = result(model, history, config)
    totals = {p: {k: v - before.get(p, {}).get(k, 0) for k, v in d.items()}
              for p, d in after.items()}
    return {"rank": comm.rank, "result": out, "totals": totals,
            "cg_iters": [r.get("cg_iters") for r in history.records]}


def train_new(data, hidden, method="newton", newton=None, sgd=None, **model_options):
    """A fresh model (``partitioned_model(data, hidden, **model_options)``), trained by
    :func:`fit`: one run of an experiment."""
    return fit(partitioned_model(data, hidden, **model_options), method, newton, sgd)


# -- on the client: turning the engines' answers into tables ---------------------------------

def gather_run(reports):
    """One run from the per-rank reports of :func:`fit`: rank 0's result, plus
    "per_rank" = [{phase: messages, bytes, seconds}] and "cg_iters_per_rank"."""
    reports = sorted(reports, key=lambda r: r["rank"])
    run = dict(reports[0]["result"])
    run["per_rank"] = [r["totals"] for r in reports]
    run["cg_iters_per_rank"] = [r["cg_iters"] for r in reports]
    return run


def assemble(blocks, grid):
    """The whole vector from per-rank blocks (in rank order), placed by ``grid.param_slices``."""
    out = np.zeros(grid.n_params)
    for rank, block in enumerate(blocks):
        out[grid.param_slices(rank)] = block
    return out


def relative_error(a, b):
    """max |a - b| / max |b|: normwise, as the kit's tests measure."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


def _table(header, rows):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _shape(shape):
    return "-" if shape is None else "x".join(str(s) for s in shape)


def holdings_table(reports):
    """The engines' own account of what they hold, one row per rank."""
    rows = [[r["rank"], "({}, {}, {})".format(*r["mij"]), _shape(r["W"]),
             "-" if r["b"] is None else r["b"], _shape(r["X"]), _shape(r["Y"]),
             r["param_bytes"], r["data_bytes"]] for r in sorted(reports, key=lambda r: r["rank"])]
    return _table(["rank", "(m, i, j)", "W block", "bias", "X held", "Y held", "param bytes",
                   "data bytes"], rows)


def holdings_match(reports, grid, n_instances):
    """True when every engine holds exactly what ``grid`` (``Grid.describe``) says it should."""
    for r in reports:
        p = grid.partition(r["rank"])
        want_X = (n_instances, len(p.rows)) if p.holds_features else None
        want_Y = (n_instances, len(p.cols)) if p.holds_labels else None
        data = n_instances * ((len(p.rows) if p.holds_features else 0)
                              + (len(p.cols) if p.holds_labels else 0)) * 8
        if ((p.m, p.i, p.j) != tuple(r["mij"]) or tuple(r["W"]) != p.block_shape
                or r["b"] != (len(p.cols) if p.has_bias else None) or r["X"] != want_X
                or r["Y"] != want_Y or r["param_bytes"] != 8 * p.n_params
                or r["data_bytes"] != data):
            return False
    return True


def message_steps(reports):
    """The messages of one step, merged over ranks in the order they happen.

    Every member of a group runs that group's collectives in the same order, so the k-th
    (group, op, bytes) of one rank is the k-th of every other member: one row per such
    collective, ordered consistently with every rank's own order (ties: lowest rank first).
    Returns [(phase, op, group, ranks, bytes per message)].
    """
    sequences, members, phase_of = [], {}, {}
    for r in sorted(reports, key=lambda r: r["rank"]):
        seen, seq = {}, []
        for phase, op, group, nbytes in r["trace"]:
            k = seen[(op, group)] = seen.get((op, group), -1) + 1
            key = (op, group, k)
            seq.append(key)
            members.setdefault(key, []).append(r["rank"])
            phase_of[key] = (phase, nbytes)
        sequences.append(seq)
    after = {key: set() for key in members}          # key -> keys that must come before it
    first = {}
    for seq in sequences:
        for pos, key in enumerate(seq):
            first[key] = min(first.get(key, (pos,)), (pos,))
            if pos:
                after[key].add(seq[pos - 1])
    order, done = [], set()
    while len(order) < len(members):
        ready = [k for k in members if k not in done and after[k] <= done]
        key = min(ready, key=lambda k: (first[k], members[k][0]))
        order.append(key)
        done.add(key)
    return [(phase_of[k][0], k[0], k[1], tuple(members[k]), phase_of[k][1]) for k in order]


def message_table(reports, floats_per_row=None):
    """:func:`message_steps` as a table; with ``floats_per_row`` = {rows: label}, a column
    reads each buffer as rows x columns (e.g. {1437: "l", 72: "|S|"})."""
    rows, total_msgs, total_bytes = [], 0, 0
    for step, (phase, op, group, ranks, nbytes) in enumerate(message_steps(reports), 1):
        n = nbytes // 8
        shape = str(n)
        for count, label in (floats_per_row or {}).items():
            if n % count == 0 and n >= count:
                shape = f"{label} x {n // count}" if n > count else label
                break
        rows.append([step, phase, f"{op} over {group}", ",".join(map(str, ranks)), shape,
                     nbytes, len(ranks), nbytes * len(ranks)])
        total_msgs += len(ranks)
        total_bytes += nbytes * len(ranks)
    rows.append(["", "total", "", "", "", "", total_msgs, total_bytes])
    return _table(["step", "phase", "collective", "ranks", "floats", "bytes each", "messages",
                   "bytes"], rows)


def measured(reports):
    """{phase: {"messages", "bytes"}} summed over ranks, from :func:`traced_step` reports."""
    out = {}
    for r in reports:
        for phase, d in r["record"].items():
            o = out.setdefault(phase, {"messages": 0, "bytes": 0})
            o["messages"] += d["messages"]
            o["bytes"] += d["bytes"]
    return out


TRAINING_PHASES = ("function", "gradient", "jacobian", "cg", "sync", "line_search", "sgd")


def bytes_per_iteration(run, key="bytes"):
    """{phase: mean bytes (or ``key="messages"``) per iteration (epoch for SGD), summed over
    ranks} of one run."""
    history = run["history"]
    return {p: sum(rec["comm"].get(p, {}).get(key, 0) for rec in history) / len(history)
            for p in TRAINING_PHASES
            if any(rec["comm"].get(p, {}).get(key, 0) for rec in history)}


def _cg_total(run):
    """CG iterations over a run; with one CG per rank (block-diagonal G), each iteration
    counts its slowest rank's."""
    per_rank = run.get("cg_iters_per_rank")
    if per_rank:
        return sum(max(c or 0 for c in iteration) for iteration in zip(*per_rank))
    return sum(rec.get("cg_iters") or 0 for rec in run["history"])


def runs_table(runs, seconds=False):
    """One row per run: iterations, CG iterations (per iteration the slowest rank's, when each
    rank runs its own CG), MB sent per iteration, final f, accuracies.

    Seconds (which vary from run to run) only with ``seconds=True``, printed as "x.xx s".
    """
    header = ["run", "iters", "CG iters", "MB/iter", "final f", "train acc", "test acc"]
    rows = []
    for name, run in runs.items():
        h = run["history"]
        cg_iters = _cg_total(run)
        mb = sum(bytes_per_iteration(run).values()) / 1e6
        f = run["final"]
        row = [name, len(h), cg_iters if cg_iters else "-", f"{mb:.3f}",
               "-" if f["objective"] is None else f"{f['objective']:.4g}",
               "-" if f["train_accuracy"] is None else f"{f['train_accuracy']:.3f}",
               "-" if f["test_accuracy"] is None else f"{f['test_accuracy']:.3f}"]
        if seconds:
            row.append(f"{f['wall_time']:.2f} s")
        rows.append(row)
    return _table(header + (["time"] if seconds else []), rows)


def jacobian_table(factors):
    """The factored Jacobian blocks (:func:`jacobian_factors`), one row per rank."""
    rows = [[r["rank"], "({}, {}, {})".format(*r["mij"]), _shape(r["D"]), _shape(r["z"]),
             r["factored_bytes"], r["dense_bytes"]]
            for r in sorted(factors, key=lambda r: r["rank"])]
    return _table(["rank", "(m, i, j)", "D_ij", "z^{m-1} on S", "bytes kept", "dense J block bytes"],
                  rows)


def reference_block_diagonal(theta, X_S, v, C, grid, activation="relu", loss="squared"):
    """The dense oracle of the block-diagonal product: block p of G_S (v masked to block p),
    for every partition p (``reference.gauss_newton_product`` once per partition)."""
    from . import reference as ref
    params = ref.unflatten(theta, grid.layers)
    out = np.zeros(grid.n_params)
    for rank in range(grid.size):
        idx = grid.param_slices(rank)
        masked = np.zeros(grid.n_params)
        masked[idx] = v[idx]
        Gv = ref.flatten(ref.gauss_newton_product(params, X_S, ref.unflatten(masked, grid.layers),
                                                  C, activation, loss))
        out[idx] = Gv[idx]
    return out


def phase_table(runs, key="bytes"):
    """Bytes (or ``key="messages"``) per iteration, summed over ranks, by phase; one column
    per run."""
    per = {name: bytes_per_iteration(run, key) for name, run in runs.items()}
    phases = [p for p in TRAINING_PHASES if any(p in d for d in per.values())]
    rows = [[p] + [f"{per[name].get(p, 0):.0f}" for name in runs] for p in phases]
    rows.append(["total"] + [f"{sum(per[name].values()):.0f}" for name in runs])
    return _table([f"{key} per iteration"] + list(runs), rows)


def directions_table(points):
    """Full against block-diagonal Newton directions (:func:`newton_directions`), one row per
    point: ``points`` is {name: the engines' reports at that point}."""
    rows = []
    for name, reports in points.items():
        r0 = min(reports, key=lambda r: r["rank"])
        rows.append([name, f"{r0['cos']:.3f}", f"{r0['cos_full_g']:.3f}", f"{r0['cos_diag_g']:.3f}",
                     r0["cg_full"], " ".join(str(r["cg_diag"]) for r in
                                             sorted(reports, key=lambda r: r["rank"]))])
    return _table(["point", "cos(d_full, d_diag)", "cos(d_full, -g)", "cos(d_diag, -g)",
                   "CG full", "CG diag (each rank)"], rows)


def sync_table(runs, slow_rank):
    """One row per run of the block-diagonal method with a slow rank: the stopping threshold
    ceil(tau N), CG iterations of the slow rank and of the others (totals over the run), and
    seconds: the slow rank's in CG, the others' mean in CG + sync (mostly waiting)."""
    from .comm import sync_threshold
    rows = []
    for name, run in runs.items():
        per_rank, iters = run["per_rank"], run["cg_iters_per_rank"]
        n = len(per_rank)
        others = [r for r in range(n) if r != slow_rank]
        wait = sum(waiting_seconds(run, r) for r in others) / len(others)
        tau = run["config"].get("sync", 1.0)
        rows.append([name, f"{sync_threshold(tau, n)} of {n}", sum(iters[slow_rank]),
                     " ".join(str(sum(iters[r])) for r in others),
                     f"{per_rank[slow_rank].get('cg', {}).get('seconds', 0.0):.2f} s", f"{wait:.2f} s"])
    return _table(["run", "stop when done", f"CG iters rank {slow_rank}", "CG iters others",
                   f"rank {slow_rank} in CG", "others in CG + sync"], rows)


def waiting_seconds(run, rank):
    """Seconds ``rank`` spent in the cg and sync phases of a run (from ``gather_run``)."""
    totals = run["per_rank"][rank]
    return sum(totals.get(p, {}).get("seconds", 0.0) for p in ("cg", "sync"))
