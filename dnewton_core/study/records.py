"""The study's files of record: one row per run (runs.csv), one per iteration (curves.csv)."""
import csv
import io
import os

import numpy as np

from ..ledger import LEDGER_PHASES, MONITORING, training_bytes
from ..newton import DIAG_STEPS
from ..outputs import write_atomic
from .modeled import modeled_times


def summarize_run(out, setting, seed, elapsed, budget, networks=()):
    """(row of runs.csv, rows of curves.csv) from a result of ``experiment.result``; with
    ``networks`` (``network.Network``s the run was charged on), the modeled times on each
    (``modeled.column``)."""
    history, config, final = out["history"], out["config"], out["final"]
    names, one_process = [n.name for n in networks], config.get("ranks", 1) == 1
    # each rank's own CG count (they differ under the diagonal G); one process: its own
    per_rank = [r.get("cg_iters_per_rank") or [r.get("cg_iters") or 0] for r in history]
    cg_max = [max(c) for c in per_rank] if setting.method != "sgd" else []
    cg_mean = [float(np.mean(c)) for c in per_rank] if cg_max else []
    row = dict(
        method=setting.method, setting=setting.label,
        subsample=setting.subsample, sync=setting.sync, lr=setting.lr, seed=seed,
        step=setting.diag_step if setting.method == "newton-diag" else None,
        unit="epoch" if setting.method == "sgd" else "iteration", budget=budget,
        iterations=len(history),
        train_accuracy=final["train_accuracy"], test_accuracy=final["test_accuracy"],
        objective=final["objective"], wall_time=final["wall_time"],
        elapsed=elapsed, diverged=any(r.get("diverged") for r in history),
        cg_iters=sum(cg_max) if setting.method != "sgd" else None,
        cg_iters_mean=sum(cg_mean) if setting.method != "sgd" else None,
        C=config["C"], **modeled_times(final, names, one_process))
    for key in ("bytes", "messages", "seconds"):
        for phase in LEDGER_PHASES:
            row[f"{key}_{phase}"] = sum(r["comm"].get(phase, {}).get(key, 0) for r in history)
    row["bytes_total"] = training_bytes(history)
    row["messages_total"] = sum(row[f"messages_{p}"] for p in LEDGER_PHASES
                                if p not in MONITORING)
    curves = [dict(iter=r["iter"], wall_time=r["wall_time"], objective=r["objective"],
                   train_accuracy=r["train_accuracy"], test_accuracy=r["test_accuracy"],
                   cg_iters=cg_max[k] if cg_max and setting.method != "sgd" else None,
                   bytes=training_bytes([r]), **modeled_times(r, names, one_process))
              for k, r in enumerate(history)]
    return row, curves


# Each run's provenance: the study's part (1, then one more for each --continue), when the
# run started, the kit's code (``provenance.code_version``), rank 0's niceness, the load.
PROVENANCE = ("part", "started", "code", "nice", "load")
RUN_COLUMNS = (["run", "data", "data_digest", "network", "splits", "ranks", "train_size", "C",
                "dtype", "method", "setting", "subsample", "sync", "step", "lr", "seed", "unit",
                "budget", "iterations", "options", "train_accuracy", "test_accuracy", "objective",
                "wall_time", "elapsed", "diverged", "cg_iters", "cg_iters_mean", "bytes_total",
                "messages_total"]
               + list(PROVENANCE)
               + [f"bytes_{p}" for p in LEDGER_PHASES]
               + [f"messages_{p}" for p in LEDGER_PHASES]
               + [f"seconds_{p}" for p in LEDGER_PHASES])
LATER_PHASES = ("diag_step",)              # phases an older kit did not have: nothing spent there
LATER_PHASE_COLUMNS = tuple(f"{key}_{phase}" for key in ("bytes", "messages", "seconds")
                            for phase in LATER_PHASES)
# the columns an older runs.csv lacks
NEWER = ("data_digest", "step", "dtype", "options") + LATER_PHASE_COLUMNS + PROVENANCE
TEXTS = ("data", "data_digest", "network", "splits", "method", "setting", "step", "unit", "dtype", "options",
         "started", "code")
NUMBERS = [c for c in RUN_COLUMNS if c not in TEXTS]   # in runs.csv: numbers or empty
CURVE_COLUMNS = ["run", "method", "setting", "seed", "iter", "wall_time", "objective",
                 "train_accuracy", "test_accuracy", "cg_iters", "bytes"]


def write_csv(path, rows, columns, replace=True):
    """Write ``rows`` atomically (``outputs.write_atomic``; see there for ``replace``)."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    write_atomic(path, f.getvalue(), replace)


def read_runs(path):
    """runs.csv back as dicts with numbers parsed (for tests and notebooks)."""
    def parse(key, v):
        if v == "":
            return None
        if key in TEXTS:                      # a commit such as 1e05432 is not a number
            return v
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
        rows = [{k: parse(k, v) for k, v in r.items()} for r in csv.DictReader(f)]
    for r in rows:          # written before runs.csv had "step": the setting's label names it
        if "step" not in r and r["method"] == "newton-diag":
            last = r["setting"].split()[-1]
            r["step"] = last if last in DIAG_STEPS else "none"
        if "budget" in r:      # a runs.csv row written before --dtype, or before a phase existed
            r.setdefault("dtype", "float64")
            for key in LATER_PHASE_COLUMNS:
                r.setdefault(key, 0)
    return rows


# The option behind each identity column, for --continue's refusals; those that decide the
# others' defaults (another --hidden proposes another grid) are named first.
FIRST = ("data", "data_digest", "network")
OPTION_OF = dict(data="--data", data_digest="--data-path: the same data set, other contents",
                 ranks="the number of MPI ranks", splits="--splits",
                 network="--hidden", train_size="--train-limit", C="--C", dtype="--dtype",
                 iteration="--iters", epoch="--epochs")


def _study_there(runs_path, curves_path):
    """Whether --continue finds a study's files: False for the empty directory of a study
    stopped before its first run ended; ValueError for none at all or half of them (a
    directory holding other files is no study: they are not replaced)."""
    directory = os.path.dirname(runs_path) or "."
    if not os.path.exists(runs_path):
        if os.path.isdir(directory) and not os.listdir(directory):
            return False
        raise ValueError(f"--continue: {runs_path} does not exist: no study to continue there "
                         "(leave out --continue to start one)")
    if not os.path.exists(curves_path):
        raise ValueError(f"--continue: {runs_path} is there but {curves_path} is not: the "
                         "runs' curves are lost; restore the file, or start again with "
                         "--overwrite")
    return True


def read_finished(runs_path, curves_path, settings, seeds, identity, extra=()):
    """The (rows, curves) of a study cut short that ``reproduce --continue`` keeps, checked to
    be runs of this study: the columns of this study (``extra``: its modeled networks'), every
    row's ``identity`` columns (data, network, grid, C, dtype, budget per unit, ...) as this
    study's, its setting among ``settings`` and its seed below ``seeds``, no (setting, seed)
    twice, and a curve row per iteration of every kept run. A ValueError names the file, line
    and column."""
    if not _study_there(runs_path, curves_path):
        return [], []                # a study stopped before its first run ended: none to keep
    _check_header(runs_path, [c for c in RUN_COLUMNS if c not in NEWER], extra)
    _check_header(curves_path, CURVE_COLUMNS, extra)
    rows, curves = read_runs(runs_path), read_runs(curves_path)
    labels, seen, by_run = {x.label for x in settings}, set(), {}
    for c in curves:
        by_run.setdefault(c["run"], []).append((c["setting"], c["seed"]))
    text = lambda v: "" if v is None else str(v)
    for line, r in enumerate(rows, start=2):
        where = f"--continue: {runs_path} line {line}"
        wanted = dict(identity, budget=identity["budget"].get(r["unit"], "(a unit of "
                                                              "iteration or epoch)"))
        bad = [k for k in NUMBERS if not isinstance(r.get(k), (int, float, type(None)))]
        if bad:
            raise ValueError(f"{where}: {bad[0]} is {r[bad[0]]!r}, not a number")
        for key, value in sorted(wanted.items(), key=lambda kv: kv[0] not in FIRST):
            if key in ("options", "data_digest") and r.get(key) is None:   # written before
                continue                                                 # runs.csv had it
            if text(r.get(key)) != text(value):
                option = OPTION_OF.get(key if key != "budget" else r["unit"])
                theirs, ours = _shown(r.get(key), value)
                raise ValueError(f"{where}: {key} is {theirs}, this study's is {ours}"
                                 + (f" ({option})" if option else "")
                                 + "; continue with the options of the first part")
        _check_part(where, r.get("part"), rows[line - 3].get("part") if line > 2 else None)
        pair = (r["setting"], r["seed"])
        if r["setting"] not in labels or not (isinstance(r["seed"], int) and 0 <= r["seed"] < seeds):
            raise ValueError(f"{where}: {r['setting']!r} seed {r['seed']} is not a run of this "
                             f"study ({len(labels)} settings, seeds 0..{seeds - 1})")
        if pair in seen:
            raise ValueError(f"{where}: {r['setting']!r} seed {r['seed']} is there twice")
        seen.add(pair)
        if r["run"] != line - 1:
            raise ValueError(f"{where}: run number {r['run']}, expected {line - 1}")
        mine = by_run.get(r["run"], [])
        if len(mine) != r["iterations"] or any(c != pair for c in mine):
            raise ValueError(f"--continue: {curves_path} has {len(mine)} rows of run {r['run']} "
                             f"({r['setting']}, seed {r['seed']}), which ran {r['iterations']} "
                             f"{r['unit']}s: the study was cut while writing; remove that run "
                             f"from {runs_path} and continue")
    finished = {r["run"] for r in rows}
    return rows, [c for c in curves if c["run"] in finished]


def _shown(a, b):
    """Two values that differ, as a message shows them: floats to 10 digits where that
    tells them apart (C = 0.01 l is 1.4000000000000001 for l = 140), else as Python writes
    them (the shortest text that reads back as the same value), with their types if even
    that is the same (the number 1 and the text "1")."""
    def text(v, short):
        if v is None or v == "":
            return "'(empty)'"
        return repr(f"{v:.10g}" if short and isinstance(v, float) else str(v))
    for shown in ((text(a, True), text(b, True)), (text(a, False), text(b, False))):
        if shown[0] != shown[1]:
            return shown
    return f"{text(a, False)} ({type(a).__name__})", f"{text(b, False)} ({type(b).__name__})"


def _check_part(where, part, before):
    """ValueError unless ``part`` is a whole number >= 1 and >= the row ``before``'s, or
    empty in a row written before runs.csv had parts (so are the rows before it)."""
    if part is None and before is None:
        return
    if not isinstance(part, int) or part < max(1, before or 1):
        raise ValueError(f"{where}: part is {'(empty)' if part is None else repr(part)}, after "
                         f"{'(empty)' if before is None else before}: parts are whole numbers "
                         "from 1 that never go down (empty only in rows written before runs.csv "
                         "had them)")


def _check_header(path, required, extra):
    """ValueError unless the CSV file at ``path`` has the ``required`` columns and, of the
    modeled networks' columns, exactly ``extra``."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"--continue: {path} has no column {missing[0]!r}: not a file "
                         "that reproduce wrote")
    missing = [c for c in extra if c not in header]
    if missing:
        raise ValueError(f"--continue: {path} has no column {missing[0]!r}: the first part "
                         f"ran without --network {missing[0][len('modeled_time_'):]}; "
                         "continue with the same --network names")
    other = [c for c in header if c.startswith("modeled_time") and c not in extra]
    if other:
        raise ValueError(f"--continue: {path} has column {other[0]!r}: the study ran with "
                         "other --network names; continue with the same ones")
