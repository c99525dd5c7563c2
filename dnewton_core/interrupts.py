"""Signals that arrive while a job starts (docs/troubleshooting.md, Exit statuses).

Until every rank runs its guard (``comm.Guard``), a Ctrl-C or SIGTERM must not end one rank
alone: the others would wait for it for good in a collective of the start (MPI's own, the
guard's communicator). ``hold``, on the first line of ``python -m dnewton_core``, keeps
such signals; ``release``, once the guard is up, sends the first again, so that it ends
the job as any later signal does (several ranks: the guard, exit status 130; one process:
a KeyboardInterrupt). A rank that holds a signal and is not released within ``WAIT``
seconds (a rank died before it could start MPI, and the others wait for it inside MPI's
start, where no Python runs) ends itself, exit status 130. Standard library only: it
runs before numpy and MPI load.
"""
import os
import select
import signal
import socket
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WAIT = 5.0              # seconds a rank that holds a signal waits for its guard
_held = []
_released = threading.Event()
_watcher = None


def hold():
    """Keep SIGINT, SIGTERM and SIGHUP instead of acting on them, until ``release``."""
    global _watcher
    read, write = socket.socketpair()
    write.setblocking(False)
    signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)  # even inside C code
    for sig in SIGNALS:
        signal.signal(sig, lambda *_: None)          # the watcher acts on it
    _watcher = threading.Thread(target=_watch, args=(read, write), daemon=True,
                                name="dnewton-start")
    _watcher.start()


def _watch(read, write):
    while not _released.is_set():
        if select.select([read], [], [], 0.05)[0]:
            _held.extend(read.recv(16))
            if not _held or _released.wait(WAIT):
                continue
            rank = os.environ.get("PMI_RANK", "")
            print(f"error: {'rank ' + rank + ': ' if rank else ''}interrupted by "
                  f"{signal.Signals(_held[0]).name} while the job started",
                  file=sys.__stderr__, flush=True)
            os._exit(130)


def release(one_process):
    """Hand the signals to whoever acts on them now: on one process, SIGINT and SIGTERM
    raise KeyboardInterrupt and SIGHUP ends it; on several ranks the guard has taken them
    (``comm.Guard``). Then send the first signal held, if any, again."""
    _released.set()
    if _watcher is not None:
        _watcher.join()
    if one_process:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if _held:
        signal.raise_signal(_held[0])


def _interrupt(signum, frame):
    raise KeyboardInterrupt
