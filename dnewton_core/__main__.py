import os
import sys

# One BLAS thread per rank unless the user said otherwise, before numpy loads its BLAS
# (several ranks on few cores are many times slower otherwise: docs/installation.md).
from .environment import blas_environment

for _name, _value in blas_environment().items():
    os.environ.setdefault(_name, _value)

from .cli import main  # noqa: E402

sys.exit(main())
