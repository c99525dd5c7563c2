"""Subsampled Gauss-Newton with Levenberg-Marquardt damping, CG and backtracking (docs/method.md §2).

The solver sees the network only through a ``model.Model`` (``dense.DenseModel`` on one
process, ``distributed.DistributedModel`` over MPI); vectors are the part of theta this
process holds. No MPI here: every global sum hides behind the model.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from .cg import cg
from .history import History, State, generator, record_iteration


@dataclass(frozen=True)
class NewtonConfig:
    """Constants of docs/method.md §2. Defaults are simpleNN's (the authors' code) unless noted."""
    iters: int = 100              # Newton iterations
    subsample: float = 0.05       # |S| / l, fraction of instances in the Gauss-Newton subsample
    xi: float = 0.1               # CG stops when ||r|| <= xi ||grad f||
    cg_max: int = 250             # CG iteration limit (CG_max)
    lambda0: float = 1.0          # initial Levenberg-Marquardt damping
    boost: float = 1.5            # lambda *= boost when rho < 0.25
    drop: float = 2.0 / 3.0       # lambda *= drop when rho >= 0.75
    eta: float = 1e-4             # Armijo constant of the backtracking line search
    max_halvings: int = 20        # kit's bound on step halvings (simpleNN halves without bound)
    seed: int = 0                 # seeds the subsample draws (identical on every rank)

    def __post_init__(self):
        checks = [("iters", self.iters >= 0), ("subsample", 0 < self.subsample <= 1),
                  ("xi", 0 < self.xi < 1), ("cg_max", self.cg_max >= 1),
                  ("lambda0", self.lambda0 >= 0), ("boost", self.boost > 1),
                  ("drop", 0 < self.drop < 1), ("eta", 0 < self.eta < 1),
                  ("max_halvings", self.max_halvings >= 0)]
        checks += [(name, math.isfinite(value)) for name, value in vars(self).items()]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"NewtonConfig: invalid {name} = {getattr(self, name)!r}")

    def subsample_size(self, l):
        """|S| = ceil(subsample * l), at least 1."""
        return max(1, min(l, math.ceil(self.subsample * l)))


def levenberg_marquardt(lam, rho, boost, drop):
    """lambda_{k+1}: boost if rho < 0.25, drop if rho >= 0.75, else keep (docs/method.md §2, step 5)."""
    if rho < 0.25:
        return lam * boost
    if rho >= 0.75:
        return lam * drop
    return lam


def line_search(objective, theta, d, f, gd, eta, max_halvings):
    """Backtracking: alpha = 1, 1/2, ... until f(theta + alpha d) <= f + eta alpha g^T d.

    Returns (alpha, f_new); alpha = 0 and f_new = f when no trial is accepted.
    """
    alpha = 1.0
    for _ in range(max_halvings + 1):
        f_new = objective(theta + alpha * d)
        if f_new <= f + eta * alpha * gd:
            return alpha, f_new
        alpha /= 2
    return 0.0, f


def draw_subsample(rng, l, size):
    """S: ``size`` distinct instance indices out of l, sorted (the same on every rank)."""
    return np.sort(rng.choice(l, size=size, replace=False))


def direction(model, J, g, lam, xi, cg_max):
    """The Newton direction: CG on (G_S + lambda I) d = -g from d = 0 (docs/method.md §2,
    step 2), with the model's product, inner product and stopping rule; a ``cg.CGResult``."""
    return cg(lambda v: model.gauss_newton(J, v) + lam * v, -g, model.cg_dot, xi, cg_max,
              model.cg_stop)


def nonfinite(**values):
    """The names of the values that are not finite numbers (NaN or infinite)."""
    return [name for name, value in values.items() if not math.isfinite(value)]


def newton(model, config=NewtonConfig(), callback=None, resume=None, on_state=None):
    """Train ``model`` by subsampled Gauss-Newton; returns a History.

    Iteration k (docs/method.md §2): draw S; solve (G_S + lambda I) d = -g by CG; backtrack on
    alpha; rho = (f(theta + alpha d) - f) / (alpha g^T d + alpha^2/2 d^T G_S d), where
    d^T G_S d = -d^T g - d^T r - lambda d^T d comes from CG's residual r, no extra product.
    ``callback(record)`` is called after each iteration (rank 0 prints there). The wall
    time in the records is training time: the accuracy checks are not counted.

    The first non-finite f, |g|, lambda, or inner product of the step (g'd, d'r, d'd) ends
    the run: that iteration is recorded with ``diverged=True`` (and "nonfinite", the names
    of the culprits), theta is left at its last finite value and the History's status is
    "diverged". Each of these values is a global scalar, already summed over every rank,
    so every rank stops at the same iteration.

    ``on_state(state)``, if given, is called after each completed iteration with the
    ``history.State`` after it (scalars "lambda" and "f"), on every rank (a checkpoint is
    collective); its time is not training time. ``resume``, such a State, continues a run
    after its ``done`` iterations: theta, lambda, f and the subsample generator are set
    from it (f is not recomputed), and iterations done+1 .. config.iters follow.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _newton(model, config, callback, resume, on_state)


def _start(model, config, resume):
    """(rng, theta, lambda, f, training time, History) before the first new iteration."""
    rng = generator(config.seed, resume)
    if resume is not None:
        return (rng, resume.theta.copy(), resume.scalars["lambda"], resume.scalars["f"],
                resume.train_time, resume.history())
    theta = model.theta.copy()
    with model.phase("function"):
        f = model.objective(theta)
    return rng, theta, config.lambda0, f, 0.0, History()


def _newton(model, config, callback, resume, on_state):
    size = config.subsample_size(model.n_train)
    tic = time.perf_counter()
    rng, theta, lam, f, train_time, history = _start(model, config, resume)
    for k in range(resume.done + 1 if resume else 1, config.iters + 1):
        S = draw_subsample(rng, model.n_train, size)
        with model.phase("gradient"):
            g, J = model.gradient_and_jacobian(theta, S)
            gnorm = math.sqrt(model.dot(g, g))
        bad = nonfinite(**{"f": f, "|g|": gnorm, "lambda": lam})
        if not bad:
            with model.phase("cg"):
                res = direction(model, J, g, lam, config.xi, config.cg_max)
                d = res.x
                gd, dr, dd = model.dot(g, d), model.dot(d, res.residual), model.dot(d, d)
            bad = nonfinite(**{"g'd": gd, "d'r (CG residual)": dr, "d'd": dd})
        if bad:
            _diverged(model, theta, history, callback, dict(
                iter=k, objective=f, grad_norm=gnorm, **{"lambda": lam},
                wall_time=train_time + time.perf_counter() - tic, diverged=True, nonfinite=bad))
            break
        with model.phase("line_search"):
            alpha, f_new = line_search(model.objective, theta, d, f, gd, config.eta,
                                       config.max_halvings)
        dGd = -gd - dr - lam * dd
        prered = alpha * gd + 0.5 * alpha * alpha * dGd
        rho = (f_new - f) / prered if prered < 0 else -math.inf
        lam = levenberg_marquardt(lam, rho, config.boost, config.drop)
        theta += alpha * d
        f = f_new
        train_time += time.perf_counter() - tic
        history.records.append(record_iteration(model, theta, dict(
            iter=k, objective=f, grad_norm=gnorm, cg_iters=res.iterations,
            cg_status=res.status, **{"lambda": lam}, alpha=alpha, ratio=rho,
            wall_time=train_time), callback))
        if on_state:
            on_state(State(k, theta, {"lambda": lam, "f": f}, rng.bit_generator.state,
                           train_time, history.records))
        tic = time.perf_counter()
    history.theta = theta
    return history


def _diverged(model, theta, history, callback, record):
    """Record the iteration that ended the run with a non-finite value."""
    history.records.append(record_iteration(model, theta, record, callback))
    history.status = "diverged"
