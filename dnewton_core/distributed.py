"""The network stored distributedly: each MPI rank holds its partitions (m, i, j) (docs/method.md §3-§4).

A rank holds the blocks W^m[T_{m-1,i}, T_{m,j}] of its partitions (and b^m[T_{m,j}] where
i = 0), the feature columns X[:, T_{0,i}] of its layer-1 blocks, the label columns
Y[:, T_{L,j}] of its layer-L blocks, and nothing else of the model or the data: one
partition a rank, or on fewer ranks partition q on rank q mod R (``partition.Grid``). Its
vector is its blocks' parameters in partition order (``Grid.param_slices``). Samples are
rows, as in ``reference.py``. The passes over one batch and their link messages are
``passes.py``; here are the model's operations, whose world messages are the scalar sums
of f and the inner products, the |S| x n_L sum of J v (full G only), softmax p on S
(|S| x n_L, with the Jacobian) and the (|S|, n_L, k) sum of ``curvature_gram``.
"""
import copy

import numpy as np

from . import reference as ref
from .comm import Comm
from .costs import link_op
from .factors import through_curvature, times, transposed_times
from .kept import Kept
from .ledger import sync_threshold
from .memory import keep_freed_memory
from .model import (
    JacobianFactors,
    ObjectiveConfig,
    OneHot,
    batch_count,
    batch_slices,
    batches,
    check_factors,
    check_gn_mode,
    network_layers,
)
from .passes import Passes
from .splits import checked_grid


class DistributedModel(Passes):
    """This rank's partitions of the network, implementing ``model.Model``.

    ``gn``: "full" (one allreduce of |S| x n_L per product) or "diag" (block-diagonal G by
    partition: no message inside CG). ``sync``: with "diag", every partition stops CG once
    a fraction ``sync`` of partitions met their own stopping rule (docs/method.md §6).
    """

    def __init__(self, data, hidden, splits, comm=None, objective=ObjectiveConfig(),
                 gn="full", sync=1.0):
        keep_freed_memory()                 # reuse freed arrays (memory.py)
        self.comm, self.config = comm or Comm(), objective
        self.layers = network_layers(data.n_features, hidden, data.n_classes)
        self.grid = self.comm.agree_on(lambda: checked_grid(self.layers, splits, gn, sync,
                                                             self.comm.size))
        self.gn, self.sync = gn, sync
        grid, L = self.grid, self.grid.L
        self.parts = grid.blocks(self.comm.rank)
        self.part = self.parts[0] if len(self.parts) == 1 else None   # the one partition
        self.largest_block = max(q.n_params for q in grid.partitions)   # of the grid
        self.L, self.n_L, self.n_train = L, self.layers[-1], data.n_train
        self.C = objective.regularization(self.n_train)
        self.act, self.loss = objective.activation, objective.loss
        self.dtype = objective.dtype      # of every array; sums over batches and ranks in float64
        # by layer m: its blocks here, the i of their inputs, the j of their outputs
        self.on = {m: [p for p in self.parts if p.m == m] for m in range(1, L + 1)}
        self.ins = {m: sorted({p.i for p in self.on[m]}) for m in self.on}
        self.outs = {m: sorted({p.j for p in self.on[m]}) for m in self.on}
        self.counts = sorted({p.j for p in self.on[L] if p.i == 0})   # slices counted here

        # groups: a link per (m, j), and the output layer for the softmax normalizer
        groups = {f"link({m},{j})": grid.link_group(m, j)
                  for m in range(1, L + 1) for j in range(grid.splits[m])}
        groups["output"] = grid.output_group
        mine = self.groups = self.comm.split(groups)
        self.world = self.comm.world_group()
        self.links = {m: [(j, mine[f"link({m},{j})"]) for j in range(grid.splits[m])
                          if f"link({m},{j})" in mine] for m in range(1, L + 1)}
        self.ops = {(m, j, back): link_op(grid, m, j, back) for m in self.links
                    for j, _ in self.links[m] for back in (False, True)[:1 + (m < L)]}
        self.output = mine.get("output")

        self._hold_share(data, objective.init_seed)
        self._kept = Kept(objective.keep_forward)     # what objective(keep=True) keeps
        # ... with d xi / d z^L and p on layer L only where they would need messages again
        self._kept_terms = self.loss == "cross_entropy" and grid.splits[-1] > 1
        self._cg_steps = 0                # CG steps of this partition in the current solve

    def _hold_share(self, data, seed):
        """This rank's parameters and data, nothing more: each block drawn alone
        (``reference.init_block``), its columns from ``data.share`` (a ``data.Dataset``
        copies them out; a ``data.Share`` prepared for this rank is kept as it is)."""
        blocks, self.slots, start = [], {}, 0
        for p in self.parts:
            W, b = ref.init_block(self.layers, seed, p.m, p.rows, p.cols)
            blocks += [W.ravel(), b] if p.has_bias else [W.ravel()]
            self.slots[p.index] = (start, start + W.size, start + p.n_params)
            start += p.n_params
        self.theta = np.concatenate(blocks).astype(self.dtype, copy=False)  # drawn in float64
        del blocks, W
        features, labels = self.grid.data_held(self.comm.rank)
        mine = data.share(features, labels, dtype=self.dtype)
        self.X, self.X_test = mine.X_train, mine.X_test      # (l, the features spanned)
        self.features = {p.i: slice(p.rows.start - features.start, p.rows.stop - features.start)
                         for p in self.on[1]}             # X[:, T_{0,i}] inside self.X
        labels = lambda y: {j: OneHot(y, self.grid.groups(self.L)[j], self.dtype)  # noqa: E731
                            for j in self.outs[self.L]}
        self.Y, self.Y_test = labels(mine.y_train), labels(mine.y_test)  # j: Y[., T_{L,j}]
        self.n_test = data.n_test

    def with_gn(self, gn, sync=1.0):
        """The same partitions (parameters, data, communicators shared) with another
        Gauss-Newton matrix, to compare the directions at one point. Close only the original."""
        check_gn_mode(gn, sync)
        other = copy.copy(self)
        other.gn, other.sync = gn, sync
        return other

    # -- the model interface ------------------------------------------------------------
    def _kept_columns(self):
        """{name: (width, dtype)} of what objective(keep=True) keeps here: the inputs of its
        blocks above layer 1, sigma'(s^m) (m < L; for relu a bool mask, 1 byte an entry),
        z^L (with d xi / d z^L and p if ``_kept_terms``)."""
        E, L, cols = self.dtype, self.L, {}
        for m in range(2, L + 1):
            cols.update({("z", m, i): (len(self.grid.groups(m - 1)[i]), E) for i in self.ins[m]})
        for m in range(1, L):
            slope = ref.slope_dtype(self.act, E)
            cols.update({("slope", m, j): (self._width(m, j), slope) for j in self.outs[m]})
        names = ("z_L", "dxi", "prob") if self._kept_terms else ("z_L",)
        cols.update({(name, j): (self._width(L, j), E) for name in names for j in self.outs[L]})
        return cols

    def objective(self, theta, keep=False):
        """f(theta): forward passes, one scalar allreduce. ``keep``: what the gradient and
        the training accuracy need of the pass stay here (``_kept_columns``, ``kept.py``)."""
        loss = 0.0
        keep = keep and self._kept.start(self.n_train, self._kept_columns())
        for rows in batch_slices(self.n_train, self.config.batch_size):
            pas, part = self._forward_terms(theta, self.X, self.Y, rows)
            loss += float(part)
            if keep:
                self._kept.put(rows, pas)
        if keep:
            self._kept.finish(theta)
        local = float(theta @ theta) / (2.0 * self.C) + loss / self.n_train
        return float(self.comm.allreduce_scalars(local)[0])

    def gradient(self, theta):
        """This rank's blocks of grad f, like theta: mini-batched forward and backward passes,
        pipelined."""
        grad = theta / self.C
        self._pipelined(theta, batch_slices(self.n_train, self.config.batch_size), grad)
        return grad

    def gradient_and_jacobian(self, theta, S, kept=False):
        """This rank's blocks of grad f, and their Jacobian factors on S (``JacobianFactors``).
        ``kept`` (alike on every rank): theta is the kept point; the backward passes go over
        its batches (views), then J on S from it. Else S is the last batch."""
        S, grad, kept = np.asarray(S), theta / self.C, self._kept.at(theta) if kept else None
        n, size = self.n_train, self.config.batch_size
        rows = batch_slices(n, size) if kept is not None else \
            batches(np.setdiff1d(np.arange(n), S, assume_unique=True), size)
        self._pipelined(theta, rows, grad, kept)
        factors = self._pass(theta, S, 1.0 / n, grad if kept is None else None, jacobian=True, kept=kept)
        return grad, JacobianFactors(S, factors)

    def stochastic_gradient(self, theta, batch):
        """theta / C + mean over ``batch`` of grad xi_i (this rank's blocks)."""
        grad = theta / self.C
        self._pass(theta, batch, 1.0 / len(batch), grad)
        return grad

    def gauss_newton(self, J, v):
        """G_S v on this rank's blocks, like v (docs/method.md §4): local products, with the
        full G one allreduce of |S| x n_L between them.
        full: (G_S v)_p = v_p / C + (1/|S|) J_p^T B sum_q J_q v_q;
        diag: (G_p v)_p = v_p / C + (1/|S|) J_p^T B J_p v_p, no message, so D_j is read once
        (``factors.through_curvature``; a block whose v_p is zero, as in the CG of another
        block of this rank, adds nothing: skipped)."""
        z, D, P = check_factors(J).factors
        n = len(J.subsample)
        self.comm.patience.expect(4.0 * n * self.largest_block)
        out = v / self.C
        if self.gn == "full":
            Jv = self._jv(z, D, v, self.parts)
            self.comm.allreduce(Jv, self.world)
            BJv = ref.curvature_product(Jv, P, self.loss)
            BJv /= n
            self._add_jt(out, z, {key: transposed_times(D[key], BJv)       # (|S|, |T_{m,j}|)
                                  for key in {(p.m, p.j) for p in self.parts}}, self.parts)
            return out
        for p in self.parts:
            if v[self._span(p)].any():
                DtB, = through_curvature([D[p.m, p.j]], [self._u(z, v, p)], P, self.loss, n)
                self._add_jt(out, z, {(p.m, p.j): DtB}, [p])
        return out

    def _add_jt(self, out, z, DtB, parts):
        """out += the blocks ``parts`` of J^T w: z^{m-1}[S, T_{m-1,i}]^T DtB_{m,j} (and the
        column sums of DtB_{m,j} on a bias holder), DtB = {(m, j): D_j^T w (|S|, |T_{m,j}|)}."""
        for p in parts:
            start, w, stop = self.slots[p.index]
            out[start:w] += (z[p.m, p.i].T @ DtB[p.m, p.j]).ravel()
            if p.has_bias:
                out[w:stop] += DtB[p.m, p.j].sum(axis=0)

    def _u(self, z, v, p):
        """z^{m-1}[S, T_{m-1,i}] V_ij (+ v_b on the bias holder), (|S|, |T_{m,j}|)."""
        VW, vb = self.block(v, p)
        t = z[p.m, p.i] @ VW
        if vb is not None:
            t += vb
        return t

    def _jv(self, z, D, v, parts):
        """J v on S (|S|, n_L) of the blocks ``parts``: D_j applied to the sum over their
        blocks (m, i, j) of z^{m-1}[S, T_{m-1,i}] V_ij (+ v_b), once per (m, j)."""
        u = {}
        for p in parts:
            t = self._u(z, v, p)
            u[p.m, p.j] = u[p.m, p.j] + t if (p.m, p.j) in u else t
        Jv = None
        for key in sorted(u):
            t = times(D[key], u[key])
            Jv = t if Jv is None else Jv + t
        return Jv

    @property
    def cg_blocks(self):
        """[(positions in its vector, share of theta)] of its CGs: one on all of it for the
        full G, one per partition (share n_p / n) for the block-diagonal G."""
        if self.gn == "full":
            return [(slice(None), 1.0)]
        n = ref.n_params(self.layers)
        if len(self.parts) == 1:
            return [(slice(None), self.theta.size / n)]
        return [(np.arange(self.theta.size)[self._span(p)], p.n_params / n) for p in self.parts]

    def curvature_gram(self, J, vectors):
        """(k, k): (1/|S|) sum_{i in S} (J^i v_a)^T B^i (J^i v_b) for the k directions whose
        blocks are ``vectors``, with the full G whatever ``gn`` (docs/method.md §6): every
        rank's partial J v summed by one allreduce of (|S|, n_L, k) over the world."""
        z, D, P = check_factors(J).factors
        JV = np.empty((len(J.subsample), self.n_L, len(vectors)), self.dtype)
        for a, v in enumerate(vectors):
            JV[:, :, a] = self._jv(z, D, v, self.parts)
        self.comm.allreduce(JV, self.world)
        return ref.curvature_gram(JV, P, self.loss)

    def dots(self, pairs):
        """The inner products a^T b over all of theta of the (a, b) ``pairs``: one allreduce."""
        return self.comm.allreduce_scalars(*(a @ b for a, b in pairs))

    def dot(self, a, b):
        """Inner product over all of theta: local part, one scalar allreduce."""
        return float(self.comm.allreduce_scalars(a @ b)[0])

    def cg_dot(self, a, b):
        """CG's inner product: global for full G, the partition's own for block-diagonal G."""
        return self.dot(a, b) if self.gn == "full" else float(a @ b)

    def cg_stop(self, done):
        """Stop this CG? Own rule, or (sync < 1, a partition a rank) once ceil(sync N)
        partitions are done, counted from non-blocking notifications: no collective inside CG."""
        if self.gn == "full" or self.sync >= 1:
            return done
        with self.comm.phase("sync"):
            if self.comm.sync_pending() is None:
                self.comm.sync_start()
                self._cg_steps = 0
            n_done = self.comm.sync_done_count(done)
            # kit's rule: a partition takes at least one CG step, so no block of d is zero
            stop = done or (self._cg_steps > 0 and
                            n_done >= sync_threshold(self.sync, self.comm.size))
            self._cg_steps += 1
            if stop:
                self.comm.sync_finish()
        return stop

    def accuracy(self, theta, kept=False):
        """(train, test) accuracy: forward passes (the training set's z^L from the kept pass
        when theta is the kept point, ``kept``), argmax over all outputs, one scalar sum."""
        correct, L = [], self.L
        kept = self._kept.at(theta) if kept else None    # None: pass forward (or not enabled)
        for X, Y, n, K in ((self.X, self.Y, self.n_train, kept),
                           (self.X_test, self.Y_test, self.n_test, None)):
            hits = 0
            for rows in batch_slices(n, self.config.batch_size):
                pas = self._forward(theta, X, rows, slope=False) if K is None else \
                    {("z_L", j): K["z_L", j][rows] for j in self.outs[L]}
                if not self.on[L]:
                    continue
                full = self._whole_output(pas, "z_L", batch_count(rows))
                if self.grid.splits[-1] > 1:
                    self.comm.allreduce(full, self.output, receives=not self.counts)
                if 0 in self.counts:                 # one rank counts: Y.y has every class
                    hits += int((full.argmax(axis=1) == Y[0].y[rows]).sum())
            correct.append(hits)
        c_train, c_test = self.comm.allreduce_scalars(*correct, receives=0 not in self.counts)
        return c_train / self.n_train, (c_test / self.n_test if self.n_test else float("nan"))

    def close(self):
        """Free this model's sub-communicators (a study builds many models on one world)."""
        self.comm.flush()
        for group in self.groups.values():
            group.free()
        self.groups = {}

    def line_up(self):                          # one scalar allreduce (model.Model.line_up)
        if self.comm.size > 1:
            with self.comm.phase("report"):
                self.comm.allreduce_scalars(0.0)

    def phase(self, name):
        return self.comm.phase(name)

    def take_comm_record(self):
        return self.comm.take_record()
