"""Runs as data: check a problem on every rank, build a model for the communicator, train
it, return a JSON-ready result. Shared by the command line, the study and the notebooks.
No printing here.
"""
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import checkpoint, memory
from . import data as datasets
from .checkpoint import Plan, Writer, check_compatible, gather_records, load_model
from .comm import Comm
from .dense import DenseModel
from .distributed import DistributedModel
from .ledger import accumulate_modeled
from .model import ConfigError, ObjectiveConfig, default_C, network_layers, parse_C
from .newton import NewtonConfig, newton
from .outputs import check_writable, finite
from .partition import Grid
from .sgd import SGDConfig, sgd
from .splits import checked_grid, parse_splits, propose_splits

OPTIMIZERS = ("newton", "sgd")


@dataclass(frozen=True)
class Problem:
    """The data, the network and its partition as a user names them, before any loading."""
    data: str = "digits"              # a key of data.DATASETS
    data_path: str | None = None      # directory or file(s) of the data set
    hidden: tuple = (64, 64)          # hidden layer widths
    activation: str = "relu"
    loss: str = "squared"
    C: str | None = None              # a number or a multiple of l ("0.01l"); None: model.default_C
    eval_batch: int = ObjectiveConfig.batch_size
    seed: int = 0                     # initialization (and the split, where the kit makes one)
    splits: str | None = None         # "P_0,...,P_L"; None: proposed for the rank count
    slow_rank: str | None = None      # "RANK:SECONDS": a straggler on purpose
    train_limit: int | None = None    # train on the first K training instances only
    subsample: float = NewtonConfig.subsample  # the largest |S| / l: sizes the memory check
    dtype: str = ObjectiveConfig.dtype  # numbers of the model: float64 (the reference) or float32
    keep_forward: bool = ObjectiveConfig.keep_forward   # the line search's pass, kept (kept.py)


@dataclass(frozen=True)
class Prepared:
    """A problem loaded and checked on this rank: what ``build_model`` needs."""
    data: datasets.Dataset | datasets.Share   # one process: all; else this rank's columns
    objective: ObjectiveConfig
    splits: tuple | None
    slow: tuple | None                # (rank, seconds) or None
    resume: checkpoint.Saved | None = None    # the checkpoint to continue, read and checked
    digest: str = ""                  # the data's (data.Source.digest): recorded, and checked on resume
    train_limit: int | None = None    # --train-limit K where K < l: recorded, and checked on resume
    majority: float = 0.0             # training share of the most frequent class (a run no
                                      # better than it has learned nothing: ``learned_nothing``)
    grid: Grid | None = None          # the run's grid on the job's ranks (None: one process)

    @property
    def classes(self):
        """The file's label of each output unit, as text (a run and a saved model record it)."""
        return datasets.class_names(self.data.classes)


def prepare(problem, comm, outputs=(), overwrite=False, keep=Plan()):
    """Load and check everything on every rank, then agree: a ConfigError everywhere or
    a ``Prepared`` everywhere. The ``outputs`` (file paths) are checked first, on rank 0:
    an existing file is an error unless ``overwrite``, and so is a path that cannot be
    written (``outputs.check_writable``), all before the first iteration. So are the
    checkpoint directory and the saved model of ``keep`` (a ``checkpoint.Plan``), and the
    checkpoint it resumes from is read and must match the problem's layers, data set and
    optimizer (``checkpoint.check_compatible``). Each rank reads only its share of the
    data (``data.Source.share``), once its share is known to fit the memory it has
    (``memory``): a refusal names the bytes needed and available."""
    comm.agree_on(lambda: _check_outputs(problem, outputs, overwrite, keep)
                  if comm.rank == 0 else None, root_only=True)
    return comm.agree_on(lambda: memory.within(lambda: _prepare(problem, comm, keep),
                                               f"reading the data set {problem.data}"),
                         same=lambda p: ("the data read", f"digest {p.digest}"))


def _check_outputs(problem, outputs, overwrite, keep):
    """Rank 0: ValueError if an output, the checkpoint directory or the saved model cannot
    be written (``outputs.check_writable``, ``checkpoint.check_plan``)."""
    check_writable([*outputs, keep.save], overwrite,
                   inputs=datasets.data_files(problem.data, problem.data_path))
    checkpoint.check_plan(keep, overwrite)


def _prepare(problem, comm, keep):
    source = datasets.open_dataset(problem.data, problem.data_path, seed=problem.seed)
    limit = problem.train_limit if problem.train_limit is not None and \
        problem.train_limit < source.n_train else None
    n_train = source.n_train if limit is None else limit
    objective = ObjectiveConfig(
        activation=problem.activation, loss=problem.loss,
        C=parse_C(problem.C or default_C(problem.data), n_train),
        batch_size=problem.eval_batch, init_seed=problem.seed, dtype=problem.dtype,
        keep_forward=problem.keep_forward)
    layers = network_layers(source.n_features, problem.hidden, source.n_classes)
    splits = parse_splits(problem.splits, layers) if problem.splits is not None else None
    saved = checkpoint.read(keep.resume) if keep.resume else None
    digest = source.digest()
    if saved:
        check_compatible(saved, layers, keep, problem.data, objective, digest, limit)
    slow = _slow(problem.slow_rank, comm.size)
    grid = _grid(source, problem.hidden, comm, splits)
    _check_memory(layers, grid and grid.blocks(comm.rank), n_train, source.n_test, problem, objective)
    data = source.load(limit, objective.dtype) if grid is None else source.share(
        *grid.data_held(comm.rank), limit, objective.dtype)
    y = source.y_train[:n_train]
    return Prepared(data, objective, splits, slow, saved, digest, limit,
                    np.bincount(y).max() / y.size, grid)


def _grid(source, hidden, comm, splits):
    """The run's ``Grid`` on the job's ranks, or None for the one-process model (one rank;
    its splits, if any, only choose the blocks of a block-diagonal G)."""
    if comm.size == 1:
        return None
    return checked_grid(network_layers(source.n_features, hidden, source.n_classes),
                        grid_splits(source, hidden, comm, splits), n_ranks=comm.size)


def _check_memory(layers, parts, n_train, n_test, problem, objective):
    """ConfigError, before the share is read or any parameter drawn, if this rank's share
    (``memory.rank_bytes`` of its partitions ``parts``, or ``dense_bytes`` on one process)
    does not fit the memory it has (``memory.available_bytes``)."""
    sizes = (n_train, n_test, objective.batch_size,
             NewtonConfig(subsample=problem.subsample).subsample_size(n_train))
    need = memory.dense_bytes(layers, *sizes, objective.dtype, objective.keep_forward) \
        if parts is None else memory.rank_bytes(layers, parts, *sizes, dtype=objective.dtype,
                                                keep=objective.keep_forward,
                                                activation=objective.activation,
                                                loss=objective.loss)
    who = "the one-process model" if parts is None else \
        f"this rank's share ({', '.join(p.weights for p in parts)})"
    line = memory.refusal(need, *memory.available_bytes(memory.local_ranks()), who)
    if line:
        raise ConfigError(line)


def _slow(text, n_ranks):
    """(rank, seconds) of --slow-rank RANK:SECONDS, checked against the job's ranks."""
    if text is None:
        return None
    try:
        rank, seconds = text.split(":")
        rank, seconds = int(rank), float(seconds)
    except ValueError:
        raise ConfigError(f"--slow-rank expects RANK:SECONDS, got {text!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"--slow-rank {text}: SECONDS must be a finite number >= 0")
    if not 0 <= rank < n_ranks:
        raise ConfigError(f"--slow-rank {text}: this job has rank{'s 0..' if n_ranks > 1 else ' '}"
                          f"{n_ranks - 1}, no rank {rank}")
    return rank, seconds


def grid_splits(data, hidden, comm, splits=None):
    """The splits a run uses: the given ones, or the proposal for the communicator's size."""
    if splits is not None:
        return tuple(splits)
    try:
        return propose_splits(network_layers(data.n_features, hidden, data.n_classes),
                              comm.size)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_sync(sync, n_ranks):
    """ConfigError unless ``sync`` is a fraction in (0, 1], and 1 on one process."""
    if not 0 < sync <= 1:
        raise ConfigError(f"sync fraction must be in (0, 1], got {sync}")
    if n_ranks == 1 and sync != 1.0:
        raise ConfigError("--sync needs several ranks to wait for: run under mpiexec -n N, "
                          "one rank per partition")


def build_model(data, hidden, objective, comm=None, splits=None, gn="full", sync=1.0,
                slow=None):
    """DenseModel on one process (with ``gn="diag"``, G's blocks are those of ``splits``),
    else this rank's DistributedModel (on the proposed splits when none are given).
    ``slow`` = (rank, seconds) makes that rank a ``Straggler``."""
    comm = comm or Comm()
    check_sync(sync, comm.size)
    if comm.size == 1:
        if gn != "full" and splits is None:
            raise ConfigError("--gn diag needs partitions: run under mpiexec -n N, or give "
                              "--splits on one process (the blocks of G it keeps)")
        model = DenseModel(data, hidden, objective, gn=gn, splits=splits, ledger=comm)
    else:
        model = DistributedModel(data, hidden, grid_splits(data, hidden, comm, splits), comm,
                                 objective, gn=gn, sync=sync)
    if slow is not None and slow[0] == comm.rank:
        model = Straggler(model, slow[1])
    return model


class Straggler:
    """A model whose Gauss-Newton products each take ``seconds`` longer: a slow partition on
    purpose (a teaching device, and the test of the sync fraction, docs/method.md §6)."""

    def __init__(self, model, seconds):
        self.model, self.seconds = model, seconds

    def __getattr__(self, name):
        return getattr(self.model, name)

    def gauss_newton(self, J, v):
        out = self.model.gauss_newton(J, v)
        time.sleep(self.seconds)
        return out


def train(model, method, newton_config=NewtonConfig(), sgd_config=SGDConfig(), callback=None,
          resume=None, on_state=None):
    """Train with "newton" or "sgd"; returns the History. ``resume`` and ``on_state``: see
    ``newton.newton``."""
    if method == "newton":
        return newton(model, newton_config, callback, resume, on_state)
    if method == "sgd":
        return sgd(model, sgd_config, callback, resume, on_state)
    raise ConfigError(f"unknown optimizer {method!r}; choose from {', '.join(OPTIMIZERS)}")


def run(model, method, newton_config=NewtonConfig(), sgd_config=SGDConfig(), callback=None,
        snapshot=None, resume=None, keep=Plan(), **about):
    """Train, then collect: (History, ``result``). ``about`` adds to the result's config
    (the data set's name, say; ``charged``: the ``comm.Comm`` whose --network the config
    names, for a one-process model, which has none). ``snapshot(partial)``, if given (on
    every rank), is called on rank 0 after every iteration or epoch with the result so far,
    "status" "running", as ``result`` would give it (each record gathered and summed over
    ranks then, a message of phase "report"), so a caller can save it; and at the start
    with ``start=True`` (to keep, not to write yet). ``resume`` (a
    ``history.State``, ``checkpoint.restore``) continues a run; with ``keep.directory`` a
    checkpoint is written every ``keep.every`` iterations or epochs and after the last
    (``checkpoint.Writer``). Collective on a distributed model."""
    comm = getattr(model, "comm", None)
    charged = about.pop("charged", comm)    # the Comm whose network it names (one process too)
    network = charged.network if charged else None
    config = config_dict(
        **about, optimizer=method, gn=model.gn, sync=model.sync,
        ranks=comm.size if comm else 1, objective=model.config,
        wait=comm.patience.mode if comm else None,    # how ranks waited (polling.py)
        network=network.name if network else None,
        network_mode=("inject" if charged.inject else "model") if network else None,
        **({"newton": newton_config} if method == "newton" else {"sgd": sgd_config}))
    previous = resume.records if resume else []
    writer = Writer(keep.directory, keep.every, newton_config.iters if method == "newton"
                    else sgd_config.epochs, model, config, previous) if keep.directory else None
    rank0 = comm is None or comm.rank == 0
    if snapshot is not None:
        seen = list(previous)
        if rank0:                  # what a run that ends before its first record leaves
            snapshot(_assemble(model, [dict(r) for r in seen], config, "running"), start=True)

        def each(record):          # saved before it is printed: a printed iteration is saved
            summed = gather_records(comm, [record])    # collective: summed as result() does
            if summed is not None:                     # rank 0
                seen.extend(summed)
                snapshot(_assemble(model, [dict(r) for r in seen], config, "running"))
            if callback:
                callback(record)
    else:
        each = callback
    history = train(model, method, newton_config, sgd_config, each, resume, writer)
    if snapshot is None:
        return history, result(model, history, config)
    # every record was gathered and summed as it came: rank 0's ``seen`` is result()'s
    return history, _assemble(model, seen, config, history.status) if rank0 else None


def result(model, history, config):
    """{"config", "history", "final"} with messages and bytes summed over ranks. "final"
    holds the last record's accuracies, objective and time, and the run's "status":
    "finished", or "diverged" with "diverged_at" (the iteration or epoch).

    Collective on a distributed model (one gather of the per-iteration ledgers, but for
    the first ``history.combined``, already summed in a checkpoint); the complete result
    is on rank 0, other ranks get None. Each rank ran its own CG in diag mode: every
    count is kept ("cg_iters_per_rank").
    """
    done = history.records[:history.combined]
    records = gather_records(getattr(model, "comm", None), history.records[history.combined:])
    if records is None:
        return None
    return _assemble(model, [dict(r) for r in done] + records, config, history.status)


def _assemble(model, records, config, status):
    accumulate_modeled(records)       # with a network model: the time the run would take
    last = records[-1] if records else {}
    final = {key: last.get(key) for key in ("test_accuracy", "train_accuracy", "objective",
                                            "wall_time", "modeled_time", "modeled_time_on")
             if key in last or key not in ("modeled_time", "modeled_time_on")}
    final["status"] = status
    if status == "diverged":
        final["diverged_at"] = last.get("iter")
    grid = getattr(model, "grid", None)
    config = dict(config, layers=list(model.layers), C=model.C,
                  splits=list(grid.splits) if grid else None)
    return finite({"config": config, "history": records, "final": final})


def learned_nothing(out, prepared):
    """A warning when a run's final train accuracy is no better than always answering the
    training set's most frequent class (``Prepared.majority``), else None: on a small data
    set the default C = 0.01 l can hold every weight near zero, and SGD's learning rate can
    be too small or too large (docs/troubleshooting.md)."""
    majority, l = prepared.majority, prepared.data.n_train
    accuracy = out["final"].get("train_accuracy")
    if out["final"].get("status") == "diverged" or accuracy is None or \
            accuracy > majority + 1e-12:       # a diverged run is said so, in its own words
        return None
    C, last = out["config"]["C"], out["final"].get("objective")
    first = out["history"][0].get("objective") if out["history"] else None
    if last is not None and first is not None and last > first:     # SGD's steps too long
        hint = f"the objective rose from {first:.4g} to {last:.4g}: try a smaller --lr"
    else:
        hint = "check the learning rate (--lr)" if out["config"]["optimizer"] == "sgd" \
            else "check the iterations (--iters)"
        if C < l:
            hint = (f"C = {C:.6g} ({C / l:.3g} l) may hold the weights near zero: try a "
                    f"larger --C such as 1l; or {hint}")
    return (f"train accuracy {accuracy:.4f} is no better than always answering the most "
            f"frequent class ({majority:.4f} of the training instances): the network learned "
            f"nothing it can use. {hint[0].upper() + hint[1:]} (docs/troubleshooting.md)")


def config_dict(**configs):
    """Frozen config dataclasses (and plain values) as one flat JSON-ready dict."""
    out = {}
    for name, value in configs.items():
        if hasattr(value, "__dataclass_fields__"):
            out.update({f"{name}.{k}": v for k, v in asdict(value).items()})
        else:
            out[name] = value
    return out


def _check_classes(path, saved, data, classes):
    """ConfigError if the model's output units stand for other numeric labels than the data
    set's classes (1..10 against 0..9); a warning if the names differ otherwise (mlbench's
    "A".."Z" and LIBSVM's 1..26 for letter: the same classes in the same order), and if
    the model was saved before models recorded them (``saved`` None)."""
    if saved is None:
        datasets.warn(f"{path} records no classes (saved before models did): whether data "
                      f"set {data} labels its classes as the data it was trained on cannot "
                      "be checked")
        return
    if list(saved) == classes:
        return
    line = (f"{path}'s output units stand for the classes {', '.join(saved)} of the data it "
            f"was trained on; data set {data} has the classes {', '.join(classes)}")
    if all(datasets.is_number(c) for c in (*saved, *classes)):
        raise ConfigError(f"{line}: its accuracy would compare unrelated labels")
    datasets.warn(f"{line}: compared in this order")


def _sparse_hint(data, dataset, width):
    """For svmlight data narrower than the network: how to make it as wide. The format is
    sparse, so a last feature zero on every line is not in the file, and where no line uses
    index 0 the file may number from 1 or from 0: the kit cannot tell, so it does not pad."""
    if data != "svmlight" or dataset.n_features >= width:
        return ""
    return (f" (svmlight files are sparse: if its last features are zero on every line, "
            f"write {width}:0 on a line of each file, or {width - 1}:0 where it numbers "
            "features from 0)")


def evaluate(path, data=None, data_path=None, outputs=(), overwrite=False):
    """Train and test accuracy and f of the weights ``checkpoint.save_model`` wrote, on
    one process: {"model", "data", "layers", "dtype", "classes" (the model's, None if it
    records none), "train_limit", "train_instances" (those scored), "train_accuracy",
    "test_accuracy", "objective"}. The data set (by default the one trained on, on the run's --train-limit
    instances) is split with the saved seed, and must have the network's numbers of
    features and classes (data holding some of the classes the model recorded is scored on
    their units), and its numeric labels the model's (else a ConfigError). A warning if the
    data set of the name trained on is not the data trained on (``data.Source.digest``).
    ``outputs``, to be written by the caller, are checked first (``outputs.check_writable``)."""
    try:
        saved = load_model(path)
        if data is None or data == saved["data"]:      # the data trained on, where it was
            data, data_path = saved["data"], data_path or (
                saved["data_path"] if saved["data"] not in datasets.BUNDLED else None) or None
        check_writable(outputs, overwrite, inputs=[path, *datasets.data_files(data, data_path)])
        source = datasets.open_dataset(data, data_path, seed=saved["seed"])
        trained = saved["data_digest"] if data == saved["data"] else ""
        limit = saved["train_limit"] if trained else None      # the run's training set
        memory.check_evaluate(saved["layers"], limit or source.n_train, source.n_test,
                              saved["batch_size"], saved["dtype"])
        dataset = memory.within(lambda: source.load(limit, saved["dtype"]), f"reading {data}")
        if trained and (digest := source.digest()) != trained:
            datasets.warn(f"{data} ({source.source}) is not the data {path} was trained "
                          f"on (digest {digest}, trained on {trained})")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    layers = saved["layers"]
    coded = datasets.coded_as(dataset, saved["classes"])
    differ = [f"{n} {what}" for n, want, what in ((dataset.n_features, layers[0], "features"),
                                                   (coded.n_classes, layers[-1], "classes"))
              if n != want]
    if differ:
        raise ConfigError(f"{path} is a {'-'.join(map(str, layers))} network ({layers[0]} "
                          f"features, {layers[-1]} classes); data set {data} has "
                          f"{' and '.join(differ)}" + _sparse_hint(data, dataset, layers[0]))
    dataset = coded
    classes = datasets.class_names(dataset.classes)
    _check_classes(path, saved["classes"], data, classes)
    model = DenseModel(dataset, layers[1:-1], ObjectiveConfig(
        activation=saved["activation"], loss=saved["loss"], C=saved["C"],
        batch_size=saved["batch_size"], dtype=saved["dtype"]))
    train_accuracy, test_accuracy = model.accuracy(saved["theta"])
    return dict(model=path, data=data, layers=layers, dtype=saved["dtype"],
                classes=None if saved["classes"] is None else list(saved["classes"]),
                train_limit=limit, train_instances=dataset.n_train, train_accuracy=train_accuracy,
                test_accuracy=test_accuracy, objective=model.objective(saved["theta"]))
