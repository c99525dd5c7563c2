"""The command line's options: one parser per command, the options they share declared
once, their defaults read from the config dataclasses. A parse error is one line."""
import argparse
import re
import sys

from . import data as datasets
from .experiment import OPTIMIZERS
from .model import DTYPES, GN_MODES, ObjectiveConfig
from .network import PRESETS
from .newton import CG_RULES, DIAG_STEPS, NewtonConfig
from .sgd import SGDConfig
from .study import settings as study

# Seconds one collective may wait before the job ends as stalled: far above any wait of the
# committed studies (a Newton iteration of Fashion-MNIST 784-300-300-10 takes about 8 s).
STALL_TIMEOUT = 600.0


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on standard error (exit status 2), not the
    whole usage: ``error: train: argument --hidden: ... (see --help)``."""

    def error(self, message):
        name = self.prog.replace("python -m dnewton_core", "").strip()
        if (missing := re.fullmatch(r"argument (-[^/:]+)\S*: expected (one|at least one) "
                                    r"arguments?", message)):     # (or a value such as -5:10)
            message += f" (a value that starts with '-' is given as {missing[1]}=VALUE)"
        print(f"error: {name + ': ' if name else ''}{message} (see {self.prog} --help)",
              file=sys.stderr, flush=True)
        sys.exit(2)


def parse(argv=None):
    """The options of ``argv``, with the defaults that depend on others (``with_defaults``);
    an unknown option is named by its command's parser (``see ... train --help``)."""
    args, extra = parser().parse_known_args(argv)
    if extra:
        Parser(prog=f"python -m dnewton_core {args.command}").error(
            f"unrecognized arguments: {' '.join(extra)}")
    return with_defaults(args)


def unused_options(args):
    """What to say of the options a train run was given a value of other than their default
    but does not use (or None): the other optimizer's (the settings of its config dataclass
    that train has options for, but the shared --seed, and for Newton its Gauss-Newton
    matrix), and --checkpoint-every without --checkpoint."""
    other = "sgd" if args.optimizer == "newton" else "newton"
    names = [*(NewtonConfig if other == "newton" else SGDConfig).__dataclass_fields__] + \
        (["gn", "sync"] if other == "newton" else [])
    default, said = vars(parser().parse_args([args.command])), []   # the parser's defaults
    if (unused := ["--" + k.replace("_", "-") for k in names
                   if k != "seed" and hasattr(args, k) and getattr(args, k) != default[k]]):
        said.append(f"{', '.join(unused)}: {other}'s option{'s' * (len(unused) > 1)}, unused "
                    f"by this {args.optimizer} run")
    if getattr(args, "checkpoint_every", 1) != default.get("checkpoint_every", 1) and \
            not getattr(args, "checkpoint", None):
        said.append("--checkpoint-every: unused without --checkpoint")
    return "; ".join(said) or None


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


INT_MAX = 2**63 - 1            # a width, a count of partitions: numpy's largest array axis


def _positive_ints(text):
    try:
        values = tuple(int(v) for v in text.split(",")) if text.strip() else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(not 1 <= v <= INT_MAX for v in values):   # numpy sizes no larger array axis
        raise argparse.ArgumentTypeError(f"expected positive integers up to {INT_MAX}, got {text!r}")
    return values


def _hidden(text):
    """--hidden: widths, or "none" for a network without hidden layers (never by accident)."""
    if text.strip().lower() == "none":
        return ()
    if not text.strip():
        raise argparse.ArgumentTypeError("expected widths such as 300,300, or none for no "
                                         "hidden layer, got ''")
    return _positive_ints(text)


SEED_MAX = 2**32 - 1           # numpy's RandomState (the kit's split of a data set) takes no more


def _int_in(low, high=None):
    """An argparse type: an integer in [low, high] (no upper bound when high is None)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"expected an integer {f'in [{low}, {high}]' if high is not None else f'>= {low}'}"
                f", got {text!r}")
        return value
    return parse


HIDDEN_HELP = ("hidden layer widths, e.g. 300,300, or none (default 64,64 for digits, 300,300 "
               "otherwise)")


def with_defaults(args):
    """``args`` with the defaults that depend on other options filled in: --hidden from the
    data set (``reproduce`` fills in its own, with its grid's)."""
    if getattr(args, "hidden", ()) is None and args.command != "reproduce":
        args.hidden = study.defaults_of(args.data)["hidden"]
    return args


def parser():
    top = Parser(
        prog="python -m dnewton_core",
        description="Distributed Newton methods for deep neural networks (Wang et al., "
                    "Neural Computation 2018). Run alone for one process, or under "
                    "'mpiexec -n N' for N ranks, each holding one partition of the network or several.")
    sub = top.add_subparsers(dest="command", required=True)

    network, constants, budgets = shared_options()
    single = argparse.ArgumentParser(add_help=False)
    common = [network, single, constants, budgets]
    g = single.add_argument_group("a single run")
    g.add_argument("--seed", type=_int_in(0, SEED_MAX), default=0,
                   help="seeds initialization, subsamples and batches (default 0)")
    g.add_argument("--sync", type=float, default=1.0,
                   help="with --gn diag: stop every CG once this fraction of partitions "
                        "is done (default 1: wait for all; below 1 needs one rank a partition)")
    add_diag_step(g)
    g.add_argument("--network", nargs="+", default=["none"], metavar="NAME|LAT_US:GBIT",
                   help="charge every message its time on a network (docs/method.md §8): "
                        "none (default), " + ", ".join(PRESETS) + ", or LATENCY_US:"
                        "BANDWIDTH_GBIT[:GAMMA_NS_PER_BYTE]")
    g.add_argument("--network-mode", default="model", choices=("model", "inject"),
                   help="model: record each phase's modeled network seconds and the run's "
                        "modeled_time, the run is not slowed (default); inject: each "
                        "collective really lasts at least its modeled time")

    p = sub.add_parser("train", parents=common, help="train one network, one line per iteration",
                       description="Train one network and print one line per iteration.")
    p.add_argument("--optimizer", default="newton", choices=OPTIMIZERS)
    p.add_argument("--gn", default="full", choices=GN_MODES,
                   help="Gauss-Newton matrix: full, or block-diagonal (no messages in CG)")
    p.add_argument("--json", help="write {config, history, final} to this file")
    p.add_argument("--trace", metavar="FILE.json",
                   help="write every rank's time line (phases, messages) as a Chrome trace "
                        "that Perfetto or chrome://tracing opens")
    add_keep(p)

    p = sub.add_parser("compare", parents=common, help="Newton (full, diagonal) against SGD",
                       description="Newton with the full and (on several ranks, or one with "
                                   "--splits) the diagonal Gauss-Newton matrix against SGD, on "
                                   "the same data, network and grid: a table, compare.json and "
                                   "a figure.")
    p.add_argument("--out", default="results/compare", help="output directory")
    add_reproduce(sub, parents=shared_options()[:2])
    add_project(sub)
    p = sub.add_parser("evaluate", help="train and test accuracy and f of weights that "
                                        "train --save wrote (one process)")
    p.add_argument("--model", required=True, help="the file train --save wrote")
    p.add_argument("--data", help="data set (default: the one the model was trained on)")
    p.add_argument("--data-path", help="directory or file(s) of the data set")
    p.add_argument("--json", help="write the exact values to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return top


def add_diag_step(g):
    """--diag-step and --cg-rule: the options of the block-diagonal G (docs/method.md §6)."""
    g.add_argument("--diag-step", default=NewtonConfig.diag_step, choices=DIAG_STEPS,
                   help="the step after CG (docs/method.md §6): none (d, default), rescale "
                        "(--gn diag: d times the step length of the full G's model, one "
                        "|S| x n_L allreduce) or subspace (the model over d and the last step)")
    g.add_argument("--cg-rule", default=NewtonConfig.cg_rule, choices=CG_RULES,
                   help="with --gn diag: a partition's CG stops at ||r_p|| <= xi ||g_p|| "
                        "(partition, default) or at its share xi ||g|| sqrt(n_p/n) (global)")


def add_keep(p):
    g = p.add_argument_group("checkpoints and weights")
    g.add_argument("--checkpoint", metavar="DIR", help="save the run into DIR after each "
                   "iteration or epoch (each rank its block; a checkpoint is complete or absent)")
    g.add_argument("--checkpoint-every", type=int, default=1, metavar="K",
                   help="checkpoint every K iterations or epochs, and after the last")
    g.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR, on "
                   "any grid (--iters and --epochs count from the start of the run)")
    g.add_argument("--save", metavar="FILE", help="write the final weights (.npz), see evaluate")


def _names(text):
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _floats(text):
    try:                                 # an empty item ("0.5,,0.2") is a typo: refused
        values = tuple(float(v) for v in text.split(",")) if text.strip() else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_reproduce(subparsers, parents):
    """``reproduce``, with its shared options (data, network, partitions, constants)."""
    p = subparsers.add_parser(
        "reproduce", parents=parents,
        help="the paper's claims, measured: a grid of runs, tables and figures",
        description="Run the reproduction study (Newton full and diagonal over subsample "
                    "and sync-fraction grids, SGD over a learning-rate grid, several seeds) "
                    "and write runs.csv, curves.csv, summary.md and two figures into --out.")
    grid, ratio = study.GRID, study.DEFAULTS
    g = p.add_argument_group("the grid")
    g.add_argument("--methods", default=",".join(study.METHODS),
                   help="comma-separated subset of " + ", ".join(study.METHODS))
    g.add_argument("--subsamples", type=_floats, default=grid["subsamples"],
                   help="Gauss-Newton subsample fractions (default 0.05,0.2)")
    g.add_argument("--syncs", type=_floats, default=grid["syncs"],
                   help="sync fractions of newton-diag (default 1,0.75,0.5)")
    g.add_argument("--diag-steps", type=_names, default=grid["steps"],
                   help="newton-diag's steps after CG (default none,rescale; also subspace: "
                        "docs/method.md §6)")
    g.add_argument("--lrs", type=_floats, default=grid["lrs"],
                   help="SGD learning rates (default 1e-4,1e-3,1e-2,1e-1,1)")
    g.add_argument("--settings", default=None,
                   help="an explicit list instead of the grid: comma-separated "
                        "newton-full:S, newton-diag:S:SYNC[:STEP], sgd:LR (e.g. "
                        "newton-full:0.05,newton-diag:0.05:0.5,sgd:0.01)")
    g.add_argument("--seeds", type=int, default=grid["seeds"],
                   help=f"number of seeds, 0..K-1 (default {grid['seeds']})")
    g.add_argument("--iters", type=int, default=None,
                   help=f"Newton iterations per run (default {NewtonConfig.iters}, simpleNN's)")
    g.add_argument("--epochs", type=int, default=None,
                   help="SGD epochs per run (default: iters times the measured ratio of "
                        "a Newton iteration's time to an SGD epoch's, "
                        f"{ratio['digits']['epochs_per_iter']:g} for digits, "
                        f"{ratio[None]['epochs_per_iter']:g} otherwise, so both get a "
                        "similar time; see summary.md)")
    g = p.add_argument_group("modeled networks")
    g.add_argument("--network", nargs="+", action="extend", default=None, metavar="NAME",
                   help="charge every run on each of these networks (space- or "
                        "comma-separated, or --network given again) at once (model mode, "
                        "docs/method.md §8): " + ", ".join(PRESETS) + " or LATENCY_US:"
                        "BANDWIDTH_GBIT; summary.md, runs.csv, curves.csv and a figure give "
                        "the time to accuracy on each")
    g = p.add_argument_group("output")
    g.add_argument("--quick", action="store_true",
                   help="digits, 2 seeds, a small grid, few iterations: seconds")
    g.add_argument("--out", default=None, help="output directory (default results/<data>; "
                                               "with --quick the scratch results/quick)")
    g.add_argument("--continue", dest="resume_study", action="store_true",
                   help="continue the study in --out with the same options: keep the runs "
                        "runs.csv and curves.csv hold, run the others, then rewrite the "
                        "report and the figures from all of them")
    return p


def shared_options():
    """Parent parsers: (data, network and partitions; Newton's and SGD's constants; the
    budgets and step sizes of one run). ``reproduce`` shares the first two. ``--hidden``
    has no default here: it depends on the data set (``with_defaults``). Each call makes new
    parsers: argparse shares option objects between a parent and its children."""
    network = argparse.ArgumentParser(add_help=False)
    g = network.add_argument_group("data and network")
    g.add_argument("--data", default="digits",
                   help="data set: " + ", ".join(datasets.DATASETS) + " (default digits, "
                        "embedded; the others read local files, see --data-path)")
    g.add_argument("--data-path", help="directory or file(s) of the data set")
    g.add_argument("--train-limit", type=_int_in(1), default=None, metavar="K",
                   help="train on the first K training instances only (recorded; reproduce "
                        "states it in summary.md)")
    g.add_argument("--hidden", type=_hidden, default=None, help=HIDDEN_HELP)
    g.add_argument("--activation", default="relu", help="relu (default), sigmoid or tanh")
    g.add_argument("--loss", default="squared", help="squared (default) or cross_entropy")
    g.add_argument("--C", default=None,
                   help="regularization C in theta'theta/(2C): a number or a multiple of "
                        "the training size l such as 0.01l (default 0.01l as in simpleNN; "
                        "0.1l for digits, 1l for satimage, letter and shuttle: "
                        "docs/code-map.md)")
    g.add_argument("--eval-batch", type=_int_in(1), default=ObjectiveConfig.batch_size,
                   help="instances per mini-batch when evaluating f and its gradient")
    g.add_argument("--dtype", default=ObjectiveConfig.dtype, choices=DTYPES,
                   help="numbers of the parameters, the data and every message: float64 "
                        "(default, the reference) or float32 (about twice the matmul rate, "
                        "half the bytes; the sums of f and of inner products over batches and ranks "
                        "stay float64)")
    g.add_argument("--no-keep-forward", dest="keep_forward", action="store_false",
                   help="do not keep the line search's forward pass (each rank's activations "
                        "on all training instances) for the next gradient: less memory, one "
                        "forward pass and its messages more per Newton iteration")
    g.add_argument("--splits", help="P_0,...,P_L: how many groups each layer's neurons are "
                                    "split into: sum P_(m-1) P_m partitions, on that many "
                                    "ranks or fewer (default: proposed for the number of "
                                    "ranks, under mpiexec)")
    g.add_argument("--slow-rank", metavar="RANK:SECONDS",
                   help="teaching device: make RANK sleep SECONDS in each Gauss-Newton product")
    g.add_argument("--overwrite", action="store_true",
                   help="replace existing output files instead of stopping")
    g.add_argument("--stall-timeout", type=_seconds, default=STALL_TIMEOUT, metavar="SECONDS",
                   help="under mpiexec: end the job, naming the ranks that did not arrive, "
                        "when a rank waits longer than this in one collective (default "
                        f"{STALL_TIMEOUT:g}; 0: never)")

    return network, _constants(), _budgets()


def _constants():
    n, s = NewtonConfig, SGDConfig            # the defaults live in the config dataclasses
    constants = argparse.ArgumentParser(add_help=False)
    g = constants.add_argument_group("constants (defaults: simpleNN's for Newton, the kit's "
                                     "for SGD)")
    g.add_argument("--xi", type=float, default=n.xi, help=f"CG tolerance xi ({n.xi:g})")
    g.add_argument("--cg-max", type=int, default=n.cg_max,
                   help=f"CG iteration limit ({n.cg_max})")
    g.add_argument("--lambda0", type=float, default=n.lambda0,
                   help=f"initial damping ({n.lambda0:g})")
    g.add_argument("--momentum", type=float, default=s.momentum,
                   help=f"SGD momentum ({s.momentum:g})")
    g.add_argument("--batch-size", type=int, default=s.batch_size,
                   help=f"SGD instances per step ({s.batch_size})")
    return constants


def _budgets():
    n, s = NewtonConfig, SGDConfig
    budgets = argparse.ArgumentParser(add_help=False)
    g = budgets.add_argument_group("budgets and step sizes")
    g.add_argument("--iters", type=int, default=n.iters, help=f"Newton iterations ({n.iters})")
    g.add_argument("--subsample", type=float, default=n.subsample,
                   help=f"fraction of instances in the Gauss-Newton subsample S ({n.subsample:g})")
    g.add_argument("--lr", type=float, default=s.lr, help=f"SGD learning rate ({s.lr:g})")
    g.add_argument("--decay", type=float, default=s.decay,
                   help=f"SGD: lr_t = lr / (1 + decay t) ({s.decay:g})")
    g.add_argument("--epochs", type=int, default=s.epochs, help=f"SGD epochs ({s.epochs})")
    return budgets

def add_project(sub):
    """``project``: the projection to many machines (project.py)."""
    p = sub.add_parser("project", help="predicted seconds per Newton iteration and SGD epoch "
                                       "on 1 to many machines, on a modeled network",
                       description="Project a Newton iteration (full and block-diagonal G) "
                                   "and an SGD epoch to many machines, one rank each, from the "
                                   "closed-form messages, the network model and a compute "
                                   "rate measured here (docs/method.md §8).")
    p.add_argument("--data", default="digits", help="data set (its sizes only)")
    p.add_argument("--data-path", help="directory or file(s) of the data set")
    p.add_argument("--hidden", type=_hidden, default=None, help=HIDDEN_HELP)
    p.add_argument("--network", nargs="+", default=["10gbe"], help="one or several "
                   "(space- or comma-separated) of "
                   + ", ".join(PRESETS) + " or LATENCY_US:BANDWIDTH_GBIT (default 10gbe)")
    p.add_argument("--machines", type=_positive_ints, default=None,
                   help="machine counts (default: those of 1,2,4,8,16,32,64 that the network "
                        "can be split into)")
    p.add_argument("--grids", choices=("kit", "fastest"), default="kit",
                   help="the splits of each machine count: the kit's proposal, as a run of "
                        "that many ranks uses (kit, default), or of every grid the one whose "
                        "full-G iteration the projection finds shortest on each network")
    p.add_argument("--subsample", type=float, default=NewtonConfig.subsample,
                   help="|S| / l (default 0.05)")
    p.add_argument("--rate", type=float, default=None, metavar="GFLOPS",
                   help="compute rate of one core (default: measured by a short calibration)")
    p.add_argument("--json", help="write the projection to this file")
    p.add_argument("--figure", help="write the figure (seconds against machines) to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
