"""The one-process model: the whole theta, the dense reference's maths (docs/method.md §1-§2).

``DenseModel`` implements ``model.Model`` with ``reference.py``; the distributed model
(``distributed.py``) implements the same protocol over MPI, so ``newton`` and ``sgd`` run on
both unchanged.
"""
import contextlib

import numpy as np

from . import reference as ref
from .model import JacobianFactors, ObjectiveConfig, accuracy, check_factors, network_layers


class DenseModel:
    """One process, whole theta, reference maths: the serial side of every comparison."""

    gn, sync = "full", 1.0      # one process: one CG over the whole theta
    cg_stop = None

    def __init__(self, data, hidden, objective=ObjectiveConfig()):
        self.data, self.config = data, objective
        self.layers = network_layers(data.n_features, hidden, data.n_classes)
        self.n_train = len(data.y_train)
        self.C = objective.regularization(self.n_train)
        self.Y = np.eye(data.n_classes)[data.y_train]
        self.theta = ref.flatten(ref.init_params(self.layers, objective.init_seed))

    def _params(self, theta):
        return ref.unflatten(theta, self.layers)

    def objective(self, theta):
        cfg = self.config
        return ref.objective(self._params(theta), self.data.X_train, self.Y, self.C,
                             cfg.activation, cfg.loss)

    def gradient(self, theta):
        cfg = self.config
        return ref.flatten(ref.gradient(self._params(theta), self.data.X_train, self.Y,
                                        self.C, cfg.activation, cfg.loss))

    def gradient_and_jacobian(self, theta, S):
        """grad f, and the factors of G_S: here simply theta and S (the reference recomputes)."""
        return self.gradient(theta), JacobianFactors(np.asarray(S), (theta.copy(),))

    def stochastic_gradient(self, theta, batch):
        """theta / C + mean over ``batch`` of grad xi_i."""
        cfg = self.config
        return ref.flatten(ref.gradient(self._params(theta), self.data.X_train[batch],
                                        self.Y[batch], self.C, cfg.activation, cfg.loss))

    def gauss_newton(self, J, v):
        """G_S v at the theta and S of ``J``."""
        J = check_factors(J)
        (theta_S,) = J.factors
        cfg = self.config
        return ref.flatten(ref.gauss_newton_product(
            self._params(theta_S), self.data.X_train[J.subsample],
            ref.unflatten(v, self.layers), self.C, cfg.activation, cfg.loss))

    @staticmethod
    def dot(a, b):
        return float(a @ b)

    cg_dot = dot

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
