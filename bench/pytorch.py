"""The kit's training written in PyTorch, float64: the reference of issue 12's targets.

Optional: PyTorch is not a dependency of the kit. Run it from the repository root with any
Python that has torch and numpy (it imports only the kit's data loader, initialization and
constants, which need numpy alone):

    PYTHON_WITH_TORCH bench/pytorch.py                 # Fashion-MNIST 784-300-300-10, 1 and 2 threads
    PYTHON_WITH_TORCH bench/pytorch.py --quick         # 784-32-32-10, 1 thread: a smoke run

The same network, data, initial theta (``reference.init_params``), subsamples S (the kit's
generator and ``newton.draw_subsample``), constants (``NewtonConfig``, ``SGDConfig``, the
data set's C) and algorithm as ``train`` on one process (docs/method.md §2): grad f, then CG on
(G_S + lambda I) d = -g to ||r|| <= xi ||g||, backtracking from alpha = 1, the
Levenberg-Marquardt update. What PyTorch does its own way:

- J v and J^T u on S come from ``torch.func.linearize`` and ``torch.func.vjp``, built once
  per iteration (the forward pass on S cached), not from the kit's factored Jacobian.
- The line search's accepted trial keeps its autograd graph, so the next gradient is its
  backward pass (a cached forward pass, as ``DenseModel.objective(keep=True)``).

Printed: the Gauss-Newton product on |S| = 3000 (best of 10), the mean Newton iteration
(training clock: the accuracy is not computed), f after the iterations (the kit's to
rounding when the algorithms agree: compare with ``make bench``), and one SGD epoch.
"""
import argparse
import math
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dnewton_core import reference as ref  # noqa: E402
from dnewton_core.data import load_dataset  # noqa: E402
from dnewton_core.history import generator  # noqa: E402
from dnewton_core.model import default_C, parse_C  # noqa: E402
from dnewton_core.newton import NewtonConfig, draw_subsample, levenberg_marquardt  # noqa: E402
from dnewton_core.sgd import SGDConfig  # noqa: E402

BATCH = 4096                      # the kit's evaluation batch (ObjectiveConfig.batch_size)


class Net:
    """The kit's MLP (ReLU hidden layers, linear output, squared loss) on a flat theta."""

    def __init__(self, layers, X, Y, C):
        self.layers, self.X, self.Y, self.C = layers, X, Y, C
        self.shapes = [((a, b), (b,)) for a, b in zip(layers[:-1], layers[1:])]

    def out(self, theta, X):
        """z^L (n, n_L) of the rows X."""
        z, k = X, 0
        for m, ((a, b), _) in enumerate(self.shapes):
            W, bias = theta[k:k + a * b].view(a, b), theta[k + a * b:k + a * b + b]
            k += a * b + b
            z = torch.addmm(bias, z, W)
            if m < len(self.shapes) - 1:
                z = torch.relu(z)
        return z

    def f(self, theta):
        """f(theta) = theta^T theta / (2C) + (1/l) sum ||z^L - y||^2, batch by batch."""
        l, xi = len(self.X), 0.0
        for k in range(0, l, BATCH):
            r = self.out(theta, self.X[k:k + BATCH]) - self.Y[k:k + BATCH]
            xi = xi + (r * r).sum()
        return theta @ theta / (2 * self.C) + xi / l


def newton_iterations(net, theta, config, iters):
    """(seconds per iteration, f after them): the kit's Newton on one process."""
    rng, size = generator(config.seed), config.subsample_size(len(net.X))
    lam, tic = config.lambda0, time.perf_counter()
    theta = theta.clone().requires_grad_()
    f_t = net.f(theta)                                 # kept: the first gradient's forward
    for _ in range(iters):
        S = torch.from_numpy(draw_subsample(rng, len(net.X), size))
        g = torch.autograd.grad(f_t, theta)[0]
        f, theta = f_t.item(), theta.detach()
        G = damped_gauss_newton(net, theta, net.X[S], lam)
        d = cg(G, -g, config.xi * g.norm().item(), config.cg_max)
        gd, dGd = (g @ d).item(), (d @ G(d)).item() - lam * (d @ d).item()
        alpha = 1.0
        for _ in range(config.max_halvings + 1):
            trial = (theta + alpha * d).requires_grad_()
            f_t = net.f(trial)
            if f_t.item() <= f + config.eta * alpha * gd:
                break
            alpha /= 2
        else:
            raise SystemExit("the line search found no step: compare with the kit's run")
        rho = (f_t.item() - f) / (alpha * gd + 0.5 * alpha * alpha * dGd)
        lam = levenberg_marquardt(lam, rho, config.boost, config.drop)
        theta = trial
    return (time.perf_counter() - tic) / iters, f_t.item()


def damped_gauss_newton(net, theta, XS, lam):
    """v -> (G_S + lambda I) v on the rows XS = X[S], squared loss (B = 2I): J v from
    ``torch.func.linearize`` and J^T u from ``torch.func.vjp``, the forward pass on S done
    once here and kept by both."""
    def out(t):
        return net.out(t, XS)
    _, jvp = torch.func.linearize(out, theta)
    _, vjp = torch.func.vjp(out, theta)
    return lambda v: vjp(jvp(v) * (2.0 / len(XS)))[0] + v / net.C + lam * v


def cg(A, b, tol, max_iter):
    """CG from x = 0 to ||r|| <= tol (``cg.cg``'s rule)."""
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), (r @ r).item()
    for _ in range(max_iter):
        if math.sqrt(rr) <= tol:
            break
        Ap = A(p)
        a = rr / (p @ Ap).item()
        x += a * p
        r -= a * Ap
        rr, old = (r @ r).item(), rr
        p = r + (rr / old) * p
    return x


def product_seconds(net, theta, size, repeats=10):
    """Best time of one G_S v (jvp then vjp, forward on S cached), |S| = ``size``."""
    G = damped_gauss_newton(net, theta, net.X[:size], 0.0)
    v, best = torch.randn_like(theta), math.inf
    for _ in range(repeats):
        tic = time.perf_counter()
        G(v)
        best = min(best, time.perf_counter() - tic)
    return best


def sgd_epoch(net, theta, config):
    """Seconds of one epoch of the kit's SGD (momentum, batches from a seeded permutation)."""
    theta, velocity = theta.clone().requires_grad_(), torch.zeros_like(theta)
    order = np.random.default_rng(config.seed).permutation(len(net.X))
    tic = time.perf_counter()
    for k in range(0, len(net.X), config.batch_size):
        batch = torch.from_numpy(np.sort(order[k:k + config.batch_size]))
        r = net.out(theta, net.X[batch]) - net.Y[batch]
        loss = theta @ theta / (2 * net.C) + (r * r).sum() / len(batch)
        g = torch.autograd.grad(loss, theta)[0]
        with torch.no_grad():
            velocity.mul_(config.momentum).sub_(config.lr * g)
            theta += velocity
    return time.perf_counter() - tic


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="784-32-32-10 on 1 thread")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iters", type=int, default=2, help="Newton iterations (2, as make bench)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="torch")   # linearize's deprecated jit inside
    name, hidden = "fashion-mnist", (32, 32) if args.quick else (300, 300)
    counts = [1] if args.quick else args.threads
    data = load_dataset(name)
    layers = (data.n_features, *hidden, data.n_classes)
    X = torch.from_numpy(np.ascontiguousarray(data.X_train, dtype=np.float64))
    Y = torch.from_numpy(np.eye(data.n_classes)[data.y_train])
    net = Net(layers, X, Y, parse_C(default_C(name), len(X)))
    theta = torch.from_numpy(ref.flatten(ref.init_params(layers, 0)))
    config = NewtonConfig()
    print(f"PyTorch {torch.__version__}, float64, {name} {'-'.join(map(str, layers))}, "
          f"l = {len(X)}, |S| = {config.subsample_size(len(X))}")
    for threads in counts:
        torch.set_num_threads(threads)
        product = product_seconds(net, theta, config.subsample_size(len(X)))
        newton, f = newton_iterations(net, theta, config, args.iters)
        epoch = sgd_epoch(net, theta, SGDConfig())
        print(f"{threads} thread{'s' if threads > 1 else ''}: Gauss-Newton product "
              f"{product * 1e3:.1f} ms, Newton iteration {newton:.2f} s (f after {args.iters}: "
              f"{f:.9f}), SGD epoch {epoch:.2f} s")


if __name__ == "__main__":
    main()
