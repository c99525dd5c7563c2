"""The one-process model against the dense reference: mini-batched f and gradient, the
factored-Jacobian Gauss-Newton product, accuracies."""
import numpy as np
import pytest

from dnewton_core import reference as ref
from dnewton_core.data import Dataset
from dnewton_core.dense import DenseModel
from dnewton_core.model import ObjectiveConfig


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
