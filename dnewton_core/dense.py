"""The one-process model: the whole theta, the reference's maths, mini-batched
(docs/method.md §1-§2, §4).

``DenseModel`` implements ``model.Model``; the distributed model (``distributed.py``)
implements the same protocol over MPI, so ``newton`` and ``sgd`` run on both unchanged.
Like a partition of the distributed model, it evaluates f and its gradient batch by batch
(memory does not grow with l) and keeps the Jacobian on S in factored form: for each layer
m, z^{m-1} on S and D^m = d z^L / d s^m (|S|, n_L, n_m), so a Gauss-Newton product costs
two passes over the factors and no forward pass.
"""
import contextlib

import numpy as np

from . import reference as ref
from .model import JacobianFactors, ObjectiveConfig, check_factors, network_layers


class DenseModel:
    """One process, whole theta: the serial side of every comparison."""

    gn, sync = "full", 1.0      # one process: one CG over the whole theta
    cg_stop = None

    def __init__(self, data, hidden, objective=ObjectiveConfig()):
        self.data, self.config = data, objective
        self.layers = network_layers(data.n_features, hidden, data.n_classes)
        self.n_train = len(data.y_train)
        self.C = objective.regularization(self.n_train)
        self.Y = np.eye(data.n_classes)[data.y_train]
        self.theta = ref.flatten(ref.init_params(self.layers, objective.init_seed))
        self.act, self.loss = objective.activation, objective.loss

    def _params(self, theta):
        return ref.unflatten(theta, self.layers)

    def _batches(self, rows):
        size = self.config.batch_size
        return [rows[k:k + size] for k in range(0, len(rows), size)]

    def objective(self, theta):
        params, xi = self._params(theta), 0.0
        for rows in self._batches(np.arange(self.n_train)):
            zL = ref.forward(params, self.data.X_train[rows], self.act)[-1]
            xi += ref.loss_terms(zL, self.Y[rows], self.loss)[0].sum()
        return float(theta @ theta / (2.0 * self.C) + xi / self.n_train)

    def _add_gradient(self, params, rows, scale, grad):
        """grad += scale * J^T dxi over ``rows``; returns the forward pass's z^0..z^L."""
        zs = ref.forward(params, self.data.X_train[rows], self.act)
        dxi = ref.loss_terms(zs[-1], self.Y[rows], self.loss)[1]
        grad += ref.flatten(ref.backward(params, zs, dxi * scale, self.act))
        return zs

    def gradient(self, theta):
        params, grad = self._params(theta), theta / self.C
        for rows in self._batches(np.arange(self.n_train)):
            self._add_gradient(params, rows, 1.0 / self.n_train, grad)
        return grad

    def gradient_and_jacobian(self, theta, S):
        """grad f (S as the last batch), and J on S in factored form (z^{m-1}, D^m, p)."""
        S = np.asarray(S)
        params, grad = self._params(theta), theta / self.C
        rest = np.setdiff1d(np.arange(self.n_train), S, assume_unique=True)
        for rows in self._batches(rest):
            self._add_gradient(params, rows, 1.0 / self.n_train, grad)
        zs = self._add_gradient(params, S, 1.0 / self.n_train, grad)
        return grad, JacobianFactors(S, (zs[:-1], self._factor(params, zs),
                                         ref.softmax(zs[-1]) if self.loss == "cross_entropy"
                                         else None))

    def _factor(self, params, zs):
        """[D^1, ..., D^L]: D^L = I (kept as None), D^m = (D^{m+1} W^{m+1 T}) sigma'(z^m)."""
        Ds, D = [None], None
        for m in range(len(params) - 1, 0, -1):
            W = params[m][0]                                          # W^{m+1}
            D = np.broadcast_to(W.T, (len(zs[0]), *W.T.shape)) if D is None else D @ W.T
            D = D * ref.activation_derivative(zs[m], self.act)[:, None, :]  # (|S|, n_L, n_m)
            Ds.insert(0, D)
        return Ds

    def stochastic_gradient(self, theta, batch):
        """theta / C + mean over ``batch`` of grad xi_i."""
        grad = theta / self.C
        self._add_gradient(self._params(theta), batch, 1.0 / len(batch), grad)
        return grad

    def gauss_newton(self, J, v):
        """G_S v from the factors of S: J v = sum_m D^m (z^{m-1} V^m + v_b^m), then
        J^T (B J v) / |S| layer by layer (docs/method.md §4, one partition per layer)."""
        zs, Ds, P = check_factors(J).factors
        V = self._params(v)
        Jv = 0.0
        for z, D, (VW, vb) in zip(zs, Ds, V):
            u = z @ VW + vb                                           # (|S|, n_m)
            Jv = Jv + (u if D is None else np.einsum("snk,sk->sn", D, u))
        BJv = ref.curvature_product(Jv, P, self.loss) / len(zs[0])    # (|S|, n_L)
        out = []
        for z, D in zip(zs, Ds):
            DtB = BJv if D is None else np.einsum("sn,snk->sk", BJv, D)
            out.append((z.T @ DtB, DtB.sum(axis=0)))
        return ref.flatten(out) + v / self.C

    @staticmethod
    def dot(a, b):
        return float(a @ b)

    cg_dot = dot

    def accuracy(self, theta):
        params = self._params(theta)
        out = []
        for X, y in ((self.data.X_train, self.data.y_train), (self.data.X_test, self.data.y_test)):
            hits = sum(int((ref.forward(params, X[rows], self.act)[-1].argmax(axis=1)
                            == y[rows]).sum()) for rows in self._batches(np.arange(len(y))))
            out.append(hits / len(y) if len(y) else float("nan"))
        return tuple(out)

    @staticmethod
    def phase(name):
        return contextlib.nullcontext()

    def close(self):
        """Nothing to free on one process (the distributed model frees its communicators)."""

    @staticmethod
    def take_comm_record():
        return {}
