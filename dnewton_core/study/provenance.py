"""Where and how a study ran: the machine, the libraries, the command as typed."""
import os
import shlex
import sys

import numpy as np

from .. import environment
from ..comm import mpi_library


def machine_info():
    """Cores, CPU, Python, numpy, mpi4py and MPI library versions, BLAS threads."""
    mpi, mpi4py_version = mpi_library()
    return dict(environment.machine(), numpy=np.__version__, mpi4py=mpi4py_version, mpi=mpi)


def command_line(ranks):
    """The command as typed (``python -m dnewton_core`` or ``dnewton``), prefixed by mpiexec."""
    prog = "python -m dnewton_core"
    argv = sys.argv[1:]
    if not sys.argv or os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0]))) \
            != "dnewton_core" and os.path.basename(sys.argv[0]) != "dnewton":
        argv = ["reproduce", "..."]                    # called in-process: argv is not ours
    env = " ".join(environment.speed_environment())
    launch = f"mpiexec -n {ranks} " if ranks > 1 else ""
    return (env + " " if env else "") + launch + prog + " " + shlex.join(argv)
