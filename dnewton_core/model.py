"""The objective's settings, and the one-process model the solvers run on.

``DenseModel`` implements the model interface of ``newton.py`` with the dense reference
(``reference.py``): theta is the whole flattened parameter vector. The distributed model
(``distributed.py``) implements the same interface over MPI, so ``newton`` and ``sgd`` run
on both unchanged.
"""
import contextlib
from dataclasses import dataclass

import numpy as np

from . import reference as ref


@dataclass(frozen=True)
class ObjectiveConfig:
    """What is minimised: f(theta) = theta^T theta / (2C) + (1/l) sum_i xi_i (METHOD.md §1)."""
    activation: str = "relu"      # sigma of the hidden layers: relu (simpleNN's default), sigmoid, tanh
    loss: str = "squared"         # xi: squared (||z^L - y||^2) or cross_entropy (softmax)
    C: float | None = None        # regularization; None means 0.01 * l (simpleNN)
    batch_size: int = 4096        # instances per mini-batch when evaluating f and grad f
    init_seed: int = 0            # seed of reference.init_params

    def __post_init__(self):
        if self.activation not in ref.ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; "
                             f"choose from {', '.join(ref.ACTIVATIONS)}")
        if self.loss not in ref.LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(ref.LOSSES)}")
        if self.C is not None and not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def regularization(self, l):
        """The C in use for l training instances."""
        return 0.01 * l if self.C is None else float(self.C)


# Kit's choice, not simpleNN's: on digits' 1438 training instances the default
# C = 0.01 l over-regularizes a 64-64 network (test accuracy 81%, against 99% with 0.1 l).
KIT_C = {"digits": "0.1l"}


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
    if not value > 0:
        raise ValueError(f"--C must be positive, got {text!r}")
    return value


def network_layers(n_features, hidden, n_classes):
    """(n_0, ..., n_L) from the data's sizes and the hidden layer widths."""
    return (n_features, *hidden, n_classes)


def accuracy(outputs, y):
    """Fraction of rows whose largest output is the label."""
    return float(np.mean(np.argmax(outputs, axis=1) == y)) if len(y) else float("nan")


class DenseModel:
    """One process, whole theta, reference maths: the serial side of every comparison."""

    def __init__(self, data, hidden, objective=ObjectiveConfig()):
        self.data, self.config = data, objective
        self.layers = network_layers(data.n_features, hidden, data.n_classes)
        self.n_train = len(data.y_train)
        self.C = objective.regularization(self.n_train)
        self.Y = np.eye(data.n_classes)[data.y_train]
        self.theta = ref.flatten(ref.init_params(self.layers, objective.init_seed))
        self._S = None

    def _params(self, theta):
        return ref.unflatten(theta, self.layers)

    def objective(self, theta):
        cfg = self.config
        return ref.objective(self._params(theta), self.data.X_train, self.Y, self.C,
                             cfg.activation, cfg.loss)

    def gradient(self, theta, subsample=None):
        self._S, self._theta_S = subsample, theta.copy()
        cfg = self.config
        return ref.flatten(ref.gradient(self._params(theta), self.data.X_train, self.Y,
                                        self.C, cfg.activation, cfg.loss))

    def stochastic_gradient(self, theta, batch):
        """theta / C + mean over ``batch`` of grad xi_i."""
        cfg = self.config
        return ref.flatten(ref.gradient(self._params(theta), self.data.X_train[batch],
                                        self.Y[batch], self.C, cfg.activation, cfg.loss))

    def gauss_newton(self, v):
        """G_S v at the theta and S of the last ``gradient`` call."""
        cfg = self.config
        return ref.flatten(ref.gauss_newton_product(
            self._params(self._theta_S), self.data.X_train[self._S],
            ref.unflatten(v, self.layers), self.C, cfg.activation, cfg.loss))

    @staticmethod
    def dot(a, b):
        return float(a @ b)

    cg_dot = dot
    cg_stop = None

    def accuracy(self, theta):
        params, act = self._params(theta), self.config.activation
        return (accuracy(ref.predict(params, self.data.X_train, act), self.data.y_train),
                accuracy(ref.predict(params, self.data.X_test, act), self.data.y_test))

    @staticmethod
    def phase(name):
        return contextlib.nullcontext()

    def close(self):
        """Nothing to free on one process (the distributed model frees its communicators)."""

    @staticmethod
    def take_comm_record():
        return {}
