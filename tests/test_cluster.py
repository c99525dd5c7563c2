"""MPICluster (dnewton_core/cluster.py): engines in MPI rank order, a clean stop, clear errors.

One cluster of 3 engines serves the first tests; the errors start a controller but no
working engines. Every process a cluster starts carries DNEWTON_CLUSTER_ID in its
environment, which is how the tests look for leftovers.
"""
import time

import ipyparallel as ipp
import psutil
import pytest

from dnewton_core.classroom.cluster import (
    CLUSTER_MARK,
    ClusterError,
    EngineError,
    MPICluster,
    cluster_processes,
)

N = 3


@ipp.interactive
def rank_and_sum():
    """On each engine: (rank, size, sum of rank + 1 over the world by Allreduce, pid)."""
    import os

    import numpy as np
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    x = np.array([world.Get_rank() + 1.0])
    world.Allreduce(MPI.IN_PLACE, x)
    return world.Get_rank(), world.Get_size(), float(x[0]), os.getpid(), os.environ.get(
        "OPENBLAS_NUM_THREADS")


@pytest.fixture(scope="module")
def cluster():
    cl = MPICluster(N, timeout=120).start()
    yield cl
    cl.stop()


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_results_come_back_in_rank_order(cluster):
    out = cluster.run(rank_and_sum)
    assert [r[0] for r in out] == list(range(N))
    assert {r[1] for r in out} == {N}
    assert [r[2] for r in out] == [N * (N + 1) / 2] * N        # one MPI world, Allreduce works
    assert {r[4] for r in out} == {"1"}                          # one BLAS thread per rank
    assert sorted(cluster.ranks) == list(range(N))
    assert cluster.view.targets == cluster.ranks


def test_engine_variables_by_reference(cluster):
    assert cluster.push(k=3) is None
    cluster.view.execute("from mpi4py import MPI; twice = k * MPI.COMM_WORLD.Get_rank()")
    assert cluster.run(abs, cluster.ref("twice")) == [3 * r for r in range(N)]


@ipp.interactive
def fail_on(ranks):
    """On each engine: raise ValueError on the given ranks, else return the rank."""
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    if rank in ranks:
        raise ValueError(f"no partition for rank {rank}")
    return rank


def test_an_engine_error_is_one_line_naming_the_ranks(cluster):
    with pytest.raises(EngineError) as caught:
        cluster.run(fail_on, [1])
    err = caught.value
    assert str(err) == "rank 1: ValueError: no partition for rank 1"
    assert cluster.last_error is err and list(err.errors) == [1]
    assert "fail_on" in err.errors[1][2]                         # the traceback, kept
    assert len(err._render_traceback_()) == 2                    # what a notebook shows
    with pytest.raises(EngineError, match=r"^rank 0: ValueError: no partition for rank 0; "
                                          r"rank 2: ValueError: no partition for rank 2$"):
        cluster.run(fail_on, [0, 2])
    assert cluster.run(fail_on, []) == list(range(N))           # the engines still work


def test_stop_leaves_no_process(cluster):
    pids = [r[3] for r in cluster.run(rank_and_sum)]
    cluster_id = cluster.cluster_id
    watchdog = cluster._watchdog.pid
    started = cluster.processes()
    names = " ".join(" ".join(p.cmdline()) for p in started)
    assert "ipyparallel.engine" in names and "ipyparallel.controller" in names and "mpiexec" in names
    cluster.stop()
    cluster.stop()                                               # idempotent
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (cluster_processes(**{CLUSTER_MARK: cluster_id})
                                           or any(map(_alive, pids))):
        time.sleep(0.2)
    assert cluster_processes(**{CLUSTER_MARK: cluster_id}) == []
    assert not any(_alive(p.pid) for p in started)
    assert not _alive(watchdog)
    with pytest.raises(ClusterError, match="not running"):
        cluster.run(rank_and_sum)


def test_missing_mpiexec_is_a_clear_error():
    tic = time.monotonic()
    with pytest.raises(ClusterError, match="/no/such/mpiexec.*not found"):
        MPICluster(2, mpiexec="/no/such/mpiexec").start()
    assert time.monotonic() - tic < 2


def test_failing_mpiexec_ends_the_wait_early():
    cl = MPICluster(2, mpiexec="false", timeout=120)
    tic = time.monotonic()
    with pytest.raises(ClusterError, match="false -n 2 ended.* before the engines registered"):
        cl.start()
    assert time.monotonic() - tic < 60                           # not the 120 s timeout
    assert cl.cluster is None


def test_engines_not_registering_in_time():
    cl = MPICluster(2, timeout=0.01)
    with pytest.raises(ClusterError, match="0 of 2 engines registered within 0.01 s"):
        cl.start()
    assert cl.cluster is None and cl.cluster_id is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and cl.processes():
        time.sleep(0.2)
    assert cl.processes() == []


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2.0), dict(timeout=0), dict(threads=0)])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        MPICluster(**kwargs)


def test_with_block_stops_on_error(monkeypatch):
    calls = []
    monkeypatch.setattr(MPICluster, "start", lambda self: calls.append("start") or self)
    monkeypatch.setattr(MPICluster, "stop", lambda self: calls.append("stop"))
    with pytest.raises(ZeroDivisionError):
        with MPICluster(2):
            raise ZeroDivisionError
    assert calls == ["start", "stop"]


def test_engines_end_when_the_kernel_dies():
    """A kernel that dies runs no exit handler: the watchdog ends its cluster, and removes
    ipyparallel's file of it (which would list a dead cluster)."""
    import os
    import subprocess
    import sys
    script = ("import os\nfrom dnewton_core.classroom.cluster import MPICluster\n"
              "cl = MPICluster(2, timeout=120).start()\nfile = cl.cluster.cluster_file\n"
              "print(cl.cluster_id, file, os.path.exists(file), flush=True)\nos._exit(1)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=180)
    assert out.stdout.strip(), out.stderr
    cluster_id, file, existed = out.stdout.split()
    assert existed == "True"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (cluster_processes(**{CLUSTER_MARK: cluster_id})
                                           or os.path.exists(file)):
        time.sleep(0.25)
    assert cluster_processes(**{CLUSTER_MARK: cluster_id}) == []
    assert not os.path.exists(file)


def test_engines_end_when_the_kernel_dies_during_start():
    """A kernel killed while it waits for the engines to register (in start()): the watchdog,
    started before the controller, ends the controller, mpiexec and the engines."""
    import os
    import signal
    import subprocess
    import sys
    import uuid
    mark = "DNEWTON_KERNEL_TEST"
    marker = uuid.uuid4().hex
    script = ("from dnewton_core.classroom.cluster import MPICluster\n"
              "MPICluster(2, timeout=300).start()\nprint('started', flush=True)\n"
              "import time; time.sleep(600)\n")
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, **{mark: marker}))
    try:
        engines, deadline = [], time.monotonic() + 120
        while len(engines) < 2 and time.monotonic() < deadline and kernel.poll() is None:
            engines = [p for p in cluster_processes(**{mark: marker, "PMI_SIZE": 2})
                       if "ipyparallel.engine" in " ".join(_cmdline(p))]     # the ranks
            time.sleep(0.1)
        assert len(engines) == 2, "the engines never started"
        cluster_id = engines[0].environ()[CLUSTER_MARK]
    finally:
        kernel.send_signal(signal.SIGKILL)              # no exit handler runs
        out, _ = kernel.communicate()
    assert "started" not in out                          # it died inside start()
    assert cluster_processes(**{CLUSTER_MARK: cluster_id}), "nothing to clean up: too late?"
    from ipyparallel import Cluster
    file = Cluster(cluster_id=cluster_id).cluster_file      # where start() writes it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (cluster_processes(**{mark: marker})
                                           or os.path.exists(file)):
        time.sleep(0.25)
    assert cluster_processes(**{CLUSTER_MARK: cluster_id}) == []
    assert cluster_processes(**{mark: marker}) == []     # the watchdog ended too
    assert not os.path.exists(file)


def test_a_new_cluster_replaces_the_old_and_px_errors_are_short(capsys):
    """Re-running the cell that starts the engines stops the ones it started before; in
    IPython, a %%px cell whose ranks raise shows one line."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    try:
        first = MPICluster(2, timeout=120).start()
        first_id = first.cluster_id
        second = MPICluster(2, timeout=120).start()
        try:
            assert first.cluster is None
            assert "stopped the 2-engine cluster this kernel started before" in capsys.readouterr().err
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and cluster_processes(**{CLUSTER_MARK: first_id}):
                time.sleep(0.2)
            assert cluster_processes(**{CLUSTER_MARK: first_id}) == []
            # not streamed: a streamed error ends the cell with "1 errors" if it came first
            assert shell.magics_manager.registry["ParallelMagics"].stream_output is False
            result = shell.run_cell("%%px\nfrom mpi4py import MPI\n"
                                    "assert MPI.COMM_WORLD.Get_rank() == 0, 'not rank 0'")
            out = capsys.readouterr().out
            assert result.error_in_exec is not None
            assert "EngineError: rank 1: AssertionError: not rank 0" in out
            assert len(out.strip().splitlines()) <= 3, out
        finally:
            second.stop()
    finally:
        InteractiveShell.clear_instance()


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []
