"""The one-process model against the dense reference: mini-batched f and gradient, the
factored-Jacobian Gauss-Newton product (full, and block-diagonal on a grid), accuracies."""
import numpy as np
import pytest

from dnewton_core import reference as ref
from dnewton_core.data import Dataset
from dnewton_core.dense import DenseModel
from dnewton_core.model import ConfigError, ObjectiveConfig
from dnewton_core.partition import Grid


def data(l=37, n=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(l) % k
    return Dataset("random", rng.standard_normal((l, n)), y, rng.standard_normal((9, n)),
                   np.arange(9) % k, tuple(range(k)), "test")


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("hidden", [(), (5,), (5, 3)])
def test_dense_model_is_the_reference(loss, activation, hidden):
    d = data()
    model = DenseModel(d, hidden, ObjectiveConfig(activation=activation, loss=loss, C=3.0,
                                                  batch_size=8))     # several batches
    rng = np.random.default_rng(1)
    theta = model.theta + 0.3 * rng.standard_normal(model.theta.size)
    params, Y = ref.unflatten(theta, model.layers), np.eye(4)[d.y_train]
    f = ref.objective(params, d.X_train, Y, 3.0, activation, loss)
    assert model.objective(theta) == pytest.approx(f, rel=1e-13)
    g = ref.flatten(ref.gradient(params, d.X_train, Y, 3.0, activation, loss))
    np.testing.assert_allclose(model.gradient(theta), g, rtol=0, atol=1e-13 * np.abs(g).max())
    S = np.array([2, 5, 11, 30])
    gS, J = model.gradient_and_jacobian(theta, S)
    np.testing.assert_allclose(gS, g, rtol=0, atol=1e-13 * np.abs(g).max())
    v = rng.standard_normal(theta.size)
    Gv = ref.flatten(ref.gauss_newton_product(params, d.X_train[S], ref.unflatten(v, model.layers),
                                              3.0, activation, loss))
    np.testing.assert_allclose(model.gauss_newton(J, v), Gv, rtol=0, atol=1e-12 * np.abs(Gv).max())
    predicted = ref.predict(params, d.X_test, activation).argmax(axis=1)
    assert model.accuracy(theta)[1] == pytest.approx(np.mean(predicted == d.y_test))


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
@pytest.mark.parametrize("hidden,splits", [((), (3, 2)), ((5,), (2, 2, 1)), ((5, 3), (1, 2, 3, 4))])
def test_diag_dense_model_is_the_block_diagonal_reference(loss, hidden, splits):
    """gn="diag": each partition's block of G_S (docs/method.md §6), computed block by block
    from the factors; curvature_gram is the full G's V^T G_S V less V^T V / C."""
    d = data()
    obj = ObjectiveConfig(activation="tanh", loss=loss, C=3.0, batch_size=8)
    model = DenseModel(d, hidden, obj, gn="diag", splits=splits)
    grid = Grid(model.layers, splits)
    rng = np.random.default_rng(2)
    theta = model.theta + 0.3 * rng.standard_normal(model.theta.size)
    S = np.array([2, 5, 11, 30, 31])
    _, J = model.gradient_and_jacobian(theta, S)
    v, w = rng.standard_normal((2, theta.size))
    blocks = [grid.param_slices(r) for r in range(grid.size)]
    want = ref.block_diagonal_gauss_newton_product(theta, d.X_train[S], v, 3.0, model.layers,
                                                   blocks, "tanh", loss)
    got = model.gauss_newton(J, v)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    full = DenseModel(d, hidden, obj).gauss_newton(J, v)
    assert np.abs(full - want).max() > 1e-6 * np.abs(want).max()   # not the full product
    masked = np.where(np.isin(np.arange(v.size), blocks[0]), v, 0.0)
    np.testing.assert_array_equal(model.gauss_newton(J, masked)[blocks[0]], got[blocks[0]])
    assert [share for _, share in model.cg_blocks] == \
        [len(b) / theta.size for b in blocks]
    G = lambda x: ref.flatten(ref.gauss_newton_product(
        ref.unflatten(theta, model.layers), d.X_train[S], ref.unflatten(x, model.layers), 3.0,
        "tanh", loss)) - x / 3.0
    gram = np.array([[a @ G(b) for b in (v, w)] for a in (v, w)])
    np.testing.assert_allclose(model.curvature_gram(J, [v, w]), gram, rtol=1e-12,
                               atol=1e-12 * np.abs(gram).max())
    np.testing.assert_array_equal(model.dots([(v, w), (w, w)]), [v @ w, w @ w])


def test_diag_dense_model_needs_a_grid():
    with pytest.raises(ConfigError, match="needs the grid's --splits"):
        DenseModel(data(), (5,), gn="diag")
    with pytest.raises(ConfigError, match="unknown Gauss-Newton mode 'half'"):
        DenseModel(data(), (5,), gn="half", splits=(1, 1, 1))
    with pytest.raises(ConfigError, match="splits has 2 entries"):
        DenseModel(data(), (5,), gn="diag", splits=(1, 1))
