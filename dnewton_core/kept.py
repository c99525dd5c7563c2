"""The forward pass the line search keeps (docs/method.md §4). No MPI here.

Newton's line search evaluates f at its trial points, and the trial it accepts is the next
iteration's theta, where the gradient pass and the training accuracy need that same forward
pass again. ``objective(theta, keep=True)`` fills a ``Kept`` batch by batch with what they
need of it (per model: z^1..z^L on one process; on a rank, z^{m-1}, and sigma'(s^m) (m < L:
a bool mask for relu, kept 8 entries a byte, ``Bits``) or z^L (m = L; d xi / d z^L and p too
where computing them again would send messages)); ``gradient_and_jacobian(theta, S, kept=True)`` and
``accuracy(theta, kept=True)`` then read it instead of passing forward again.

Whether theta is the kept point is the solver's word (``kept=True``), the same on every
rank: a rank deciding alone, from its own block of theta, could decide otherwise than
another and call other collectives, and the job would hang. ``at`` only checks that word.
"""
import numpy as np


class Kept:
    """Named arrays (l, width) of one forward pass over the training set, and its theta;
    ``enabled`` False (``ObjectiveConfig.keep_forward``): nothing is kept, ever."""

    def __init__(self, enabled=True):
        self.enabled, self.arrays, self.theta = enabled, {}, None

    def start(self, l, columns):
        """Ready to be filled (False when not enabled): an (l, w) array of dtype t for each
        name of ``columns`` {name: (w, t)} with w > 0, allocated once, and invalid until
        ``finish``."""
        self.theta = None
        if not self.enabled:
            return False
        wanted = {name: ((l, w), np.dtype(t)) for name, (w, t) in columns.items() if w > 0}
        if {name: (a.shape, a.dtype) for name, a in self.arrays.items()} != wanted:
            self.arrays = {}                           # freed before the new ones exist
            self.arrays = {name: Bits(*shape) if t == np.dtype(bool) else np.empty(shape, t)
                           for name, (shape, t) in wanted.items()}
        return True

    def rows(self, rows):
        """{name: view of rows ``rows`` (a slice) of its array}: for a pass that writes its
        arrays there itself instead of ``put`` (float arrays only: ``Bits`` gives copies)."""
        return {name: array[rows] for name, array in self.arrays.items()}

    def put(self, rows, values):
        """Rows ``rows`` (a slice) of each array from ``values`` {name: (b, width)} (values
        of other names are not kept)."""
        for name, array in self.arrays.items():
            array[rows] = values[name]

    def finish(self, theta):
        """The pass is complete, at (a copy of) ``theta``."""
        self.theta = theta.copy()

    def at(self, theta):
        """{name: array}, after checking that the last complete pass was at exactly
        ``theta`` (ValueError otherwise: the caller's ``kept=True`` was wrong); None when
        not enabled (the caller then passes forward)."""
        if not self.enabled:
            return None
        if self.theta is None or not np.array_equal(theta, self.theta):
            raise ValueError("kept=True, but theta is not the point of the last "
                             "objective(theta, keep=True)")
        return self.arrays


class Bits:
    """A bool array (l, w) kept 8 entries a byte (``np.packbits`` along each row): a relu
    mask sigma'(s^m) takes l w / 8 bytes instead of l w. Rows are read and written as bools
    (``bits[rows]``, ``bits[rows] = mask``); the same masks, bit for bit."""

    dtype = np.dtype(bool)

    def __init__(self, l, w):
        self.width, self.packed = w, np.empty((l, (w + 7) // 8), np.uint8)

    shape = property(lambda self: (len(self.packed), self.width))
    nbytes = property(lambda self: self.packed.nbytes)

    def __getitem__(self, rows):
        return np.unpackbits(self.packed[rows], axis=1, count=self.width).view(bool)

    def __setitem__(self, rows, mask):
        self.packed[rows] = np.packbits(mask, axis=1)
