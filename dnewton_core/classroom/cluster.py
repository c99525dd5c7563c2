"""MPI engines for the notebooks: one ipyparallel engine per MPI rank, one rank per partition.

Client side (the notebook's kernel)::

    with MPICluster(n=4) as cl:          # or cl = MPICluster(4).start(); ...; cl.stop()
        cl.run(func, *args)              # func(*args) on every rank: a list in rank order
        cl.run(func, cl.ref("model"))    # pass a variable that lives on the engines
        cl.push(data=data)               # copies of client variables on every engine
        cl.view                          # the DirectView (rank order) behind %px / %%px

``MPICluster`` starts a controller and ``mpiexec -n N python -m ipyparallel.engine --mpi``
with this environment's own MPI launcher (``sys.prefix/bin``, so a kernel whose PATH lacks
it still works) and one BLAS thread per rank (several ranks on few cores are many times
slower otherwise). Like the controller, the ranks listen on the loopback interface only
(``environment.local_environment``); on Linux, mpiexec and the engines run in a private
network namespace and reach the controller through a relay (``netns.py``), so that not
even hydra's control port, which MPICH binds to every interface, is reachable from
another machine. It asks every engine its MPI rank and orders the view by it, so
results and ``%%px`` output come back rank 0, 1, 2, ... It stops on ``stop()``, at the end
of a ``with`` block, and when the kernel exits: a watchdog process, started before the
controller, ends every process of the cluster even if the kernel dies without running its
exit handlers, at any moment, ``start()`` included. Problems (no ``mpiexec``, no ``mpi4py``,
``mpiexec`` failing, engines not registering within ``timeout``) raise ``ClusterError``
with a message saying what to do.

What the notebooks ask each rank to do is in ``lessons.py``; the tables they print, in
``tables.py``.
"""
import atexit
import importlib.util
import logging
import math
import os
import sys
import time
import weakref

from .. import environment
from ..environment import blas_environment, loopback_environment
from .watchdog import start_watchdog

CLUSTER_MARK = "DNEWTON_CLUSTER_ID"     # set in the environment of every process of a cluster
_RUNNING = weakref.WeakSet()            # clusters to stop when the kernel exits


class ClusterError(RuntimeError):
    """The engines could not be started (or asked): the message says why and what to do."""


class EngineError(ClusterError):
    """Ranks raised an exception: one line per distinct error with the ranks that raised it.

    The notebook shows that line only (IPython's ``_render_traceback_``); the ranks' full
    tracebacks are a call away: ``err.show()`` (or ``cl.last_error.show(rank)``).
    """

    def __init__(self, errors):
        self.errors = dict(sorted(errors.items()))          # {rank: (name, message, traceback)}
        by_error = {}
        for rank, (name, message, _) in self.errors.items():
            by_error.setdefault(f"{name}: {message}", []).append(rank)
        super().__init__("; ".join(f"rank{'s' if len(ranks) > 1 else ''} "
                                   f"{', '.join(map(str, ranks))}: {what}"
                                   for what, ranks in by_error.items()))

    def _render_traceback_(self):
        return [f"EngineError: {self}",
                "(the ranks' tracebacks: cl.last_error.show(), or .show(rank) for one rank)"]

    def show(self, rank=None):
        """Print the engines' tracebacks (all ranks, or one)."""
        for r, (_, _, traceback) in self.errors.items():
            if rank is None or r == rank:
                print(f"--- rank {r} ---\n{traceback}")


def find_mpiexec(mpiexec=None):
    """``environment.find_mpiexec``, failing with a ``ClusterError``."""
    try:
        return environment.find_mpiexec(mpiexec)
    except environment.LaunchError as e:
        raise ClusterError(str(e)) from None


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


# The controller counts an engine as registered at its first heartbeat, and pings every
# 3 s by default: 4 engines took 11 s to start here, 5.5-6.5 s with pings every 0.5 s. An engine
# still counts as lost after 30 s without an answer, as by default.
HEARTBEAT = ["--HeartMonitor.period=500", "--HeartMonitor.max_heartmonitor_misses=60"]


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
        self.last_error = None       # the last EngineError, with the ranks' tracebacks

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

        self._stop_earlier_clusters()
        blas = blas_environment(self.threads)
        os.environ.update(blas)                 # for anything this kernel starts later, too
        cluster = ipp.Cluster(engines="mpi", n=self.n, log_level=logging.ERROR,
                              engine_timeout=max(1, math.ceil(self.timeout)),
                              controller_args=HEARTBEAT)
        engine_file = os.path.join(cluster.profile_dir, "security",
                                   f"ipcontroller-{cluster.cluster_id}-engine.json")
        cluster.config.MPILauncher.mpi_cmd = [       # mpiexec in a private network (see above)
            sys.executable, "-m", "dnewton_core.environment", "--mpiexec", mpiexec,
            "--forward-from", engine_file]
        cluster.config.BaseLauncher.environment = dict(
            blas, **loopback_environment(), **{CLUSTER_MARK: cluster.cluster_id})
        self.cluster, self._cluster_id = cluster, cluster.cluster_id
        _RUNNING.add(self)
        try:
            self._start_watchdog()           # before any process of the cluster exists
            cluster.start_cluster_sync()
            _register_atexit()               # after ipyparallel's own, so it runs before it
            self.client = cluster.connect_client_sync()
            self._wait_for_engines(mpiexec)
            self._order_by_rank()
        except BaseException:
            self.stop()
            raise
        if self.activate and _in_ipython():
            self.view.activate()
            _short_engine_errors(self)
        return self

    def _stop_earlier_clusters(self):
        """Re-running a notebook's cell that starts a cluster replaces the one it started
        before (which would otherwise run, idle, until the kernel exits)."""
        for earlier in list(_RUNNING):
            if earlier is not self and earlier.cluster is not None:
                earlier.stop()
                print(f"stopped the {earlier.n}-engine cluster this kernel started before",
                      file=sys.stderr)

    def _start_watchdog(self):
        """A process that ends every process of this cluster if this process dies without
        stopping it (it carries no marker itself, and outlives a kill of the kernel's group)."""
        self._watchdog = start_watchdog(CLUSTER_MARK, self.cluster_id, [self.cluster.cluster_file])

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
        try:
            if cluster is not None:
                self._stop_cluster(cluster, client)
        finally:
            self._stop_watchdog()            # last: it covers a kernel dying during stop()

    def _stop_cluster(self, cluster, client):
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
        from ipyparallel.error import CompositeError
        view = self._running_view()
        try:
            return view.apply_sync(func, *args, **kwargs)
        except CompositeError as e:
            raise self.engine_error(e) from None

    def engine_error(self, composite):
        """The :class:`EngineError` (ranks, not engine ids) of an ipyparallel CompositeError;
        it is kept as ``last_error``."""
        rank_of = {engine: rank for rank, engine in enumerate(self.ranks or [])}
        errors = {}
        for name, message, traceback, info in composite.elist:
            engine = (info or {}).get("engine_id")
            errors[rank_of.get(engine, engine)] = (name, message, traceback or "")
        self.last_error = EngineError(errors)
        return self.last_error

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


def _short_engine_errors(cluster):
    """In IPython, a ``%px``/``%%px`` cell whose ranks raise shows one :class:`EngineError`
    line instead of a traceback per rank. The magics do not stream the engines' output
    while the cell runs (it comes at the end): streaming prints each rank's traceback as
    it arrives and, when all of it came before the results, ends the cell with "1 errors"
    instead of the ``CompositeError`` handled here, so which one a student saw depended on
    timing."""
    from ipyparallel.error import CompositeError
    shell = sys.modules["IPython"].get_ipython()
    shell.magics_manager.registry["ParallelMagics"].stream_output = False

    def handler(shell, etype, value, tb, tb_offset=None):
        err = cluster.engine_error(value)
        lines = err._render_traceback_()
        shell._showtraceback(EngineError, err, lines)   # ipykernel: the cell's error output
        return lines

    shell.set_custom_exc((CompositeError,), handler)


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


def whoami():
    """This engine's MPI rank and world size, and its process id."""
    from ..comm import world_rank
    rank, size = world_rank()
    return {"rank": rank, "size": size, "pid": os.getpid()}
