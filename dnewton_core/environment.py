"""The machine a run starts on: where mpiexec is, how many BLAS threads each rank gets,
and what to record about the machine. Standard library only.

Several MPI ranks on few cores are many times slower with BLAS's default threading (README,
Installation): every launch the kit makes gives each rank ``blas_environment()``.
"""
import os
import platform
import shutil
import sys

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class LaunchError(RuntimeError):
    """No MPI launcher could be found; the message says what to install."""


def blas_environment(threads=1):
    """{variable: threads} for every BLAS threading variable."""
    return {name: str(threads) for name in BLAS_THREADS}


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


def speed_environment():
    """The variables set here that change how fast runs go, never what they compute: BLAS
    threads, and MPICH's tuning variables (MPIR_CVAR_...), as NAME=value strings."""
    return [f"{k}={os.environ[k]}" for k in BLAS_THREADS if k in os.environ] + \
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
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(cores=os.cpu_count(), usable_cores=usable, cpu=cpu or "unknown",
                platform=platform.platform(), python=platform.python_version(),
                threads=", ".join(f"{k}={os.environ[k]}" for k in BLAS_THREADS
                                  if k in os.environ) or "not set")


def load_average():
    """The 1-minute load average as text ("unknown" where the system has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"
