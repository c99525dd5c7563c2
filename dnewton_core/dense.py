"""The one-process model: the whole theta, the reference's maths, mini-batched
(docs/method.md §1-§2, §4).

``DenseModel`` implements ``model.Model``; the distributed model (``distributed.py``)
implements the same protocol over MPI, so ``newton`` and ``sgd`` run on both unchanged.
Like a partition of the distributed model, it evaluates f and its gradient batch by batch
(memory does not grow with l) and keeps the Jacobian on S in factored form: for each layer
m, z^{m-1} on S and D^m = d z^L / d s^m (|S|, n_L, n_m; D^{L-1} as W^{L T} and sigma',
``factors.py``), so a Gauss-Newton product costs two passes over the factors and no forward
pass.

With ``gn="diag"`` and a grid's ``splits`` it is the block-diagonal G of that grid on one
process (docs/method.md §6): the product keeps each partition's diagonal block, and each
partition's CG runs on its own (``cg_blocks``), as the ranks of the distributed model do.
"""
import numpy as np

from . import reference as ref
from .factors import LastHiddenD, OutputD, columns, rows_of, through_curvature, times
from .kept import Kept
from .ledger import Ledger
from .memory import keep_freed_memory
from .model import (
    ConfigError,
    JacobianFactors,
    ObjectiveConfig,
    OneHot,
    batch_slices,
    batches,
    check_factors,
    check_gn_mode,
    network_layers,
)
from .partition import Grid


class DenseModel:
    """One process, whole theta: the serial side of every comparison.

    ``gn``: "full" (one CG over the whole theta) or "diag" with ``splits`` P_0..P_L: the
    block-diagonal G of that grid, one CG per partition (``cg_blocks``: the positions of
    each partition's parameters in theta and its share n_p / n of them).
    """

    sync = 1.0                  # every partition's CG runs to its own end
    cg_stop = None

    def __init__(self, data, hidden, objective=ObjectiveConfig(), gn="full", splits=None,
                 ledger=None):
        keep_freed_memory()                 # reuse freed arrays (memory.py)
        self.data, self.config = data, objective
        self.ledger = ledger or Ledger()    # times the phases (the run's one-rank Comm is one)
        self.layers = network_layers(data.n_features, hidden, data.n_classes)
        self.n_train = len(data.y_train)
        self.C = objective.regularization(self.n_train)
        dtype = objective.dtype          # every array in it; sums over batches in float64
        self.X_train = np.asarray(data.X_train, dtype=dtype)      # no copy if already dtype
        self.X_test = np.asarray(data.X_test, dtype=dtype)
        self.Y = OneHot(data.y_train, range(data.n_classes), dtype)      # Y[rows] (b, n_L)
        self.theta = ref.flatten(ref.init_params(self.layers, objective.init_seed)).astype(
            dtype, copy=False)           # drawn in float64, then rounded
        self.act, self.loss = objective.activation, objective.loss
        self.gn, self.diag_grid = gn, _diag_grid(self.layers, gn, splits)
        grid, n = self.diag_grid, self.theta.size
        self.cg_blocks = ([(grid.param_slices(r), grid.partition(r).n_params / n)
                           for r in range(grid.size)] if grid else [(slice(None), 1.0)])
        self._kept = Kept(objective.keep_forward)   # what objective(keep=True) keeps

    def _params(self, theta):
        return ref.unflatten(theta, self.layers)

    def objective(self, theta, keep=False):
        """f(theta), batch by batch; with ``keep``, z^1..z^L on the training set are kept
        (``kept.Kept``, E l (n_1 + ... + n_L) bytes) for the gradient and the training
        accuracy at this same theta."""
        params, xi = self._params(theta), 0.0
        keep = keep and self._kept.start(self.n_train, {
            m: (n_m, theta.dtype) for m, n_m in enumerate(self.layers[1:], 1)})
        L = len(self.layers) - 1
        for rows in batch_slices(self.n_train, self.config.batch_size):
            kept = self._kept.rows(rows) if keep else None          # z^m written in place
            zs = ref.forward(params, self.X_train[rows], self.act,
                             kept and [kept[m] for m in range(1, L + 1)])
            xi += float(ref.loss_terms(zs[-1], self.Y[rows], self.loss)[0].sum())
        if keep:
            self._kept.finish(theta)
        return float(theta @ theta) / (2.0 * self.C) + xi / self.n_train

    def _zs(self, params, rows, kept=None):
        """z^0..z^L on ``rows``: a forward pass, or read from ``kept`` ({m: Z^m} of the kept
        pass; views where ``rows`` is a slice)."""
        X = self.X_train[rows]
        return ref.forward(params, X, self.act) if kept is None else \
            [X] + [kept[m][rows] for m in range(1, len(params) + 1)]

    def _add_gradient(self, params, rows, scale, grad, kept=None):
        """grad += scale * J^T dxi over ``rows``; returns z^0..z^L (``_zs``)."""
        zs = self._zs(params, rows, kept)
        dxi = ref.loss_terms(zs[-1], self.Y[rows], self.loss)[1]
        grad += ref.flatten(ref.backward(params, zs, dxi * scale, self.act))
        return zs

    def gradient(self, theta):
        params, grad = self._params(theta), theta / self.C
        for rows in batch_slices(self.n_train, self.config.batch_size):
            self._add_gradient(params, rows, 1.0 / self.n_train, grad)
        return grad

    def gradient_and_jacobian(self, theta, S, kept=False):
        """grad f, and J on S in factored form (z^{m-1}, D^m, p). ``kept``: theta is the kept
        point (``objective``); the batches are its own rows (views, no forward pass) and S's
        z^m are read from it. Otherwise S is the last batch, whose forward pass serves J."""
        S, n, size = np.asarray(S), self.n_train, self.config.batch_size
        params, grad = self._params(theta), theta / self.C
        kept = self._kept.at(theta) if kept else None
        if kept is None:
            for rows in batches(np.setdiff1d(np.arange(n), S, assume_unique=True), size):
                self._add_gradient(params, rows, 1.0 / n, grad)
            zs = self._add_gradient(params, S, 1.0 / n, grad)
        else:
            for rows in batch_slices(n, size):
                self._add_gradient(params, rows, 1.0 / n, grad, kept)
            zs = self._zs(params, S, kept)
        with self.phase("jacobian"):
            return grad, JacobianFactors(S, (zs[:-1], self._factor(params, zs),
                                             ref.softmax(zs[-1]) if self.loss == "cross_entropy"
                                             else None))

    def _factor(self, params, zs):
        """[D^1, ..., D^L]: D^L the outputs' selection (``factors.OutputD``), D^{L-1} = W^{L T}
        sigma'(z^{L-1}) kept as its factors (``factors.LastHiddenD``), D^m = (D^{m+1} W^{m+1 T})
        sigma'(z^m)."""
        L, (n, n_L) = len(params), zs[-1].shape
        Ds = [OutputD(n, n_L, range(n_L), zs[-1].dtype)]
        if L > 1:                                # W^L's transpose in C order: CG reads it
            Ds.insert(0, LastHiddenD(np.ascontiguousarray(params[L - 1][0].T),
                                     self._slope(zs[L - 1])))
        for m in range(L - 2, 0, -1):
            W, D = params[m][0], rows_of(Ds[0], slice(None))
            # one GEMM over the |S| n_L rows (a 3-D matmul would do |S| small ones)
            D = (D.reshape(-1, D.shape[2]) @ W.T).reshape(len(D), D.shape[1], len(W))
            D *= self._slope(zs[m])[:, None, :]                       # (|S|, n_L, n_m)
            Ds.insert(0, D)
        return Ds

    def _slope(self, z):
        return ref.activation_derivative(z, self.act)

    def stochastic_gradient(self, theta, batch):
        """theta / C + mean over ``batch`` of grad xi_i."""
        grad = theta / self.C
        self._add_gradient(self._params(theta), batch, 1.0 / len(batch), grad)
        return grad

    def gauss_newton(self, J, v):
        """G_S v, like v, from the factors of S: J v = sum_m D^m (z^{m-1} V^m + v_b^m), then
        J^T (B J v) / |S| layer by layer (docs/method.md §4, one partition per layer; no
        message between the two, so each D^m is read once: ``factors.through_curvature``).
        With gn="diag", each partition's block of G_S times v's block (a zero block of v
        is skipped: its product is zero)."""
        zs, Ds, P = check_factors(J).factors
        if self.diag_grid is not None:
            out = np.zeros_like(v)
            for r, (index, _) in enumerate(self.cg_blocks):
                if v[index].any():
                    out[index] = self._block_product(J, self.diag_grid.partition(r), v[index])
            return out
        us = [z @ VW + vb for z, (VW, vb) in zip(zs, self._params(v))]       # (|S|, n_m)
        out = [(z.T @ DtB, DtB.sum(axis=0))
               for z, DtB in zip(zs, through_curvature(Ds, us, P, self.loss, len(zs[0])))]
        return ref.flatten(out) + v / self.C

    def _jv(self, J, v):
        """J v on S, (|S|, n_L): sum_m D^m (z^{m-1} V^m + v_b^m)."""
        zs, Ds, _ = J.factors
        Jv = 0.0
        for z, D, (VW, vb) in zip(zs, Ds, self._params(v)):
            u = z @ VW + vb                                           # (|S|, n_m)
            Jv = Jv + times(D, u)
        return Jv

    def _block_product(self, J, q, v):
        """Partition q's diagonal block of G_S times its parameters' part v (W block
        row-major, then the bias on the bias holder), as its rank computes it (§6)."""
        zs, Ds, P = J.factors
        rows, cols = slice(q.rows.start, q.rows.stop), slice(q.cols.start, q.cols.stop)
        z, n_W = zs[q.m - 1][:, rows], len(q.rows) * len(q.cols)
        D = columns(Ds[q.m - 1], cols)                                # (|S|, n_L, |T_{m,j}|)
        u = z @ v[:n_W].reshape(len(q.rows), len(q.cols))            # (|S|, |T_{m,j}|)
        if q.has_bias:
            u += v[n_W:]
        DtB, = through_curvature([D], [u], P, self.loss, len(z))
        out = v / self.C
        out[:n_W] += (z.T @ DtB).ravel()
        if q.has_bias:
            out[n_W:] += DtB.sum(axis=0)
        return out

    def curvature_gram(self, J, vectors):
        """(k, k): (1/|S|) sum_{i in S} (J^i v_a)^T B^i (J^i v_b) for the k ``vectors``, the
        curvature part of V^T G_S V with the full G whatever ``gn`` (docs/method.md §6)."""
        zs, _, P = check_factors(J).factors
        JV = np.stack([self._jv(J, v) for v in vectors], axis=-1)   # (|S|, n_L, k)
        return ref.curvature_gram(JV, P, self.loss)

    def dots(self, pairs):
        """The inner products a^T b of the (a, b) ``pairs``, as an array."""
        return np.array([float(a @ b) for a, b in pairs])

    @staticmethod
    def dot(a, b):
        return float(a @ b)

    cg_dot = dot

    def accuracy(self, theta, kept=False):
        """(train, test) accuracy: argmax of z^L; the training set's from the kept pass
        when theta is the kept point (``kept``)."""
        params, out = self._params(theta), []
        Z = self._kept.at(theta) if kept else None
        ZL = None if Z is None else Z[len(self.layers) - 1]
        for X, y, Z in ((self.X_train, self.data.y_train, ZL),
                        (self.X_test, self.data.y_test, None)):
            hits = sum(int(((ref.forward(params, X[rows], self.act)[-1] if Z is None
                             else Z[rows]).argmax(axis=1) == y[rows]).sum())
                       for rows in batch_slices(len(y), self.config.batch_size))
            out.append(hits / len(y) if len(y) else float("nan"))
        return tuple(out)

    def phase(self, name):
        """Time this block as phase ``name`` (no messages on one process)."""
        return self.ledger.phase(name)

    def line_up(self):
        """One process: nothing to wait for."""

    def close(self):
        """Nothing to free on one process (the distributed model frees its communicators)."""

    def take_comm_record(self):
        """{phase: {"messages": 0, "bytes": 0, "seconds"}} since the last call."""
        return self.ledger.take_record()


def _diag_grid(layers, gn, splits):
    """The grid whose partitions are the diagonal blocks (gn="diag"), or None (gn="full")."""
    check_gn_mode(gn)
    if gn == "full":
        return None
    if splits is None:
        raise ConfigError("a one-process block-diagonal G needs the grid's --splits P_0,...,P_L")
    try:
        return Grid(layers, tuple(splits))
    except ValueError as e:
        raise ConfigError(str(e)) from None
