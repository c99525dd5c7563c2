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
import contextlib
import os
import sys
import threading
import time
import warnings

from . import interrupts
from .checkpoint import Plan, restore, save_model, solver_settings
from .comm import Comm
from .environment import oversubscribed
from .experiment import build_model, check_sync, evaluate, learned_nothing, prepare, run
from .ledger import trace_events, training_bytes
from .model import ConfigError
from .network import network_names, parse_network
from .newton import NewtonConfig, check_options
from .options import STALL_TIMEOUT, parse, unused_options
from .outputs import LAST_WORDS, WRITING, JsonSaver, finite, last_words, remove_outputs, write_json
from .sgd import SGDConfig
from .splits import checked_grid
from .study import settings as study

DIVERGED = 3       # exit status of a train run that diverged

# Seconds a failing rank waits between printing its error and MPI_Abort: Abort tears the job
# down at once, and under load mpiexec (hydra) lost the rank's last line (seen once in CI).
ABORT_GRACE = 0.5


def solver_configs(args):
    """(NewtonConfig, SGDConfig) of a single run; ConfigError names a bad value (every
    rank sees the same options, so every rank raises it before any message)."""
    try:
        return (NewtonConfig(iters=args.iters, subsample=args.subsample, xi=args.xi,
                             cg_max=args.cg_max, lambda0=args.lambda0, seed=args.seed,
                             diag_step=args.diag_step, cg_rule=args.cg_rule),
                SGDConfig(lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                          decay=args.decay, epochs=args.epochs, seed=args.seed))
    except ValueError as e:
        raise ConfigError.of_option(e) from None


def _say(comm, *lines):
    if comm.rank == 0:
        print(*lines, flush=True)


HEADER = (f"{'iter':>5} {'f':>11} {'|g|':>9} {'#CG':>4} {'lambda':>9} {'alpha':>7} {'test':>7} "
          f"{'sec':>7} {'MB(rank0)':>9}")


def _line(r):
    """One iteration's line; the last column is the megabytes rank 0 sent in it (the
    training's phases; rank 0 knows only its own before the end), "-" when it sent
    nothing (one process)."""
    def num(key, fmt):
        value = r.get(key)
        width = int(fmt.rstrip("dfg").split(".")[0])
        return format(value, fmt) if value is not None else "-".rjust(width)
    messages = any(d["messages"] for d in r.get("comm", {}).values())
    sent = format(training_bytes([r]) / 1e6, "9.3f") if messages else "-".rjust(9)
    return (f"{r['iter']:>5} {num('objective', '11.5g')} {num('grad_norm', '9.3g')} "
            f"{num('cg_iters', '4d')} {num('lambda', '9.3g')} {num('alpha', '7.3g')} "
            f"{num('test_accuracy', '7.4f')} {num('wall_time', '7.2f')} {sent}")


def describe_run(comm, model, method, args):
    grid = getattr(model, "grid", None)
    blocks = getattr(model, "diag_grid", None)     # one process: the blocks of --splits
    where = "one process (dense model)" if not grid else \
        f"{comm.size} ranks, splits {','.join(map(str, grid.splits))}" + (
            f" ({grid.size} partitions, partition q on rank q mod {comm.size}: "
            f"{grid.held()})" if grid.size > comm.size else "")
    if method == "newton":
        where += f", {model.gn} Gauss-Newton"
        if blocks and not grid:
            where += f" on the blocks of splits {','.join(map(str, blocks.splits))}"
        elif grid and model.sync < 1:
            where += f", sync {model.sync}"
    if args.train_limit == model.n_train:
        where += f", the first {model.n_train} training instances"
    elif args.train_limit:
        where += f", all {model.n_train} training instances (--train-limit {args.train_limit})"
    if not grid and not blocks and args.splits and args.command == "train":
        where += " (--splits unused: one process has no grid; --gn diag takes its blocks)"
    _say(comm, f"{method} on {args.data}, network {'-'.join(map(str, model.layers))}, "
               f"C = {model.C:g}, {where}"
               + (f", {model.config.dtype}" if model.config.dtype != "float64" else ""))
    if comm.network is not None:
        _say(comm, f"network {comm.network.name}, {'injected' if comm.inject else 'modeled'}"
                   + (": one process sends no messages, so it charges nothing"
                      if comm.size == 1 else ""))
    if method == "newton" and comm.size > 1 and model.gn == "diag" and args.command == "train":
        _say(comm, "#CG: rank 0's own CG iterations, its slowest partition's (each partition runs "
                   "its own CG; the JSON's cg_iters is the slowest partition's, cg_iters_per_rank "
                   "every partition's, in partition order)")


def cmd_train(args, comm):
    newton_config, sgd_config = solver_configs(args)
    keep = Plan(args.checkpoint, args.checkpoint_every, args.resume, args.save, args.optimizer,
                args.iters if args.optimizer == "newton" else args.epochs, solver_settings(
                    args.optimizer, newton_config, sgd_config, args.gn,
                    args.sync if comm.size > 1 else None))       # one process: no sync
    p = prepare(study.problem_of(vars(args)), comm, [args.json, args.trace], args.overwrite,
                keep)
    model = build_model(p.data, args.hidden, p.objective, comm, p.splits, args.gn, args.sync,
                        p.slow)
    if args.optimizer == "newton":
        check_options(newton_config, model.gn)        # before the first line of output
    if comm.rank == 0 and (unused := unused_options(args)):          # once all is checked
        print(f"warning: {unused}", file=sys.stderr, flush=True)
    if args.trace:
        comm.keep_timeline()
        trace_ending = _trace_ending(args, comm, model)
    resume = comm.agree_on(lambda: restore(p.resume, model)) if p.resume else None
    describe_run(comm, model, args.optimizer, args)
    if resume:
        _say(comm, f"resumed from {args.resume} after {resume.done} "
                   f"{'iterations' if args.optimizer == 'newton' else 'epochs'}")
    _say(comm, HEADER)
    saver = JsonSaver(args.json, args.overwrite) if args.json else None
    with saver or contextlib.nullcontext():          # an interrupted run's --json says so
        history, out = run(model, args.optimizer, newton_config, sgd_config,
                           callback=lambda r: _say(comm, _line(r)), snapshot=saver,
                           resume=resume, keep=keep, charged=comm, data=args.data,
                           data_path=args.data_path,
                           data_digest=p.digest, hidden=list(args.hidden),
                           train_limit=p.train_limit, classes=p.classes)
        unsaved = None
        if args.save:
            try:
                unsaved = save_model(
                    args.save, model, history.theta, args.overwrite, data=args.data,
                    data_path=",".join(os.path.abspath(f) if f else "" for f in
                                       (args.data_path or "").split(",")),
                    data_digest=p.digest, seed=args.seed, train_limit=p.train_limit or 0,
                    classes=p.classes)
            except OSError as e:             # rank 0, writing: the run's other files still are
                unsaved = getattr(e, "strerror", None) or str(e)
        if args.trace:
            write_trace(args.trace, comm, model, args.overwrite, trace_ending)
        if comm.rank == 0:
            _finish_train(args, comm, out, saver, unsaved, p)
    if isinstance(unsaved, str):     # rank 0 alone: --save not written (mpiexec exits
        return 2                     # with the largest status of its ranks)
    return DIVERGED if history.status == "diverged" else 0   # the same on every rank


def _finish_train(args, comm, out, saver, unsaved, p):
    """Rank 0: the final line, the final --json (ledgers summed over ranks), what was written
    (--save not, with ``unsaved`` non-finite weights or why it could not be), where the run
    diverged, and whether it learned nothing (``learned_nothing``, of the ``Prepared`` ``p``)."""
    f = out["final"]
    if not out["history"]:
        print(f"final: no {'epoch' if args.optimizer == 'sgd' else 'iteration'} run: nothing "
              "to measure", flush=True)
    else:
        print(f"final: test accuracy {_num(f['test_accuracy'], '.4f')}, train accuracy "
              f"{_num(f['train_accuracy'], '.4f')}, f {_num(f['objective'], '.6g')}, "
              f"{_num(f['wall_time'], '.2f')} s"
              + (f" ({_num(f['modeled_time'], '.2f')} s on {comm.network.name}, modeled)"
                 if f.get("modeled_time") is not None and not comm.inject else "")
              + f", {training_bytes(out['history']) / 1e6:.3f} MB sent (all ranks)", flush=True)
    if saver:
        saver(out)
    for path in filter(None, (args.json, None if unsaved else args.save, args.trace)):
        print(f"wrote {path}", flush=True)
    if isinstance(unsaved, str):
        print(f"error: --save {args.save} not written: {unsaved}", file=sys.stderr, flush=True)
    elif unsaved:
        print(f"warning: --save {args.save} not written: {unsaved} of the final weights are "
              "NaN or infinite" + (f" (the {args.save} there is an earlier run's)"
                                   if os.path.exists(args.save) else ""),
              file=sys.stderr, flush=True)
    if (warning := learned_nothing(out, p)):
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if f["status"] == "diverged":
        last = out["history"][-1]
        print(f"diverged at {'epoch' if args.optimizer == 'sgd' else 'iteration'} "
              f"{f['diverged_at']}: non-finite {', '.join(last.get('nonfinite', ['f']))}"
              + (f"; the history up to it is in {args.json}" if args.json else ""),
              file=sys.stderr, flush=True)


def cmd_project(args, comm):
    """The projection (rank 0 only; it sends nothing)."""
    from .project import project_command
    return project_command(args) if comm.rank == 0 else 0


def write_trace(path, comm, model, overwrite, ending=None):
    """Every rank's time line to rank 0, written as one Chrome trace (collective); once it
    is, and under the same lock, what an early end would have written (``ending``) is not."""
    with comm.phase("report"):
        per_rank = comm.gather_objects(comm.timeline)
    if comm.rank == 0:
        with WRITING:
            write_json(path, trace_events(per_rank, _rank_names(model, comm.size)), overwrite)
            if ending in LAST_WORDS:
                LAST_WORDS.remove(ending)


def _trace_ending(args, comm, model):
    """What --trace holds if the run ends early (``outputs.last_words``, on rank 0): rank
    0's own events, all there are on one process, since the ranks no longer gather theirs."""
    def ending(status):
        doc = trace_events([list(comm.timeline)], _rank_names(model, 1))
        doc["otherData"] = dict(status=status, **({"ranks": f"rank 0 of {comm.size}: the run "
                                                   "ended before the others sent theirs"}
                                                  if comm.size > 1 else {}))
        write_json(args.trace, doc, args.overwrite)
    if comm.rank == 0:
        LAST_WORDS.append(ending)
    return ending


def _rank_names(model, n):
    grid = getattr(model, "grid", None)
    return [f"rank {r}" + (" (m, i, j) = " + ", ".join(f"({p.m}, {p.i}, {p.j})"
                                                         for p in grid.blocks(r))
                           if grid else "") for r in range(n)]


def _network(args, comm):
    """Set the communicator's network model from --network and --network-mode."""
    if not hasattr(args, "network_mode"):           # project takes several networks itself
        return
    names = network_names(args.network)
    if len(names) > 1:
        raise ConfigError(f"--network {' '.join(names)}: {args.command} charges one network "
                          "(reproduce --network charges every run on each of several)")
    try:
        comm.network = parse_network(names[0] if names else None)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if comm.network is None and args.network_mode == "inject":
        raise ConfigError("--network-mode inject needs --network (a preset or "
                          "LATENCY_US:BANDWIDTH_GBIT): without one there is no time to inject")
    comm.inject = comm.network is not None and args.network_mode == "inject"


def _progress(name, r):
    unit = "epoch" if name == "sgd" else "iteration"
    return (f"  {name} {unit} {r['iter']}: f {_num(r.get('objective'), '.5g')}, test accuracy "
            f"{_num(r.get('test_accuracy'), '.4f')}, {_num(r.get('wall_time'), '.2f')} s")


def _num(value, fmt):
    return "-" if value is None else format(value, fmt)


def cmd_compare(args, comm):
    newton_config, sgd_config = solver_configs(args)
    json_path = os.path.join(args.out, "compare.json")
    figure = os.path.join(args.out, "accuracy_vs_time.png")
    diag = comm.size > 1 or args.splits is not None    # one process: the blocks of --splits
    if comm.size == 1:
        _one_process_compare(args, diag)
    p = prepare(study.problem_of(vars(args)), comm, [json_path, figure], args.overwrite)
    if p.grid is not None:                      # --sync on this grid, before the first run
        comm.agree_on(lambda: checked_grid(p.grid.layers, p.grid.splits, "diag", args.sync, comm.size))
    if comm.rank == 0 and args.overwrite:
        remove_outputs(args.out, [os.path.basename(path) for path in (json_path, figure)])
    runs = [("newton", "full")] + ([("newton", "diag")] if diag else []) + [("sgd", "full")]
    results = {}
    with JsonSaver(json_path, args.overwrite, runs=results) as saver:   # after each iteration
        for method, gn in runs:
            saver.name = f"newton-{gn}" if method == "newton" else "sgd"
            model = build_model(p.data, args.hidden, p.objective, comm, p.splits, gn,
                                args.sync if gn == "diag" else 1.0, p.slow)
            describe_run(comm, model, method, args)
            _, out = run(
                model, method, newton_config.for_gn(gn), sgd_config,
                callback=lambda r, name=saver.name: _say(comm, _progress(name, r)),
                snapshot=saver, charged=comm, data=args.data, data_path=args.data_path,
                data_digest=p.digest, hidden=list(args.hidden), train_limit=p.train_limit,
                classes=p.classes)
            model.close()
            if comm.rank == 0:
                saver(out)                            # finished: no ending rewrites it
                results[saver.name] = out
                if (warning := learned_nothing(out, p)):
                    print(f"warning: {saver.name}: {warning}", file=sys.stderr, flush=True)
    if comm.rank == 0:
        from .study.figures import accuracy_against_time
        modeled = comm.network is not None and not comm.inject and comm.size > 1
        print(compare_table(results, modeled))
        accuracy_against_time(results, figure, title=f"{args.data}, "
                              f"{'-'.join(map(str, results['sgd']['config']['layers']))}",
                              replace=args.overwrite,
                              network=comm.network.name if modeled else None)
        print(f"wrote {json_path} and {figure}")
    return 0


def _one_process_compare(args, diag):
    """ConfigError, before the first run, for an option a one-process compare cannot use:
    --sync (no ranks to wait for), and without --splits (no block-diagonal G) --diag-step
    rescale and --cg-rule global."""
    check_sync(args.sync, 1)
    given = [option for option, used in (("--diag-step rescale", args.diag_step == "rescale"),
                                         ("--cg-rule global", args.cg_rule == "global")) if used]
    if given and not diag:
        raise ConfigError(f"{', '.join(given)}: compare runs the block-diagonal G on one "
                          "process only with --splits (or under mpiexec -n N)")


def cmd_evaluate(args, comm):
    out = evaluate(args.model, args.data, args.data_path, [args.json], args.overwrite)
    limit, n = out["train_limit"], out["train_instances"]
    first = "" if not limit else f" (its first {n} training instances)" if n == limit else \
        f" (all {n} training instances, --train-limit {limit})"
    _say(comm, f"{args.model}: network {'-'.join(map(str, out['layers']))}, {out['dtype']}, "
               f"on {out['data']}{first}: test accuracy {out['test_accuracy']:.4f}, "
               f"train accuracy {out['train_accuracy']:.4f}, f {out['objective']:.6g}")
    if args.json and comm.rank == 0:
        write_json(args.json, finite(out), args.overwrite)
        print(f"wrote {args.json}")
    return 0


def cmd_reproduce(args, comm):
    from .study.runner import run_study
    try:
        plan = study.resolve(args)
    except ValueError as e:
        raise ConfigError.of_option(e) from None
    return run_study(plan, comm)


def compare_table(results, modeled=False):
    """One row per run; with ``modeled`` (a --network in model mode) also its modeled time."""
    rows = [f"{'method':<13} {'test acc':>8} {'train acc':>9} {'f':>10} {'seconds':>8} "
            + (f"{'modeled s':>9} " if modeled else "") + f"{'MB sent':>8}"]
    for name, r in results.items():
        f = r["final"]
        sent = training_bytes(r["history"])
        rows.append(f"{name:<13} {_num(f['test_accuracy'], '>8.4f'):>8} "
                    f"{_num(f['train_accuracy'], '>9.4f'):>9} {_num(f['objective'], '>10.5g'):>10} "
                    f"{_num(f['wall_time'], '>8.2f'):>8} "
                    + (f"{_num(f.get('modeled_time'), '>9.2f'):>9} " if modeled else "")
                    + f"{sent / 1e6:>8.2f}"
                    + (f"  diverged at {f['diverged_at']}" if f.get("status") == "diverged"
                       else ""))
    return "\n".join(rows)


def main(argv=None):
    os.environ.setdefault("MPLBACKEND", "Agg")        # figures go to files, never to windows
    interrupts.hold_all()                             # MPI has started (interrupts.py)
    comm = Comm.on_world()
    if comm.rank != 0:                                # argparse talks on rank 0 only
        sys.stdout = sys.stderr = open(os.devnull, "w")
    warnings.showwarning = _warning                   # one line each (rank 0's stderr)
    args = guard = None
    try:
        args = parse(argv)
        guard = comm.guard(getattr(args, "stall_timeout", STALL_TIMEOUT))  # several ranks
        interrupts.release(one_process=guard is None)  # a signal of the start acts now
        if os.environ.get("DNEWTON_WAIT"):            # how a waiting rank waits (polling.py)
            comm.agree_on(lambda: comm.choose_wait(os.environ["DNEWTON_WAIT"]))
        _network(args, comm)
        if comm.rank == 0 and (warning := oversubscribed(comm.size)):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        commands = {"train": cmd_train, "compare": cmd_compare, "reproduce": cmd_reproduce,
                    "evaluate": cmd_evaluate, "project": cmd_project}
        return commands[args.command](args, comm)
    except ConfigError as e:                          # agreed on by every rank
        if comm.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:                    # one process (the guard has the others)
        last_words("interrupted")                     # what is not written yet (--trace)
        command = getattr(args, "command", None)
        kept = ("the finished runs (--continue runs the rest)" if command == "reproduce"
                else "its last completed iteration")
        print(f"error: interrupted by {e.args[0] if e.args else 'SIGINT'}; files written "
              f"during the run hold {kept}", file=sys.__stderr__, flush=True)
        return 130
    except Exception as e:                           # one rank failed mid-run: end them all
        if guard is not None and guard.ending:        # the guard is ending the job already
            threading.Event().wait()                  # (an MPI call failed as a rank left)
        print(f"error: rank {comm.rank}: {type(e).__name__}: {e}", file=sys.__stderr__,
              flush=True)
        if comm.size > 1:
            time.sleep(ABORT_GRACE)                   # let mpiexec forward the line first
            comm.abort(2)
        return 2
    finally:
        if guard is not None:
            guard.stop()


def _warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr, flush=True)
