"""Local runs keep their ranks on the loopback interface (environment.local_environment).

A 4-rank training run is started the way ``make demo`` starts one (``python -m
dnewton_core.environment -n 4 ...``, which the tests' launchers share), and an MPICluster the
way a notebook does; while they run, no rank may listen on an address other than loopback
(TCP listeners, bound UDP sockets): without the loopback variables UCX listens on the
machine's external address. Hydra's control port (``mpiexec``, ``hydra_pmi_proxy``) is the
one listener MPICH cannot keep on loopback (environment.py says why): on Linux it lives in a
private network namespace whose only interface is loopback (netns.py), which the tests
check; where the system refuses such namespaces it is allowed, and nothing else is.
"""
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from dnewton_core.classroom.cluster import MPICluster, cluster_processes
from dnewton_core.environment import LAUNCHED_BY, LaunchError, local_environment, local_launch
from dnewton_core.netns import in_private_network

ROOT = Path(__file__).resolve().parent.parent
MARK = "DNEWTON_LOOPBACK_TEST"


def listening(procs):
    """{(process name, pid): [address listened on, ...]} of these processes; skips the test
    if the platform cannot tell which sockets a process holds."""
    out = {}
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        except (psutil.AccessDenied, NotImplementedError, OSError) as e:
            pytest.skip(f"this platform does not tell which sockets a process holds ({e!r})")
        addrs = [(c.laddr.ip, c.laddr.port) for c in conns if c.laddr and (
            c.status == psutil.CONN_LISTEN or (c.status == psutil.CONN_NONE and not c.raddr))]
        out[(name, proc.pid)] = addrs
    return out


HYDRA = ("mpiexec", "mpiexec.hydra", "hydra_pmi_proxy")


def exposed(procs, hydra_allowed):
    """The (process, address) pairs reachable from outside this machine: listening on
    anything but loopback, from this network namespace. A process in a private namespace
    whose one interface is loopback (environment.enter_private_network) is not reachable;
    hydra's control port (which its ranks inherit as an open descriptor) is allowed only
    where ``hydra_allowed``."""
    held = listening(procs)
    hydra = {addr for who, addrs in held.items() if who[0] in HYDRA for addr in addrs}
    return [(who, addr) for who, addrs in held.items() for addr in addrs
            if not (hydra_allowed and addr in hydra) and not in_private_network(who[1])
            and not ipaddress.ip_address(addr[0].split("%")[0]).is_loopback]


def private_networks():
    """Whether this system lets a local launch have a network namespace of its own."""
    code = "from dnewton_core.netns import available; print(available())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() == "True"


def marked(marker):
    return cluster_processes(**{MARK: marker})


def test_a_local_run_listens_on_loopback_only():
    try:
        local_launch(4)
    except LaunchError as e:
        pytest.skip(str(e))
    marker = uuid.uuid4().hex
    env = dict(local_environment(), **{MARK: marker})
    cmd = [sys.executable, "-m", "dnewton_core.environment", "-n", "4",
           sys.executable, "-m", "dnewton_core", "train", "--iters", "100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    timer = threading.Timer(120, os.killpg, (proc.pid, signal.SIGKILL))   # a hang fails, not CI
    timer.start()
    try:
        lines = iter(proc.stdout.readline, "")
        started = any(line.split()[:1] and line.split()[0].isdigit() for line in lines)
        assert started, f"the run never printed an iteration:\n{proc.stderr.read()[-2000:]}"
        procs = marked(marker)               # the launcher and the ranks, all in MPI by now
        ranks = [p for p in procs if "dnewton_core" in " ".join(p.cmdline())
                 and "environment" not in " ".join(p.cmdline())]
        assert len(ranks) >= 4, [p.cmdline() for p in procs]
        assert {p.environ().get(LAUNCHED_BY) for p in ranks} == \
            {"python -m dnewton_core.environment -n 4"}           # what a study records
        private = private_networks()
        assert exposed(procs, hydra_allowed=not private) == [], listening(procs)
        if private:                          # hydra's port too is out of reach
            assert all(in_private_network(p.pid) for p in ranks), [p.cmdline() for p in ranks]
    finally:
        timer.cancel()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        for p in marked(marker):
            p.kill()


def test_an_mpicluster_listens_on_loopback_only():
    with MPICluster(2, timeout=120) as cl:
        procs = cl.processes()
        names = " ".join(" ".join(p.cmdline()) for p in procs)
        assert "ipyparallel.engine" in names and "ipyparallel.controller" in names
        assert cl.run(sum, [1, 2]) == [3, 3]              # the engines are up and in MPI
        private = private_networks()
        assert exposed(procs, hydra_allowed=not private) == [], listening(procs)
        if private:                          # the engines reach the controller by the relay
            engines = [p for p in procs if p.cmdline()[1:3] == ["-m", "ipyparallel.engine"]]
            assert len(engines) == 2 and all(in_private_network(p.pid) for p in engines)


def test_make_demo_goes_through_the_local_launcher():
    text = (ROOT / "Makefile").read_text()
    assert "LAUNCH ?= $(BIN)/python -m dnewton_core.environment -n $(NP)" in text
    demo = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "$(LAUNCH) $(BIN)/python -m dnewton_core" in demo and "mpiexec" not in demo


def test_a_relay_whose_launcher_ended_before_it_ran_ends_too(tmp_path):
    """The launcher forks the relay, enters the private network and starts mpiexec (here: a
    script execve-s into /bin/false). If that fails at once, the launcher can end before the
    relay has run a line: the relay must still know whose it was, or, adopted by init, it
    serves forever (it did, once, after the failing-mpiexec test). Here the relay is made to
    start late on purpose."""
    if not private_networks():
        pytest.skip("private networks are refused here: no relay is started")
    marker = uuid.uuid4().hex
    script = ("import os, time\nfrom dnewton_core import netns\nfork = os.fork\n"
              "def late():\n    pid = fork()\n    if pid == 0:\n        time.sleep(1.0)\n"
              "    return pid\nos.fork = late\nassert netns.forward([45678])\n"
              "os.execv('/bin/false', ['false'])\n")
    with open(tmp_path / "stderr", "w") as err:         # a pipe would wait for the relay too
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=err, env=dict(os.environ, **{MARK: marker}), timeout=30)
    stderr = (tmp_path / "stderr").read_text()
    assert proc.returncode == 1 and not stderr, stderr             # /bin/false's status
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and marked(marker):
        time.sleep(0.2)
    left = marked(marker)
    for p in left:
        p.kill()
    assert left == [], [p.cmdline() for p in left]
