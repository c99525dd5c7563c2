"""The Jacobian factors D^m = d z^L / d s^m on S, and the two products CG needs of them
(docs/method.md §4).

For m < L - 1, D^m is stored: one n_L x n_m matrix per instance, (|S|, n_L, n_m). The last
hidden layer's is not: D^{L-1}[s] = W^{L T} diag(sigma'(s^{L-1}[s])), the same W^L for every
instance, so it is kept as its two factors (``LastHiddenD``), n_L n_{L-1} + |S| n_{L-1}
numbers instead of |S| n_L n_{L-1}, and a product with it is a GEMM with W^L instead of a
pass over |S| n_L n_{L-1} numbers. D^L, the 0/1 selection of the outputs (z^L = s^L), is
kept as their columns alone (``OutputD``).
"""
import numpy as np

from . import reference as ref

CACHE_BYTES = 1 << 20   # a chunk of S's stored D^m this large is read twice from the cache


class OutputD:
    """D^L on the output columns T (a range of 0..n_L-1): (|S|, n_L, |T|), 1 where the output
    is the column's own, else 0; nothing is stored."""

    def __init__(self, n, n_L, T, dtype):
        self.T, self.shape, self.dtype, self.nbytes = T, (n, n_L, len(T)), np.dtype(dtype), 0

    def columns(self, cols):
        """D^L[:, :, cols] (a slice of T's positions)."""
        return OutputD(self.shape[0], self.shape[1], self.T[cols], self.dtype)

    def rows(self, rows):
        """D^L[rows] as an array (b, n_L, |T|)."""
        out = np.zeros((len(np.arange(self.shape[0])[rows]), *self.shape[1:]), self.dtype)
        out[:, np.arange(self.T.start, self.T.stop), np.arange(len(self.T))] = 1.0
        return out


class LastHiddenD:
    """D^{L-1} on the columns T (|S|, n_L, |T|), kept as W^L[T, :]^T (n_L, |T|) and sigma'(s^{L-1})
    on S (|S|, |T|): a relu's bool mask, or the floats of another activation."""

    def __init__(self, WT, slope):
        self.WT, self.slope = WT, slope
        self.shape, self.dtype = (len(slope), *WT.shape), WT.dtype
        self.nbytes = WT.nbytes + slope.nbytes      # what is kept, not the dense D's bytes

    def columns(self, cols):
        """D^{L-1}[:, :, cols], still factored."""
        return LastHiddenD(self.WT[:, cols], self.slope[:, cols])

    def rows(self, rows):
        """D^{L-1}[rows] as an array (b, n_L, |T|) of WT's dtype, in C order."""
        return np.multiply(self.WT, self.slope[rows, None, :], dtype=self.WT.dtype)


def rows_of(D, rows):
    """D[rows] of any D here as an array (b, n_L, |T|): a stored D's rows, or a factored one's
    made on them."""
    return D[rows] if isinstance(D, np.ndarray) else D.rows(rows)


def columns(D, cols):
    """D[:, :, cols] of any D here, ``cols`` a slice."""
    return D[:, :, cols] if isinstance(D, np.ndarray) else D.columns(cols)


def _check(D, a, width):
    if a.shape != (D.shape[0], width):
        raise ValueError(f"D of shape {D.shape} times an array of shape {a.shape}")


def times(D, u):
    """J's part of the layer: D u instance by instance, sum_k D[s, :, k] u[s, k] (|S|, n_L),
    for ``u`` (|S|, |T|)."""
    if isinstance(D, OutputD):
        _check(D, u, D.shape[2])
        out = np.zeros((len(u), D.shape[1]), u.dtype)
        out[:, D.T.start:D.T.stop] = u
        return out
    if isinstance(D, LastHiddenD):
        return (u * D.slope) @ D.WT.T
    return np.einsum("snk,sk->sn", D, u)


def transposed_times(D, w):
    """D^T w instance by instance, sum_n D[s, n, :] w[s, n] (|S|, |T|), for ``w`` (|S|, n_L);
    for D^L a view of w's columns T: read it, do not write it."""
    if isinstance(D, OutputD):
        _check(D, w, D.shape[1])
        return w[:, D.T.start:D.T.stop]
    if isinstance(D, LastHiddenD):
        out = w @ D.WT
        out *= D.slope
        return out
    return np.einsum("sn,snk->sk", w, D)


def through_curvature(Ds, us, p, loss, n):
    """[D_k^T w] (|S|, |T_k|) each, for w = B (sum_k D_k u_k) / n instance by instance, u_k
    (|S|, |T_k|): steps 1 and 3 of G_S v (docs/method.md §4) where no message comes between
    them (the block-diagonal G; one process). A stored D is read chunk by chunk of S, each
    chunk for D u and again, still in the cache, for D^T w: one pass over memory where there
    were two, and the same bits as on the whole of S."""
    q = [None if isinstance(D, np.ndarray) else times(D, u) for D, u in zip(Ds, us)]
    out = [np.empty_like(u) if t is None else None for u, t in zip(us, q)]
    n_S, w = len(us[0]), None                                                # w: (|S|, n_L)
    row = sum(D[0].nbytes for D, t in zip(Ds, q) if t is None)
    size = max(1, CACHE_BYTES // row) if row else n_S
    for start in range(0, n_S, size):
        c = slice(start, start + size)
        Jv = None
        for D, u, t in zip(Ds, us, q):
            t = times(D[c], u[c]) if t is None else t[c]
            Jv = t if Jv is None else Jv + t
        wc = ref.curvature_product(Jv, None if p is None else p[c], loss)
        w = np.empty((n_S, wc.shape[1]), wc.dtype) if w is None else w     # Jv's dtype
        w[c] = wc
        w[c] /= n
        for D, o in zip(Ds, out):
            if o is not None:
                o[c] = transposed_times(D[c], w[c])
    return [transposed_times(D, w) if o is None else o for D, o in zip(Ds, out)]
