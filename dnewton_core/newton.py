"""Subsampled Gauss-Newton with Levenberg-Marquardt damping, CG and backtracking (docs/method.md §2).

The solver sees the network only through a ``model.Model`` (``dense.DenseModel`` on one
process, ``distributed.DistributedModel`` over MPI); vectors are the part of theta this
process holds. No MPI here: every global sum hides behind the model.
"""
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from .cg import CGResult, cg
from .history import History, State, generator, record_iteration
from .model import ConfigError

DIAG_STEPS = ("none", "rescale", "subspace")   # the step after CG (docs/method.md §6)
CG_RULES = ("partition", "global")             # where a partition's CG stops (§6)


# The kit's bound on lambda (docs/method.md §9): a step of about g / 1e20 moves no theta, and
# a run at its minimum, whose every step is rejected, would otherwise boost lambda to
# infinity (float64: after about 1750 iterations; float32's CG products overflow near 1e36)
# and end as if it had diverged.
LAMBDA_MAX = 1e20


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
    diag_step: str = "none"       # kit's: the step after CG, d as CG gives it ("none"), d
    #                               rescaled by the full G ("rescale"), or the 2-D model over
    #                               d and the previous step ("subspace"); docs/method.md §6
    cg_rule: str = "partition"    # kit's, block-diagonal G: partition p's CG stops at
    #                               ||r_p|| <= xi ||g_p|| ("partition") or at its share
    #                               xi ||g|| sqrt(n_p / n) of the global rule ("global")

    def __post_init__(self):
        for name, choices in (("diag_step", DIAG_STEPS), ("cg_rule", CG_RULES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"NewtonConfig: unknown {name} {getattr(self, name)!r}; "
                                 f"choose from {', '.join(choices)}")
        checks = [("iters", self.iters >= 0, ">= 0"), ("subsample", 0 < self.subsample <= 1, "in (0, 1]"),
                  ("xi", 0 < self.xi < 1, "in (0, 1)"), ("cg_max", self.cg_max >= 1, ">= 1"),
                  ("lambda0", self.lambda0 > 0, "> 0"), ("boost", self.boost > 1, "> 1"),
                  ("drop", 0 < self.drop < 1, "in (0, 1)"), ("eta", 0 < self.eta < 1, "in (0, 1)"),
                  ("max_halvings", self.max_halvings >= 0, ">= 0")]
        checks += [(name, math.isfinite(value), "finite") for name, value in vars(self).items()
                   if not isinstance(value, str)]
        for name, ok, must in checks:
            if not ok:
                raise ValueError(f"NewtonConfig: {name} = {getattr(self, name)!r} must be {must}")

    def subsample_size(self, l):
        """|S| = ceil(subsample * l), at least 1."""
        return max(1, min(l, math.ceil(self.subsample * l)))

    def for_gn(self, gn):
        """This config for a run with the ``gn`` Gauss-Newton matrix: with the full G, the
        options that need the block-diagonal one ("rescale", the "global" rule) dropped."""
        if gn != "full":
            return self
        return replace(self, diag_step="none" if self.diag_step == "rescale" else self.diag_step,
                       cg_rule="partition")


def check_options(config, gn):
    """ConfigError when an option of ``config`` means nothing with the ``gn`` matrix."""
    if gn == "full" and config.diag_step == "rescale":
        raise ConfigError("--diag-step rescale needs --gn diag: with the full G, CG's d "
                          "already minimizes the model along d (alpha* = 1)")
    if gn == "full" and config.cg_rule == "global":
        raise ConfigError("--cg-rule global needs --gn diag: with the full G there is one "
                          "CG, and its rule is the global one")


def levenberg_marquardt(lam, rho, boost, drop):
    """lambda_{k+1}: boost if rho < 0.25 (to at most LAMBDA_MAX), drop if rho >= 0.75, else
    keep (docs/method.md §2, step 6)."""
    if rho < 0.25:
        return max(lam, min(lam * boost, LAMBDA_MAX))   # a larger lambda0 stays
    if rho >= 0.75:
        return lam * drop
    return lam


def line_search(objective, theta, d, f, gd, eta, max_halvings):
    """Backtracking: alpha = 1, 1/2, ... until f(theta + alpha d) <= f + eta alpha g^T d,
    for theta and d this process's parts, (n_here,) each.

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
    """S, (size,): ``size`` distinct instance indices out of l, sorted (the same on every rank)."""
    return np.sort(rng.choice(l, size=size, replace=False))


def direction(model, J, g, lam, xi, cg_max, scale=None):
    """The Newton direction: CG on (G_S + lambda I) d = -g from d = 0 (docs/method.md §2,
    step 3), with the model's product, inner product and stopping rule; a ``cg.CGResult``
    whose x is d, like g.

    One CG per block of ``model.cg_blocks``: one on the full G; one per partition on the
    block-diagonal G (§6; on a rank, its partitions' one after the other), the result
    then carrying each one's count and the slowest one's as ``iterations``. ``scale`` (the
    "global" rule): a block with share n_p / n of theta stops at ||r_p|| <= xi scale
    sqrt(n_p / n) instead of xi ||g_p||.
    """
    x, residual, counts, statuses = np.zeros_like(g), np.zeros_like(g), [], []
    for index, share in model.cg_blocks:
        res = cg(_product(model, J, index, lam, g.size), -g[index], model.cg_dot, xi, cg_max,
                 model.cg_stop, None if scale is None else scale * math.sqrt(share))
        if isinstance(index, slice):             # the whole vector: the only block
            return res
        x[index], residual[index] = res.x, res.residual
        counts.append(res.iterations)
        statuses.append(res.status)
    status = next((s for s in ("max_iter", "stopped") if s in statuses), "converged")
    return CGResult(x, residual, max(counts), status, tuple(counts))


def _product(model, J, index, lam, n):
    """v -> (G_S + lambda I) v on one CG block; a block given by positions goes through a
    whole vector that is zero elsewhere (``DenseModel.gauss_newton`` skips zero blocks)."""
    if isinstance(index, slice):
        return lambda v: model.gauss_newton(J, v) + lam * v

    def product(v):
        whole = np.zeros(n, v.dtype)
        whole[index] = v
        return model.gauss_newton(J, whole)[index] + lam * v
    return product


@dataclass(frozen=True)
class Step:
    """The step the line search scales, and its terms of the quadratic model."""
    s: np.ndarray        # beta_1 d (+ beta_2 s_{k-1}); d itself for diag_step "none"
    gs: float            # g^T s
    sGs: float           # s^T G_S s: exact (full G) after a rescale or subspace step, else
    #                      from CG's residual (the d^T G d identity of docs/method.md §2)
    beta: tuple = ()     # the coefficients of d (and s_{k-1})


def model_minimizer(M, c):
    """beta minimizing c^T beta + beta^T M beta / 2 for a symmetric positive semidefinite M
    of size 1 or 2: -M^{-1} c. When the second direction adds nothing (det M <= 1e-12 M_11
    M_22, the two parallel) the first alone, beta_2 = 0; a zero M_11 (d = 0) gives 0."""
    if len(c) == 2:
        if M[0, 0] * M[1, 1] - M[0, 1] ** 2 > 1e-12 * M[0, 0] * M[1, 1]:
            return np.linalg.solve(M, -c)
        return np.array([model_minimizer(M[:1, :1], c[:1])[0], 0.0])
    return np.array([-c[0] / M[0, 0] if M[0, 0] > 0 else 0.0])


def take_step(model, J, g, d, gd, dd, lam, prev=None, mode="rescale"):
    """The step after CG (docs/method.md §6): the minimizer of the damped quadratic model
    q(s) = g^T s + s^T (G_S + lambda I) s / 2, with the full G_S, over beta d ("rescale",
    alpha* = -g^T d / (d^T G_S d + lambda d^T d)) or over beta_1 d + beta_2 s_{k-1}
    ("subspace"; the previous step ``prev``, else d alone). V^T G_S V comes from
    ``model.curvature_gram`` (one allreduce of |S| x n_L per direction, together) and
    V^T V / C; with two directions one allreduce of g^T s_{k-1}, d^T s_{k-1}, s_{k-1}^T
    s_{k-1}. Returns a ``Step`` with the exact s^T G_S s."""
    V = [d] if mode == "rescale" or prev is None else [d, prev]
    K = model.curvature_gram(J, V)                     # (k, k), k = len(V)
    if len(V) == 1:
        VV, c = np.array([[dd]]), np.array([gd])
    else:
        gp, dp, pp = model.dots([(g, prev), (d, prev), (prev, prev)])
        VV, c = np.array([[dd, dp], [dp, pp]]), np.array([gd, gp])
    G = 0.5 * (K + K.T) + VV / model.C                 # V^T G_S V
    beta = model_minimizer(G + lam * VV, c)
    b = [float(x) for x in beta]                       # Python floats keep d's dtype (float32)
    s = b[0] * d if len(V) == 1 else b[0] * d + b[1] * prev
    return Step(s, float(beta @ c), float(beta @ G @ beta), tuple(b))


def nonfinite(**values):
    """The names of the values that are not finite numbers (NaN or infinite)."""
    return [name for name, value in values.items() if not math.isfinite(value)]


def newton(model, config=NewtonConfig(), callback=None, resume=None, on_state=None):
    """Train ``model`` by subsampled Gauss-Newton; returns a History.

    Iteration k (docs/method.md §2): draw S; solve (G_S + lambda I) d = -g by CG; take the
    step s = d (or, with ``config.diag_step``, the rescaled d or the 2-D subspace step of
    §6); backtrack on alpha; rho = (f(theta + alpha s) - f) / (alpha g^T s + alpha^2/2
    s^T G_S s), where d^T G_S d = -d^T g - d^T r - lambda d^T d comes from CG's residual r
    (no extra product), or s^T G_S s from the full G of the step. ``callback(record)`` is
    called after each iteration (rank 0 prints there). The wall time in the records is
    training time: the accuracy checks are not counted. Options that mean nothing with
    the model's G raise a ConfigError (``check_options``) before anything is computed.

    The first non-finite f, |g|, lambda, or inner product of the step (g'd, d'r, d'd, g's,
    s'Gs) ends the run: that iteration is recorded with ``diverged=True`` (and
    "nonfinite", the names of the culprits), theta is left at its last finite value and
    the History's status is "diverged". Each of these values is a global scalar, already
    summed over every rank, so every rank stops at the same iteration.

    ``on_state(state)``, if given, is called after each completed iteration with the
    ``history.State`` after it (scalars "lambda", "f" and "kept"; with the subspace step, vector
    "step", this rank's part of the last step), on every rank (a checkpoint is
    collective); its time is not training time. ``resume``, such a State, continues a run
    after its ``done`` iterations: theta, lambda, f, the last step and the subsample
    generator are set from it (f is not recomputed; when theta was the kept point, scalar
    "kept", one forward pass keeps it again, so the run goes on bit for bit), and
    iterations done+1 .. config.iters follow.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _newton(model, config, callback, resume, on_state)


def _start(model, config, resume):
    """(rng, theta, lambda, f, training time, History, last step or None, kept) before the
    first new iteration; kept: theta is the point of the model's kept forward pass."""
    rng = generator(config.seed, resume)
    if resume is not None:
        step, kept = resume.vectors.get("step"), bool(resume.scalars.get("kept", False))
        theta = resume.theta.copy()
        if kept:                     # the pass the run had here (its f is the saved one)
            with model.phase("function"):
                model.objective(theta, keep=True)
        return (rng, theta, resume.scalars["lambda"], resume.scalars["f"], resume.train_time,
                resume.history(), None if step is None else step.copy(), kept)
    theta = model.theta.copy()
    with model.phase("function"):
        f = model.objective(theta, keep=True)
    return rng, theta, config.lambda0, f, 0.0, History(), None, True


def _solve(model, J, g, gnorm, lam, prev, config):
    """CG (phase "cg"), then the step (phase "diag_step"): (CGResult, Step, entries of the
    record, names of the non-finite values)."""
    rule = config.cg_rule == "global"
    with model.phase("cg"):
        res = direction(model, J, g, lam, config.xi, config.cg_max, gnorm if rule else None)
        d = res.x
        gd, dr, dd = model.dot(g, d), model.dot(d, res.residual), model.dot(d, d)
        extra = {"cg_residual": math.sqrt(model.dot(res.residual, res.residual)) / gnorm
                 if gnorm > 0 else 0.0} if rule else {}
    if res.block_iterations:
        extra["cg_iters_per_rank"] = list(res.block_iterations)
    bad = nonfinite(**{"g'd": gd, "d'r (CG residual)": dr, "d'd": dd})
    if bad or config.diag_step == "none":
        return res, Step(d, gd, -gd - dr - lam * dd), extra, bad
    with model.phase("diag_step"):
        step = take_step(model, J, g, d, gd, dd, lam, prev, config.diag_step)
    extra["beta"] = list(step.beta)
    return res, step, extra, nonfinite(**{"g's": step.gs, "s'Gs": step.sGs})


def _newton(model, config, callback, resume, on_state):
    check_options(config, model.gn)
    size = config.subsample_size(model.n_train)
    model.line_up()
    tic = time.perf_counter()
    rng, theta, lam, f, train_time, history, prev, kept = _start(model, config, resume)
    for k in range(resume.done + 1 if resume else 1, config.iters + 1):
        S = draw_subsample(rng, model.n_train, size)
        with model.phase("gradient"):
            g, J = model.gradient_and_jacobian(theta, S, kept=kept)
            gnorm = math.sqrt(model.dot(g, g))
        bad = nonfinite(**{"f": f, "|g|": gnorm, "lambda": lam})
        if not bad:
            res, step, extra, bad = _solve(model, J, g, gnorm, lam, prev, config)
        del J            # freed before the line search and the next J (docs/method.md §4)
        if bad:
            _diverged(model, theta, history, callback, dict(
                iter=k, objective=f, grad_norm=gnorm, **{"lambda": lam},
                wall_time=train_time + time.perf_counter() - tic, diverged=True, nonfinite=bad))
            break
        with model.phase("line_search"):
            alpha, f_new = line_search(lambda t: model.objective(t, keep=True), theta, step.s,
                                       f, step.gs, config.eta, config.max_halvings)
        prered = alpha * step.gs + 0.5 * alpha * alpha * step.sGs
        rho = (f_new - f) / prered if prered < 0 else -math.inf
        lam = levenberg_marquardt(lam, rho, config.boost, config.drop)
        theta += alpha * step.s
        kept = alpha > 0                 # the accepted trial was the last one evaluated
        prev = alpha * step.s if alpha > 0 and config.diag_step == "subspace" else None
        f = f_new
        train_time += time.perf_counter() - tic
        history.records.append(record_iteration(model, theta, dict(
            iter=k, objective=f, grad_norm=gnorm, cg_iters=res.iterations,
            cg_status=res.status, **{"lambda": lam}, alpha=alpha, ratio=rho,
            wall_time=train_time, **extra), callback, kept))
        if on_state:
            on_state(State(k, theta, {"lambda": lam, "f": f, "kept": kept},
                           rng.bit_generator.state, train_time, history.records,
                           {} if prev is None else {"step": prev}))
        if k < config.iters:
            model.line_up()
        tic = time.perf_counter()
    history.theta = theta
    return history


def _diverged(model, theta, history, callback, record):
    """Record the iteration that ended the run with a non-finite value."""
    history.records.append(record_iteration(model, theta, record, callback))
    history.status = "diverged"
