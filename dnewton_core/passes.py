"""One batch's passes through a rank's blocks, and the link messages they send (docs/method.md §4).

Messages (all through ``comm.Comm``; shapes for a batch of b instances):
  link(m, j) = the ranks holding (m, ., j) and (m+1, j, .), one sub-communicator each, an
  allreduce, or a bcast or reduce when one rank sends or one receives (``costs.link_op``);
  a rank adds its blocks' parts before it sends, and a link held by one rank sends nothing:
    forward   sum over i of z^{m-1}[T_{m-1,i}] W_ij (+ b)   -> s^m[T_{m,j}]        (b, |T_{m,j}|)
    backward  sum over k of delta^{m+1}[T_{m+1,k}] W_jk^T    -> dz^m[T_{m,j}]       (b, |T_{m,j}|)
    jacobian  the same for the n_L outputs at once, on S     -> dz^L/dz^m[T_{m,j}]  (s', n_L, |T_{m,j}|)
              in chunks of s' = min(|S|, max(1, b // n_L)) instances (``model.jacobian_chunks``),
              but for m = L - 1: W^L[T_{L-1,j}, :]^T, once     -> the same for all of S  (n_L, |T_{L-1,j}|)
  output group (all of layer L), softmax only, P_L > 1: the per-instance max and sum of exp.
Every rank runs the collectives it takes part in in one order, batch by batch, layer by
layer, link by link, so no order of arrival can deadlock; a send left in flight is waited
for before the next collective on its group, or on the world (``Comm._collective``).

What one batch's pass holds on a rank is a dict, its "pass": ("z", m, i) the input
z^{m-1}[T_{m-1,i}] of its layer-m blocks, ("slope", m, j) sigma'(s^m[T_{m,j}]) (m < L; relu:
a bool mask), ("z_L", j), and on layer L ("dxi", j) d xi / d z^L and ("prob", j) softmax p
on T_{L,j}. ``kept.py`` keeps the same names for the whole training set.
"""
import numpy as np

from . import reference as ref
from .factors import LastHiddenD, OutputD, rows_of
from .model import PIPELINE, batch_count, jacobian_chunks


class Passes:
    """The passes of ``distributed.DistributedModel``, over the rank's blocks ``parts`` (by
    layer: ``on``, the i of their inputs ``ins``, the j of their outputs ``outs``; ``slots``:
    where each sits in the rank's vector), its links by layer ``links`` [(j, group)] and their
    collectives ``ops`` {(m, j, backward): (op, root)}, the layer-L slices it counts
    ``counts``, and its data ``X``, ``Y`` and ``features``."""

    def block(self, theta, p=None):
        """(W_ij (|T_{m-1,i}|, |T_{m,j}|), b_j (|T_{m,j}|,) or None) of partition ``p`` (the
        rank's one partition if None) viewed inside theta."""
        if p is None and self.part is None:
            raise ValueError(f"rank {self.comm.rank} holds {len(self.parts)} partitions: "
                             "name the one whose block you want")
        p = p or self.part
        start, w, stop = self.slots[p.index]
        return theta[start:w].reshape(len(p.rows), len(p.cols)), \
            (theta[w:stop] if p.has_bias else None)

    def _span(self, p):
        """Partition ``p``'s positions in this rank's vector (a slice)."""
        start, _, stop = self.slots[p.index]
        return slice(start, stop)

    def _blocks(self, theta, m):
        """[(p, W, b)] of this rank's layer-m partitions, views inside theta."""
        return [(p, *self.block(theta, p)) for p in self.on[m]]

    def _whole_output(self, pas, name, n):
        """(n, n_L): the pass's slices (``name``, j) of the output layer that this rank
        counts, in place, zeros elsewhere (to be summed over ranks)."""
        out = np.zeros((n, self.n_L), self.dtype)
        for j in self.counts:
            T = self.grid.groups(self.L)[j]
            out[:, T.start:T.stop] = pas[name, j]
        return out

    # -- the messages of a link ---------------------------------------------------------
    def _send(self, buf, link, m, j, backward=False, receives=False):
        """Put this rank's ``buf`` into the sum over ``link`` (layer m's link(m, j)) by its
        collective (``costs.link_op``); returns ``buf``: the sum, but on a rank that only
        sends into a reduce, which goes on while the message travels (``Comm._collective``'s
        ``later``; a bcast's root reads its ``buf`` then and must not write it)."""
        op, root = self.ops[m, j, backward]
        if op == "allreduce":
            return self.comm.allreduce(buf, link, receives=receives)
        if op == "reduce":
            return self.comm.reduce(buf, link, root, later=True, root_adds=not receives)
        return self.comm.bcast(buf, link, root, later=True)

    def _receive(self, shape, link, m, j, backward=False, out=None):
        """The sum over ``link`` that this rank receives without adding to it (shape), into
        ``out`` (of that shape) when given."""
        bcast = self.ops[m, j, backward][0] == "bcast"   # (else it adds zeros)
        if out is None:
            out = (np.empty if bcast else np.zeros)(shape, self.dtype)
        elif not bcast:
            out[...] = 0
        return self._send(out, link, m, j, backward, receives=True)

    def _width(self, m, j):
        return len(self.grid.groups(m)[j])

    def _rows(self, pas):
        """The number of instances of one batch's pass."""
        p = self.parts[0]
        return len(pas["z", p.m, p.i])

    # -- forward and backward over one batch --------------------------------------------
    def _forward(self, theta, X, rows, slope=True):
        """One batch's pass (the module docstring's dict, without dxi and p): s^m, in flight
        to layer m + 1, is not kept; sigma'(s^m) only if ``slope``."""
        n, L, pas = batch_count(rows), self.L, {}
        self.comm.patience.expect(2.0 * n * self.largest_block)      # polling.py
        for i in self.ins[1]:
            pas["z", 1, i] = X[rows, self.features[i]]
        for m in range(1, L + 1):
            partial = {}
            for p, W, b in self._blocks(theta, m):
                t = pas["z", m, p.i] @ W                              # (n, |T_{m,j}|)
                if b is not None:
                    t += b
                if p.j in partial:
                    partial[p.j] += t
                else:
                    partial[p.j] = t
            for j, link in self.links[m]:
                mine = j in partial
                s = self._send(partial.pop(j), link, m, j) if mine else \
                    self._receive((n, self._width(m, j)), link, m, j)
                if mine and m == L:
                    pas["z_L", j] = s
                elif mine:
                    pas["slope", m, j] = ref.slope(s, self.act) if slope else None
                if m < L and j in self.ins[m + 1]:     # an input here: in place unless in flight
                    pas["z", m + 1, j] = ref.activate(
                        s, self.act, out=None if self.comm.in_flight(link.name) else s)
        return pas

    def _output_terms(self, pas, Y, rows):
        """This rank's loss sum (its slices counted once over the grid), and in ``pas`` its
        slices' d xi / d z^L and softmax p (or None)."""
        zL, loss = {j: pas["z_L", j] for j in self.outs[self.L]}, 0.0
        if self.loss == "squared":
            for j, z in zL.items():
                xi, pas["dxi", j] = ref.squared_terms(z, Y[j][rows])
                pas["prob", j] = None
                loss += xi.sum() if j in self.counts else 0.0
            return loss
        n, split = batch_count(rows), self.grid.splits[-1] > 1   # normalizer over all slices
        shift = np.max([z.max(axis=1) for z in zL.values()], axis=0)
        if split:
            self.comm.allreduce(shift, self.output, op="max")
        total = np.zeros(n, self.dtype)
        for j in self.counts if split else zL:      # unsplit: every rank has all of z^L
            total += np.exp(zL[j] - shift[:, None]).sum(axis=1)
        if split:
            self.comm.allreduce(total, self.output, receives=not self.counts)
        for j, z in zL.items():
            Yj = Y[j][rows]
            _, pas["dxi", j], pas["prob", j] = ref.cross_entropy_terms(z, Yj, shift, total)
            loss -= (z * Yj).sum() if j in self.counts else 0.0
        return loss + ((np.log(total) + shift).sum() if 0 in self.counts else 0.0)

    def _pass(self, theta, rows, scale, grad, jacobian=False, kept=None):
        """Forward over one batch (or its terms ``kept``) and backward, adding scale * J^T dxi
        to ``grad`` (unless None); the Jacobian factors on these rows if ``jacobian``."""
        pas, _ = self._forward_terms(theta, self.X, self.Y, rows, kept)
        if grad is not None:
            self._backward(theta, pas, scale, grad, reuse=not jacobian)
        if jacobian:
            with self.comm.phase("jacobian"):
                return self._factor_jacobian(theta, pas)
        self.comm.flush()

    def _forward_terms(self, theta, X, Y, rows, kept=None):
        """(one batch's pass with d xi / d z^L and p, its loss), or the pass read from the
        ``kept`` arrays (loss 0) with no forward pass or message: d xi / d z^L and p are
        kept only where computing them from z^L would send messages (``_kept_terms``)."""
        if kept is None:
            pas = self._forward(theta, X, rows)
            return pas, (self._output_terms(pas, Y, rows) if self.on[self.L] else 0.0)
        pas = {name: array[rows] for name, array in kept.items()}
        for i in self.ins[1]:
            pas["z", 1, i] = X[rows, self.features[i]]
        if self.on[self.L] and not self._kept_terms:
            self._output_terms(pas, Y, rows)
        return pas, 0.0

    def _backward(self, theta, pas, scale, grad, reuse=False):
        """Backward over one batch: grad += scale * (this rank's part of J^T dxi); each
        layer's sums sent back to the layer below (computed into the batch's own z^{m-1}
        if ``reuse``, one block uses it and it is not a view of X or the kept pass)."""
        L, n = self.L, self._rows(pas)
        delta = {(L, j): pas["dxi", j] * scale for j in self.outs[L]}       # (n, |T_{L,j}|)
        back = {}
        for m in range(L, 0, -1):
            for j, link in self.links[m] if m < L else ():
                sent = j in back
                d = self._send(back.pop(j), link, m, j, backward=True) if sent else \
                    self._receive((n, self._width(m, j)), link, m, j, backward=True)
                if j in self.outs[m]:                  # in place unless in flight
                    delta[m, j] = np.multiply(d, pas["slope", m, j],
                                              out=None if self.comm.in_flight(link.name) else d)
            layer = self._blocks(theta, m)
            for i in self.ins[m]:
                blocks = [(p, W, b) for p, W, b in layer if p.i == i]
                z_in = pas["z", m, i]
                for p, _, b in blocks:
                    start, w, stop = self.slots[p.index]
                    grad[start:w] += (z_in.T @ delta[m, p.j]).ravel()
                    if b is not None:
                        grad[w:stop] += delta[m, p.j].sum(axis=0)
                if m > 1:
                    self.comm.flush(f"link({m - 1},{i})")  # the last batch's message freed first
                    own = reuse and len(blocks) == 1 and z_in.flags.owndata
                    (p, W, _), *more = blocks
                    back[i] = np.matmul(delta[m, p.j], W.T, out=z_in if own else None)
                    for p, W, _ in more:
                        back[i] += delta[m, p.j] @ W.T

    def _pipelined(self, theta, batches, grad, kept=None):
        """grad += (1/l) J^T dxi over ``batches``, in waves of ``PIPELINE`` batches: every
        forward pass of a wave, then every backward pass in the same order (docs/method.md
        §4). While layer m works on batch k, layer m + 1 works on batch k - 1, so the layers
        compute at the same time; each rank adds the batches in the order one batch after
        the other would, so the gradient is the same to the last bit. From the ``kept`` pass
        (no forward message to overlap): waves of one batch, read just before its backward."""
        wave_size = PIPELINE if kept is None else 1
        for start in range(0, len(batches), wave_size):
            wave = [self._forward_terms(theta, self.X, self.Y, rows, kept)[0]
                    for rows in batches[start:start + wave_size]]
            while wave:                       # each batch freed once its backward is done
                self._backward(theta, wave.pop(0), 1.0 / self.n_train, grad, reuse=True)
        self.comm.flush()

    def _factor_jacobian(self, theta, pas):
        """({(m, i): z^{m-1}[S, T_{m-1,i}]}, {(m, j): D_j = d z^L / d s^m[T_{m,j}] (|S|, n_L,
        |T_{m,j}|)}, p or None) for this rank's blocks: the gradient's backward recursion
        carried for the n_L outputs at once. D^{L-1} is W^{L T} sigma'(s^{L-1}) for every
        instance, so layer L sends W^L's rows once and D^{L-1} stays factored
        (``factors.LastHiddenD``); below, chunk by chunk of S (``model.jacobian_chunks``).
        For softmax, every rank also needs p on S (|S|, n_L) for B = diag(p) - p p^T."""
        L, n, n_L = self.L, self._rows(pas), self.n_L
        self.comm.flush()                    # S's gradient message freed before D exists
        D = {(m, j): np.empty((n, n_L, self._width(m, j)), self.dtype)
             for m in range(1, L - 1) for j in self.outs[m]}
        D.update({(L, j): OutputD(n, n_L, self.grid.groups(L)[j], self.dtype)  # a selection
                  for j in self.outs[L]})
        if L > 1:
            D.update(self._last_hidden_d(theta, pas))
        for c in jacobian_chunks(n, self.config.batch_size, n_L):
            k, back = c.stop - c.start, {}
            for m in range(L - 1, 0, -1):
                for j, link in self.links[m] if m < L - 1 else ():
                    mine = D[m, j][c] if j in self.outs[m] else None    # received in place
                    d = self._send(back.pop(j), link, m, j, backward=True) if j in back else \
                        self._receive((k, n_L, self._width(m, j)), link, m, j, True, mine)
                    if mine is not None:
                        if d is not mine:
                            mine[...] = d
                        mine *= pas["slope", m, j][c, None, :]
                for p, W, _ in self._blocks(theta, m) if m > 1 else ():
                    Dc = rows_of(D[m, p.j], c)               # D^{L-1}'s made on the chunk
                    t = (Dc.reshape(k * n_L, Dc.shape[2]) @ W.T).reshape(k, n_L, len(p.rows))
                    back[p.i] = back[p.i] + t if p.i in back else t
        self.comm.flush()
        P = None
        if self.loss == "cross_entropy":
            P = self._whole_output(pas, "prob", n)
            self.comm.allreduce(P, self.world, receives=not self.counts)
        z = {(m, i): pas["z", m, i] for m in range(1, L + 1) for i in self.ins[m]}
        return z, D, P

    def _last_hidden_d(self, theta, pas):
        """{(L-1, j): D^{L-1}_j} of this rank: link(L-1, j) carries W^L[T_{L-1,j}, :]^T
        (n_L, |T_{L-1,j}|) from layer L's blocks (each fills its outputs' rows) to the ranks
        of layer L-1's column group j, which keep it with sigma'(s^{L-1}) on S."""
        L, n_L, back, out = self.L, self.n_L, {}, {}
        for p, W, _ in self._blocks(theta, L):
            T = self.grid.groups(L)[p.j]
            if p.i not in back:
                back[p.i] = np.zeros((n_L, len(p.rows)), self.dtype)
            back[p.i][T.start:T.stop] = W.T
        for j, link in self.links[L - 1]:
            d = self._send(back.pop(j), link, L - 1, j, backward=True) if j in back else \
                self._receive((n_L, self._width(L - 1, j)), link, L - 1, j, True)
            if j in self.outs[L - 1]:
                out[L - 1, j] = LastHiddenD(d, pas["slope", L - 1, j])
        return out
