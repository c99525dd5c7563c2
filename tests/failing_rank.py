"""Run the command line with rank 1 raising inside its Gauss-Newton product (a collective
phase: the other ranks are waiting in an allreduce). Used by test_mpi_cli.py."""
import sys

from dnewton_core import cli, distributed

product = distributed.DistributedModel.gauss_newton


def failing_product(self, J, v):
    if self.comm.rank == 1:
        raise FloatingPointError("injected failure")
    return product(self, J, v)


distributed.DistributedModel.gauss_newton = failing_product
sys.exit(cli.main(sys.argv[1:]))
