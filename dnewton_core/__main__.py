import os
import sys


def run():
    """``python -m dnewton_core`` and the ``dnewton`` command: take Ctrl-C in hand
    (interrupts.py), give each rank one BLAS thread unless the user said otherwise (before
    numpy loads its BLAS: docs/installation.md), start MPI, then the command line
    (``cli.main``)."""
    from .interrupts import hold, starting_mpi
    hold()                                # a Ctrl-C while the ranks start (interrupts.py)
    from .environment import blas_environment
    for name, value in blas_environment().items():
        os.environ.setdefault(name, value)
    with starting_mpi():                  # Ctrl-C ends the rank at once while MPI starts
        from .cli import main  # (comm.py loads mpi4py: MPI_Init)
    sys.exit(main())


if __name__ == "__main__":
    run()
