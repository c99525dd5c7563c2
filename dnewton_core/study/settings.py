"""What a reproduction study runs: its grid of settings, budgets and defaults per data set.

``resolve`` turns the command line's options into a frozen ``Plan``; nothing else of the
study reads the command line.
"""
import dataclasses
import math
import os

from ..experiment import Problem
from ..newton import DIAG_STEPS, NewtonConfig
from ..sgd import SGDConfig
from .modeled import networks_of

METHODS = ("newton-full", "newton-diag", "sgd")

# Budgets and grids. Newton gets --iters iterations (simpleNN's 100 by default); SGD gets
# epochs_per_iter * iters epochs unless --epochs is given: the ratio of the training time of
# one Newton iteration to one SGD epoch (batch 128), measured under mpiexec -n 4 on the
# 2-core machine of the committed results, so both methods get a similar time budget there.
# summary.md reports the time each method actually took.
GRID = dict(subsamples=(0.05, 0.2), syncs=(1.0, 0.75, 0.5), steps=("none", "rescale"),
            lrs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), seeds=3)
DEFAULTS = {
    # digits 64-64-64-10: 0.026 s per Newton iteration, 0.012 s per epoch (quiet machine;
    # under a load of 5 on the 2 cores the ratio fell to 1.3: SGD's many small messages wait)
    "digits": dict(hidden=(64, 64), iters=NewtonConfig.iters, epochs_per_iter=2.0),
    # Fashion-MNIST 784-300-300-10: 8.2 s per Newton iteration (S = 5%, 100 iterations),
    # 4.5 s per epoch (results/fashion-mnist/long, nothing else running)
    None: dict(hidden=(300, 300), iters=NewtonConfig.iters, epochs_per_iter=1.8),
}


def defaults_of(data):
    """The defaults on ``data`` (its hidden widths are every command's, when --hidden is not
    given)."""
    return DEFAULTS.get(data, DEFAULTS[None])


QUICK = dict(data="digits", hidden=(64, 64), iters=8, epochs=6, seeds=2,
             subsamples=(0.05,), syncs=(1.0, 0.5), lrs=(1e-3, 1e-1, 1.0))


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of the grid; the fields that do not apply to the method are None."""
    method: str                    # newton-full, newton-diag or sgd
    subsample: float = None        # |S| / l (Newton)
    sync: float = None             # sync fraction tau (Newton; 1.0 for full G)
    lr: float = None               # learning rate (SGD)
    step: str = None               # newton-diag's step after CG: none, rescale, subspace

    @property
    def diag_step(self):
        return self.step or "none"

    @property
    def label(self):
        if self.method == "sgd":
            return f"sgd lr={self.lr:g}"
        text = f"{self.method} S={100 * self.subsample:g}%"
        if self.method != "newton-diag":
            return text
        return text + f" sync={self.sync:g}" + ("" if self.diag_step == "none" else f" {self.step}")

    @property
    def optimizer(self):
        return "sgd" if self.method == "sgd" else "newton"

    @property
    def gn(self):
        return "diag" if self.method == "newton-diag" else "full"


def parse_settings(text):
    """Settings from "newton-full:S,newton-diag:S:SYNC[:STEP],sgd:LR"; ValueError names a
    bad item."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        method, *values = item.split(":")
        step = values.pop() if method == "newton-diag" and len(values) == 3 else None
        need = {"newton-full": 1, "newton-diag": 2, "sgd": 1}.get(method)
        try:
            if need is None or len(values) != need or step not in (None, *DIAG_STEPS):
                raise ValueError
            nums = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"--settings: bad item {item!r}; expected newton-full:S, "
                             f"newton-diag:S:SYNC[:{'|'.join(DIAG_STEPS)}] or sgd:LR") from None
        if method == "sgd":
            out.append(Setting(method, lr=nums[0]))
        else:
            out.append(Setting(method, nums[0], nums[1] if method == "newton-diag" else 1.0,
                               step=step))
    if not out:
        raise ValueError("--settings: empty")
    return tuple(out)


SYNC_NOTE = ("newton-diag's sync fractions below 1: they need several MPI ranks, each "
             "holding one partition")


def study_settings(methods, subsamples, syncs, lrs, diag_possible, steps=("none",),
                   sync_possible=True):
    """The grid in run order, and notes on what was left out and why.

    Newton-full runs every subsample with sync 1 (one CG for all partitions: nothing to
    stop early); newton-diag runs every subsample with every sync fraction (those below 1
    only if ``sync_possible``) and every step after CG (``steps``); SGD every lr.
    """
    settings, notes = [], []
    if not sync_possible and any(t < 1 for t in syncs) and "newton-diag" in methods:
        syncs = tuple(t for t in syncs if t >= 1)
        notes.append(SYNC_NOTE)
    for method in methods:
        if method == "newton-full":
            settings += [Setting(method, s, 1.0) for s in subsamples]
        elif method == "newton-diag":
            if diag_possible:
                settings += [Setting(method, s, t, step=None if k == "none" else k)
                             for s in subsamples for t in syncs for k in steps]
            else:
                notes.append("newton-diag (and so every sync fraction): the "
                             "block-diagonal Gauss-Newton matrix needs several partitions, "
                             "run under mpiexec -n N")
        else:
            settings += [Setting(method, lr=lr) for lr in lrs]
    return settings, notes


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study, every default filled in and checked."""
    problem: Problem
    methods: tuple
    subsamples: tuple
    syncs: tuple
    lrs: tuple
    settings: tuple | None      # an explicit list of settings (--settings) instead of the grid
    seeds: int
    iters: int
    epochs: int
    epochs_rule: str            # how the SGD budget was chosen (for summary.md)
    out: str
    overwrite: bool
    newton: NewtonConfig        # constants and budget (subsample and seed set per run)
    sgd: SGDConfig              # constants and budget (lr and seed set per run)
    networks: tuple = ()        # network.Network's every run is charged on (model mode)
    steps: tuple = ("none",)    # newton-diag's steps after CG (--diag-steps)
    resume: bool = False        # --continue: keep the finished runs in out, run the others

    @property
    def data(self):
        return self.problem.data

    @property
    def hidden(self):
        return self.problem.hidden

    def runs(self, diag_possible, sync_possible=True):
        """The settings to run in order, and notes on what was left out."""
        if self.settings is None:
            return study_settings(self.methods, self.subsamples, self.syncs, self.lrs,
                                  diag_possible, self.steps, sync_possible)
        kept = [x for x in self.settings if diag_possible or x.method != "newton-diag"]
        notes = [] if len(kept) == len(self.settings) else study_settings(
            ("newton-diag",), (), (), (), False)[1]
        runnable = [x for x in kept if sync_possible or x.method != "newton-diag" or x.sync >= 1]
        return runnable, notes + ([SYNC_NOTE] if len(runnable) < len(kept) else [])


def _given(args, key):
    return getattr(args, key) != GRID[key]


def resolve(args):
    """The ``Plan`` of the command line's ``reproduce`` options (an argparse namespace):
    defaults from --quick and the data set filled in; ValueError names a bad value."""
    a = dict(vars(args))
    if a["quick"]:
        if a["data"] != "digits":
            raise ValueError("--quick runs on digits; leave out --data or drop --quick")
        for key, value in QUICK.items():
            if key in GRID and _given(args, key) or key in ("hidden", "iters", "epochs") \
                    and a[key] is not None:
                continue
            a[key] = value
    for key, value in defaults_of(a["data"]).items():
        if a.get(key) is None:
            a[key] = value
    methods = tuple(m.strip() for m in str(a["methods"]).split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--methods: unknown {', '.join(bad) or '(none)'}; choose from "
                         + ", ".join(METHODS))
    explicit = parse_settings(a["settings"]) if a["settings"] else None
    if explicit:
        grid = [f"--{key}" for key in ("subsamples", "syncs", "lrs") if _given(args, key)] \
            + (["--diag-steps"] if tuple(args.diag_steps) != GRID["steps"] else [])
        if grid:
            raise ValueError(f"--settings lists every run: leave out {', '.join(grid)} (or "
                             "give the grid without --settings)")
        methods = tuple(m for m in METHODS if any(x.method == m for x in explicit))
        a["subsamples"] = tuple(sorted({x.subsample for x in explicit
                                        if x.subsample is not None}))    # 0 is checked too
        a["syncs"] = tuple(sorted({x.sync for x in explicit if x.method == "newton-diag"},
                                  reverse=True))
        a["lrs"] = tuple(sorted({x.lr for x in explicit if x.lr is not None}))
        a["diag_steps"] = tuple(sorted({x.diag_step for x in explicit
                                        if x.method == "newton-diag"}))
    if args.epochs is not None:
        rule = "--epochs"
    elif a["epochs"] is not None:
        rule = f"--quick's {a['epochs']}"
    else:
        rule = f"{a['epochs_per_iter']:g} x --iters (the default ratio for {a['data']})"
    epochs = a["epochs"] if a["epochs"] is not None else max(1, round(a["epochs_per_iter"]
                                                                      * a["iters"]))
    _check(a, epochs, bool(explicit))
    return Plan(
        problem=problem_of(a), methods=methods, subsamples=tuple(a["subsamples"]),
        syncs=tuple(a["syncs"]), lrs=tuple(a["lrs"]), settings=explicit, seeds=a["seeds"],
        iters=a["iters"], epochs=epochs, epochs_rule=rule,
        out=a["out"] or os.path.join("results", "quick" if a["quick"] else a["data"]),
        overwrite=a["overwrite"],
        newton=NewtonConfig(iters=a["iters"], xi=a["xi"], cg_max=a["cg_max"],
                            lambda0=a["lambda0"]),
        sgd=SGDConfig(epochs=epochs, momentum=a["momentum"], batch_size=a["batch_size"]),
        networks=networks_of(a.get("network")), steps=tuple(a["diag_steps"]),
        resume=bool(a.get("resume_study")))


def _check(a, epochs, explicit=False):
    """ValueError naming the first invalid option of ``reproduce`` (a dict of them), its
    value and the values it takes. With ``explicit`` --settings, the grid's values are
    theirs."""
    grid = lambda option, what: f"--settings: {what} " if explicit else f"{option}: "
    checks = [("--seeds: ", [a["seeds"]], lambda v: v >= 1, "at least 1"),
              ("--iters: ", [a["iters"]], lambda v: v >= 1, "at least 1"),
              ("--epochs: ", [epochs], lambda v: v >= 1, "at least 1"),
              (grid("--subsamples", "subsample"), a["subsamples"], lambda s: 0 < s <= 1,
               "a fraction of the instances in (0, 1]"),
              (grid("--syncs", "sync"), a["syncs"], lambda t: 0 < t <= 1,
               "a fraction of the partitions in (0, 1]"),
              (grid("--lrs", "learning rate"), a["lrs"], lambda lr: 0 < lr < math.inf,
               "a finite positive number"),
              (grid("--diag-steps", "step"), a["diag_steps"], lambda x: x in DIAG_STEPS,
               "one of " + ", ".join(DIAG_STEPS)),
              ("--train-limit: ", [a["train_limit"]], lambda k: k is None or k >= 1,
               "at least 1")]
    for where, values, ok, rule in checks:
        for v in values:
            if not ok(v):
                shown = f"{v:g}" if isinstance(v, float) and float(f"{v:g}") == v else repr(v)
                raise ValueError(f"{where}{shown} is not {rule}")
    if a.get("resume_study") and a["overwrite"]:
        raise ValueError("--continue keeps the runs in --out and --overwrite replaces them: "
                         "choose one")


def problem_of(options):
    """The ``experiment.Problem`` named by the command line's options (a dict)."""
    fields = {f.name for f in dataclasses.fields(Problem)}
    return Problem(**{k: (tuple(v) if k == "hidden" else v) for k, v in options.items()
                      if k in fields and v is not None})


def reductions(plan, diag_possible, sync_possible=True):
    """What this study leaves out of the default one (so summary.md can say so)."""
    out = []
    default_iters = defaults_of(plan.problem.data)["iters"]
    if plan.iters < default_iters:
        out.append(f"{plan.iters} Newton iterations instead of {default_iters} (simpleNN's)")
    if plan.seeds < GRID["seeds"]:
        out.append(f"{plan.seeds} seed(s) instead of {GRID['seeds']}" +
                   (": no spread over seeds" if plan.seeds == 1 else ""))
    full, _ = study_settings(METHODS, GRID["subsamples"], GRID["syncs"], GRID["lrs"],
                             diag_possible, GRID["steps"])
    ran = {x.label for x in plan.runs(diag_possible, sync_possible)[0]}
    missing = [x.label for x in full if x.label not in ran]
    if missing:
        out.append("settings of the default grid not run: " + "; ".join(missing))
    if plan.problem.train_limit is not None:
        out.append(f"only the first {plan.problem.train_limit} training instances (--train-limit)")
    return out


def changes(plan):
    """What this study adds to the machine as it is (stated in summary.md)."""
    if not plan.problem.slow_rank:
        return []
    rank, seconds = plan.problem.slow_rank.split(":")
    return [f"STRAGGLER: rank {rank} sleeps {seconds} s in each of its Gauss-Newton products "
            "(--slow-rank), in every Newton run: the times measure a slow partition on purpose"]
