"""Signals that arrive while a job starts (docs/troubleshooting.md, Stalls and interrupts).

* Until MPI is up, a Ctrl-C ends a rank at once, by the signal itself. Inside MPI_Init no
  Python runs (it holds Python's lock) and each rank waits there for every other: a rank
  that kept the signal there would wait for good for a rank the signal had ended, since
  Hydra does not end the job for a rank that exits with a status, as Python does (1) when
  its own start is interrupted. From the first line of ``python -m dnewton_core`` (``hold``)
  the signal is kept, so that it ends the rank as the modules that start MPI load
  (``starting_mpi``), not with a traceback from an import. SIGTERM and SIGHUP end the
  process at once.
* Once MPI is up and until every rank runs its guard (``comm.Guard``), a signal must not end
  one rank alone: the others would wait for it for good in a collective of the start (those
  of ``Comm.on_world``, the guard's communicator). So a rank keeps SIGINT, SIGTERM and
  SIGHUP (``hold_all``) and, once the guard is up, sends the signal again (``release``): it
  then ends the job as any later signal does (several ranks: the guard, exit status 130; one
  process: a KeyboardInterrupt). A thread ends the rank (exit status 130, one line) if its
  guard is not up ``WAIT`` seconds after a signal.

Standard library only: ``hold`` runs before numpy and MPI load.
"""
import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SIGNALLED = "DNEWTON_SIGNALLED"   # names the file where the launcher writes a signal it passed on
WAIT = 5.0              # seconds a rank that holds a signal waits for its guard
_held = []
_released = threading.Event()
_watcher = None
_wakeup = None          # (read, write) sockets of the wake-up fd: open while the process lives
_holding = False        # hold() ran: this process is python -m dnewton_core
_ignored = set()        # signals the process was started ignoring (nohup, a background job)


def _keep(signum, frame):
    _held.append(signum)


def _take(signals):
    """Keep ``signals`` from now on, except those this process was started ignoring."""
    for sig in signals:
        if signal.getsignal(sig) is signal.SIG_IGN:
            _ignored.add(sig)
        elif sig not in _ignored:
            signal.signal(sig, _keep)


def hold():
    """Keep SIGINT instead of raising KeyboardInterrupt, until ``release``."""
    global _holding
    _holding = True
    _take([signal.SIGINT])


@contextlib.contextmanager
def starting_mpi():
    """While MPI starts (``comm.py`` loads mpi4py, which calls MPI_Init): SIGINT at its
    default action, so a Ctrl-C ends this rank at once; one kept since ``hold`` ends it on
    entry. Then SIGINT is kept again, until ``release``."""
    keep = _holding and signal.SIGINT not in _ignored
    if keep:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if _held:                         # a Ctrl-C before MPI: end as if it came now
            signal.raise_signal(signal.SIGINT)
    yield
    if keep:
        _take([signal.SIGINT])


def hold_all():
    """Once MPI has started: keep SIGTERM and SIGHUP as well, and watch for them even while
    this rank waits inside MPI (the wake-up fd); end the rank if no ``release`` comes
    ``WAIT`` seconds after a signal."""
    global _watcher, _wakeup
    if not _holding or _watcher is not None:
        return
    import socket  # here: 7 ms of imports before hold() that Ctrl-C could cut
    _wakeup = socket.socketpair()
    _wakeup[1].setblocking(False)
    signal.set_wakeup_fd(_wakeup[1].fileno(), warn_on_full_buffer=False)
    _take(SIGNALS)
    _watcher = threading.Thread(target=_watch, daemon=True, name="dnewton-start")
    _watcher.start()


def _watch():
    import select
    while not _released.is_set():
        if _held:
            if _released.wait(WAIT):
                return
            rank = os.environ.get("PMI_RANK", "")
            print(f"error: {'rank ' + rank + ': ' if rank else ''}interrupted by "
                  f"{signal.Signals(_held[0]).name} while the job started",
                  file=sys.__stderr__, flush=True)
            os._exit(130)
        if select.select([_wakeup[0]], [], [], 0.05)[0]:
            _held.extend(_wakeup[0].recv(16))


def release(one_process):
    """Hand the signals to whoever acts on them now: on one process each raises
    KeyboardInterrupt (the run ends as by Ctrl-C, its --json says so), but those the process
    was started ignoring stay ignored; on several ranks the guard has taken them
    (``comm.Guard``). Then send the first signal held, if any, again: one this rank took, or
    one the kit's launcher passed on before this rank could take it (``missed``)."""
    _released.set()
    if _watcher is not None:
        _watcher.join()
    if one_process:
        if _wakeup is not None:
            signal.set_wakeup_fd(-1)
        for sig in SIGNALS:
            ignored = sig in _ignored or signal.getsignal(sig) is signal.SIG_IGN
            signal.signal(sig, signal.SIG_IGN if ignored else _interrupt)
    sig = _held[0] if _held else missed()
    if sig is not None:
        signal.raise_signal(sig)


def missed():
    """The signal the kit's launcher passed on to this job before now (None if none): it
    writes it to the file the environment variable ``SIGNALLED`` names
    (``environment.supervise``), since mpiexec passes a signal on only to the ranks it has
    started by then."""
    try:
        with open(os.environ[SIGNALLED]) as f:
            return signal.Signals(int(f.read()))
    except (KeyError, OSError, ValueError):
        return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)
