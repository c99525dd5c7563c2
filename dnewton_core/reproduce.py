"""The reproduction study: ``python -m dnewton_core reproduce`` (run alone or under mpiexec).

Claims of Wang et al. (Neural Computation 2018) it measures, on one communicator, one data
split and one network:

  1. diagonalization (block-diagonal G) removes the messages inside CG at little cost in
     progress: newton-diag against newton-full, bytes in phase "cg" and test accuracy;
  2. subsampling cuts the cost of the Gauss-Newton part: |S| = 5% against 20% of l;
  3. early CG termination (sync fraction tau < 1, diag only) cuts the waiting: the slowest
     rank's seconds in CG and the CG iterations per Newton iteration;
  4. Newton is more robust to its settings than SGD (with momentum) is to its learning rate,
     and may reach better test accuracy: final test accuracy across each method's settings.

Every run builds a new model with ``experiment.build_model`` on the same ``Comm`` and
trains it with ``experiment.train``; ``experiment.result`` (collective) brings the
per-iteration ledgers to rank 0, which alone prints (one line per run) and writes:

  runs.csv        one row per run (settings, final accuracies, time, bytes per phase)
  curves.csv      one row per Newton iteration / SGD epoch of every run
  summary.md      command, date, machine; the table per setting; the claims, measured
  accuracy_vs_time.png, robustness.png

runs.csv and curves.csv are rewritten after every run, so a study cut short keeps the runs
it finished. Seeds 0..K-1 seed the initialization, the subsamples S and the SGD batch
order; the train/test split is the data set's own (digits: the kit's seeded split, seed 0)
and is the same in every run.
"""
import csv
import dataclasses
import datetime
import math
import os
import platform
import shlex
import sys
import time
from types import SimpleNamespace

import numpy as np

from .cluster import BLAS_THREADS
from .comm import MONITORING, PHASES
from .experiment import build_model, config_dict, result, train
from .model import default_C

METHODS = ("newton-full", "newton-diag", "sgd")
LEDGER_PHASES = PHASES + ("other",)            # "other": a message outside any phase (none expected)

# Budgets and grids. Newton gets --iters iterations (simpleNN's 100 by default); SGD gets
# epochs_per_iter * iters epochs unless --epochs is given: the ratio of the training time of
# one Newton iteration to one SGD epoch (batch 128), measured under mpiexec -n 4 on the
# 2-core machine of the committed results, so both methods get a similar time budget there.
# summary.md reports the time each method actually took.
GRID = dict(subsamples=(0.05, 0.2), syncs=(1.0, 0.75, 0.5),
            lrs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), seeds=3)
DEFAULTS = {
    # digits 64-64-64-10: 0.026 s per Newton iteration, 0.012 s per epoch (quiet machine;
    # under a load of 5 on the 2 cores the ratio fell to 1.3: SGD's many small messages wait)
    "digits": dict(hidden=(64, 64), iters=100, epochs_per_iter=2.0),
    # Fashion-MNIST 784-300-300-10: 8.2 s per Newton iteration (S = 5%, 100 iterations),
    # 4.5 s per epoch (results/fashion-mnist/long, nothing else running)
    None: dict(hidden=(300, 300), iters=100, epochs_per_iter=1.8),
}
QUICK = dict(data="digits", hidden=(64, 64), iters=8, epochs=6, seeds=2,
             subsamples=(0.05,), syncs=(1.0, 0.5), lrs=(1e-3, 1e-1, 1.0))


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of the grid; the fields that do not apply to the method are None."""
    method: str                    # newton-full, newton-diag or sgd
    subsample: float = None        # |S| / l (Newton)
    sync: float = None             # sync fraction tau (Newton; 1.0 for full G)
    lr: float = None               # learning rate (SGD)

    @property
    def label(self):
        if self.method == "sgd":
            return f"sgd lr={self.lr:g}"
        text = f"{self.method} S={100 * self.subsample:g}%"
        return text + (f" sync={self.sync:g}" if self.method == "newton-diag" else "")

    @property
    def optimizer(self):
        return "sgd" if self.method == "sgd" else "newton"

    @property
    def gn(self):
        return "diag" if self.method == "newton-diag" else "full"


def parse_settings(text):
    """Settings from "newton-full:S,newton-diag:S:SYNC,sgd:LR"; ValueError names a bad item."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        method, *values = item.split(":")
        need = {"newton-full": 1, "newton-diag": 2, "sgd": 1}.get(method)
        try:
            if need is None or len(values) != need:
                raise ValueError
            nums = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"--settings: bad item {item!r}; expected newton-full:S, "
                             "newton-diag:S:SYNC or sgd:LR") from None
        if method == "sgd":
            out.append(Setting(method, lr=nums[0]))
        else:
            out.append(Setting(method, nums[0], nums[1] if method == "newton-diag" else 1.0))
    if not out:
        raise ValueError("--settings: empty")
    return tuple(out)


def study_settings(methods, subsamples, syncs, lrs, diag_possible):
    """The grid in run order, and notes on what was left out and why.

    Newton-full runs every subsample with sync 1 (one CG for all partitions: nothing to
    stop early); newton-diag runs every subsample with every sync fraction; SGD every lr.
    """
    settings, notes = [], []
    for method in methods:
        if method == "newton-full":
            settings += [Setting(method, s, 1.0) for s in subsamples]
        elif method == "newton-diag":
            if diag_possible:
                settings += [Setting(method, s, t) for s in subsamples for t in syncs]
            else:
                notes.append("newton-diag (and so every sync fraction) left out: the "
                             "block-diagonal Gauss-Newton matrix needs several partitions, "
                             "run under mpiexec -n N")
        else:
            settings += [Setting(method, lr=lr) for lr in lrs]
    return settings, notes


# --------------------------------------------------------------------------- command line

def _floats(text):
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError("expected at least one number")
    return values


def add_arguments(subparsers, parents):
    """Register ``reproduce`` on the command line's subparsers, with its shared options
    (data, network, partitions, constants) from ``parents``; returns its parser."""
    p = subparsers.add_parser(
        "reproduce", parents=parents,
        help="the paper's claims, measured: a grid of runs, tables and figures",
        description="Run the reproduction study (Newton full and diagonal over subsample "
                    "and sync-fraction grids, SGD over a learning-rate grid, several seeds) "
                    "and write runs.csv, curves.csv, summary.md and two figures into --out.")
    p.add_argument("--train-limit", type=int, default=None, metavar="K",
                   help="train on the first K training instances only (stated in summary.md)")
    g = p.add_argument_group("the grid")
    g.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated subset of " + ", ".join(METHODS))
    g.add_argument("--subsamples", type=_floats, default=GRID["subsamples"],
                   help="Gauss-Newton subsample fractions (default 0.05,0.2)")
    g.add_argument("--syncs", type=_floats, default=GRID["syncs"],
                   help="sync fractions of newton-diag (default 1,0.75,0.5)")
    g.add_argument("--lrs", type=_floats, default=GRID["lrs"],
                   help="SGD learning rates (default 1e-4,1e-3,1e-2,1e-1,1)")
    g.add_argument("--settings", default=None,
                   help="an explicit list instead of the grid: comma-separated "
                        "newton-full:S, newton-diag:S:SYNC, sgd:LR (e.g. "
                        "newton-full:0.05,newton-diag:0.05:0.5,sgd:0.01)")
    g.add_argument("--seeds", type=int, default=GRID["seeds"],
                   help="number of seeds, 0..K-1 (default 3)")
    g.add_argument("--iters", type=int, default=None,
                   help="Newton iterations per run (default 100, simpleNN's)")
    g.add_argument("--epochs", type=int, default=None,
                   help="SGD epochs per run (default: iters times the measured ratio of "
                        f"a Newton iteration's time to an SGD epoch's, "
                        f"{DEFAULTS['digits']['epochs_per_iter']:g} for digits, "
                        f"{DEFAULTS[None]['epochs_per_iter']:g} otherwise, so both get a "
                        "similar time; see summary.md)")
    g = p.add_argument_group("output")
    g.add_argument("--quick", action="store_true",
                   help="digits, 2 seeds, a small grid, few iterations: a minute or two")
    g.add_argument("--out", default=None, help="output directory (default results/<data>)")
    return p


OUTPUTS = ("runs.csv", "curves.csv", "summary.md", "accuracy_vs_time.png", "robustness.png")


def resolve(args):
    """Fill in the defaults that depend on --quick and --data; check the grid.

    Returns a SimpleNamespace with every option; ValueError names a bad value.
    """
    a = SimpleNamespace(**vars(args))
    if a.quick:
        for key, value in QUICK.items():
            if key in ("subsamples", "syncs", "lrs", "seeds") and _given(args, key):
                continue
            if key in ("hidden", "iters", "epochs") and getattr(args, key) is not None:
                continue
            if key == "data" and args.data != "digits":
                raise ValueError("--quick runs on digits; leave out --data or drop --quick")
            setattr(a, key, value)
    defaults = DEFAULTS.get(a.data, DEFAULTS[None])
    for key, value in defaults.items():
        if getattr(a, key, None) is None:
            setattr(a, key, value)
    a.out = a.out or os.path.join("results", a.data)
    a.methods = tuple(m.strip() for m in str(a.methods).split(",") if m.strip())
    bad = [m for m in a.methods if m not in METHODS]
    if bad or not a.methods:
        raise ValueError(f"--methods: unknown {', '.join(bad) or '(none)'}; choose from "
                         + ", ".join(METHODS))
    if a.settings:
        explicit = parse_settings(a.settings)
        a.methods = tuple(m for m in METHODS if any(x.method == m for x in explicit))
        a.subsamples = tuple(sorted({x.subsample for x in explicit if x.subsample}))
        a.syncs = tuple(sorted({x.sync for x in explicit if x.method == "newton-diag"},
                               reverse=True))
        a.lrs = tuple(sorted({x.lr for x in explicit if x.lr}))
        a.settings = explicit
    a.epochs_rule = "--epochs" if a.epochs is not None else \
        f"{a.epochs_per_iter:g} x --iters (the default ratio for {a.data})"
    if a.epochs is None:
        a.epochs = max(1, round(a.epochs_per_iter * a.iters))
    checks = [("--seeds", a.seeds >= 1), ("--iters", a.iters >= 1), ("--epochs", a.epochs >= 1),
              ("--subsamples", all(0 < s <= 1 for s in a.subsamples)),
              ("--syncs", all(0 < t <= 1 for t in a.syncs)),
              ("--lrs", all(lr > 0 for lr in a.lrs)),
              ("--train-limit", a.train_limit is None or a.train_limit >= 1)]
    for name, ok in checks:
        if not ok:
            raise ValueError(f"{name}: invalid value {getattr(a, name[2:].replace('-', '_'))!r}")
    # the names cli.prepare and cli.configs read, at the grid's first point
    a.seed, a.decay = 0, 0.0
    a.subsample = a.subsamples[0] if a.subsamples else 0.05
    a.lr = a.lrs[0] if a.lrs else 0.01
    return a


def _given(args, key):
    return getattr(args, key) != GRID[key]


# --------------------------------------------------------------------------- one run

def run_one(comm, data, hidden, splits, setting, seed, objective, newton_config, sgd_config,
            slow=None):
    """Build a model, train it, return (row, curve rows) on rank 0 and None elsewhere.

    Collective: every rank calls it with the same arguments.
    """
    objective = dataclasses.replace(objective, init_seed=seed)
    model = build_model(data, hidden, objective, comm, splits, setting.gn,
                        setting.sync if setting.method == "newton-diag" else 1.0, slow)
    comm.take_record()                     # start this run's ledger here (not at the last run's report)
    newton_config = dataclasses.replace(newton_config, subsample=setting.subsample or 0.05,
                                        seed=seed)
    sgd_config = dataclasses.replace(sgd_config, lr=setting.lr or 0.01, seed=seed)
    tic = time.perf_counter()
    history = train(model, setting.optimizer, newton_config, sgd_config)
    elapsed = time.perf_counter() - tic
    out = result(model, history, config_dict(
        optimizer=setting.optimizer, gn=setting.gn, sync=setting.sync, objective=objective,
        **({"newton": newton_config} if setting.optimizer == "newton" else {"sgd": sgd_config})))
    model.close()
    if out is None:
        return None
    return summarize_run(out, setting, seed, elapsed,
                         newton_config.iters if setting.optimizer == "newton" else sgd_config.epochs)


def summarize_run(out, setting, seed, elapsed, budget):
    """(row of runs.csv, rows of curves.csv) from a result of ``experiment.result``."""
    history, config, final = out["history"], out["config"], out["final"]
    # each rank's own CG count (they differ under the diagonal G); one process: its own
    per_rank = [r.get("cg_iters_per_rank") or [r.get("cg_iters") or 0] for r in history]
    cg_max = [max(c) for c in per_rank] if setting.method != "sgd" else []
    cg_mean = [float(np.mean(c)) for c in per_rank] if cg_max else []
    row = dict(
        method=setting.method, setting=setting.label,
        subsample=setting.subsample, sync=setting.sync, lr=setting.lr, seed=seed,
        unit="epoch" if setting.method == "sgd" else "iteration", budget=budget,
        iterations=len(history),
        train_accuracy=final["train_accuracy"], test_accuracy=final["test_accuracy"],
        objective=final["objective"], wall_time=final["wall_time"],
        elapsed=elapsed, diverged=any(r.get("diverged") for r in history),
        cg_iters=sum(cg_max) if setting.method != "sgd" else None,
        cg_iters_mean=sum(cg_mean) if setting.method != "sgd" else None,
        C=config["C"])
    for key in ("bytes", "messages", "seconds"):
        for phase in LEDGER_PHASES:
            row[f"{key}_{phase}"] = sum(r["comm"].get(phase, {}).get(key, 0) for r in history)
    row["bytes_total"] = sum(row[f"bytes_{p}"] for p in LEDGER_PHASES if p not in MONITORING)
    row["messages_total"] = sum(row[f"messages_{p}"] for p in LEDGER_PHASES
                                if p not in MONITORING)
    curves = [dict(iter=r["iter"], wall_time=r["wall_time"], objective=r["objective"],
                   train_accuracy=r["train_accuracy"], test_accuracy=r["test_accuracy"],
                   cg_iters=cg_max[k] if cg_max and setting.method != "sgd" else None,
                   bytes=sum(d["bytes"] for p, d in r["comm"].items() if p not in MONITORING))
              for k, r in enumerate(history)]
    return row, curves


RUN_COLUMNS = (["run", "data", "network", "splits", "ranks", "train_size", "C", "method",
                "setting", "subsample", "sync", "lr", "seed", "unit", "budget", "iterations",
                "train_accuracy", "test_accuracy", "objective", "wall_time", "elapsed",
                "diverged", "cg_iters", "cg_iters_mean", "bytes_total", "messages_total"]
               + [f"bytes_{p}" for p in LEDGER_PHASES]
               + [f"messages_{p}" for p in LEDGER_PHASES]
               + [f"seconds_{p}" for p in LEDGER_PHASES])
CURVE_COLUMNS = ["run", "method", "setting", "seed", "iter", "wall_time", "objective",
                 "train_accuracy", "test_accuracy", "cg_iters", "bytes"]


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


def read_runs(path):
    """runs.csv back as dicts with numbers parsed (for tests and notebooks)."""
    def parse(v):
        if v == "":
            return None
        if v in ("True", "False"):
            return v == "True"
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


# --------------------------------------------------------------------------- aggregation

def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _std(values):
    """Sample standard deviation (ddof = 1); None with fewer than two values."""
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def aggregate(rows):
    """One dict per setting (sorted: method, S, sync descending, lr): means over seeds."""
    groups = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    out = []
    order = lambda rs: (METHODS.index(rs[0]["method"]), rs[0]["subsample"] or 0,  # noqa: E731
                        -(rs[0]["sync"] or 0), rs[0]["lr"] or 0)
    for label, rs in sorted(groups.items(), key=lambda item: order(item[1])):
        r0 = rs[0]
        iters = [r["iterations"] for r in rs]
        per_iter = lambda key: _mean([r[key] / r["iterations"] for r in rs  # noqa: E731
                                      if r["iterations"] and r[key] is not None])
        out.append(dict(
            setting=label, method=r0["method"], subsample=r0["subsample"], sync=r0["sync"],
            lr=r0["lr"], unit=r0["unit"], seeds=len(rs),
            test=_mean([r["test_accuracy"] for r in rs]),
            test_std=_std([r["test_accuracy"] for r in rs]),
            test_all=[r["test_accuracy"] for r in rs],
            train=_mean([r["train_accuracy"] for r in rs]),
            objective=_mean([r["objective"] for r in rs]),
            iterations=_mean(iters), time=_mean([r["wall_time"] for r in rs]),
            time_per_iter=per_iter("wall_time"),
            bytes_per_iter=per_iter("bytes_total"), cg_bytes_per_iter=per_iter("bytes_cg"),
            gn_bytes_per_iter=_mean([(r["bytes_jacobian"] + r["bytes_cg"]) / r["iterations"]
                                     for r in rs if r["iterations"]]),
            cg_per_iter=per_iter("cg_iters"), cg_seconds_per_iter=per_iter("seconds_cg"),
            jacobian_seconds_per_iter=per_iter("seconds_jacobian"),
            diverged=sum(bool(r["diverged"]) for r in rs)))
    return out


def accuracy_at(curves, run, t):
    """Test accuracy of ``run`` at its last record with wall_time <= t (None before any)."""
    best = None
    for c in curves:
        if c["run"] == run and c["wall_time"] <= t + 1e-12:
            best = c["test_accuracy"]
    return best


# --------------------------------------------------------------------------- summary.md

def _fmt(value, spec, missing="–"):
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def _pm(mean, std):
    return _fmt(mean, ".4f") + (f" ± {std:.4f}" if std is not None else "")


def settings_table(stats):
    """The markdown table: one line per setting."""
    head = ("| method | S | sync | lr | seeds | test acc (mean ± std) | train acc | f | "
            "iters/epochs | time (s) | MB / iter | CG MB / iter | CG its / iter | diverged |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in stats:
        lines.append("| " + " | ".join([
            s["method"],
            _fmt(s["subsample"] and 100 * s["subsample"], "g") + ("%" if s["subsample"] else ""),
            _fmt(s["sync"], "g"), _fmt(s["lr"], "g"), str(s["seeds"]),
            _pm(s["test"], s["test_std"]), _fmt(s["train"], ".4f"), _fmt(s["objective"], ".4g"),
            _fmt(s["iterations"], "g") + (" ep" if s["unit"] == "epoch" else ""),
            _fmt(s["time"], ".2f"), _fmt(s["bytes_per_iter"] and s["bytes_per_iter"] / 1e6, ".3f"),
            _fmt(s["cg_bytes_per_iter"] and s["cg_bytes_per_iter"] / 1e6, ".4f")
            if s["method"] != "sgd" else "–",
            _fmt(s["cg_per_iter"], ".1f"), f"{s['diverged']}/{s['seeds']}"]) + " |")
    return "\n".join(lines)


def _find(stats, **where):
    for s in stats:
        if all(s[k] == v for k, v in where.items()):
            return s
    return None


def claims(stats, rows, curves):
    """Bullet lines: each claim of the paper against the numbers of this study."""
    out = []
    mb = lambda b: _fmt(b and b / 1e6, ".3g")              # noqa: E731
    # 1. diagonalization
    lines = []
    for s in sorted({x["subsample"] for x in stats if x["method"] == "newton-full"}):
        full = _find(stats, method="newton-full", subsample=s)
        diag = _find(stats, method="newton-diag", subsample=s, sync=1.0)
        if full and diag:
            lines.append(
                f"S={100 * s:g}%: CG sends {mb(full['cg_bytes_per_iter'])} MB per Newton "
                f"iteration with the full G, {mb(diag['cg_bytes_per_iter'])} MB with the "
                f"diagonal G (sync 1); all training bytes {mb(full['bytes_per_iter'])} against "
                f"{mb(diag['bytes_per_iter'])} MB/iter; test accuracy {_pm(full['test'], full['test_std'])}"
                f" against {_pm(diag['test'], diag['test_std'])}; final f {_fmt(full['objective'], '.4g')}"
                f" against {_fmt(diag['objective'], '.4g')}; time {_fmt(full['time'], '.1f')} s "
                f"against {_fmt(diag['time'], '.1f')} s.")
    out.append(("1. Diagonalization removes the communication inside CG at little cost in "
                "progress", lines or ["not measured (needs newton-full and newton-diag with "
                                      "sync 1 at the same S)"]))
    # 2. subsampling
    lines = []
    for method, sync in (("newton-full", 1.0), ("newton-diag", 1.0)):
        pts = sorted((x for x in stats if x["method"] == method and x["sync"] == sync),
                     key=lambda x: x["subsample"])
        if len(pts) > 1:
            lines.append(f"{method}: " + "; ".join(
                f"S={100 * x['subsample']:g}%: {_fmt(x['time_per_iter'], '.3g')} s/iter "
                f"(Jacobian {_fmt(x['jacobian_seconds_per_iter'], '.3g')} s, CG "
                f"{_fmt(x['cg_seconds_per_iter'], '.3g')} s), Jacobian+CG "
                f"{mb(x['gn_bytes_per_iter'])} MB/iter, {_fmt(x['cg_per_iter'], '.1f')} CG its/iter, "
                f"test {_pm(x['test'], x['test_std'])}, f {_fmt(x['objective'], '.4g')}"
                for x in pts) + ".")
    out.append(("2. Subsampling cuts the cost of the Gauss-Newton part",
                lines or ["not measured (needs two subsample fractions)"]))
    # 3. sync fraction
    lines = []
    for s in sorted({x["subsample"] for x in stats if x["method"] == "newton-diag"}):
        pts = sorted((x for x in stats if x["method"] == "newton-diag" and x["subsample"] == s),
                     key=lambda x: -x["sync"])
        if len(pts) > 1:
            lines.append(f"newton-diag S={100 * s:g}%: " + "; ".join(
                f"sync {x['sync']:g}: CG {_fmt(x['cg_seconds_per_iter'], '.3g')} s/iter "
                f"(slowest rank), {_fmt(x['cg_per_iter'], '.1f')} CG its/iter, total "
                f"{_fmt(x['time'], '.1f')} s, test {_pm(x['test'], x['test_std'])}, "
                f"f {_fmt(x['objective'], '.4g')}" for x in pts) + ".")
    out.append(("3. Early CG termination (sync fraction) cuts the waiting",
                lines or ["not measured (needs newton-diag at two sync fractions)"]))
    # 4. robustness and accuracy
    lines = []
    newton = [x for x in stats if x["method"] != "sgd"]
    sgd = [x for x in stats if x["method"] == "sgd"]

    def spread(pts):
        vals = [x["test"] for x in pts if x["test"] is not None]
        return min(vals), max(vals), float(np.std(vals))
    if newton and sgd:
        n_lo, n_hi, n_sd = spread(newton)
        s_lo, s_hi, s_sd = spread(sgd)
        best_n = max(newton, key=lambda x: x["test"])
        best_s = max(sgd, key=lambda x: x["test"])
        conv = [x for x in sgd if not x["diverged"]]
        if len(newton) > 1:
            lines.append(f"Newton, {len(newton)} settings: mean test accuracy from {n_lo:.4f} to "
                         f"{n_hi:.4f} (range {n_hi - n_lo:.4f}, std over settings {n_sd:.4f}).")
        if len(sgd) > 1:
            lines.append(f"SGD, {len(sgd)} learning rates: from {s_lo:.4f} to {s_hi:.4f} (range "
                         f"{s_hi - s_lo:.4f}, std {s_sd:.4f}); "
                         f"{sum(x['diverged'] > 0 for x in sgd)} rate(s) diverged in some seed"
                         + (f"; without them: {min(x['test'] for x in conv):.4f} to "
                            f"{max(x['test'] for x in conv):.4f}" if conv and len(conv) < len(sgd)
                            else "") + ".")
        if len(newton) == 1 or len(sgd) == 1:
            lines.append("Robustness not measured: it needs two or more settings of each method.")
        lines.append(f"Best Newton: {best_n['setting']}, {_pm(best_n['test'], best_n['test_std'])}"
                     f" in {_fmt(best_n['time'], '.1f')} s; best SGD: {best_s['setting']}, "
                     f"{_pm(best_s['test'], best_s['test_std'])} in {_fmt(best_s['time'], '.1f')} s"
                     f" (difference {best_n['test'] - best_s['test']:+.4f}).")
        t = min(best_n["time"], best_s["time"])
        at = {}
        for best in (best_n, best_s):
            runs = [r["run"] for r in rows if r["setting"] == best["setting"]]
            at[best["setting"]] = _mean([accuracy_at(curves, run, t) for run in runs])
        lines.append(f"At the same training time t = {t:.1f} s (the shorter of the two): "
                     + "; ".join(f"{k} {_fmt(v, '.4f')}" for k, v in at.items()) + ".")
    out.append(("4. Newton is more robust to its settings than SGD to its learning rate, and "
                "may reach better test accuracy", lines or ["not measured (needs both methods)"]))
    return out


def machine_info():
    """Cores, CPU, Python, numpy, mpi4py and MPI library versions."""
    import mpi4py
    from mpi4py import MPI           # only to name the MPI library; messages go through comm.py
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(cores=os.cpu_count(), usable_cores=usable, cpu=cpu or "unknown",
                platform=platform.platform(), python=platform.python_version(),
                numpy=np.__version__, mpi4py=mpi4py.__version__,
                mpi=" ".join(MPI.Get_library_version().strip().splitlines()[0].split()),
                threads=", ".join(f"{k}={os.environ[k]}" for k in BLAS_THREADS
                                  if k in os.environ) or "not set")


def speed_environment():
    """The variables set here that change how fast the runs go, never what they compute:
    BLAS threads, and MPICH's tuning variables (MPIR_CVAR_...), as NAME=value strings."""
    return [f"{k}={os.environ[k]}" for k in BLAS_THREADS if k in os.environ] + \
        [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MPIR_CVAR_")]


def command_line(ranks):
    """The command as typed (``python -m dnewton_core`` or ``dnewton``), prefixed by mpiexec."""
    prog = "python -m dnewton_core"
    argv = sys.argv[1:]
    if not sys.argv or os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0]))) \
            != "dnewton_core" and os.path.basename(sys.argv[0]) != "dnewton":
        argv = ["reproduce", "..."]                    # called in-process: argv is not ours
    env = " ".join(speed_environment())
    launch = f"mpiexec -n {ranks} " if ranks > 1 else ""
    return (env + " " if env else "") + launch + prog + " " + shlex.join(argv)


def reductions(a, diag_possible):
    """What this study leaves out of the default one (so summary.md can say so)."""
    out = []
    default_iters = DEFAULTS.get(a.data, DEFAULTS[None])["iters"]
    if a.iters < default_iters:
        out.append(f"{a.iters} Newton iterations instead of {default_iters} (simpleNN's)")
    if a.seeds < GRID["seeds"]:
        out.append(f"{a.seeds} seed(s) instead of {GRID['seeds']}" +
                   (": no spread over seeds" if a.seeds == 1 else ""))
    full, _ = study_settings(METHODS, GRID["subsamples"], GRID["syncs"], GRID["lrs"],
                             diag_possible)
    ran = {x.label for x in (a.settings or study_settings(
        a.methods, a.subsamples, a.syncs, a.lrs, diag_possible)[0])}
    missing = [x.label for x in full if x.label not in ran]
    if missing:
        out.append("settings of the default grid not run: " + "; ".join(missing))
    if a.train_limit is not None:
        out.append(f"only the first {a.train_limit} training instances (--train-limit)")
    return out


def changes(a):
    """What this study adds to the machine as it is (stated in summary.md)."""
    if not a.slow_rank:
        return []
    rank, seconds = a.slow_rank.split(":")
    return [f"STRAGGLER: rank {rank} sleeps {seconds} s in each of its Gauss-Newton products "
            "(--slow-rank), in every Newton run: the times measure a slow partition on purpose"]


def summary_markdown(a, info, stats, rows, curves, notes, started, seconds, data_note):
    first = rows[0]
    newton = [x for x in stats if x["method"] != "sgd"]
    sgd = [x for x in stats if x["method"] == "sgd"]
    budget = []
    if newton:
        budget.append(f"Newton {a.iters} iterations per run took {_mean([x['time'] for x in newton]):.1f} s "
                      f"of training on average ({_mean([x['time_per_iter'] for x in newton]):.3g} s/iteration)")
    if sgd:
        conv = [x for x in sgd if not x["diverged"]] or sgd
        budget.append(f"SGD {a.epochs} epochs took {_mean([x['time'] for x in conv]):.1f} s on average "
                      f"over the rates that did not diverge "
                      f"({_mean([x['time_per_iter'] for x in conv]):.3g} s/epoch)")
    lines = [
        f"# Reproduction study: {a.data}, network {first['network']}", "",
        f"- command: `{command_line(info['ranks'])}`",
        f"- date: {started} (study wall time {seconds / 60:.1f} min, data loading and "
        "accuracy checks included)",
        f"- machine: {info['cores']} cores ({info['usable_cores']} usable), {info['cpu']}, "
        f"{info['platform']}; Python {info['python']}, numpy {info['numpy']}, mpi4py "
        f"{info['mpi4py']}, {info['mpi']}; BLAS threads: {info['threads']}",
        f"- load average (1 min) at the start and the end: {info['load_start']} and "
        f"{info['load_end']} (on {info['cores']} cores: other work on the machine slows the "
        "runs and makes the times noisy)",
        f"- ranks: {info['ranks']}, splits {first['splits'] or '(one process, dense model)'}",
        f"- data: {data_note}",
        f"- network {first['network']}, {a.activation}, {a.loss} loss, C = {first['C']:g} "
        f"({a.C_text}{'' if a.C else ', the kit' + chr(39) + 's default, model.KIT_C'})",
        f"- Newton: simpleNN's constants (xi = {a.xi:g}, CG_max = {a.cg_max}, lambda_0 = "
        f"{a.lambda0:g}, boost 3/2, drop 2/3, eta = 1e-4), {a.iters} iterations; subsamples "
        f"{', '.join(f'{100 * s:g}%' for s in a.subsamples)}"
        + (f"; sync fractions {', '.join(f'{t:g}' for t in a.syncs)} (newton-diag only)"
           if a.syncs and "newton-diag" in a.methods else ""),
        f"- SGD with momentum {a.momentum:g}, batch {a.batch_size}, no decay, {a.epochs} epochs; "
        f"learning rates {', '.join(f'{lr:g}' for lr in a.lrs)} (a diverged run stops at the "
        "epoch where f overflows and is kept as a result)",
    ] + (["- settings: an explicit list (--settings) instead of the full grid: "
          + "; ".join(x.label for x in a.settings)] if a.settings else []) + [
        f"- seeds 0..{a.seeds - 1} (initialization, subsamples, batch order); the train/test "
        "split is fixed",
        "- time budget: " + ("; ".join(budget) or "–") + f". SGD epochs: {a.epochs_rule}; "
        "they are meant to give SGD about the training time of Newton on this machine. The "
        "table gives each run's training time (accuracy checks not counted), and claim 4 "
        "also compares the two at the same time.",
    ] + [f"- left out: {n}" for n in notes] + [
        f"- REDUCED against the default study: {x}" for x in reductions(a, info["ranks"] > 1)] + [
        f"- {x}" for x in changes(a)] + [
        "",
        "Columns: test/train accuracy and f at the end of the run, mean over seeds (± sample "
        "std); time = training seconds; MB / iter = bytes sent for training (every phase but "
        "evaluate/report), summed over ranks, per Newton iteration or SGD epoch; CG MB / iter "
        "= the part in CG; CG its / iter = CG iterations per Newton iteration (slowest "
        "partition). Every run is a row of runs.csv; every iteration a row of curves.csv.",
        "", settings_table(stats), "",
        "## The claims, measured (generated from the table)", ""]
    for title, items in claims(stats, rows, curves):
        lines += [f"### {title}", ""] + [f"- {x}" for x in items] + [""]
    lines += ["Figures: `accuracy_vs_time.png` (test accuracy against training time, mean "
              "over seeds, one panel per method), `robustness.png` (final test accuracy of "
              "every run, per setting).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures

def figure_inputs(stats, rows, curves):
    """(panels for plots.accuracy_time_panels, groups for plots.robustness_strip)."""
    panels = {}
    by_run = {}
    for c in curves:
        by_run.setdefault(c["run"], []).append(c)
    for s in stats:
        runs = [by_run.get(r["run"], []) for r in rows if r["setting"] == s["setting"]]
        n = min(len(c) for c in runs) if runs else 0
        if n == 0:
            continue
        t = [float(np.mean([c[k]["wall_time"] for c in runs])) for k in range(n)]
        acc = [float(np.mean([c[k]["test_accuracy"] for c in runs])) for k in range(n)]
        label = s["setting"].split(" ", 1)[1] + (" (diverged)" if s["diverged"] else "")
        panels.setdefault(s["method"], {})[label] = (t, acc)
    groups = [(s["method"], s["setting"].split(" ", 1)[1],
               [r["test_accuracy"] for r in rows if r["setting"] == s["setting"]],
               [bool(r["diverged"]) for r in rows if r["setting"] == s["setting"]])
              for s in stats]
    return panels, groups


# --------------------------------------------------------------------------- the command

def cmd_reproduce(args, comm):
    """The study: agreed validation, then every (seed, setting) run on ``comm``, then
    (rank 0) the table, summary.md and the figures. Returns the exit status."""
    from . import cli                       # prepare, configs: the command line's own
    error, a = None, None
    try:
        a = resolve(args)
    except ValueError as e:
        error = str(e)
    comm.agree(error)
    paths = {name: os.path.join(a.out, name) for name in OUTPUTS}
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = _load()
    tic = time.perf_counter()
    data, objective, newton_config, sgd_config, splits, slow = cli.prepare(a, comm,
                                                                            paths.values())
    data_note = f"{data.name}, {len(data.y_train)} training and {len(data.y_test)} test " \
                f"instances, {data.n_features} features, {data.n_classes} classes ({data.source})"
    if a.train_limit is not None and a.train_limit < len(data.y_train):
        k = a.train_limit
        data = dataclasses.replace(data, X_train=data.X_train[:k], y_train=data.y_train[:k])
        objective, newton_config, sgd_config = cli.configs(a, data)   # C = c * l with the new l
        data_note += f"; REDUCED: only the first {k} training instances are used (--train-limit)"
    a.C_text = a.C or default_C(a.data)
    newton_config = dataclasses.replace(newton_config, iters=a.iters)
    sgd_config = dataclasses.replace(sgd_config, epochs=a.epochs)
    diag_possible = comm.size > 1 or splits is not None
    if a.settings:
        settings = [x for x in a.settings if diag_possible or x.method != "newton-diag"]
        notes = [] if len(settings) == len(a.settings) else study_settings(
            ("newton-diag",), (), (), (), False)[1]
    else:
        settings, notes = study_settings(a.methods, a.subsamples, a.syncs, a.lrs,
                                         diag_possible)
    if not settings:
        comm.agree("nothing to run: " + "; ".join(notes))
    if comm.rank == 0:
        os.makedirs(a.out, exist_ok=True)
    total = len(settings) * a.seeds
    network = "-".join(map(str, (data.n_features, *a.hidden, data.n_classes)))
    _say(comm, f"reproduce: {a.data}, network {network}, {comm.size} rank(s), "
               f"{len(settings)} settings x {a.seeds} seeds = {total} runs -> {a.out}")
    for note in notes:
        _say(comm, f"  left out: {note}")
    rows, curves = [], []
    for seed in range(a.seeds):
        for setting in settings:
            got = run_one(comm, data, a.hidden, splits, setting, seed, objective,
                          newton_config, sgd_config, slow)
            if got is None:
                continue
            row, curve = got
            run = len(rows) + 1
            row.update(run=run, data=a.data, network=network, ranks=comm.size,
                       splits=",".join(map(str, splits)) if splits else _grid(comm, data, a),
                       train_size=len(data.y_train))
            rows.append(row)
            curves += [dict(c, run=run, method=setting.method, setting=setting.label, seed=seed)
                       for c in curve]
            write_csv(paths["runs.csv"], rows, RUN_COLUMNS)
            write_csv(paths["curves.csv"], curves, CURVE_COLUMNS)
            print(f"[{run:>3}/{total}] {setting.label:<30} seed {seed}: test "
                  f"{_fmt(row['test_accuracy'], '.4f')}, f {_fmt(row['objective'], '.4g')}, "
                  f"{row['iterations']} {row['unit']}s, {row['wall_time']:.2f} s, "
                  f"{row['bytes_total'] / 1e6:.2f} MB (CG {row['bytes_cg'] / 1e6:.3f})"
                  + (", DIVERGED" if row["diverged"] else ""), flush=True)
    if comm.rank == 0:
        from .plots import accuracy_time_panels, robustness_strip
        stats = aggregate(rows)
        info = dict(machine_info(), ranks=comm.size, load_start=load_start, load_end=_load())
        summary = summary_markdown(a, info, stats, rows, curves, notes, started,
                                   time.perf_counter() - tic, data_note)
        with open(paths["summary.md"], "w") as f:
            f.write(summary)
        panels, groups = figure_inputs(stats, rows, curves)
        title = f"{a.data}, {network}, {comm.size} rank(s)"
        accuracy_time_panels(panels, paths["accuracy_vs_time.png"], title=title)
        robustness_strip(groups, paths["robustness.png"], title=title)
        print(settings_table(stats))
        print(f"wrote {', '.join(OUTPUTS)} in {a.out} ({(time.perf_counter() - tic) / 60:.1f} min)")
    return 0


def _grid(comm, data, a):
    """The splits the runs used when none were given: the proposal for this many ranks."""
    if comm.size == 1:
        return ""
    from .model import network_layers
    from .partition import propose_splits
    return ",".join(map(str, propose_splits(network_layers(data.n_features, a.hidden,
                                                           data.n_classes), comm.size)))


def _say(comm, line):
    if comm.rank == 0:
        print(line, flush=True)


def _load():
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"
