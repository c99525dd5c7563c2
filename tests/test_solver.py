"""The one-process solvers: CG, the Levenberg-Marquardt rule, line search, Newton and SGD,
and the steps after CG with the block-diagonal G (docs/method.md §6)."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest

from dnewton_core import reference as ref
from dnewton_core.cg import cg
from dnewton_core.data import load_dataset
from dnewton_core.dense import DenseModel
from dnewton_core.model import ConfigError, ObjectiveConfig
from dnewton_core.newton import (
    LAMBDA_MAX,
    NewtonConfig,
    check_options,
    direction,
    levenberg_marquardt,
    line_search,
    model_minimizer,
    newton,
    take_step,
)
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
    lam = 1.0                          # a run at its minimum: every step rejected
    for _ in range(3000):
        lam = levenberg_marquardt(lam, -math.inf, 1.5, 2 / 3)
    assert lam == LAMBDA_MAX and levenberg_marquardt(lam, 0.9, 1.5, 2 / 3) < lam


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
                                         ("eta", 0), ("iters", -1), ("lambda0", 0)])
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


def test_sgd_records_the_rate_of_each_epochs_last_step(digits):
    """lr_t = lr / (1 + decay t), t the steps taken before: an epoch of k steps ends with
    t = k e - 1 (docs/method.md §7)."""
    model = DenseModel(digits, (16,), ObjectiveConfig())
    config = SGDConfig(lr=0.1, decay=0.5, batch_size=512, epochs=2)
    steps = -(-model.n_train // config.batch_size)
    rates = [r["lr"] for r in sgd(model, config).records]
    assert rates == [0.1 / (1.0 + 0.5 * (steps * e - 1)) for e in (1, 2)]


def test_sgd_divergence_is_a_result_not_an_error(digits):
    model = DenseModel(digits, (16,), ObjectiveConfig())
    history = sgd(model, SGDConfig(lr=1e3, epochs=5))
    assert history.final["diverged"] and len(history.records) < 5


# -- the step after CG with the block-diagonal G (docs/method.md §6) --------------------------

def diag_point(loss="squared", splits=(2, 2, 2), seed=0):
    """A DenseModel with the block-diagonal G of ``splits``, a point, S, g, J, the full G."""
    rng = np.random.default_rng(seed)
    data = SimpleNamespace(X_train=rng.random((40, 6)), y_train=rng.integers(0, 3, 40),
                           X_test=rng.random((5, 6)), y_test=rng.integers(0, 3, 5),
                           n_features=6, n_classes=3)
    model = DenseModel(data, (5,), ObjectiveConfig(activation="tanh", loss=loss, C=5.0),
                       gn="diag", splits=splits)
    theta = model.theta + 0.3 * rng.standard_normal(model.theta.size)
    S = np.sort(rng.choice(40, 12, replace=False))
    g, J = model.gradient_and_jacobian(theta, S)
    params = ref.unflatten(theta, model.layers)
    G = np.column_stack([ref.flatten(ref.gauss_newton_product(
        params, data.X_train[S], ref.unflatten(e, model.layers), 5.0, "tanh", loss))
        for e in np.eye(theta.size)])
    return model, g, J, G, rng


def quadratic(g, G, lam):
    """The damped model q(s) = g's + s'(G + lambda I)s / 2."""
    return lambda s: g @ s + 0.5 * s @ (G @ s + lam * s)


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_rescaled_step_is_the_closed_form(loss):
    model, g, J, G, _ = diag_point(loss)
    lam = 0.3
    d = direction(model, J, g, lam, 0.1, 250).x
    gd, dd = g @ d, d @ d
    step = take_step(model, J, g, d, gd, dd, lam)
    alpha = -gd / (d @ G @ d + lam * dd)          # K-FAC §6.4: argmin q(alpha d), full G
    assert step.beta == pytest.approx((alpha,), rel=1e-12)
    np.testing.assert_allclose(step.s, alpha * d, rtol=1e-12)
    assert step.gs == pytest.approx(alpha * gd, rel=1e-12)
    assert step.sGs == pytest.approx(alpha ** 2 * d @ G @ d, rel=1e-12)   # exact, not CG's
    # the block-diagonal direction is not the full one's: alpha is not 1
    assert abs(alpha - 1) > 1e-3


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_subspace_step_minimizes_the_model_over_both_directions(loss):
    model, g, J, G, rng = diag_point(loss)
    lam = 0.3
    d = direction(model, J, g, lam, 0.1, 250).x
    prev = 0.1 * rng.standard_normal(d.size)
    step = take_step(model, J, g, d, g @ d, d @ d, lam, prev, "subspace")
    q = quadratic(g, G, lam)
    np.testing.assert_allclose(step.s, step.beta[0] * d + step.beta[1] * prev, rtol=1e-12)
    for v in (d, prev):                  # the best multiple of either direction alone
        best = -(g @ v) / (v @ G @ v + lam * v @ v)
        assert q(step.s) <= q(best * v) + 1e-14 * abs(q(best * v))
    assert q(step.s) < q(-(g @ d) / (d @ G @ d + lam * d @ d) * d)    # strictly, here
    V = np.column_stack([d, prev])      # stationary on the plane: V'(g + (G + lambda I) s) = 0
    np.testing.assert_allclose(V.T @ (g + G @ step.s + lam * step.s), 0,
                               atol=1e-10 * np.abs(V.T @ g).max())
    assert step.sGs == pytest.approx(step.s @ G @ step.s, rel=1e-10)
    # a previous step parallel to d adds nothing: the rescaled step
    same = take_step(model, J, g, d, g @ d, d @ d, lam, -2.0 * d, "subspace")
    assert same.beta[1] == 0.0
    assert same.beta[0] == pytest.approx(take_step(model, J, g, d, g @ d, d @ d, lam).beta[0])


def test_model_minimizer_small_cases():
    M, c = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([1.0, -1.0])
    np.testing.assert_allclose(model_minimizer(M, c), np.linalg.solve(M, -c))
    assert model_minimizer(np.zeros((1, 1)), np.zeros(1))[0] == 0.0       # d = 0
    np.testing.assert_allclose(model_minimizer(np.ones((2, 2)), np.array([2.0, 2.0])), [-2, 0])


def test_global_cg_rule_meets_the_whole_gradient_target():
    """Each partition stops at its share xi ||g|| sqrt(n_p / n): summed, ||r|| <= xi ||g||;
    the "partition" rule measures each against its own ||g_p|| instead."""
    model, g, J, _, _ = diag_point()
    xi, lam = 0.1, 0.3
    res = direction(model, J, g, lam, xi, 250, np.linalg.norm(g))
    assert res.status == "converged" and len(res.block_iterations) == 8
    for index, share in model.cg_blocks:
        assert np.linalg.norm(res.residual[index]) <= xi * np.linalg.norm(g) * math.sqrt(share)
    assert np.linalg.norm(res.residual) <= xi * np.linalg.norm(g)
    own = direction(model, J, g, lam, xi, 250)
    for index, _ in model.cg_blocks:
        assert np.linalg.norm(own.residual[index]) <= xi * np.linalg.norm(g[index]) * 1.000001
    assert res.block_iterations != own.block_iterations       # the rules differ here
    assert sum(share for _, share in model.cg_blocks) == pytest.approx(1.0)


def test_cg_scale_sets_the_target():
    A = spd(30, 1e3, 1)
    b = np.random.default_rng(2).standard_normal(30)
    res = cg(lambda v: A @ v, b, np.dot, 0.1, 100, scale=0.01)
    assert res.status == "converged" and np.linalg.norm(res.residual) <= 0.1 * 0.01
    assert cg(lambda v: A @ v, b, np.dot, 0.1, 100).iterations < res.iterations
    with pytest.raises(ValueError, match="scale"):
        cg(lambda v: v, b, np.dot, 0.1, 5, scale=-1.0)


def test_diag_options_refused_where_meaningless(digits):
    model = DenseModel(digits, (8,), ObjectiveConfig())
    for options, flag in ((dict(diag_step="rescale"), "--diag-step rescale needs --gn diag"),
                          (dict(cg_rule="global"), "--cg-rule global needs --gn diag")):
        with pytest.raises(ConfigError, match=flag):
            newton(model, NewtonConfig(iters=1, **options))
        assert NewtonConfig(**options).for_gn("full") == NewtonConfig()
        assert NewtonConfig(**options).for_gn("diag") == NewtonConfig(**options)
    check_options(NewtonConfig(diag_step="subspace"), "full")      # meaningful: allowed
    for field in ("diag_step", "cg_rule"):
        with pytest.raises(ValueError, match=f"unknown {field} 'bogus'"):
            NewtonConfig(**{field: "bogus"})


def test_one_block_diag_run_is_the_full_run():
    """A grid of one partition: its block-diagonal G is G, and its one CG (through the
    positions of the block) is the full model's; with or without the subspace step."""
    model, _, _, _, _ = diag_point()
    one = DenseModel(model.data, (), model.config, gn="diag", splits=(1, 1))
    whole = DenseModel(model.data, (), model.config)
    assert len(one.cg_blocks) == 1 and not isinstance(one.cg_blocks[0][0], slice)
    for options in (dict(), dict(diag_step="subspace")):
        a = newton(one, NewtonConfig(iters=4, subsample=0.3, **options))
        b = newton(whole, NewtonConfig(iters=4, subsample=0.3, **options))
        np.testing.assert_allclose([r["objective"] for r in a.records],
                                   [r["objective"] for r in b.records], rtol=1e-12)
        assert [r["cg_iters"] for r in a.records] == [r["cg_iters"] for r in b.records]
        for ra, rb in zip(a.records, b.records):
            assert ra.get("beta", []) == pytest.approx(rb.get("beta", []), rel=1e-10)


def test_subspace_run_resumes_bit_for_bit():
    """The previous step is part of the state (vector "step"): a resumed run is the same."""
    model, _, _, _, _ = diag_point()
    config = NewtonConfig(iters=5, subsample=0.3, diag_step="subspace")
    states = []
    whole = newton(model, config, on_state=lambda s: states.append(copy.deepcopy(s)))
    assert "step" in states[1].vectors and all(len(r["beta"]) == 2 for r in whole.records[1:])
    rest = newton(model, config, resume=states[1])
    assert [r["objective"] for r in rest.records] == [r["objective"] for r in whole.records]
    np.testing.assert_array_equal(rest.theta, whole.theta)
