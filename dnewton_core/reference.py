"""Dense single-process reference: the oracle every distributed result is checked against.

Deliberately plain. Samples are rows: ``X`` is ``(l, n_0)``, ``Y`` is one-hot ``(l, n_L)``,
``z^m`` is ``(l, n_m)``. Parameters are a list of ``(W, b)`` pairs, ``W^m`` of shape
``(n_{m-1}, n_m)`` and ``b^m`` of shape ``(n_m,)`` (docs/method.md §1):

    s^m = z^{m-1} W^m + b^m,   z^m = sigma(s^m) for m < L,   z^L = s^L
    f(theta) = theta^T theta / (2C) + (1/l) sum_i xi(z^{L,i}; y^i)
"""
import numpy as np

ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("squared", "cross_entropy")


def init_params(layers, seed=0):
    """Glorot-normal weights, W^m ~ N(0, 2/(n_{m-1}+n_m)), and zero biases."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / (n_in + n_out)), np.zeros(n_out))
            for n_in, n_out in zip(layers[:-1], layers[1:])]


_INIT_CHUNK = 1 << 16     # values drawn at a time by init_block


def init_block(layers, seed, m, rows, cols):
    """(W^m[rows, cols], b^m[cols]) of ``init_params(layers, seed)``, bit for bit, holding
    only the block (``rows``, ``cols``: ranges). The same generator stream read in chunks:
    the values before the block are drawn and dropped (the normal sampler consumes a varying
    number of random words per value, so the stream cannot jump ahead). Time grows with the
    parameters before the block, memory with the block and one chunk."""
    rng = np.random.default_rng(seed)
    n_in, n_out = layers[m - 1], layers[m]
    ahead = sum(a * b for a, b in zip(layers[:m - 1], layers[1:m])) + rows.start * n_out
    chunk = np.empty(min(_INIT_CHUNK, max(ahead, 1)))
    for k in range(0, ahead, len(chunk)):
        rng.standard_normal(out=chunk[:min(len(chunk), ahead - k)])
    W = np.empty((len(rows), len(cols)))
    step = max(1, _INIT_CHUNK // n_out)                          # whole rows of W^m at a time
    for k in range(0, len(rows), step):
        drawn = rng.standard_normal((min(step, len(rows) - k), n_out))
        W[k:k + len(drawn)] = drawn[:, cols.start:cols.stop]
    W *= np.sqrt(2.0 / (n_in + n_out))
    return W, np.zeros(len(cols))


def activate(s, activation, out=None):
    """sigma(s) elementwise, into ``out`` when given (``out=s``: in place, no new array;
    the same numbers as a new array, operation by operation)."""
    if activation == "relu":
        return np.maximum(s, 0.0, out=out)
    if activation == "sigmoid":
        z = np.negative(s, out=out)
        return np.reciprocal(np.add(np.exp(z, out=z), 1.0, out=z), out=z)
    if activation == "tanh":
        return np.tanh(s, out=out)
    raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")


def activation_derivative(z, activation):
    """sigma'(s) written in terms of z = sigma(s); for relu a bool mask (z > 0), 1 byte an
    entry: a product with it casts True, False to 1.0, 0.0, so it is the product with the
    floats, bit for bit."""
    if activation == "relu":
        return z > 0
    if activation == "sigmoid":
        return z * (1.0 - z)
    if activation == "tanh":
        return 1.0 - z * z
    raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")


def slope(s, activation):
    """sigma'(s) from s, which stays as it is: ``activation_derivative(activate(s))`` bit for
    bit (for relu s > 0, without forming z)."""
    if activation == "relu":
        return s > 0
    return activation_derivative(activate(s, activation), activation)


def slope_dtype(activation, dtype):
    """The dtype of ``activation_derivative`` for z of ``dtype``."""
    return np.dtype(bool) if activation == "relu" else np.dtype(dtype)


def softmax(s):
    """Row-wise softmax of s (l, n_L), shifted by the row maximum for stability."""
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(params, X, activation, out=None):
    """[z^0, ..., z^L], z^m of shape (l, n_m), each z^m computed in one array (the bias and
    the activation in place: the same numbers as new arrays), ``out[m - 1]`` when ``out``
    [(l, n_1), ..., (l, n_L)] is given (views of the kept pass, kept.py)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    zs = [X]
    for m, (W, b) in enumerate(params, start=1):
        s = np.matmul(zs[-1], W, out=None if out is None else out[m - 1])
        s += b
        zs.append(s if m == len(params) else activate(s, activation, out=s))
    return zs


def squared_terms(zL, Y):
    """Squared loss xi = ||z^L - y||^2 per instance (l,), and d xi / d z^L (l, n_L)."""
    r = zL - Y
    return (r * r).sum(axis=1), 2.0 * r


def cross_entropy_terms(zL, Y, shift, total):
    """Softmax cross-entropy per instance (l,), d xi / d z^L (l, n_L), and p (l, n_L).

    xi = log sum_k exp(z_k) - z^T y, written with ``shift`` (l,) and ``total`` (l,) =
    sum_k exp(z_k - shift) (the distributed model sums ``total`` over the output slices);
    p = exp(z - shift) / total.
    """
    p = np.exp(zL - shift[:, None]) / total[:, None]
    return np.log(total) + shift - (zL * Y).sum(axis=1), p - Y, p


def normalizer(zL):
    """(shift, total) of ``cross_entropy_terms``: the row maximum, sum_k exp(z_k - shift)."""
    shift = zL.max(axis=1)
    return shift, np.exp(zL - shift[:, None]).sum(axis=1)


def curvature_product(JV, p, loss):
    """B JV per instance (|S|, n_L): B = 2I (squared), diag(p) - p p^T (cross-entropy)."""
    if loss == "squared":
        return 2.0 * JV
    if loss == "cross_entropy":
        return p * JV - p * (p * JV).sum(axis=1, keepdims=True)
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")


def curvature_gram(JV, p, loss):
    """(k, k) matrix (1/|S|) sum_i (J^i v_a)^T B^i (J^i v_b) from JV (|S|, n_L, k), the J v
    of k directions on S: the curvature part of V^T G_S V (docs/method.md §6)."""
    BJV = np.stack([curvature_product(JV[:, :, a], p, loss) for a in range(JV.shape[2])],
                   axis=-1)                                                # (|S|, n_L, k)
    return np.einsum("sna,snb->ab", JV, BJV) / len(JV)


def loss_terms(zL, Y, loss):
    """xi(z^{L,i}; y^i) per instance (l,), d xi / d z^L (l, n_L), and p (softmax) or None."""
    if loss == "squared":
        return (*squared_terms(zL, Y), None)
    if loss == "cross_entropy":
        return cross_entropy_terms(zL, Y, *normalizer(zL))
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")


def backward(params, zs, U, activation):
    """J^T-style backward pass: given U = d(.)/d z^L (l, n_L), return [(dW, db)] summed over rows."""
    grads, delta = [], U
    for m in range(len(params), 0, -1):
        grads.append((zs[m - 1].T @ delta, delta.sum(axis=0)))
        if m > 1:
            delta = delta @ params[m - 1][0].T                 # a new array: scaled in place
            delta *= activation_derivative(zs[m - 1], activation)
    return grads[::-1]


def _jv(params, zs, V, activation):
    """J V = d z^L / d theta applied to V (a params-shaped direction), per instance: (l, n_L)."""
    r = np.zeros_like(zs[0])
    for m, ((W, _), (VW, Vb)) in enumerate(zip(params, V), start=1):
        rs = r @ W + zs[m - 1] @ VW + Vb
        r = rs if m == len(params) else activation_derivative(zs[m], activation) * rs
    return r


def objective(params, X, Y, C, activation="relu", loss="squared"):
    """f(theta) = theta^T theta / (2C) + (1/l) sum_i xi(z^{L,i}; y^i)   (docs/method.md §1)."""
    xi, _, _ = loss_terms(forward(params, X, activation)[-1], Y, loss)
    return float(flatten(params) @ flatten(params) / (2.0 * C) + xi.mean())


def gradient(params, X, Y, C, activation="relu", loss="squared"):
    """grad f = theta / C + (1/l) sum_i (J^i)^T d xi_i / d z^{L,i}   (docs/method.md §2)."""
    zs = forward(params, X, activation)
    _, dxi, _ = loss_terms(zs[-1], Y, loss)
    back = backward(params, zs, dxi / len(X), activation)
    return [(dW + W / C, db + b / C) for (W, b), (dW, db) in zip(params, back)]


def gauss_newton_product(params, X, V, C, activation="relu", loss="squared"):
    """G V with G = I/C + (1/|X|) sum_i (J^i)^T B^i J^i over the rows of X   (docs/method.md §2).

    B^i = d^2 xi / d (z^L)^2: 2I for the squared loss, diag(p) - p p^T for softmax
    cross-entropy (p = softmax(z^{L,i})). Pass the subsample's rows of X to get G_S V.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    zs = forward(params, X, activation)
    JV = _jv(params, zs, V, activation)                                   # (|S|, n_L)
    BJV = curvature_product(JV, softmax(zs[-1]) if loss == "cross_entropy" else None, loss)
    back = backward(params, zs, BJV / len(X), activation)
    return [(dW + VW / C, db + Vb / C) for (VW, Vb), (dW, db) in zip(V, back)]


def block_diagonal_gauss_newton_product(theta, X, v, C, layers, blocks, activation="relu",
                                        loss="squared"):
    """The block-diagonal G_S v (docs/method.md §6): for every block p (an index array into
    theta), block p of G_S (v restricted to block p); one ``gauss_newton_product`` per block.
    ``theta`` and ``v`` are flat (n,); returns a flat (n,) vector."""
    params = unflatten(theta, layers)
    out = np.zeros(len(theta))
    for idx in blocks:
        masked = np.zeros(len(theta))
        masked[idx] = v[idx]
        Gv = flatten(gauss_newton_product(params, X, unflatten(masked, layers), C, activation,
                                          loss))
        out[idx] = Gv[idx]
    return out


def predict(params, X, activation="relu"):
    """Network outputs z^L, shape (l, n_L); the predicted class is their argmax."""
    return forward(params, X, activation)[-1]


def flatten(params):
    """theta as one vector: W^1 (row-major), b^1, W^2, b^2, ...; length sum_m (n_{m-1}+1) n_m."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params])


def n_params(layers):
    """n = sum_m (n_{m-1} + 1) n_m: the length of ``flatten``'s vector."""
    return sum((n_in + 1) * n_out for n_in, n_out in zip(layers[:-1], layers[1:]))


def unflatten(vector, layers):
    """Inverse of flatten: the list of (W, b) for layer sizes n_0..n_L."""
    need = n_params(layers)
    if len(vector) != need:
        raise ValueError(f"vector has {len(vector)} entries, layers {tuple(layers)} need {need}")
    params, k = [], 0
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        W = vector[k:k + n_in * n_out].reshape(n_in, n_out)
        k += n_in * n_out
        params.append((W, vector[k:k + n_out]))
        k += n_out
    return params
