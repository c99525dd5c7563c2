import os
import sys

# A Ctrl-C while the ranks start is kept until every rank can end together (interrupts.py:
# SIGTERM too, once MPI has started); before this line it still ends the process at once.
from .interrupts import hold

hold()

# One BLAS thread per rank unless the user said otherwise, before numpy loads its BLAS
# (several ranks on few cores are many times slower otherwise: docs/installation.md).
from .environment import blas_environment  # noqa: E402

for _name, _value in blas_environment().items():
    os.environ.setdefault(_name, _value)

from .cli import main  # noqa: E402

sys.exit(main())
