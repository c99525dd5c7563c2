"""The machine a run starts on: where mpiexec is, how many BLAS threads each rank gets,
which network a local run may use, and what to record about the machine. Standard library only.

Several MPI ranks on few cores are many times slower with BLAS's default threading
(docs/installation.md): every launch the kit makes gives each rank ``blas_environment()``.

The ranks of a run on this machine talk over shared memory, and their network modules are
kept on the loopback interface (``LOOPBACK_ENVIRONMENT``) in every local launch the kit
makes: ``make demo`` and the tests run ``local_launch(n) + command`` with
``local_environment()``, the notebooks' ``MPICluster`` gives its engines the same variables;
from a shell: ``python -m dnewton_core.environment -n 4
COMMAND``. The pip wheel's MPICH is ``ch4:ucx`` (``ofi`` when ``MPIR_CVAR_CH4_NETMOD=ofi``):
UCX's TCP transport listens on every non-loopback interface unless ``UCX_NET_DEVICES=lo``,
libfabric's tcp and sockets providers unless ``FI_TCP_IFACE``/``FI_SOCKETS_IFACE=lo``.

Hydra (``mpiexec``) binds its control port to 0.0.0.0 whatever ``-iface``, ``HYDRA_IFACE``
or ``-localhost`` say (they choose only the address it advertises; MPICH 5.0.2's
``HYDU_sock_listen``). So on Linux a local launch first moves into a private network
namespace (``netns.py``: a new user and network namespace, the user's own uid mapped to
itself, loopback up): there 0.0.0.0 is the loopback interface and nothing
else, and nobody outside the namespace can reach the port. Where the kernel refuses that
(not Linux, unprivileged user namespaces disabled, a container's seccomp filter), the
launch goes on without it and hydra's port listens on every interface while the run lasts;
it answers only hydra's own protocol. The notebooks' engines live in such a namespace too
and reach ipyparallel's controller, on the kernel's loopback, through a relay
(``--forward-from`` the controller's engine connection file, :func:`netns.forward`).
MPICH's port-less ``mpiexec.gforker`` was measured unfit: it broke its ranks' output on the
first non-ASCII character, added seconds to every launch, and left a stopped rank running.
"""
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
LOOPBACK_ENVIRONMENT = {
    "UCX_NET_DEVICES": "lo",       # ch4:ucx, the pip wheel's default network module
    "FI_TCP_IFACE": "lo",          # ch4:ofi: libfabric's tcp provider ...
    "FI_SOCKETS_IFACE": "lo",      # ... and its sockets provider
}


class LaunchError(RuntimeError):
    """No MPI launcher could be found; the message says what to install."""


def blas_environment(threads=1):
    """{variable: threads} for every BLAS threading variable."""
    return {name: str(threads) for name in BLAS_THREADS}


def oversubscribed(n_ranks):
    """What to say when ``n_ranks`` ranks ask for more BLAS threads than the machine has
    cores (None when they do not)."""
    threads = max(int(v) if v.isdigit() else 0 for v in
                  (os.environ.get(k, "") for k in BLAS_THREADS)) or os.cpu_count() or 1
    if threads > 1 and n_ranks * threads > (os.cpu_count() or 1):
        return (f"{n_ranks} ranks with {threads} BLAS thread(s) each on {os.cpu_count()} "
                "cores: set OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 (4x "
                "slower otherwise here: docs/installation.md)")
    return None


def find_mpiexec(mpiexec=None):
    """Path of ``mpiexec``: the given one, else this environment's own, else the one on PATH.

    ``pip install mpich`` puts ``mpiexec`` in ``sys.prefix/bin``; a Jupyter kernel's PATH
    often lacks that directory, so it is looked for there first.
    """
    if mpiexec is not None:
        path = shutil.which(str(mpiexec))
        if path is None:
            raise LaunchError(f"mpiexec {mpiexec!r} not found or not executable; pass the path "
                              f"of a working mpiexec, or mpiexec=None for this environment's own")
        return path
    own = os.path.join(sys.prefix, "bin", "mpiexec")
    if os.access(own, os.X_OK):
        return own
    path = shutil.which("mpiexec")
    if path is None:
        raise LaunchError(f"no mpiexec in {os.path.dirname(own)} or on PATH: install an MPI into "
                          f"this environment ({sys.executable} -m pip install mpich mpi4py)")
    return path


def loopback_environment():
    """{variable: value} that keep every rank's MPI network module on the loopback interface."""
    return dict(LOOPBACK_ENVIRONMENT)


def local_environment(threads=1, base=None):
    """The environment of a local run: ``base`` (default: this process's environment) with
    ``threads`` BLAS threads per rank and the network modules on loopback only."""
    env = dict(os.environ if base is None else base)
    env.update(blas_environment(threads))
    env.update(loopback_environment())
    return env


def local_launch(n, mpiexec=None):
    """The argv prefix that starts ``n`` ranks on this machine, in a private network namespace
    where the system allows one, their network modules on loopback (with
    :func:`local_environment`): ``local_launch(4) + [sys.executable, ...]``."""
    path = find_mpiexec(mpiexec)              # fail here, in the caller, if there is none
    own = [] if mpiexec is None else ["--mpiexec", path]
    return [sys.executable, "-m", "dnewton_core.environment", "-n", str(n), *own]


# The launcher a rank was started by, as one would type it (``main`` sets it; a study's
# summary.md records its command with it, and with ``mpiexec -n N`` where it is not set).
LAUNCHED_BY = "DNEWTON_LAUNCHED_BY"


def speed_environment():
    """The variables set here that change how fast runs go, never what they compute: BLAS
    threads, how ranks wait (DNEWTON_WAIT, polling.py), and MPICH's tuning variables
    (MPIR_CVAR_...), as NAME=value strings."""
    return [f"{k}={os.environ[k]}" for k in (*BLAS_THREADS, "DNEWTON_WAIT") if k in os.environ] + \
        [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MPIR_CVAR_")]


def machine():
    """Cores (all and usable), CPU model, platform, Python version."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return dict(cores=os.cpu_count(), usable_cores=len(usable_cores()), cpu=cpu or "unknown",
                platform=platform.platform(), python=platform.python_version(),
                threads=", ".join(f"{k}={os.environ[k]}" for k in BLAS_THREADS
                                  if k in os.environ) or "not set")


def usable_cores():
    """The set of cores this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:                 # not Linux
        return set(range(os.cpu_count() or 1))


def load_average():
    """The 1-minute load average as text ("unknown" where the system has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


def processor_ticks():
    """(busy, stolen) clock ticks of all processors since boot, from Linux's /proc/stat
    ((0, 0) elsewhere). Stolen ticks are those a virtual machine's host gave to something
    else while this machine had work: a virtual machine can be busy where the load average
    shows nothing (``stolen_share``)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks + [0] * (8 - len(ticks))
    return user + nice + system + irq + softirq, steal


def stolen_share(before, after=None):
    """The share of the processors' busy time (busy + stolen: the time they had work) that
    the host stole between two ``processor_ticks`` (``after`` None: now)."""
    busy, stolen = (max(0, b - a) for a, b in zip(before, after or processor_ticks()))
    return stolen / (busy + stolen) if busy + stolen > 0 else 0.0


def controller_ports(path):
    """The ports an ipyparallel engine connects to, from the controller's engine connection
    file (``ipcontroller-<cluster id>-engine.json``)."""
    with open(path) as f:
        info = json.load(f)
    ports = set()
    for value in info.values():
        values = value if isinstance(value, list) else [value]
        ports.update(v for v in values if isinstance(v, int) and not isinstance(v, bool))
    return sorted(ports)


def main(argv=None):
    """``python -m dnewton_core.environment [-n N] COMMAND ...``: COMMAND on N ranks of this
    machine (default 4), in a private network namespace where the system allows it, MPI on
    loopback only, one BLAS thread per rank unless the BLAS variables are set (what ``make
    demo`` runs); a Ctrl-C ends the whole job (``supervise``)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m dnewton_core.environment",
                                     description=main.__doc__.split(":", 1)[1].strip())
    parser.add_argument("-n", type=int, default=4, help="number of MPI ranks (default 4)")
    parser.add_argument("--mpiexec", help="the MPI launcher (default: this environment's own)")
    parser.add_argument("--forward-from", metavar="FILE",
                        help="an ipyparallel engine connection file: relay its ports from the "
                             "private network to this machine's loopback")
    parser.add_argument("--grace", type=float, default=GRACE, metavar="SECONDS",
                        help="seconds a job may take to end after a signal before it is torn "
                             f"down (default {GRACE:g})")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    try:
        args = parser.parse_args(argv)
        sys.exit(supervise(*_launch(args, parser), grace=args.grace))
    except KeyboardInterrupt:            # a Ctrl-C before mpiexec: nothing has run
        parser.exit(130, "interrupted before the job started: nothing ran\n")


GRACE = 15.0        # seconds from a signal to tearing the job down (the guard's is 5 s)


def _launch(args, parser):
    """(mpiexec's argv, its environment) for ``main``, in a private network. SIGINT is
    blocked while that forks: a Ctrl-C in a fork can be lost (raised inside an at-fork
    callback, whose exceptions Python ignores) or raised in the child, which would then go
    on as the launcher; it arrives when unblocked."""
    if not args.command or args.n < 1 or not args.grace > 0:
        parser.error("give a positive -n, a positive --grace and a command to run")
    try:
        argv = [find_mpiexec(args.mpiexec), "-n", str(args.n), *args.command]
        ports = controller_ports(args.forward_from) if args.forward_from else None
    except (LaunchError, OSError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    # imported here, not by every rank that imports this module (asyncio: a few MB each)
    from . import netns
    if ports is None:
        netns.enter()
    else:
        netns.forward(ports)
    env = local_environment()             # one BLAS thread per rank, unless the caller set
    env.update({k: os.environ[k] for k in BLAS_THREADS if k in os.environ})   # its own
    env[LAUNCHED_BY] = f"python -m dnewton_core.environment -n {args.n}"     # for a study's record
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)      # a Ctrl-C held raises here
    return argv, env


def supervise(argv, env, grace=GRACE):
    """Run mpiexec (``argv``) in a process group of its own and pass it every SIGINT, SIGTERM
    and SIGHUP this process gets, once each; its exit status (128 + N if signal N ended it).

    A job must end on a signal, but it may miss one. Hydra passes a Ctrl-C on only to the
    ranks it has started by then: so the first signal is also written to a file that every
    rank reads once it can act on a signal (``interrupts.missed``). A rank that a Ctrl-C
    ends in Python's own start exits with a status, for which Hydra does not end the others
    (they wait in MPI_Init): so ``grace`` seconds after the first signal a job still running
    gets a second SIGINT, on which Hydra tears it down, and ``grace`` seconds later SIGKILL.
    In its own process group mpiexec gets each signal from here only (a terminal's Ctrl-C
    reaches this process's group, not its), so that no single Ctrl-C arrives twice, which
    Hydra would take for the second. mpiexec gets SIGTERM if this process dies (Linux), and
    /dev/null as its input. Until it has started, a Ctrl-C raises KeyboardInterrupt here."""
    import secrets
    import tempfile

    from . import interrupts
    signals = interrupts.SIGNALS
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    mark = env[interrupts.SIGNALLED] = os.path.join(      # made only if a signal comes
        tempfile.gettempdir(), f"dnewton-signal-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                 preexec_fn=_in_child(signals, mask))
    except (OSError, subprocess.SubprocessError) as e:
        print(f"error: cannot start {argv[0]}: {e}", file=sys.stderr)
        return 2
    try:
        return _wait(child, signals, mask, mark, grace)
    finally:
        with contextlib.suppress(OSError):
            os.remove(mark)


def _wait(child, signals, mask, mark, grace):
    """``supervise``'s wait: passes each signal on (and writes the first to ``mark``, for
    ranks not yet started: ``interrupts.missed``), tears the job down after ``grace`` (a
    timer, so that nothing here wakes up while the job runs)."""
    steps = [(signal.SIGINT, "which makes mpiexec tear the job down"),
             (signal.SIGKILL, "to mpiexec, whose proxies then end the ranks")]
    first = []

    def forward(signum, frame):
        if not first:
            first.append(signum)
            with contextlib.suppress(OSError):   # before mpiexec passes it on; a new file,
                fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                os.write(fd, str(int(signum)).encode())     # never through a placed link
                os.close(fd)
            signal.setitimer(signal.ITIMER_REAL, grace)
        child.send_signal(signum)                # (nothing once it has ended)

    def escalate(signum, frame):
        sig, what = steps.pop(0)
        print(f"python -m dnewton_core.environment: the job is still running "
              f"{grace * (2 - len(steps)):g} s after the signal: sending {sig.name}, {what}",
              file=sys.stderr, flush=True)
        child.send_signal(sig)                   # (Hydra's proxies end with a killed mpiexec)
        if steps:
            signal.setitimer(signal.ITIMER_REAL, grace)

    signal.signal(signal.SIGALRM, escalate)
    for sig in signals:
        if signal.getsignal(sig) is not signal.SIG_IGN:     # nohup's SIGHUP stays ignored
            signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)        # one held arrives here
    status = child.wait()
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig in (*signals, signal.SIGALRM):                  # the job has ended: nothing to do
        signal.signal(sig, signal.SIG_IGN)
    return 128 - status if status < 0 else status


def _in_child(signals, mask):
    """What mpiexec's process does between fork and exec: a process group of its own (not a
    session, which Linux's scheduler would also make a group of its own), where SIGTTOU is
    ignored (a background group's write to a terminal set to ``tostop`` would stop it),
    ``signals`` at their default action (one sent before ends it at once) and ``mask``
    again; on Linux, SIGTERM when the launcher dies (PR_SET_PDEATHSIG, and at once if it
    died before), so that a launcher killed outright ends its job."""
    # netns is loaded already (by ``_launch``): the child only calls it
    from . import netns
    launcher, linux = os.getpid(), sys.platform.startswith("linux")

    def run():
        os.setpgid(0, 0)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        for sig in signals:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if linux and not netns.ends_with(launcher):
            os.kill(os.getpid(), signal.SIGTERM)
    return run


if __name__ == "__main__":
    main()
