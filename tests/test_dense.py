"""The one-process model against the dense reference: mini-batched f and gradient, the
factored-Jacobian Gauss-Newton product (full, and block-diagonal on a grid), accuracies;
in float32, against the float64 model."""
from dataclasses import replace

import numpy as np
import pytest

from dnewton_core import factors
from dnewton_core import reference as ref
from dnewton_core.data import Dataset
from dnewton_core.dense import DenseModel
from dnewton_core.factors import LastHiddenD, OutputD, columns, times, transposed_times
from dnewton_core.model import PRODUCT_RTOL, ConfigError, ObjectiveConfig, OneHot
from dnewton_core.newton import NewtonConfig, newton
from dnewton_core.partition import Grid
from dnewton_core.sgd import SGDConfig, sgd


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
def test_the_kept_forward_pass_serves_the_gradient_and_accuracy_at_its_theta(loss, monkeypatch):
    """objective(theta, keep=True) (newton's line search), then gradient_and_jacobian and
    accuracy with kept=True: no forward pass over the training set, and a fresh model's
    results; kept=True anywhere else (a pass without keep in between changes nothing, a
    kept pass elsewhere does, and the kept theta is a copy) is a ValueError."""
    d, obj = data(), ObjectiveConfig(activation="tanh", loss=loss, C=3.0, batch_size=8)
    fresh, model = DenseModel(d, (5, 3), obj), DenseModel(d, (5, 3), obj)
    theta = model.theta + 0.3 * np.random.default_rng(3).standard_normal(model.theta.size)
    S, v = np.array([2, 5, 11, 30]), np.random.default_rng(4).standard_normal(theta.size)
    rows_forwarded, real_forward = [], ref.forward
    monkeypatch.setattr(ref, "forward", lambda params, X, act, out=None: (
        rows_forwarded.append(len(X)), real_forward(params, X, act, out))[1])

    with pytest.raises(ValueError, match="not the point"):
        model.accuracy(theta, kept=True)                       # nothing kept yet
    assert model.objective(theta, keep=True) == fresh.objective(theta)
    other = theta.copy()
    other[-1] += 1e-3
    model.objective(other)                                     # not kept: theta's pass stays
    rows_forwarded.clear()
    g, J = model.gradient_and_jacobian(theta, S, kept=True)
    assert model.accuracy(theta, kept=True)[0] == fresh.accuracy(theta)[0]
    assert sum(rows_forwarded) == d.n_train + d.n_test + d.n_test   # fresh's, and both tests
    g0, J0 = fresh.gradient_and_jacobian(theta, S)
    np.testing.assert_allclose(g, g0, rtol=0, atol=1e-14 * np.abs(g0).max())
    np.testing.assert_allclose(model.gauss_newton(J, v), fresh.gauss_newton(J0, v), rtol=1e-13)
    for at in (other, theta + 0.0 * v[0] + 1e-9):
        with pytest.raises(ValueError, match="not the point"):
            model.gradient_and_jacobian(at, S, kept=True)
    model.objective(other, keep=True)                          # a kept pass elsewhere
    with pytest.raises(ValueError, match="not the point"):
        model.gradient_and_jacobian(theta, S, kept=True)
    other[0] += 1.0                                            # the kept theta is a copy
    with pytest.raises(ValueError, match="not the point"):
        model.accuracy(other, kept=True)
    # --no-keep-forward: nothing is kept, and kept=True passes forward
    off = DenseModel(d, (5, 3), replace(obj, keep_forward=False))
    off.objective(theta, keep=True)
    rows_forwarded.clear()
    np.testing.assert_allclose(off.gradient_and_jacobian(theta, S, kept=True)[0], g0, rtol=1e-13)
    assert off.accuracy(theta, kept=True) == fresh.accuracy(theta)
    assert sum(rows_forwarded) == 3 * d.n_train + 2 * d.n_test   # off passes forward twice


def test_the_kept_gradient_reads_the_kept_arrays_without_copies(monkeypatch):
    """From the kept pass, every backward pass gets views of the kept z^m (consecutive rows,
    S among them; docs/method.md §4), and the gradient is the one without the kept pass."""
    d = data()
    obj = ObjectiveConfig(activation="relu", C=3.0, batch_size=8)
    model, fresh = DenseModel(d, (5, 3), obj), DenseModel(d, (5, 3), obj)
    theta, S = model.theta, np.array([2, 5, 11, 30])
    model.objective(theta, keep=True)
    kept, seen, real_backward = model._kept.at(theta), [], ref.backward
    monkeypatch.setattr(ref, "backward", lambda params, zs, U, act: (
        seen.append([np.shares_memory(zs[m], kept[m]) for m in (1, 2, 3)]),
        real_backward(params, zs, U, act))[1])
    g, _ = model.gradient_and_jacobian(theta, S, kept=True)
    assert len(seen) == 5 and all(all(s) for s in seen)          # ceil(37 / 8) batches
    g0, _ = fresh.gradient_and_jacobian(theta, S)
    np.testing.assert_allclose(g, g0, rtol=0, atol=1e-14 * np.abs(g0).max())


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


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_last_hidden_d_is_the_stored_d_in_two_factors(activation):
    """D^{L-1}[s] = W^{L T} diag(sigma') kept as W^{L T} and sigma' (factors.LastHiddenD):
    its products, rows and columns equal those of the (|S|, n_L, k) array it stands for."""
    rng = np.random.default_rng(3)
    s, n_L, k = 13, 4, 9
    WT = rng.standard_normal((n_L, k))
    z = ref.activate(rng.standard_normal((s, k)), activation)
    slope = ref.activation_derivative(z, activation)
    D = LastHiddenD(WT, slope)
    stored = WT[None, :, :] * slope[:, None, :]                       # (|S|, n_L, k)
    assert D.shape == stored.shape and D.dtype == stored.dtype
    assert D.nbytes == WT.nbytes + slope.nbytes < stored.nbytes
    u, w = rng.standard_normal((s, k)), rng.standard_normal((s, n_L))
    for d in (D, stored):                  # each form against the sums written out
        np.testing.assert_allclose(times(d, u), (stored * u[:, None, :]).sum(axis=2), rtol=1e-13)
        np.testing.assert_allclose(transposed_times(d, w), (stored * w[:, :, None]).sum(axis=1),
                                   rtol=1e-13)
    rows, cols = np.array([0, 5, 12]), slice(2, 7)
    assert np.array_equal(D.rows(rows), stored[rows]) and D.rows(rows).flags.c_contiguous
    assert np.array_equal(D.columns(cols).rows(slice(None)), stored[:, :, cols])


def test_output_d_is_the_selection_of_its_outputs():
    """D^L on the outputs T = 2..4 of 6 (factors.OutputD): its products and columns are
    those of the stored 0/1 array, and it keeps nothing."""
    rng = np.random.default_rng(4)
    s, n_L, T = 5, 6, range(2, 5)
    D = OutputD(s, n_L, T, np.float64)
    stored = np.zeros((s, n_L, len(T)))
    stored[:, np.arange(T.start, T.stop), np.arange(len(T))] = 1.0
    assert D.shape == stored.shape and D.nbytes == 0
    assert np.array_equal(D.rows(slice(1, 4)), stored[1:4]) and len(D.rows(np.array([0, 4]))) == 2
    u, w = rng.standard_normal((s, len(T))), rng.standard_normal((s, n_L))
    assert np.array_equal(times(D, u), times(stored, u))
    assert np.array_equal(transposed_times(D, w), transposed_times(stored, w))
    with pytest.raises(ValueError, match="shape"):       # no silent broadcast of a column
        times(D, u[:, :1])
    part = columns(D, slice(1, 3))                       # outputs 3 and 4
    assert np.array_equal(times(part, u[:, 1:]), times(stored[:, :, 1:], u[:, 1:]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_through_curvature_reads_stored_d_in_chunks_with_the_same_bits(monkeypatch, loss, dtype):
    """factors.through_curvature (CG's product where no message comes between J v and J^T w)
    equals the two passes over the whole of S bit for bit, whatever the chunk: one instance,
    chunks that leave a remainder, all of S; with stored, factored and selection D's."""
    rng = np.random.default_rng(5)
    s, n_L = 23, 4
    p = ref.softmax(rng.standard_normal((s, n_L))).astype(dtype) if loss != "squared" else None
    slope = rng.random((s, 6)) > 0.3
    Ds = [rng.standard_normal((s, n_L, 7)).astype(dtype), rng.standard_normal((s, n_L, 5)).astype(dtype),
          LastHiddenD(rng.standard_normal((n_L, 6)).astype(dtype), slope), OutputD(s, n_L, range(n_L), dtype)]
    us = [rng.standard_normal((s, D.shape[2])).astype(dtype) for D in Ds]
    Jv = times(Ds[0], us[0]) + times(Ds[1], us[1]) + times(Ds[2], us[2]) + times(Ds[3], us[3])
    w = ref.curvature_product(Jv, p, loss)
    w /= s
    two_passes = [transposed_times(D, w) for D in Ds]
    row = Ds[0][0].nbytes + Ds[1][0].nbytes
    for size in (1, 2, 5, s, 2 * s):                     # instances a chunk
        monkeypatch.setattr(factors, "CACHE_BYTES", size * row)
        got = factors.through_curvature(Ds, us, p, loss, s)
        assert all(g.dtype == dtype and np.array_equal(g, t) for g, t in zip(got, two_passes))
    alone = factors.through_curvature(Ds[2:], us[2:], p, loss, s)   # nothing stored: at once
    w2 = ref.curvature_product(times(Ds[2], us[2]) + times(Ds[3], us[3]), p, loss) / s
    assert all(np.array_equal(g, transposed_times(D, w2)) for g, D in zip(alone, Ds[2:]))


@pytest.mark.parametrize("width", [1, 7, 8, 9, 300])
def test_kept_masks_take_a_bit_an_entry_and_read_back_bit_for_bit(width):
    from dnewton_core.kept import Bits, Kept
    mask = np.random.default_rng(width).random((50, width)) > 0.5
    kept = Kept()
    assert kept.start(50, {"slope": (width, bool), "z": (width, np.float64)})
    bits = kept.arrays["slope"]
    assert isinstance(bits, Bits) and bits.nbytes == 50 * -(-width // 8)
    bits[0:30], bits[30:50] = mask[:30], mask[30:]                 # written batch by batch
    rows = np.array([0, 3, 29, 30, 49])
    for got, want in ((bits[0:50], mask), (bits[rows], mask[rows])):
        assert got.dtype == bool and np.array_equal(got, want)
    assert (bits.shape, bits.dtype) == ((50, width), np.dtype(bool))
    assert kept.start(50, {"slope": (width, bool), "z": (width, np.float64)}) and \
        kept.arrays["slope"] is bits                                # kept for the next pass


def test_diag_dense_model_needs_a_grid():
    with pytest.raises(ConfigError, match="needs the grid's --splits"):
        DenseModel(data(), (5,), gn="diag")
    with pytest.raises(ConfigError, match="unknown Gauss-Newton mode 'half'"):
        DenseModel(data(), (5,), gn="half", splits=(1, 1, 1))
    with pytest.raises(ConfigError, match="splits has 2 entries"):
        DenseModel(data(), (5,), gn="diag", splits=(1, 1))


def _close(a, b, rtol):
    """max |a - b| <= rtol max |b| (normwise, as the distributed tests measure)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.abs(a - b).max() <= rtol * np.abs(b).max()


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
@pytest.mark.parametrize("gn", ["full", "diag"])
def test_float32_model_is_the_float64_one_rounded(loss, gn):
    """--dtype float32: the float64 network rounded; f, grad f, G_S v and V^T G_S V within
    PRODUCT_RTOL["float32"] of the float64 model at the same point; every array it holds,
    returns or factors J into is float32 (f and the inner products are Python floats)."""
    d, tol = data(), PRODUCT_RTOL["float32"]
    obj = ObjectiveConfig(activation="tanh", loss=loss, C=3.0, batch_size=8)
    kw = dict(gn=gn, splits=(2, 2, 1) if gn == "diag" else None)
    m64 = DenseModel(d, (5,), obj, **kw)
    m32 = DenseModel(d, (5,), replace(obj, dtype="float32"), **kw)
    assert np.array_equal(m32.theta, m64.theta.astype(np.float32))
    rng = np.random.default_rng(3)
    theta = (m64.theta + 0.3 * rng.standard_normal(m64.theta.size)).astype(np.float32)
    v, w = rng.standard_normal((2, theta.size)).astype(np.float32)
    f32, f64 = m32.objective(theta), m64.objective(theta.astype(np.float64))
    assert type(f32) is float and abs(f32 - f64) <= tol * abs(f64)
    S, batch = np.array([2, 5, 11, 30]), np.array([1, 4, 9, 20, 33])
    (g32, J32), (g64, J64) = (m.gradient_and_jacobian(theta.astype(m.theta.dtype), S)
                              for m in (m32, m64))
    out = {"gradient": (m32.gradient(theta), g64), "gradient_S": (g32, g64),
           "G v": (m32.gauss_newton(J32, v), m64.gauss_newton(J64, v.astype(np.float64))),
           "stochastic": (m32.stochastic_gradient(theta, batch),
                          m64.stochastic_gradient(theta.astype(np.float64), batch)),
           "gram": (m32.curvature_gram(J32, [v, w]),
                    m64.curvature_gram(J64, [v.astype(np.float64), w.astype(np.float64)]))}
    for name, (got, want) in out.items():
        assert _close(got, want, tol), name
    zs, Ds, P = J32.factors
    kept = [D for D in Ds if isinstance(D, LastHiddenD)]             # D^{L-1}: its two factors
    assert kept and all(D.slope.dtype in (np.float32, bool) for D in kept)   # bool: relu's mask
    arrays = [m32.theta, m32.X_train, m32.X_test, m32.Y, *(got for got, _ in out.values()),
              *zs, *(D for D in Ds if isinstance(D, np.ndarray)), *(D.WT for D in kept),
              *([] if P is None else [P])]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}
    assert type(m32.dot(v, w)) is float and abs(m32.dot(v, w) - float(
        v.astype(np.float64) @ w)) <= tol * float(np.abs(v) @ np.abs(w))


def _watched(model, seen):
    """``model`` with the float dtypes of every array its solvers pass it and get back
    (but the inner products, float64 scalars by design) added to ``seen``."""
    for name in ("objective", "gradient_and_jacobian", "gauss_newton", "stochastic_gradient",
                 "curvature_gram"):
        def spy(*args, _method=getattr(model, name), **options):
            out = _method(*args, **options)
            values = [*args, *(out if isinstance(out, tuple) else (out,))]
            values = [y for x in values for y in (x if isinstance(x, list) else [x])]
            seen.update(y.dtype for x in values for y in (x if isinstance(x, tuple) else (x,))
                        if isinstance(y, np.ndarray) and y.dtype.kind == "f")
            return out
        setattr(model, name, spy)
    return model


@pytest.mark.parametrize("step", ["none", "subspace"])
def test_float32_training_stays_float32_and_follows_float64(step):
    """Newton (full G, and the block-diagonal G with the subspace step) and SGD in float32:
    every vector the solvers hand the model, and every one it returns, is float32; f after
    a few iterations is float64's to 1e-4 (the trajectories part only by rounding)."""
    d = data(l=120, n=8)
    obj = ObjectiveConfig(loss="cross_entropy", C=10.0, batch_size=50)
    kw = dict(gn="diag", splits=(2, 1, 2)) if step == "subspace" else {}
    cfg = NewtonConfig(iters=4, subsample=0.3, diag_step=step)
    runs, seen = {}, {"float32": set(), "float64": set()}
    for dtype in seen:
        model = lambda dtype=dtype, **more: _watched(
            DenseModel(d, (6,), replace(obj, dtype=dtype), **more), seen[dtype])
        runs[dtype] = newton(model(**kw), cfg), sgd(model(), SGDConfig(epochs=2))
        assert seen[dtype] == {np.dtype(dtype)}, seen
        assert all(h.theta.dtype == np.dtype(dtype) for h in runs[dtype])
    for h32, h64 in zip(runs["float32"], runs["float64"]):
        f32, f64 = h32.records[-1]["objective"], h64.records[-1]["objective"]
        assert f64 < h64.records[0]["objective"] and abs(f32 - f64) <= 1e-4 * f64


def test_a_dtype_other_than_float64_or_float32_is_refused():
    with pytest.raises(ValueError, match="unknown dtype 'float16'; choose from float64, float32"):
        ObjectiveConfig(dtype="float16")
    d = data()
    with pytest.raises(ValueError, match="dtype must be one of float64, float32"):
        replace(d, dtype="int8")
    d32 = replace(d, dtype="float32")        # the features rounded once; labels unchanged
    assert d32.X_train.dtype == np.float32 and np.array_equal(d32.X_train,
                                                              d.X_train.astype(np.float32))
    assert d32.y_train.dtype == np.int64
    mine = d.share(range(1, 3), labels=True, dtype="float32")
    assert mine.X_train.dtype == mine.X_test.dtype == np.float32
    assert mine.share(range(1, 3), labels=True) is mine
    assert mine.share(range(1, 3), labels=True, dtype="float64").X_train.dtype == np.float64


def test_one_hot_labels_are_made_batch_by_batch_from_the_codes():
    """``model.OneHot``: Y[rows] of a slice or an index array equals the one-hot matrix's
    rows, restricted to its columns; it holds the codes only."""
    y = np.random.default_rng(0).integers(0, 7, size=50)
    whole = np.eye(7)[y]
    for cols in (range(7), range(2, 5)):
        Y = OneHot(y, cols, "float32")
        for rows in (slice(3, 20), np.array([4, 0, 49, 4])):
            got = Y[rows]
            assert got.dtype == np.float32 and np.array_equal(got, whole[rows][:, cols.start:cols.stop])
        assert Y.shape == (50, len(cols)) and Y.nbytes == y.nbytes
