"""Mini-batch SGD with momentum, the baseline (docs/method.md §7), on the same model interface.

Step t (over all epochs) on mini-batch B:
    v <- momentum v - lr_t (theta / C + (1/|B|) sum_{i in B} grad xi_i),  theta <- theta + v,
    lr_t = lr / (1 + decay t).
The batches come from a seeded permutation per epoch, the same on every rank.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from .history import History, State, generator, record_iteration


@dataclass(frozen=True)
class SGDConfig:
    lr: float = 0.01          # learning rate
    momentum: float = 0.9     # heavy-ball momentum
    batch_size: int = 128     # instances per step
    decay: float = 0.0        # lr_t = lr / (1 + decay t)
    epochs: int = 20          # passes over the training set
    seed: int = 0             # seeds the batch order (identical on every rank)

    def __post_init__(self):
        checks = [("lr", self.lr > 0, "> 0"), ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                  ("batch_size", self.batch_size >= 1, ">= 1"), ("decay", self.decay >= 0, ">= 0"),
                  ("epochs", self.epochs >= 0, ">= 0")]
        checks += [(name, math.isfinite(value), "finite") for name, value in vars(self).items()]
        for name, ok, must in checks:
            if not ok:
                raise ValueError(f"SGDConfig: {name} = {getattr(self, name)!r} must be {must}")


def sgd(model, config=SGDConfig(), callback=None, resume=None, on_state=None):
    """Train ``model`` by SGD with momentum; returns a History with one record per epoch.

    Too large a learning rate makes f overflow: that epoch is recorded with
    ``diverged=True`` and training stops (a result of the study, not an error).

    ``on_state(state)``, if given, is called after each completed epoch with the
    ``history.State`` after it (scalar "t", the steps taken; vector "velocity"), on every
    rank. ``resume``, such a State, continues a run after its ``done`` epochs, bit for bit.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _sgd(model, config, callback, resume, on_state)


def _start(model, config, resume):
    """(rng, theta, velocity, History, training time, t) before the first new epoch."""
    rng = generator(config.seed, resume)
    if resume is not None:
        return (rng, resume.theta.copy(), resume.vectors["velocity"].copy(),
                resume.history(), resume.train_time, int(resume.scalars["t"]))
    theta = model.theta.copy()
    return rng, theta, np.zeros_like(theta), History(), 0.0, 0


def _sgd(model, config, callback, resume, on_state):
    rng, theta, velocity, history, train_time, t = _start(model, config, resume)
    for epoch in range(resume.done + 1 if resume else 1, config.epochs + 1):
        model.line_up()
        tic = time.perf_counter()
        order = rng.permutation(model.n_train)
        with model.phase("sgd"):
            for start in range(0, model.n_train, config.batch_size):
                batch = np.sort(order[start:start + config.batch_size])
                g = model.stochastic_gradient(theta, batch)
                velocity *= config.momentum
                velocity -= (config.lr / (1.0 + config.decay * t)) * g
                theta += velocity
                t += 1
        train_time += time.perf_counter() - tic
        with model.phase("function"):
            f = model.objective(theta)
        history.records.append(record_iteration(model, theta, dict(
            iter=epoch, objective=f, lr=config.lr / (1.0 + config.decay * (t - 1)),  # the last step's
            wall_time=train_time, diverged=not np.isfinite(f)), callback))
        if not np.isfinite(f):      # too large a learning rate: a result, not an error
            history.status = "diverged"
            break
        if on_state:
            on_state(State(epoch, theta, {"t": t}, rng.bit_generator.state, train_time,
                           history.records, {"velocity": velocity}))
    history.theta = theta
    return history
