"""The network stored distributedly: one MPI rank per partition (m, i, j) (docs/method.md §3-§4).

Rank (m, i, j) holds the block W^m[T_{m-1,i}, T_{m,j}] (and b^m[T_{m,j}] when i = 0), the
feature columns X[:, T_{0,i}] when m = 1, the label columns Y[:, T_{L,j}] when m = L, and
nothing else of the model or the data. Samples are rows, as in ``reference.py``.

Messages (all through ``comm.Comm``; shapes for a batch of b instances):
  link(m, j) = column group (m, j) + row group (m+1, j), one sub-communicator each, an
  allreduce, or a bcast or reduce when one rank sends or one receives (``costs.link_op``):
    forward   sum over i of z^{m-1}[T_{m-1,i}] W_ij (+ b)   -> s^m[T_{m,j}]        (b, |T_{m,j}|)
    backward  sum over k of delta^{m+1}[T_{m+1,k}] W_jk^T    -> dz^m[T_{m,j}]       (b, |T_{m,j}|)
    jacobian  the same for the n_L outputs at once, on S     -> dz^L/dz^m[T_{m,j}]  (|S|, n_L, |T_{m,j}|)
  output group (all of layer L), softmax only, P_L > 1: the per-instance max and sum of exp.
  world: the scalar sums of f, the inner products, the |S| x n_L sum of J v (full G only).
Every rank runs the same sequence of collectives on each communicator, layer by layer, so
no order of arrival can deadlock; a pass waits for its sends in flight before it returns.
"""
import copy

import numpy as np

from . import reference as ref
from .comm import Comm
from .costs import link_op
from .kept import Kept
from .ledger import sync_threshold
from .memory import keep_freed_memory
from .model import (
    PIPELINE,
    JacobianFactors,
    ObjectiveConfig,
    OneHot,
    batch_count,
    batch_slices,
    batches,
    check_factors,
    check_gn_mode,
    jacobian_chunks,
    network_layers,
)
from .splits import checked_grid


class DistributedModel:
    """This rank's partition of the network, implementing ``model.Model``.

    ``gn``: "full" (one allreduce of |S| x n_L per product) or "diag" (block-diagonal G:
    no message inside CG). ``sync``: with "diag", every partition stops CG once a fraction
    ``sync`` of partitions met their own stopping rule (docs/method.md §6).
    """

    def __init__(self, data, hidden, splits, comm=None, objective=ObjectiveConfig(),
                 gn="full", sync=1.0):
        keep_freed_memory()                 # reuse freed arrays (memory.py)
        self.comm, self.config = comm or Comm(), objective
        self.layers = network_layers(data.n_features, hidden, data.n_classes)
        self.grid = self.comm.agree_on(lambda: checked_grid(self.layers, splits, gn, sync,
                                                             self.comm.size))
        self.gn, self.sync = gn, sync
        grid, rank = self.grid, self.comm.rank
        self.part = p = grid.partition(rank)
        self.largest_block = max(q.n_params for q in grid.partitions)   # of the grid
        self.L, self.n_L, self.n_train = grid.L, self.layers[-1], data.n_train
        self.C = objective.regularization(self.n_train)
        self.act, self.loss = objective.activation, objective.loss
        self.dtype = objective.dtype      # of every array; sums over batches and ranks in float64

        # groups: a link per (m, j), and the output layer for the softmax normalizer
        groups = {f"link({m},{j})": grid.link_group(m, j)
                  for m in range(1, grid.L + 1) for j in range(grid.splits[m])}
        groups["output"] = grid.output_group
        mine = self.groups = self.comm.split(groups)
        self.world = self.comm.world_group()
        self.in_link = mine.get(f"link({p.m - 1},{p.i})")       # receives z^{m-1}[T_{m-1,i}]
        self.out_link = mine[f"link({p.m},{p.j})"]              # produces s^m[T_{m,j}]
        self.output = mine.get("output")

        self._hold_share(data, objective.init_seed)
        self._kept = Kept(objective.keep_forward)     # what objective(keep=True) keeps
        # ... with d xi / d z^L and p on layer L only where they would need messages again
        self._kept_terms = self.loss == "cross_entropy" and grid.splits[-1] > 1
        self._cg_steps = 0                # CG steps of this partition in the current solve

    def _hold_share(self, data, seed):
        """This partition's parameters and data, nothing more: its block drawn alone
        (``reference.init_block``), its columns from ``data.share`` (a ``data.Dataset``
        copies them out; a ``data.Share`` prepared for this partition is kept as it is)."""
        p = self.part
        # T_{m-1,i} and T_{m,j} as slices: indexing by them gives views, not copies
        self.rows, self.cols = (slice(r.start, r.stop) for r in (p.rows, p.cols))
        W, b = ref.init_block(self.layers, seed, p.m, p.rows, p.cols)
        self.theta = np.concatenate([W.ravel(), b if p.has_bias else []]).astype(
            self.dtype, copy=False)                          # drawn in float64, then rounded
        del W
        self.n_W = len(p.rows) * len(p.cols)
        mine = data.share(p.rows if p.holds_features else None, p.holds_labels,
                          dtype=self.dtype)
        self.X, self.X_test = mine.X_train, mine.X_test      # (l, |T_{0,i}|) when m = 1
        labels = lambda y: OneHot(y, p.cols, self.dtype) if p.holds_labels else None
        self.Y, self.Y_test = labels(mine.y_train), labels(mine.y_test)  # Y[., T_{L,j}]
        self.n_test = data.n_test

    def with_gn(self, gn, sync=1.0):
        """The same partition (parameters, data, communicators shared) with another Gauss-Newton
        matrix, to compare the directions at one point. Close only the original."""
        check_gn_mode(gn, sync)
        other = copy.copy(self)
        other.gn, other.sync = gn, sync
        return other

    # -- parameters ---------------------------------------------------------------------
    def block(self, theta):
        """(W_ij (|T_{m-1,i}|, |T_{m,j}|), b_j (|T_{m,j}|,) or None) viewed inside theta."""
        W = theta[:self.n_W].reshape(len(self.part.rows), len(self.part.cols))
        return W, (theta[self.n_W:] if self.part.has_bias else None)

    # -- forward and backward over one batch --------------------------------------------
    def _forward(self, W, b, X, rows, slope=True):
        """z^{m-1}[rows, T_{m-1,i}], and z^L[rows, T_{L,j}] (m = L) or sigma'(s^m) on T_{m,j}
        (``slope``, else None): s^m, in flight to layer m + 1, is not written (``_send``)."""
        p, n = self.part, batch_count(rows)
        self.comm.patience.expect(2.0 * n * self.largest_block)      # polling.py
        if p.m == 1:
            z_in = X[rows]
        else:
            s_in = self._receive((n, len(p.rows)), self.in_link, p.m - 1)
            z_in = ref.activate(s_in, self.act, out=s_in)
        partial = z_in @ W                                           # (n, |T_{m,j}|)
        if b is not None:
            partial += b
        s = self._send(partial, self.out_link, p.m)
        return z_in, (s if p.m == self.L else ref.slope(s, self.act) if slope else None)

    def _send(self, buf, link, m, backward=False, receives=False):
        """Put this rank's ``buf`` into the sum over layer m's ``link`` by its collective
        (``costs.link_op``); returns ``buf``: the sum, but on a rank sending into a reduce,
        which goes on while the message travels (``Comm._collective``'s ``later``)."""
        op, root = link_op(self.grid, m, backward)
        if op == "allreduce":
            return self.comm.allreduce(buf, link, receives=receives)
        return getattr(self.comm, op)(buf, link, root, later=True)

    def _receive(self, shape, link, m, backward=False):
        """The sum over ``link`` that this rank receives without adding to it (shape)."""
        bcast = link_op(self.grid, m, backward)[0] == "bcast"   # (else it adds zeros)
        return self._send((np.empty if bcast else np.zeros)(shape, self.dtype), link, m,
                          backward, receives=True)

    def _output_terms(self, zL, Y):
        """This slice's loss sum, d xi / d z^L[., T_{L,j}], and softmax p on it (or None)."""
        if self.loss == "squared":
            xi, dxi = ref.squared_terms(zL, Y)
            return xi.sum(), dxi, None
        shift = zL.max(axis=1)                 # cross-entropy: normalizer over all slices
        split = self.grid.splits[-1] > 1
        if split:
            self.comm.allreduce(shift, self.output, op="max")
        total = np.exp(zL - shift[:, None]).sum(axis=1)
        if split:
            total = self.comm.allreduce(total if self.part.i == 0 else np.zeros_like(total),
                                        self.output, receives=self.part.i != 0)
        _, dxi, prob = ref.cross_entropy_terms(zL, Y, shift, total)
        log_norm = (np.log(total) + shift).sum() if self.part.j == 0 else 0.0  # counted once
        return log_norm - (zL * Y).sum(), dxi, prob

    def _pass(self, theta, rows, scale, grad, jacobian=False, kept=None):
        """Forward over one batch (or its terms ``kept``) and backward, adding scale * J^T dxi
        to ``grad`` (unless None); the Jacobian factors on these rows if ``jacobian``."""
        W, b = self.block(theta)
        z_in, slope, _, _, dxi, prob = self._forward_terms(W, b, self.X, self.Y, rows, kept)
        if grad is not None:
            self._backward(W, z_in, slope, dxi, scale, grad, reuse=not jacobian)
        if jacobian:
            with self.comm.phase("jacobian"):
                return self._factor_jacobian(W, z_in, slope, prob)
        self.comm.flush()

    def _forward_terms(self, W, b, X, Y, rows, kept=None):
        """Forward over one batch: (z^{m-1}, sigma'(s^m) on this rank's slice (m < L; relu: a
        bool mask), z^L on its slice (m = L), its loss, and on layer L d xi / d z^L and softmax
        p on its slice; None where not on this layer), or read from the ``kept`` arrays (loss
        0) with no forward pass or message: d xi / d z^L and p are kept only where computing
        them from z^L would send messages (cross-entropy, split output layer, ``_kept_terms``)."""
        p = self.part
        if kept is not None:
            get = lambda name: kept[name][rows] if name in kept else None   # noqa: E731
            z_L, dxi, prob = get("z_L"), get("dxi"), get("prob")
            if z_L is not None and not self._kept_terms:
                dxi, prob = self._output_terms(z_L, Y[rows])[1:]
            return (X[rows] if p.m == 1 else get("z_in")), get("slope"), z_L, 0.0, dxi, prob
        z_in, z_out = self._forward(W, b, X, rows)
        if p.m != self.L:
            return z_in, z_out, None, 0.0, None, None
        loss, dxi, prob = self._output_terms(z_out, Y[rows])
        return z_in, None, z_out, loss * (p.i == 0), dxi, prob   # each slice counted once

    def _backward(self, W, z_in, slope, dxi, scale, grad, reuse=False):
        """Backward over one batch: grad += scale * (this block's part of J^T dxi), and
        delta^m W_ij^T (n, |T_{m-1,i}|) sent back to layer m - 1, into z_in if ``reuse`` (not
        needed after) and z_in is this batch's own array (not a view of X or the kept pass)."""
        p, n = self.part, len(z_in)
        if p.m == self.L:
            delta = dxi * scale                                      # (n, |T_{L,j}|)
        else:
            delta = self._receive((n, len(p.cols)), self.out_link, p.m, backward=True)
            delta *= slope                                           # (n, |T_{m,j}|)
        grad[:self.n_W] += (z_in.T @ delta).ravel()
        if p.has_bias:
            grad[self.n_W:] += delta.sum(axis=0)
        if p.m > 1:
            self.comm.flush(self.in_link.name)       # the last batch's message freed first
            back = np.matmul(delta, W.T, out=z_in if reuse and z_in.flags.owndata else None)
            self._send(back, self.in_link, p.m - 1, backward=True)

    def _pipelined(self, theta, batches, grad, kept=None):
        """grad += (1/l) J^T dxi over ``batches``, in waves of ``PIPELINE`` batches: every
        forward pass of a wave, then every backward pass in the same order (docs/method.md
        §4). While layer m works on batch k, layer m + 1 works on batch k - 1, so the layers
        compute at the same time; each rank adds the batches in the order one batch after
        the other would, so the gradient is the same to the last bit. From the ``kept`` pass
        (no forward message to overlap): waves of one batch, read just before its backward."""
        W, b, wave_size = *self.block(theta), PIPELINE if kept is None else 1
        for start in range(0, len(batches), wave_size):
            wave = [self._forward_terms(W, b, self.X, self.Y, rows, kept)
                    for rows in batches[start:start + wave_size]]
            while wave:                       # each batch freed once its backward is done
                z_in, slope, _, _, dxi, _ = wave.pop(0)
                self._backward(W, z_in, slope, dxi, 1.0 / self.n_train, grad, reuse=True)
        self.comm.flush()

    def _factor_jacobian(self, W, z_in, slope, prob):
        """(z^{m-1}[S, T_{m-1,i}], D_ij = d z^L / d s^m[T_{m,j}] (|S|, n_L, |T_{m,j}|), p or None):
        the gradient's backward recursion carried for the n_L outputs at once, chunk by chunk
        of S (``model.jacobian_chunks``). For softmax, every rank also needs p on S
        (|S|, n_L) for B = diag(p) - p p^T."""
        p, n = self.part, len(z_in)
        cols, rows = len(p.cols), len(p.rows)
        self.comm.flush()                    # S's gradient message freed before D exists
        D = (np.zeros if p.m == self.L else np.empty)((n, self.n_L, cols), self.dtype)
        if p.m == self.L:                                        # D^L: a 0/1 selection
            D[:, np.arange(p.cols.start, p.cols.stop), np.arange(cols)] = 1.0
        for c in jacobian_chunks(n, self.config.batch_size, self.n_L):
            k = c.stop - c.start
            if p.m < self.L:
                D[c] = self._receive((k, self.n_L, cols), self.out_link, p.m, backward=True)
                D[c] *= slope[c, None, :]
            if p.m > 1:
                back = (D[c].reshape(k * self.n_L, cols) @ W.T).reshape(k, self.n_L, rows)
                self._send(back, self.in_link, p.m - 1, backward=True)
        self.comm.flush()
        P = None
        if self.loss == "cross_entropy":
            P = np.zeros((n, self.n_L), self.dtype)
            owner = p.m == self.L and p.i == 0
            if owner:
                P[:, self.cols] = prob
            self.comm.allreduce(P, self.world, receives=not owner)
        return z_in, D, P

    # -- the model interface ------------------------------------------------------------
    def objective(self, theta, keep=False):
        """f(theta): forward passes, one scalar allreduce. ``keep``: z^{m-1} (m > 1), and
        sigma'(s^m) (m < L; for relu a bool mask, 1 byte an entry) or z^L (m = L; with
        d xi / d z^L and softmax p if ``_kept_terms``) stay for the gradient and accuracy
        here (``kept.py``)."""
        p, (W, b), loss = self.part, self.block(theta), 0.0
        c, L, E = len(p.cols), p.m == self.L, self.dtype     # widths; 0: not kept on this rank
        terms = c * L * self._kept_terms
        keep = keep and self._kept.start(self.n_train, dict(
            z_in=(len(p.rows) * (p.m > 1), E), slope=(c * (not L), ref.slope_dtype(self.act, E)),
            z_L=(c * L, E), dxi=(terms, E), prob=(terms, E)))
        for rows in batch_slices(self.n_train, self.config.batch_size):
            z_in, slope, z_L, part, dxi, prob = self._forward_terms(W, b, self.X, self.Y, rows)
            loss += float(part)
            if keep:
                self._kept.put(rows, dict(z_in=z_in, slope=slope, z_L=z_L, dxi=dxi, prob=prob))
        if keep:
            self._kept.finish(theta)
        local = float(theta @ theta) / (2.0 * self.C) + loss / self.n_train
        return float(self.comm.allreduce_scalars(local)[0])

    def gradient(self, theta):
        """This rank's block of grad f: mini-batched forward and backward passes, pipelined."""
        grad = theta / self.C
        self._pipelined(theta, batch_slices(self.n_train, self.config.batch_size), grad)
        return grad

    def gradient_and_jacobian(self, theta, S, kept=False):
        """This rank's block of grad f, and its Jacobian factors on S (``JacobianFactors``).
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
        """theta / C + mean over ``batch`` of grad xi_i (this rank's block)."""
        grad = theta / self.C
        self._pass(theta, batch, 1.0 / len(batch), grad)
        return grad

    def gauss_newton(self, J, v):
        """G_S v on this block (docs/method.md §4): local product, the one big allreduce, local
        product. full: (G_S v)_p = v_p / C + (1/|S|) J_p^T B sum_q J_q v_q;
        diag: (G_p v)_p = v_p / C + (1/|S|) J_p^T B J_p v_p, no message."""
        z_in, D, P = check_factors(J).factors
        self.comm.patience.expect(4.0 * len(z_in) * self.largest_block)
        Jv = self._jv(z_in, D, v)
        if self.gn == "full":
            self.comm.allreduce(Jv, self.world)
        BJv = ref.curvature_product(Jv, P, self.loss)
        BJv /= len(z_in)
        DtB = np.einsum("sn,snk->sk", BJv, D)                        # (|S|, |T_{m,j}|)
        out = v / self.C
        out[:self.n_W] += (z_in.T @ DtB).ravel()
        if self.part.has_bias:
            out[self.n_W:] += DtB.sum(axis=0)
        return out

    def _jv(self, z_in, D, v):
        """This block's J_p v_p on S (|S|, n_L): D_ij applied to z^{m-1} V_ij (+ v_b)."""
        VW, vb = self.block(v)
        u = z_in @ VW                                                # (|S|, |T_{m,j}|)
        if vb is not None:
            u += vb
        return np.einsum("snk,sk->sn", D, u)

    @property
    def cg_blocks(self):
        """[(positions in its vector, share of theta)] of its CGs: one, on its share n_p / n."""
        share = 1.0 if self.gn == "full" else self.theta.size / ref.n_params(self.layers)
        return [(slice(None), share)]

    def curvature_gram(self, J, vectors):
        """(k, k): (1/|S|) sum_{i in S} (J^i v_a)^T B^i (J^i v_b) for the k directions whose
        blocks are ``vectors``, with the full G whatever ``gn`` (docs/method.md §6): every
        rank's partial J v summed by one allreduce of (|S|, n_L, k) over the world."""
        z_in, D, P = check_factors(J).factors
        JV = np.empty((len(z_in), self.n_L, len(vectors)), self.dtype)
        for a, v in enumerate(vectors):
            JV[:, :, a] = self._jv(z_in, D, v)
        self.comm.allreduce(JV, self.world)
        return ref.curvature_gram(JV, P, self.loss)

    def dots(self, pairs):
        """The inner products a^T b over all of theta of the (a, b) ``pairs``: one allreduce."""
        return self.comm.allreduce_scalars(*(a @ b for a, b in pairs))

    def dot(self, a, b):
        """Inner product over all of theta: local part, one scalar allreduce."""
        return float(self.comm.allreduce_scalars(a @ b)[0])

    def cg_dot(self, a, b):
        """CG's inner product: global for full G, this partition's own for block-diagonal G."""
        return self.dot(a, b) if self.gn == "full" else float(a @ b)

    def cg_stop(self, done):
        """Stop this CG? Own rule, or (sync < 1) once ceil(sync N) partitions are done, counted
        from non-blocking notifications: no collective inside CG."""
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
        p, (W, b), correct = self.part, self.block(theta), []
        kept = self._kept.at(theta) if kept else None    # None: pass forward (or not enabled)
        for X, Y, n, K in ((self.X, self.Y, self.n_train, kept),
                           (self.X_test, self.Y_test, self.n_test, None)):
            hits = 0
            for rows in batch_slices(n, self.config.batch_size):
                z = self._forward(W, b, X, rows, slope=False)[1] if K is None else None
                if p.m != self.L:
                    continue
                z = K["z_L"][rows] if z is None else z
                if self.grid.splits[-1] > 1:
                    full = np.zeros((batch_count(rows), self.n_L), self.dtype)
                    if p.i == 0:
                        full[:, self.cols] = z
                    z = self.comm.allreduce(full, self.output, receives=p.i != 0)
                if p.i == p.j == 0:                 # one rank counts: Y.y has every class
                    hits += int((z.argmax(axis=1) == Y.y[rows]).sum())
            correct.append(hits)
        c_train, c_test = self.comm.allreduce_scalars(*correct, receives=bool(p.m < self.L or p.i or p.j))
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

