"""Tests of the dense reference (the oracle every distributed result is checked against).

Everything is checked against something computed independently of the code under test:
finite differences of ``objective`` / of ``z^L``, explicitly assembled matrices, or plain
Python loops. Tiny networks, float64, l = 7 instances, one-hot labels.
"""
import math

import numpy as np
import pytest

from dnewton_core import reference as ref
from dnewton_core.reference import (
    flatten,
    gauss_newton_product,
    gradient,
    init_params,
    objective,
    predict,
    unflatten,
)

LOSSES = ("squared", "cross_entropy")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
NETS = ((5, 4, 3, 3), (4, 6, 2))
N_INST = 7
C = 2.0            # 1/C = 0.5: the regularizer is visible but does not swamp the loss terms
KINK_MARGIN = 1e-4

loss_param = pytest.mark.parametrize("loss", LOSSES)
act_param = pytest.mark.parametrize("activation", ACTIVATIONS)
net_param = pytest.mark.parametrize("layers", NETS, ids=lambda ls: "-".join(map(str, ls)))


# --------------------------------------------------------------------------- helpers

def _one_hot(labels, k):
    Y = np.zeros((len(labels), k))
    Y[np.arange(len(labels)), labels] = 1.0
    return Y


def _hidden_preactivations(params, X, activation):
    """s^1..s^{L-1} recomputed independently of reference.forward."""
    z, out = X, []
    for W, b in params[:-1]:
        s = z @ W + b
        out.append(s)
        z = {"relu": lambda t: np.maximum(t, 0.0),
             "sigmoid": lambda t: 1.0 / (1.0 + np.exp(-t)),
             "tanh": np.tanh}[activation](s)
    return out


def make_problem(layers, activation, seed=0, l=N_INST):
    """Random params (with non-zero biases), inputs and one-hot labels.

    For ReLU the seed is advanced until no hidden pre-activation lies within KINK_MARGIN
    of zero, so that finite differences never straddle a kink.
    """
    for attempt in range(200):
        rng = np.random.default_rng(1000 * seed + attempt)
        params = [(W, 0.5 * rng.standard_normal(W.shape[1]))
                  for W, _ in init_params(layers, seed=int(rng.integers(2**31)))]
        X = rng.standard_normal((l, layers[0]))
        Y = _one_hot(rng.integers(layers[-1], size=l), layers[-1])
        if activation != "relu":
            return params, X, Y
        s_hidden = _hidden_preactivations(params, X, activation)
        if all(np.abs(s).min() > KINK_MARGIN for s in s_hidden):
            return params, X, Y
    raise RuntimeError("could not draw a kink-free ReLU problem")


def random_direction(layers, rng):
    return unflatten(rng.standard_normal(sum((a + 1) * b for a, b in zip(layers[:-1], layers[1:]))),
                     layers)


def layers_of(params):
    return [params[0][0].shape[0]] + [W.shape[1] for W, _ in params]


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def fd_gradient(fun, theta, h=1e-6):
    """Central differences of a scalar function of a flat vector."""
    g = np.empty_like(theta)
    for k in range(len(theta)):
        e = np.zeros_like(theta)
        e[k] = h
        g[k] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return g


def unit_params(layers, k, n):
    e = np.zeros(n)
    e[k] = 1.0
    return unflatten(e, layers)


def explicit_jacobians(params, X, activation):
    """J with J[i, :, k] = d z^{L,i} / d theta_k, built from _jv on unit vectors: (l, n_L, n)."""
    layers = layers_of(params)
    n = len(flatten(params))
    zs = ref.forward(params, X, activation)
    return np.stack([ref._jv(params, zs, unit_params(layers, k, n), activation) for k in range(n)],
                    axis=2)


def loss_hessians(zL, loss):
    """B^i = d^2 xi / d (z^L)^2 written out: 2I, or diag(p) - p p^T with p = softmax(z^L)."""
    l, k = zL.shape
    if loss == "squared":
        return np.broadcast_to(2.0 * np.eye(k), (l, k, k))
    e = np.exp(zL - zL.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])


def explicit_gauss_newton(params, X, C, activation, loss):
    """I/C + (1/l) sum_i J_i^T B_i J_i as a dense n x n matrix."""
    J = explicit_jacobians(params, X, activation)
    B = loss_hessians(ref.forward(params, X, activation)[-1], loss)
    n = J.shape[2]
    return np.eye(n) / C + np.einsum("iak,iab,ibm->km", J, B, J) / len(X)


def gauss_newton_matrix(params, X, C, activation, loss):
    """G assembled column by column from gauss_newton_product on unit vectors."""
    layers = layers_of(params)
    n = len(flatten(params))
    return np.column_stack([
        flatten(gauss_newton_product(params, X, unit_params(layers, k, n), C, activation, loss))
        for k in range(n)])


# --------------------------------------------------------------------------- gradient

@net_param
@act_param
@loss_param
def test_gradient_matches_central_differences(layers, activation, loss):
    params, X, Y = make_problem(layers, activation)
    theta = flatten(params)

    def f(t):
        return objective(unflatten(t, layers), X, Y, C, activation, loss)

    g = flatten(gradient(params, X, Y, C, activation, loss))
    g_fd = fd_gradient(f, theta)
    assert g.dtype == np.float64 and g.shape == theta.shape
    assert rel_err(g, g_fd) < 1e-6
    # the data term must be non-trivial, or the check would only test theta / C
    assert np.linalg.norm(g - theta / C) > 1e-2 * np.linalg.norm(g)


@act_param
@loss_param
def test_gradient_uses_instance_mean(activation, loss):
    """Duplicating every instance changes neither f nor grad f (the loss is a mean, not a sum)."""
    params, X, Y = make_problem((4, 6, 2), activation, seed=3)
    X2, Y2 = np.vstack([X, X]), np.vstack([Y, Y])
    assert objective(params, X2, Y2, C, activation, loss) == pytest.approx(
        objective(params, X, Y, C, activation, loss), rel=1e-13)
    assert rel_err(flatten(gradient(params, X2, Y2, C, activation, loss)),
                   flatten(gradient(params, X, Y, C, activation, loss))) < 1e-13


# --------------------------------------------------------------------------- Jacobian

@net_param
@act_param
def test_jv_matches_directional_differences(layers, activation):
    params, X, _ = make_problem(layers, activation, seed=1)
    rng = np.random.default_rng(11)
    V = random_direction(layers, rng)
    theta, v = flatten(params), flatten(V)
    h = 1e-6

    def zL(t):
        return predict(unflatten(t, layers), X, activation)

    jv_fd = (zL(theta + h * v) - zL(theta - h * v)) / (2 * h)
    jv = ref._jv(params, ref.forward(params, X, activation), V, activation)
    assert jv.shape == (N_INST, layers[-1])
    assert rel_err(jv, jv_fd) < 1e-6


@net_param
@act_param
def test_jtu_matches_differences_of_u_dot_zL(layers, activation):
    params, X, _ = make_problem(layers, activation, seed=2)
    U = np.random.default_rng(12).standard_normal((N_INST, layers[-1]))

    def phi(t):
        return float((U * predict(unflatten(t, layers), X, activation)).sum())

    jtu = flatten(ref.backward(params, ref.forward(params, X, activation), U, activation))
    assert rel_err(jtu, fd_gradient(phi, flatten(params))) < 1e-6


@net_param
@act_param
def test_adjoint_identity(layers, activation):
    params, X, _ = make_problem(layers, activation, seed=4)
    rng = np.random.default_rng(13)
    zs = ref.forward(params, X, activation)
    for _ in range(3):
        V = random_direction(layers, rng)
        U = rng.standard_normal((N_INST, layers[-1]))
        lhs = float((U * ref._jv(params, zs, V, activation)).sum())
        rhs = float(flatten(ref.backward(params, zs, U, activation)) @ flatten(V))
        assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs))


# --------------------------------------------------------------------------- Gauss-Newton

@net_param
@act_param
@loss_param
def test_gauss_newton_is_symmetric_positive_definite(layers, activation, loss):
    params, X, _ = make_problem(layers, activation, seed=5)
    G = gauss_newton_matrix(params, X, C, activation, loss)
    scale = np.abs(G).max()
    assert np.abs(G - G.T).max() <= 1e-12 * scale
    eig = np.linalg.eigvalsh((G + G.T) / 2)
    assert eig.min() >= 1.0 / C - 1e-12 * scale
    # the curvature term is really there: G is not just I / C
    assert eig.max() > 1.0 / C + 1e-3


@net_param
@act_param
@loss_param
@pytest.mark.parametrize("subsample", [False, True], ids=["all-rows", "subsample"])
def test_gauss_newton_product_matches_explicit_formula(layers, activation, loss, subsample):
    params, X, _ = make_problem(layers, activation, seed=6)
    if subsample:                       # G_S: only rows S and the 1/|S| normalisation
        X = X[[0, 2, 5]]
    G = explicit_gauss_newton(params, X, C, activation, loss)
    rng = np.random.default_rng(14)
    for _ in range(3):
        V = random_direction(layers, rng)
        gv = flatten(gauss_newton_product(params, X, V, C, activation, loss))
        assert rel_err(gv, G @ flatten(V)) < 1e-12
    # and the whole matrix, column by column
    assert rel_err(gauss_newton_matrix(params, X, C, activation, loss), G) < 1e-12


def test_explicit_jacobian_helper_matches_finite_differences():
    """Guard for the helper above: J_i from _jv on unit vectors agrees with differences of z^L."""
    layers = (4, 6, 2)
    params, X, _ = make_problem(layers, "tanh", seed=7)
    J = explicit_jacobians(params, X, "tanh")
    theta, h = flatten(params), 1e-6
    J_fd = np.empty_like(J)
    for k in range(len(theta)):
        e = np.zeros_like(theta)
        e[k] = h
        J_fd[:, :, k] = (predict(unflatten(theta + e, layers), X, "tanh")
                         - predict(unflatten(theta - e, layers), X, "tanh")) / (2 * h)
    assert rel_err(J, J_fd) < 1e-6


@loss_param
def test_gauss_newton_equals_hessian_for_one_layer_network(loss):
    """L = 1: z^L is linear in theta, so G is exactly the Hessian of f."""
    layers = (5, 3)
    params, X, Y = make_problem(layers, "relu", seed=8)
    theta = flatten(params)
    n = len(theta)

    def f(t):
        return objective(unflatten(t, layers), X, Y, C, "relu", loss)

    h = 1e-4
    H = np.empty((n, n))
    f0 = f(theta)
    for a in range(n):
        ea = np.zeros(n)
        ea[a] = h
        H[a, a] = (f(theta + ea) - 2 * f0 + f(theta - ea)) / h**2
        for b in range(a):
            eb = np.zeros(n)
            eb[b] = h
            H[a, b] = H[b, a] = (f(theta + ea + eb) - f(theta + ea - eb)
                                 - f(theta - ea + eb) + f(theta - ea - eb)) / (4 * h * h)
    G = gauss_newton_matrix(params, X, C, "relu", loss)
    assert rel_err(G, H) < 1e-5
    # the loss part of the Hessian is actually being compared, not only I / C
    assert np.linalg.norm(H - np.eye(n) / C) > 0.1 * np.linalg.norm(H)


# --------------------------------------------------------------------------- flatten / unflatten

@net_param
def test_flatten_unflatten_round_trip(layers):
    params, _, _ = make_problem(layers, "tanh", seed=9)
    theta = flatten(params)
    assert theta.shape == (sum((a + 1) * b for a, b in zip(layers[:-1], layers[1:])),)
    back = unflatten(theta, layers)
    assert len(back) == len(params)
    for (W, b), (W2, b2) in zip(params, back):
        assert W2.shape == W.shape and b2.shape == b.shape
        np.testing.assert_array_equal(W2, W)
        np.testing.assert_array_equal(b2, b)
    v = np.random.default_rng(15).standard_normal(len(theta))
    np.testing.assert_array_equal(flatten(unflatten(v, layers)), v)


def test_flatten_order_is_w1_rowmajor_b1_w2_b2():
    layers = (3, 2, 2)
    params, _, _ = make_problem(layers, "tanh", seed=10)
    (W1, b1), (W2, b2) = params
    expected = [W1[i, j] for i in range(3) for j in range(2)] + list(b1) \
        + [W2[i, j] for i in range(2) for j in range(2)] + list(b2)
    np.testing.assert_array_equal(flatten(params), expected)


@net_param
@pytest.mark.parametrize("delta", [-1, +1, -7])
def test_unflatten_wrong_length_raises(layers, delta):
    n = sum((a + 1) * b for a, b in zip(layers[:-1], layers[1:]))
    with pytest.raises(ValueError):
        unflatten(np.zeros(n + delta), layers)


# --------------------------------------------------------------------------- objective values

def test_squared_objective_by_hand_one_layer():
    # W = [[1, 2], [0, -1]], b = [1, 0]; x^1 = [1, 1], x^2 = [2, 0]; y^1 = e_1, y^2 = e_2
    # z^1 = [1+0+1, 2-1+0] = [2, 1]        residual [1, 1]   -> xi_1 = 2
    # z^2 = [2+0+1, 4+0+0] = [3, 4]        residual [3, 3]   -> xi_2 = 18
    # theta^T theta = 1+4+0+1 + 1+0 = 7;  C = 2  -> 7/4
    # f = 7/4 + (2 + 18)/2 = 11.75
    params = [(np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([1.0, 0.0]))]
    X = np.array([[1.0, 1.0], [2.0, 0.0]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert objective(params, X, Y, 2.0, "relu", "squared") == pytest.approx(11.75, rel=1e-15)


@act_param
@loss_param
def test_objective_against_plain_loops(activation, loss):
    """Two-layer net: f recomputed instance by instance with Python scalars and math."""
    params, X, Y = make_problem((4, 6, 2), activation, seed=16)
    sig = {"relu": lambda t: max(t, 0.0), "sigmoid": lambda t: 1 / (1 + math.exp(-t)),
           "tanh": math.tanh}[activation]
    total = 0.0
    for x, y in zip(X, Y):
        z = list(x)
        for m, (W, b) in enumerate(params, start=1):
            s = [sum(z[i] * W[i, j] for i in range(W.shape[0])) + b[j] for j in range(W.shape[1])]
            z = s if m == len(params) else [sig(t) for t in s]
        if loss == "squared":
            total += sum((zj - yj) ** 2 for zj, yj in zip(z, y))
        else:
            total += math.log(sum(math.exp(zj) for zj in z)) - sum(zj * yj for zj, yj in zip(z, y))
    reg = sum(float((W * W).sum() + (b * b).sum()) for W, b in params) / (2 * C)
    assert objective(params, X, Y, C, activation, loss) == pytest.approx(reg + total / len(X),
                                                                         rel=1e-12)


@pytest.mark.parametrize("logits", [(1000.0, 0.0, -1000.0), (-1000.0, -1001.0, -1003.0),
                                    (1000.0, 999.0, 1000.0)])
def test_cross_entropy_stable_for_large_logits(logits):
    """W = 0, b = logits: z^L = logits for every instance, xi = logsumexp(z) - z_y exactly."""
    logits = np.array(logits)
    params = [(np.zeros((5, 3)), logits.copy())]
    X = np.random.default_rng(17).standard_normal((3, 5))
    Y = np.eye(3)
    mx = logits.max()
    lse = mx + math.log(sum(math.exp(t - mx) for t in logits))
    expected = logits @ logits / (2 * C) + float(np.mean(lse - logits))
    # overflow, log(0) or inf - inf fail the test; underflow of exp(-2000) to 0 is the point
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        f = objective(params, X, Y, C, "relu", "cross_entropy")
        g = flatten(gradient(params, X, Y, C, "relu", "cross_entropy"))
        gv = flatten(gauss_newton_product(params, X, params, C, "relu", "cross_entropy"))
    assert f == pytest.approx(expected, rel=1e-13)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(gv))
    # bias gradient: b / C + mean_i (p - y^i) with p = softmax(logits)
    p = np.exp(logits - mx) / np.exp(logits - mx).sum()
    np.testing.assert_allclose(g[-3:], logits / C + p - Y.mean(axis=0), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- init / predict

@net_param
def test_init_params_shapes_and_determinism(layers):
    p1 = init_params(layers, seed=3)
    p2 = init_params(layers, seed=3)
    p3 = init_params(layers, seed=4)
    assert len(p1) == len(layers) - 1
    for (W, b), n_in, n_out in zip(p1, layers[:-1], layers[1:]):
        assert W.shape == (n_in, n_out) and b.shape == (n_out,)
        assert W.dtype == np.float64 and b.dtype == np.float64
        np.testing.assert_array_equal(b, 0.0)
    np.testing.assert_array_equal(flatten(p1), flatten(p2))
    assert not np.array_equal(flatten(p1), flatten(p3))


def test_init_params_glorot_scale():
    n_in, n_out = 300, 500
    (W, _), = init_params((n_in, n_out), seed=0)
    assert W.std() == pytest.approx(math.sqrt(2.0 / (n_in + n_out)), rel=0.02)
    assert abs(W.mean()) < 0.1 * W.std()


@net_param
@act_param
def test_predict_shape_and_values(layers, activation):
    params, X, _ = make_problem(layers, activation, seed=18)
    out = predict(params, X, activation)
    assert out.shape == (N_INST, layers[-1]) and out.dtype == np.float64
    # the output layer is linear: z^L = sigma(s^{L-1}) W^L + b^L, with s^{L-1} recomputed here
    s_last = _hidden_preactivations(params, X, activation)[-1]
    z_last = {"relu": np.maximum(s_last, 0.0), "sigmoid": 1 / (1 + np.exp(-s_last)),
              "tanh": np.tanh(s_last)}[activation]
    W, b = params[-1]
    np.testing.assert_allclose(out, z_last @ W + b, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- invalid options

def _calls(params, X, Y, activation, loss):
    return {
        "objective": lambda: objective(params, X, Y, C, activation, loss),
        "gradient": lambda: gradient(params, X, Y, C, activation, loss),
        "gauss_newton_product": lambda: gauss_newton_product(params, X, params, C, activation, loss),
        "predict": lambda: predict(params, X, activation),
    }


@pytest.mark.parametrize("fn", ["objective", "gradient", "gauss_newton_product", "predict"])
def test_unknown_activation_raises_naming_choices(fn):
    params, X, Y = make_problem((4, 6, 2), "tanh", seed=19)
    with pytest.raises(ValueError) as info:
        _calls(params, X, Y, "softplus", "squared")[fn]()
    msg = str(info.value)
    assert "softplus" in msg and all(a in msg for a in ACTIVATIONS)


@pytest.mark.parametrize("fn", ["objective", "gradient", "gauss_newton_product"])
def test_unknown_loss_raises_naming_choices(fn):
    params, X, Y = make_problem((4, 6, 2), "tanh", seed=19)
    with pytest.raises(ValueError) as info:
        _calls(params, X, Y, "tanh", "hinge")[fn]()
    msg = str(info.value)
    assert "hinge" in msg and all(s in msg for s in LOSSES)
