"""The one-process solvers: CG, the Levenberg-Marquardt rule, line search, Newton and SGD."""
import math

import numpy as np
import pytest

from dnewton_core import reference as ref
from dnewton_core.cg import cg
from dnewton_core.data import load_dataset
from dnewton_core.dense import DenseModel
from dnewton_core.model import ObjectiveConfig
from dnewton_core.newton import NewtonConfig, levenberg_marquardt, line_search, newton
from dnewton_core.sgd import SGDConfig, sgd


def spd(n, cond, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1, cond, n)) @ Q.T


@pytest.mark.parametrize("n,cond,seed", [(5, 10, 0), (30, 1e3, 1), (60, 1e4, 2)])
def test_cg_solves_spd_systems(n, cond, seed):
    A = spd(n, cond, seed)
    b = np.random.default_rng(seed + 10).standard_normal(n)
    res = cg(lambda v: A @ v, b, np.dot, 1e-12, 10 * n)
    assert res.status == "converged"
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.residual, b - A @ res.x, atol=1e-9)
    assert np.linalg.norm(res.residual) <= 1e-12 * np.linalg.norm(b) * 1.0001


def test_cg_returns_partial_solution_at_max_iter():
    A = spd(40, 1e3, 3)
    b = np.random.default_rng(5).standard_normal(40)
    res = cg(lambda v: A @ v, b, np.dot, 1e-14, 5)
    assert res.status == "max_iter" and res.iterations == 5
    # the partial solution is CG's 5th iterate: the minimizer of the A-norm of the error
    # over the Krylov space span{b, Ab, ..., A^4 b}
    K, _ = np.linalg.qr(np.column_stack([np.linalg.matrix_power(A, k) @ b for k in range(5)]))
    x5 = K @ np.linalg.solve(K.T @ A @ K, K.T @ b)
    np.testing.assert_allclose(res.x, x5, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.residual, b - A @ res.x, atol=1e-8)


def test_cg_stop_callback_ends_early_with_status():
    A = spd(20, 100, 4)
    calls = []
    res = cg(lambda v: A @ v, np.ones(20), np.dot, 1e-12, 100,
             stop=lambda done: calls.append(done) or len(calls) > 3)
    assert res.status == "stopped" and res.iterations == 3


def test_cg_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_iter"):
        cg(lambda v: v, np.ones(3), np.dot, 0.1, -1)


def tiny_problem(loss="squared", l=40, seed=0):
    rng = np.random.default_rng(seed)
    layers = (6, 5, 3)
    X = rng.random((l, layers[0]))
    Y = np.eye(3)[rng.integers(0, 3, l)]
    params = ref.init_params(layers, seed)
    return layers, X, Y, params


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_cg_on_gauss_newton_system_and_dGd_identity(loss):
    layers, X, Y, params = tiny_problem(loss)
    C, lam = 5.0, 0.3
    g = ref.flatten(ref.gradient(params, X, Y, C, "tanh", loss))
    n = len(g)
    G = np.column_stack([ref.flatten(ref.gauss_newton_product(
        params, X, ref.unflatten(e, layers), C, "tanh", loss)) for e in np.eye(n)])
    matvec = lambda v: ref.flatten(ref.gauss_newton_product(
        params, X, ref.unflatten(v, layers), C, "tanh", loss)) + lam * v
    res = cg(matvec, -g, np.dot, 1e-3, 7)          # deliberately inexact
    d, r = res.x, res.residual
    # docs/method.md §2 step 4: d'Gd from CG's residual equals the explicit product
    np.testing.assert_allclose(-d @ g - d @ r - lam * d @ d, d @ G @ d, rtol=1e-10)
    exact = cg(matvec, -g, np.dot, 1e-13, 10 * n).x
    np.testing.assert_allclose(exact, np.linalg.solve(G + lam * np.eye(n), -g), rtol=1e-7)


def test_levenberg_marquardt_rule():
    assert levenberg_marquardt(2.0, 0.1, 1.5, 2 / 3) == 3.0          # poor model: boost
    assert levenberg_marquardt(2.0, -math.inf, 1.5, 2 / 3) == 3.0
    assert levenberg_marquardt(2.0, 0.5, 1.5, 2 / 3) == 2.0          # keep
    assert levenberg_marquardt(2.0, 0.25, 1.5, 2 / 3) == 2.0         # boundary: keep
    assert levenberg_marquardt(3.0, 0.75, 1.5, 2 / 3) == pytest.approx(2.0)   # good: drop


def test_line_search_halves_until_armijo():
    f = lambda x: float((x - 1.0) @ (x - 1.0))
    theta = np.zeros(1)
    d = np.array([8.0])                      # overshoots: f(8) = 49, f(4) = 9, f(2) = 1
    gd = float(2 * (theta - 1.0) @ d)
    alpha, f_new = line_search(f, theta, d, f(theta), gd, 1e-4, 20)
    assert alpha == 0.125 and f_new == f(theta + alpha * d)
    alpha, f_new = line_search(f, theta, -d, f(theta), -gd, 1e-4, 3)   # ascent: rejected
    assert alpha == 0.0 and f_new == f(theta)


@pytest.mark.parametrize("field,value", [("subsample", 0), ("subsample", 1.5), ("xi", 1),
                                         ("cg_max", 0), ("boost", 1), ("drop", 1.2),
                                         ("eta", 0), ("iters", -1)])
def test_newton_config_validated(field, value):
    with pytest.raises(ValueError, match=field):
        NewtonConfig(**{field: value})


@pytest.mark.parametrize("field,value", [("lr", 0), ("momentum", 1), ("batch_size", 0),
                                         ("decay", -1), ("epochs", -1)])
def test_sgd_config_validated(field, value):
    with pytest.raises(ValueError, match=field):
        SGDConfig(**{field: value})


def test_subsample_size():
    assert NewtonConfig(subsample=0.05).subsample_size(1438) == 72
    assert NewtonConfig(subsample=1.0).subsample_size(10) == 10
    assert NewtonConfig(subsample=0.001).subsample_size(10) == 1


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_newton_on_digits_reaches_95_percent_within_30_iterations(digits):
    model = DenseModel(digits, (64, 64), ObjectiveConfig(C=0.1 * len(digits.y_train)))
    history = newton(model, NewtonConfig(iters=30, seed=0))
    assert max(r["test_accuracy"] for r in history.records) >= 0.95
    assert history.final["test_accuracy"] >= 0.95
    f = [r["objective"] for r in history.records]
    assert all(b <= a for a, b in zip(f, f[1:]))        # Armijo: f never increases
    assert all(r["alpha"] > 0 for r in history.records)


def test_newton_is_deterministic_given_the_seed(digits):
    model = DenseModel(digits, (16,), ObjectiveConfig(C=0.1 * len(digits.y_train)))
    a = newton(model, NewtonConfig(iters=3, seed=1))
    b = newton(model, NewtonConfig(iters=3, seed=1))
    c = newton(model, NewtonConfig(iters=3, seed=2))
    assert [r["objective"] for r in a.records] == [r["objective"] for r in b.records]
    assert [r["objective"] for r in a.records] != [r["objective"] for r in c.records]


def test_sgd_on_digits_reaches_90_percent(digits):
    model = DenseModel(digits, (64, 64), ObjectiveConfig(C=0.1 * len(digits.y_train)))
    history = sgd(model, SGDConfig(lr=0.01, epochs=20, seed=0))
    assert history.final["test_accuracy"] >= 0.90
    assert len(history.records) == 20


def test_sgd_divergence_is_a_result_not_an_error(digits):
    model = DenseModel(digits, (16,), ObjectiveConfig())
    history = sgd(model, SGDConfig(lr=1e3, epochs=5))
    assert history.final["diverged"] and len(history.records) < 5
