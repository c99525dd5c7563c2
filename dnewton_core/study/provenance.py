"""Where and how a study ran: the machine, the libraries, the command as typed, and for
each run when it started, with which code, at which priority and load."""
import datetime
import importlib.metadata
import os
import shlex
import subprocess
import sys

import numpy as np

from .. import environment
from ..comm import mpi_library


def machine_info():
    """Cores, CPU, Python, numpy, mpi4py and MPI library versions, BLAS threads."""
    mpi, mpi4py_version = mpi_library()
    return dict(environment.machine(), numpy=np.__version__, mpi4py=mpi4py_version, mpi=mpi)


def command_line(ranks):
    """The command as typed (``python -m dnewton_core`` or ``dnewton``), prefixed by the
    launcher: the kit's own (``python -m dnewton_core.environment -n N``) where it started the
    ranks, else ``mpiexec -n N``."""
    prog = "python -m dnewton_core"
    argv = sys.argv[1:]
    if not sys.argv or os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0]))) \
            != "dnewton_core" and os.path.basename(sys.argv[0]) != "dnewton":
        argv = ["reproduce", "..."]                    # called in-process: argv is not ours
    env = " ".join(environment.speed_environment())
    launched = os.environ.get(environment.LAUNCHED_BY, "")     # the kit's launcher, if it was
    launch = "" if ranks == 1 else \
        (launched if launched.endswith(f" -n {ranks}") else f"mpiexec -n {ranks}") + " "
    return (env + " " if env else "") + launch + prog + " " + shlex.join(argv)


def code_version():
    """The kit's code: the git commit of the checkout it runs from (``-dirty`` when
    ``dnewton_core/`` has changes or new files git does not have), else (no git, or the kit
    installed inside someone else's repository, where git does not track it) the installed
    package's version."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = lambda *args: subprocess.run(["git", "-C", package, *args],   # noqa: E731
                                       capture_output=True, text=True, timeout=10)
    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode == 0:
            commit, changes = git("rev-parse", "--short=7", "HEAD"), \
                git("status", "--porcelain", "--", package)
            if commit.returncode == 0 and changes.returncode == 0:
                return commit.stdout.strip() + ("-dirty" if changes.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass                                                  # no git, or not a checkout
    try:
        return "dnewton_core " + importlib.metadata.version("dnewton_core")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_stamp():
    """When a run starts (UTC, to the second), this process's niceness and the machine's
    1-minute load average: runs.csv's columns ``started``, ``nice``, ``load``."""
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return dict(started=now(), nice=os.nice(0) if hasattr(os, "nice") else None, load=load)


def now():
    """The time in UTC to the second, ISO 8601 (a study's date, a run's start)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
