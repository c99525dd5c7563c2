"""What is minimised, and the interface every model offers the solvers (docs/method.md §1-§2).

``Model`` is the protocol ``newton.newton`` and ``sgd.sgd`` run on: ``dense.DenseModel`` on
one process (the whole theta), ``distributed.DistributedModel`` over MPI (this rank's block
of theta). Vectors are the part of theta the process holds. No model keeps state between
calls that changes a result: the Jacobian factors that ``gradient_and_jacobian`` computes
on a subsample S are returned as a ``JacobianFactors`` and passed to ``gauss_newton``. The
one thing kept, when asked: ``objective(theta, keep=True)``'s forward pass (``kept.py``),
read only by calls that say ``kept=True``; it changes no result beyond rounding.
"""
import math
import re
from dataclasses import dataclass
from typing import Any, ContextManager, Protocol

import numpy as np

from . import reference as ref


class ConfigError(ValueError):
    """A configuration or data problem, found identically (or agreed) on every rank."""

    @classmethod
    def of_option(cls, e):
        """The ValueError of a solver's config as the command line's: "NewtonConfig: cg_max = 0
        must be >= 1" becomes "--cg-max 0 must be >= 1"."""
        return cls(re.sub(r"^\w+Config: (\w+) =", lambda m: "--" + m[1].replace("_", "-"), str(e)))


# The numeric types a model computes in (docs/method.md §5): float64, the reference, or
# float32 (about twice the matmul rate, half the bytes of every array message). The sums of
# f and of inner products over batches and ranks are float64 either way.
DTYPES = ("float64", "float32")
# How close one product (f, grad f, G v) of a model in each type comes to the float64
# reference, relative to the largest entry: what the tests hold every model to.
PRODUCT_RTOL = {"float64": 1e-10, "float32": 1e-4}


def element_bytes(dtype):
    """Bytes of one number of ``dtype`` (a name in DTYPES): 8 or 4."""
    return np.dtype(dtype).itemsize


@dataclass(frozen=True)
class ObjectiveConfig:
    """f(theta) = theta^T theta / (2C) + (1/l) sum_i xi_i (docs/method.md §1)."""
    activation: str = "relu"      # sigma of the hidden layers: relu (simpleNN's default), sigmoid, tanh
    loss: str = "squared"         # xi: squared (||z^L - y||^2) or cross_entropy (softmax)
    C: float | None = None        # regularization; None means 0.01 * l (simpleNN)
    batch_size: int = 4096        # instances per mini-batch when evaluating f and grad f
    init_seed: int = 0            # seed of reference.init_params
    dtype: str = "float64"        # numbers of parameters, data and every array: float64 or float32
    keep_forward: bool = True     # keep the line search's forward pass for the next gradient
    #                               and training accuracy (kept.py; memory.py: "kept" bytes)

    def __post_init__(self):
        if self.activation not in ref.ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; "
                             f"choose from {', '.join(ref.ACTIVATIONS)}")
        if self.loss not in ref.LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(ref.LOSSES)}")
        if self.C is not None and not (self.C > 0 and math.isfinite(self.C)):
            raise ValueError(f"C must be a positive finite number, got {self.C}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")

    def regularization(self, l):
        """The C in use for l training instances."""
        return float(0.01 * l) if self.C is None else float(self.C)


# The kit's choices, not simpleNN's (docs/method.md §9): simpleNN's C = 0.01 l over-regularizes
# these small training sets. digits (1438 instances, 64-64): test accuracy 81% with 0.01 l,
# 99% with 0.1 l. The Statlog sets (300-300, one process, 100 Newton iterations; the runs are in
# results/defaults/): satimage 0.8185 with 0.01 l, 0.9130 with 1 l; letter 0.7306 and 0.9636;
# shuttle 0.9817 and 0.9836. dna keeps 0.01 l: 0.9486, against 0.9393 with 1 l.
KIT_C = {"digits": "0.1l", "satimage": "1l", "letter": "1l", "shuttle": "1l"}


def default_C(data_name):
    """The C a data set gets when none is given, as a multiple of l: simpleNN's 0.01 l,
    or the kit's choice in KIT_C."""
    return KIT_C.get(data_name, "0.01l")


def parse_C(text, l):
    """C from a number, or from a multiple of l written like 0.01l."""
    try:
        value = float(text[:-1]) * l if text.endswith("l") else float(text)
    except ValueError:
        raise ValueError(f"--C expects a number or a multiple of l such as 0.01l, "
                         f"got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"--C must be a positive finite number, got {text!r}")
    return value


# Batches in flight in the distributed model's gradient pass: each wave runs the forward
# passes of PIPELINE batches, then their backward passes (docs/method.md §4), so the layers
# compute at the same time; a rank keeps z^{m-1} and z^m of a wave.
PIPELINE = 4


GN_MODES = ("full", "diag")       # the Gauss-Newton matrix: the whole G_S, or its diagonal blocks


def check_gn_mode(gn, sync=1.0):
    """ConfigError unless ``gn`` is a GN_MODES name and ``sync`` (the fraction of partitions
    whose CG ends every CG, docs/method.md §6) a fraction in (0, 1], below 1 only with diag."""
    if gn not in GN_MODES:
        raise ConfigError(f"unknown Gauss-Newton mode {gn!r}; choose full or diag")
    if not 0 < sync <= 1:
        raise ConfigError(f"sync fraction must be in (0, 1], got {sync}")
    if sync < 1 and gn != "diag":
        raise ConfigError("a sync fraction below 1 needs --gn diag: with the full "
                          "Gauss-Newton matrix all partitions share one CG")


def batches(rows, size):
    """The instance indices ``rows`` in mini-batches of ``size`` (index arrays)."""
    return [rows[k:k + size] for k in range(0, len(rows), size)]


def batch_count(rows):
    """Instances in a batch: a slice (a range of instances) or an array of indices."""
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def batch_slices(n, size):
    """Instances 0..n-1 in mini-batches of ``size``, as slices: a slice of X is a view."""
    return [slice(k, min(k + size, n)) for k in range(0, n, size)]


def jacobian_chunk(batch_size, n_L):
    """Instances of S per message of the Jacobian's backward pass: b // n_L (at least 1), so
    that none of its messages (n_L numbers an instance and column) is larger than a batch's
    backward message, and the layers work on chunks at the same time."""
    return max(1, batch_size // n_L)


def jacobian_chunks(n, batch_size, n_L):
    """The Jacobian's backward pass over n instances of S as slices of ``jacobian_chunk``."""
    return batch_slices(n, jacobian_chunk(batch_size, n_L))


class OneHot:
    """The one-hot label columns ``cols`` (a range) of the class codes ``y`` (l,), made batch
    by batch: ``Y[rows]`` is (b, |cols|) of ``dtype``. A model keeps the l codes, not
    l x n_L numbers (docs/method.md §3)."""

    def __init__(self, y, cols, dtype):
        self.y, self.classes = y, np.arange(cols.start, cols.stop)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, rows):
        return (self.y[rows, None] == self.classes).astype(self.dtype)

    shape = property(lambda self: (len(self.y), len(self.classes)))     # of the whole Y
    nbytes = property(lambda self: self.y.nbytes)                        # held: the codes


def network_layers(n_features, hidden, n_classes):
    """(n_0, ..., n_L) from the data's sizes and the hidden layer widths."""
    return (n_features, *hidden, n_classes)


@dataclass(frozen=True, eq=False)
class JacobianFactors:
    """J on the subsample S, in the form the model's Gauss-Newton product needs.

    ``subsample`` is S (sorted instance indices); ``factors`` is the model's own: for a
    partition of the distributed model (z^{m-1} on S, D_ij, softmax p on S or None), for
    the dense model ([z^0..z^{L-1}] on S, [D^1..D^L], p or None); D^{L-1} and D^L kept as
    ``factors.py`` says; docs/method.md §4.
    """
    subsample: np.ndarray
    factors: tuple


def check_factors(J):
    """``J`` itself, or a ValueError saying where Jacobian factors come from."""
    if not isinstance(J, JacobianFactors):
        raise ValueError("gauss_newton needs the JacobianFactors that "
                         f"gradient_and_jacobian(theta, S) returns, got {type(J).__name__}")
    return J


class Model(Protocol):
    """The members the solvers use (``newton.py``, ``sgd.py``)."""
    theta: np.ndarray             # initial parameters (this process's part), 1-D
    n_train: int                  # l, the number of training instances
    layers: tuple                 # (n_0, ..., n_L)
    C: float                      # the regularization in use

    def objective(self, theta, keep=False) -> float:
        """f(theta), the same float on every rank; ``keep``: keep what the gradient and the
        training accuracy at this theta need of the forward pass (``kept.py``)."""

    def gradient(self, theta) -> np.ndarray:
        """grad f on this process's part of theta, (n_here,) like theta."""

    def gradient_and_jacobian(self, theta, S, kept=False) -> tuple[np.ndarray, JacobianFactors]:
        """grad f (like theta), and J factored on the subsample S ((|S|,) instance indices);
        ``kept``: theta is the point of the last objective(keep=True), whose forward pass is used."""

    def gauss_newton(self, J: JacobianFactors, v) -> np.ndarray:
        """G_S v, like v (this process's part of theta), with the factors of S (full or
        block-diagonal G: fixed when the model is built)."""

    def stochastic_gradient(self, theta, batch) -> np.ndarray:
        """theta / C + mean over ``batch`` ((b,) instance indices) of grad xi_i, like theta."""

    def dot(self, a, b) -> float:
        """Inner product over all of theta."""

    def cg_dot(self, a, b) -> float:
        """CG's inner product: global for full G, per partition for block-diagonal G."""

    cg_stop: Any                  # CG's stopping rule (None: CG's own), see cg.cg
    cg_blocks: list               # [(positions, share n_p / n)]: one CG each (newton.direction)

    def curvature_gram(self, J, vectors) -> np.ndarray:
        """(k, k) curvature part of V^T G_S V with the full G (docs/method.md §6)."""

    def dots(self, pairs) -> np.ndarray:
        """Inner products over all of theta of (a, b) pairs, in one message."""

    def accuracy(self, theta, kept=False) -> tuple[float, float]:
        """(train accuracy, test accuracy); ``kept`` as for ``gradient_and_jacobian``."""

    def line_up(self) -> None:
        """Return on every rank together (monitoring phase "report"; nothing on one process).
        A solver calls it right before it starts its training clock, so that the time rank 0
        takes to print and save a record, which the other ranks would wait for in their next
        collective, is no rank's training time (docs/method.md §5)."""

    def phase(self, name) -> ContextManager:
        """Context naming what the next messages are for (docs/method.md §5)."""

    def take_comm_record(self) -> dict:
        """Messages and seconds per phase since the last call (on one process: no messages)."""

    def close(self) -> None:
        """Free what the model holds outside Python (sub-communicators)."""
