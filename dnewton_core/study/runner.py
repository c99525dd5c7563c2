"""Running a study: every (seed, setting) on one communicator, files rewritten after every
run, then (rank 0) the report and the figures.

Every run builds a new model with ``experiment.build_model`` on the same ``Comm`` and
trains it with ``experiment.run``, which brings the per-iteration ledgers to rank 0;
rank 0 alone prints (one line per run) and writes:

  runs.csv        one row per run (settings, final accuracies, time, bytes per phase; when
                  it started, with which code, at which niceness and load: its provenance)
  curves.csv      one row per Newton iteration / SGD epoch of every run
  summary.md      command, date, machine; the table per setting; the claims, measured
  accuracy_vs_time.png, robustness.png
  with --network: a modeled_time_NAME column per network in both CSV files, the time to
  accuracy on each network in summary.md, and accuracy_vs_modeled_time.png (``modeled.py``)

Every file is checked before the first run (``experiment.prepare``) and written atomically
(``outputs``). runs.csv and curves.csv are rewritten after every run, so a study cut short
keeps the runs it finished, and ``--continue`` runs the rest of it later (the same options:
every kept row is checked against them); a run that diverges (SGD or Newton) is one of them. Seeds
0..K-1 seed the initialization, the subsamples S and the SGD batch order; the train/test
split is the data set's own and is the same in every run.
"""
import dataclasses
import os
import time

import numpy as np

from .. import environment
from ..experiment import build_model, grid_splits, prepare, run
from ..newton import NewtonConfig
from ..outputs import remove_outputs, write_atomic
from ..sgd import SGDConfig
from . import modeled, records, report
from .modeled import columns
from .provenance import code_version, machine_info, now, run_stamp
from .wording import count, duration, fmt

OUTPUTS = ("runs.csv", "curves.csv", "summary.md", "accuracy_vs_time.png", "robustness.png")
MODELED_FIGURE = "accuracy_vs_modeled_time.png"     # with --network


def outputs(plan):
    """The files a study writes."""
    return OUTPUTS + ((MODELED_FIGURE,) if plan.networks else ())


def run_one(comm, prepared, hidden, setting, seed, plan):
    """Build a model, train it, return (row, curve rows) on rank 0 and None elsewhere.

    Collective: every rank calls it with the same arguments.
    """
    objective = dataclasses.replace(prepared.objective, init_seed=seed)
    model = build_model(prepared.data, hidden, objective, comm, prepared.splits, setting.gn,
                        setting.sync if setting.method == "newton-diag" else 1.0, prepared.slow)
    comm.take_record()           # start this run's ledger here (not at the last run's report)
    newton = dataclasses.replace(plan.newton, seed=seed,
                                 subsample=NewtonConfig.subsample if setting.subsample
                                 is None else setting.subsample,
                                 diag_step=setting.diag_step)
    sgd = dataclasses.replace(plan.sgd, seed=seed,
                              lr=SGDConfig.lr if setting.lr is None else setting.lr)
    tic = time.perf_counter()
    _, out = run(model, setting.optimizer, newton, sgd)
    elapsed = time.perf_counter() - tic
    model.close()
    if out is None:
        return None
    return records.summarize_run(out, setting, seed, elapsed,
                                 plan.iters if setting.optimizer == "newton" else plan.epochs,
                                 plan.networks)


def run_study(plan, comm):
    """The study: agreed validation, then every run, then the report. Exit status 0."""
    paths = {name: os.path.join(plan.out, name) for name in outputs(plan)}
    if plan.networks:           # every collective charged on each network (model mode)
        comm.network, comm.also, comm.inject = plan.networks[0], plan.networks[1:], False
    started = now()
    load_start, ticks = environment.load_average(), environment.processor_ticks()
    tic = time.perf_counter()
    prepared = prepare(plan.problem, comm, paths.values(), plan.overwrite or plan.resume)
    data, hidden = prepared.data, plan.problem.hidden
    settings, notes, sync_possible = _settings(plan, comm, prepared)
    total = len(settings) * plan.seeds
    identity = _identity(plan, comm, prepared)
    network = identity["network"]
    rows, curves, done = _finished(plan, comm, paths, settings, identity)
    if comm.rank == 0:
        os.makedirs(plan.out, exist_ok=True)
        if plan.overwrite:             # the old study's files go now, not as each is rewritten
            remove_outputs(plan.out, OUTPUTS + (MODELED_FIGURE,))
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    say(f"reproduce: {plan.problem.data}, network {network}, {comm.size} rank(s), "
        f"{len(settings)} settings x {plan.seeds} seeds = {total} runs -> {plan.out}"
        + (f" ({int(done.sum())} finished before: --continue)" if plan.resume else ""),
        flush=True)
    for note in notes:
        say(f"  left out: {note}", flush=True)
    kept = len(rows)
    part = 1 + max((r.get("part") or 1 for r in rows), default=0)
    code = code_version() if comm.rank == 0 else None
    for seed in range(plan.seeds):
        for k, setting in enumerate(settings):
            if done[seed, k]:
                continue
            stamp = run_stamp()
            got = run_one(comm, prepared, hidden, setting, seed, plan)
            if got is None:
                continue
            row, curve = got
            row.update(run=len(rows) + 1, part=part, code=code, **stamp,
                       **{key: value for key, value in identity.items()
                          if key not in row and key != "budget"})
            rows.append(row)
            curves += [dict(c, run=row["run"], method=setting.method, setting=setting.label,
                            seed=seed) for c in curve]
            _write_records(plan, paths, rows, curves)
            say(_progress(row, total, setting, seed), flush=True)
    if comm.rank == 0:
        info = dict(machine_info(), ranks=comm.size, sync_possible=sync_possible,
                    load_start=load_start, continued=kept,
                    load_end=environment.load_average(), stolen=environment.stolen_share(ticks))
        _write_report(plan, paths, info, rows, curves, notes, started,
                      time.perf_counter() - tic, _data_note(plan, data),
                      f"{plan.problem.data}, {network}, {comm.size} rank(s)")
    return 0


def _settings(plan, comm, prepared):
    """(the settings this job can run, notes on those left out, whether a sync fraction
    below 1 can run: several ranks, each holding one partition); agreed: an error on every
    rank when nothing is left to run."""
    sync_possible = prepared.grid is not None and prepared.grid.size == comm.size
    settings, notes = plan.runs(comm.size > 1 or prepared.splits is not None, sync_possible)
    if not settings:
        comm.agree("nothing to run: " + "; ".join(notes))
    return settings, notes, sync_possible


def _write_records(plan, paths, rows, curves):
    """runs.csv and curves.csv after each run (rank 0), curves first: a run in runs.csv has
    its curves. Before the first run's, a file that appeared since the check is refused."""
    replace = plan.overwrite or plan.resume or len(rows) > 1
    extra = columns(plan.networks)
    records.write_csv(paths["curves.csv"], curves, records.CURVE_COLUMNS + extra, replace)
    records.write_csv(paths["runs.csv"], rows, records.RUN_COLUMNS + extra, replace)


def _identity(plan, comm, prepared):
    """The columns every row of this study has alike (and --continue checks), with the
    budget of each unit."""
    data, hidden = prepared.data, plan.problem.hidden
    splits = "" if comm.size == 1 and prepared.splits is None else \
        ",".join(map(str, grid_splits(data, hidden, comm, prepared.splits)))
    return dict(data=plan.problem.data, data_digest=prepared.digest, ranks=comm.size, splits=splits,
                network="-".join(map(str, (data.n_features, *hidden, data.n_classes))),
                train_size=data.n_train, C=prepared.objective.regularization(data.n_train),
                dtype=prepared.objective.dtype, options=_options(plan),
                budget=dict(iteration=plan.iters, epoch=plan.epochs))


def _options(plan):
    """The options that change a run and are not columns of their own, as one text."""
    p, n, s = plan.problem, plan.newton, plan.sgd
    return (f"{p.activation} {p.loss} eval_batch={p.eval_batch} xi={n.xi:g} cg_max={n.cg_max} "
            f"lambda0={n.lambda0:g} momentum={s.momentum:g} sgd_batch={s.batch_size} "
            f"slow_rank={p.slow_rank or '-'} train_limit={p.train_limit or '-'}")


def _data_note(plan, data):
    note = f"{data.name}, {data.n_train} training and {data.n_test} test instances, " \
           f"{data.n_features} features, {data.n_classes} classes ({data.source})"
    if plan.problem.train_limit is not None:
        note += (f"; REDUCED: only the first {plan.problem.train_limit} training "
                 "instances are used (--train-limit)")
    return note


def _finished(plan, comm, paths, settings, identity):
    """(rows, curves, done): with --continue, the runs already in runs.csv and curves.csv
    (read and checked on rank 0, ``records.read_finished``) and on every rank which
    (seed, setting) they are, as a (seeds, settings) mask sent from rank 0 in one message;
    otherwise nothing."""
    done = np.zeros((plan.seeds, len(settings)))
    if not plan.resume:
        return [], [], done.astype(bool)
    kept = comm.agree_on(lambda: records.read_finished(
        paths["runs.csv"], paths["curves.csv"], settings, plan.seeds, identity,
        columns(plan.networks)) if comm.rank == 0 else ([], []), root_only=True)
    index = {x.label: k for k, x in enumerate(settings)}
    for r in kept[0]:
        done[r["seed"], index[r["setting"]]] = 1
    with comm.phase("setup"):
        comm.allreduce(done, comm.world_group(), receives=comm.rank != 0)
    return (*kept, done.astype(bool))


def _progress(row, total, setting, seed):
    return (f"[{row['run']:>3}/{total}] {setting.label:<30} seed {seed}: test "
            f"{fmt(row['test_accuracy'], '.4f')}, f {fmt(row['objective'], '.4g')}, "
            f"{count(row['iterations'], row['unit'])}, "
            f"{duration(row['wall_time'])}, {row['bytes_total'] / 1e6:.2f} MB"
            + (f" (CG {row['bytes_cg'] / 1e6:.3f})" if setting.optimizer == "newton" else "")
            + (", DIVERGED" if row["diverged"] else ""))


def _write_report(plan, paths, info, rows, curves, notes, started, seconds, data_note, title):
    from .figures import accuracy_time_panels, robustness_strip
    stats, replace = report.aggregate(rows), plan.overwrite or plan.resume
    summary = report.summary_markdown(plan, info, stats, rows, curves, notes, started, seconds,
                                      data_note)
    write_atomic(paths["summary.md"], summary, replace)
    panels, groups = report.figure_inputs(stats, rows, curves)
    accuracy_time_panels(panels, paths["accuracy_vs_time.png"], title=title,
                         replace=replace)
    robustness_strip(groups, paths["robustness.png"], title=title, replace=replace)
    if plan.networks:
        from .figures import accuracy_against_modeled_time
        accuracy_against_modeled_time(modeled.figure_inputs(stats, rows, curves, plan.networks),
                                      paths[MODELED_FIGURE], modeled.common_target(stats),
                                      title=title, replace=replace)
    print(report.settings_table(stats))
    print(f"wrote {', '.join(paths)} in {plan.out} ({duration(seconds)})")
