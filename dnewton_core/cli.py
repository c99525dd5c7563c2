"""Command line: ``python -m dnewton_core {train,compare,reproduce,evaluate} ...``: the top
of the kit.

Run it alone (one process, the dense model) or under ``mpiexec -n N`` (N ranks, one per
partition). Only rank 0 prints. Errors are one line on standard error.

Exit statuses:
  0    the run (or every run of compare and reproduce) ended; a diverged run inside
       compare or reproduce is one of their results, not a failure
  2    an error: a problem found while checking the configuration, the data and the
       output paths is agreed on by all ranks before the first collective (one line, no
       iteration run, nothing written); anything raised later on one rank aborts the job
  3    train diverged: the first non-finite f, |g|, lambda or step ended the run; one line
       says where, and --json holds the history up to it
  4    under mpiexec, a rank waited longer than --stall-timeout in one collective: one line
       names the phase, the group and the ranks that did not arrive
  130  interrupted: Ctrl-C or SIGTERM, to mpiexec or to any rank (one line)

Outputs (train --json; compare's compare.json and figure; reproduce's files) are checked
before the first iteration (writable, and not already there unless --overwrite) and
written atomically: a temporary file in the same directory, then a rename. train --json
is rewritten after every iteration or epoch, so a killed run keeps its history so far.
train --checkpoint DIR saves what --resume DIR continues, on any grid (``checkpoint.py``).
"""
import argparse
import os
import signal
import sys
import time

from . import data as datasets
from .checkpoint import JsonSaver, Plan, restore, save_model, write_json
from .comm import Comm
from .distributed import GN_MODES
from .experiment import OPTIMIZERS, build_model, evaluate, prepare, run
from .ledger import training_bytes
from .model import ConfigError, ObjectiveConfig
from .newton import NewtonConfig
from .sgd import SGDConfig
from .study import settings as study

DIVERGED = 3       # exit status of a train run that diverged

# Seconds one collective may wait before the job ends as stalled: far above any wait of the
# committed studies (a Newton iteration of Fashion-MNIST 784-300-300-10 takes about 8 s).
STALL_TIMEOUT = 600.0

# Seconds a failing rank waits between printing its error and MPI_Abort: Abort tears the job
# down at once, and under load mpiexec (hydra) lost the rank's last line (seen once in CI).
ABORT_GRACE = 0.5


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _positive_ints(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return values


def parser():
    top = argparse.ArgumentParser(
        prog="python -m dnewton_core",
        description="Distributed Newton methods for deep neural networks (Wang et al., "
                    "Neural Computation 2018). Run alone for one process, or under "
                    "'mpiexec -n N' for N ranks, one per partition of the network.")
    sub = top.add_subparsers(dest="command", required=True)

    network, constants, budgets = shared_options()
    single = argparse.ArgumentParser(add_help=False)
    common = [network, single, constants, budgets]
    g = single.add_argument_group("a single run")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds initialization, subsamples and batches (default 0)")
    g.add_argument("--gn", default="full", choices=GN_MODES,
                   help="Gauss-Newton matrix: full, or block-diagonal (no messages in CG)")
    g.add_argument("--sync", type=float, default=1.0,
                   help="with --gn diag: stop every CG once this fraction of partitions "
                        "is done (default 1: wait for all)")

    p = sub.add_parser("train", parents=common, help="train one network, one line per iteration",
                       description="Train one network and print one line per iteration.")
    p.add_argument("--optimizer", default="newton", choices=OPTIMIZERS)
    p.add_argument("--json", help="write {config, history, final} to this file")
    add_keep(p)

    p = sub.add_parser("compare", parents=common, help="Newton (full, diagonal) against SGD",
                       description="Newton with the full and (on several ranks) the diagonal "
                                   "Gauss-Newton matrix against SGD, on the same data, network "
                                   "and grid: a table, compare.json and a figure.")
    p.add_argument("--out", default="results/compare", help="output directory")
    add_reproduce(sub, parents=shared_options(hidden=None)[:2])
    p = sub.add_parser("evaluate", help="train and test accuracy and f of weights that "
                                        "train --save wrote (one process)")
    p.add_argument("--model", required=True, help="the file train --save wrote")
    p.add_argument("--data", help="data set (default: the one the model was trained on)")
    p.add_argument("--data-path", help="directory or file(s) of the data set")
    return top


def add_keep(p):
    g = p.add_argument_group("checkpoints and weights")
    g.add_argument("--checkpoint", metavar="DIR", help="save the run into DIR after each "
                   "iteration or epoch (each rank its block; a checkpoint is complete or absent)")
    g.add_argument("--checkpoint-every", type=int, default=1, metavar="K",
                   help="checkpoint every K iterations or epochs, and after the last")
    g.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR, on "
                   "any grid (--iters and --epochs count from the start of the run)")
    g.add_argument("--save", metavar="FILE", help="write the final weights (.npz), see evaluate")


def _floats(text):
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
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
    p.add_argument("--train-limit", type=int, default=None, metavar="K",
                   help="train on the first K training instances only (stated in summary.md)")
    grid, ratio = study.GRID, study.DEFAULTS
    g = p.add_argument_group("the grid")
    g.add_argument("--methods", default=",".join(study.METHODS),
                   help="comma-separated subset of " + ", ".join(study.METHODS))
    g.add_argument("--subsamples", type=_floats, default=grid["subsamples"],
                   help="Gauss-Newton subsample fractions (default 0.05,0.2)")
    g.add_argument("--syncs", type=_floats, default=grid["syncs"],
                   help="sync fractions of newton-diag (default 1,0.75,0.5)")
    g.add_argument("--lrs", type=_floats, default=grid["lrs"],
                   help="SGD learning rates (default 1e-4,1e-3,1e-2,1e-1,1)")
    g.add_argument("--settings", default=None,
                   help="an explicit list instead of the grid: comma-separated "
                        "newton-full:S, newton-diag:S:SYNC, sgd:LR (e.g. "
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
    g = p.add_argument_group("output")
    g.add_argument("--quick", action="store_true",
                   help="digits, 2 seeds, a small grid, few iterations: a minute or two")
    g.add_argument("--out", default=None, help="output directory (default results/<data>)")
    return p


def shared_options(hidden=(64, 64)):
    """Parent parsers: (data, network and partitions; Newton's and SGD's constants; the
    budgets and step sizes of one run). ``reproduce`` shares the first two, with no default
    for ``--hidden`` (its default depends on the data set). Each call makes new parsers:
    argparse shares option objects between a parent and its children."""
    network = argparse.ArgumentParser(add_help=False)
    g = network.add_argument_group("data and network")
    g.add_argument("--data", default="digits",
                   help="data set: " + ", ".join(datasets.DATASETS) + " (default digits, "
                        "embedded; the others read local files, see --data-path)")
    g.add_argument("--data-path", help="directory or file(s) of the data set")
    g.add_argument("--hidden", type=_positive_ints, default=hidden,
                   help="hidden layer widths, e.g. 300,300 (default "
                        + (",".join(map(str, hidden)) if hidden else
                           "64,64 for digits, 300,300 otherwise") + ")")
    g.add_argument("--activation", default="relu", help="relu (default), sigmoid or tanh")
    g.add_argument("--loss", default="squared", help="squared (default) or cross_entropy")
    g.add_argument("--C", default=None,
                   help="regularization C in theta'theta/(2C): a number or a multiple of "
                        "the training size l such as 0.01l (default 0.01l as in simpleNN; "
                        "0.1l for digits, see README)")
    g.add_argument("--eval-batch", type=int, default=ObjectiveConfig.batch_size,
                   help="instances per mini-batch when evaluating f and its gradient")
    g.add_argument("--splits", help="P_0,...,P_L: how many groups each layer's neurons are "
                                    "split into; needs sum P_(m-1) P_m ranks (default: "
                                    "proposed for the number of ranks, under mpiexec)")
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


def solver_configs(args):
    """(NewtonConfig, SGDConfig) of a single run; ConfigError names a bad value (every
    rank sees the same options, so every rank raises it before any message)."""
    try:
        return (NewtonConfig(iters=args.iters, subsample=args.subsample, xi=args.xi,
                             cg_max=args.cg_max, lambda0=args.lambda0, seed=args.seed),
                SGDConfig(lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                          decay=args.decay, epochs=args.epochs, seed=args.seed))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _say(comm, *lines):
    if comm.rank == 0:
        print(*lines, flush=True)


HEADER = f"{'iter':>5} {'f':>11} {'|g|':>9} {'#CG':>4} {'lambda':>9} {'alpha':>7} {'test':>7} {'sec':>7}"


def _line(r):
    def num(key, fmt):
        value = r.get(key)
        width = int(fmt.rstrip("dfg").split(".")[0])
        return format(value, fmt) if value is not None else "-".rjust(width)
    return (f"{r['iter']:>5} {num('objective', '11.5g')} {num('grad_norm', '9.3g')} "
            f"{num('cg_iters', '4d')} {num('lambda', '9.3g')} {num('alpha', '7.3g')} "
            f"{num('test_accuracy', '7.4f')} {num('wall_time', '7.2f')}")


def describe_run(comm, model, method, args):
    grid = getattr(model, "grid", None)
    where = (f"{comm.size} ranks, splits {','.join(map(str, grid.splits))}" +
             (f", {model.gn} Gauss-Newton" if method == "newton" else "")
             + (f", sync {model.sync}" if method == "newton" and model.sync < 1 else "")
             if grid else "one process (dense model)")
    _say(comm, f"{method} on {args.data}, network {'-'.join(map(str, model.layers))}, "
               f"C = {model.C:g}, {where}")


def cmd_train(args, comm):
    newton_config, sgd_config = solver_configs(args)
    keep = Plan(args.checkpoint, args.checkpoint_every, args.resume, args.save, args.optimizer,
                args.iters if args.optimizer == "newton" else args.epochs)
    p = prepare(study.problem_of(vars(args)), comm, [args.json], args.overwrite, keep)
    model = build_model(p.data, args.hidden, p.objective, comm, p.splits, args.gn, args.sync,
                        p.slow)
    resume = comm.agree_on(lambda: restore(p.resume, model)) if p.resume else None
    describe_run(comm, model, args.optimizer, args)
    if resume:
        _say(comm, f"resumed from {args.resume} after {resume.done} "
                   f"{'iterations' if args.optimizer == 'newton' else 'epochs'}")
    _say(comm, HEADER)
    saver = JsonSaver(args.json, args.overwrite) if args.json else None
    history, out = run(model, args.optimizer, newton_config, sgd_config,
                       callback=lambda r: _say(comm, _line(r)), snapshot=saver, resume=resume,
                       keep=keep, data=args.data, hidden=list(args.hidden))
    if args.save:
        save_model(args.save, model, history.theta, args.overwrite, data=args.data,
                   seed=args.seed)
    status = DIVERGED if history.status == "diverged" else 0   # the same on every rank
    if comm.rank != 0:
        return status
    f = out["final"]
    print(f"final: test accuracy {_num(f['test_accuracy'], '.4f')}, train accuracy "
          f"{_num(f['train_accuracy'], '.4f')}, f {_num(f['objective'], '.6g')}, "
          f"{_num(f['wall_time'], '.2f')} s", flush=True)
    if saver:
        saver(out)              # the final file: ledgers summed over ranks
    for path in filter(None, (args.json, args.save)):
        print(f"wrote {path}", flush=True)
    if f["status"] == "diverged":
        last = out["history"][-1]
        print(f"diverged at {'epoch' if args.optimizer == 'sgd' else 'iteration'} "
              f"{f['diverged_at']}: non-finite {', '.join(last.get('nonfinite', ['f']))}"
              + (f"; the history up to it is in {args.json}" if args.json else ""),
              file=sys.stderr, flush=True)
    return status


def _num(value, fmt):
    return "-" if value is None else format(value, fmt)


def cmd_compare(args, comm):
    newton_config, sgd_config = solver_configs(args)
    json_path = os.path.join(args.out, "compare.json")
    figure = os.path.join(args.out, "accuracy_vs_time.png")
    p = prepare(study.problem_of(vars(args)), comm, [json_path, figure], args.overwrite)
    runs = [("newton", "full")] + ([("newton", "diag")] if comm.size > 1 else []) + [("sgd", "full")]
    results = {}
    for method, gn in runs:
        name = f"newton-{gn}" if method == "newton" else "sgd"
        model = build_model(p.data, args.hidden, p.objective, comm, p.splits, gn,
                            args.sync if gn == "diag" else 1.0, p.slow)
        describe_run(comm, model, method, args)
        _, results[name] = run(model, method, newton_config, sgd_config, data=args.data,
                               hidden=list(args.hidden))
        model.close()
    if comm.rank == 0:
        from .study.figures import accuracy_against_time
        print(compare_table(results))
        write_json(json_path, results, args.overwrite)
        accuracy_against_time(results, figure, title=f"{args.data}, "
                              f"{'-'.join(map(str, results['sgd']['config']['layers']))}",
                              replace=args.overwrite)
        print(f"wrote {json_path} and {figure}")
    return 0


def cmd_evaluate(args, comm):
    out = evaluate(args.model, args.data, args.data_path)
    _say(comm, f"{args.model}: network {'-'.join(map(str, out['layers']))} on {out['data']}: "
               f"test accuracy {out['test_accuracy']!r}, train accuracy "
               f"{out['train_accuracy']!r}, f {out['objective']!r}")
    return 0


def cmd_reproduce(args, comm):
    from .study.runner import run_study
    try:
        plan = study.resolve(args)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return run_study(plan, comm)


def compare_table(results):
    rows = [f"{'method':<13} {'test acc':>8} {'train acc':>9} {'f':>10} {'seconds':>8} "
            f"{'MB sent':>8}"]
    for name, r in results.items():
        f = r["final"]
        sent = training_bytes(r["history"])
        rows.append(f"{name:<13} {_num(f['test_accuracy'], '>8.4f'):>8} "
                    f"{_num(f['train_accuracy'], '>9.4f'):>9} {_num(f['objective'], '>10.5g'):>10} "
                    f"{_num(f['wall_time'], '>8.2f'):>8} {sent / 1e6:>8.2f}"
                    + (f"  diverged at {f['diverged_at']}" if f.get("status") == "diverged"
                       else ""))
    return "\n".join(rows)


def main(argv=None):
    os.environ.setdefault("OMP_NUM_THREADS", "1")    # best effort: BLAS may be loaded already
    os.environ.setdefault("MPLBACKEND", "Agg")        # figures go to files, never to windows
    comm = Comm.on_world()
    if comm.rank != 0:                                # argparse talks on rank 0 only
        sys.stdout = sys.stderr = open(os.devnull, "w")
    signal.signal(signal.SIGTERM, _interrupt)         # one process: as Ctrl-C
    guard = None
    try:
        args = parser().parse_args(argv)
        guard = comm.guard(getattr(args, "stall_timeout", STALL_TIMEOUT))  # several ranks
        commands = {"train": cmd_train, "compare": cmd_compare, "reproduce": cmd_reproduce,
                    "evaluate": cmd_evaluate}
        return commands[args.command](args, comm)
    except ConfigError as e:                          # agreed on by every rank
        if comm.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                         # one process (the guard has the others)
        print("error: interrupted; the outputs hold the last completed iteration",
              file=sys.__stderr__, flush=True)
        return 130
    except Exception as e:                           # one rank failed mid-run: end them all
        print(f"error: rank {comm.rank}: {type(e).__name__}: {e}", file=sys.__stderr__,
              flush=True)
        if comm.size > 1:
            time.sleep(ABORT_GRACE)                   # let mpiexec forward the line first
            comm.abort(2)
        return 2
    finally:
        if guard is not None:
            guard.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
