"""What a training run keeps: checkpoints to resume from (on any grid) and the final weights.

A checkpoint directory DIR holds, after iteration (or epoch) N::

    DIR/step-00000N/block-R.npz   rank R's part of theta (SGD: and of its velocity)
    DIR/step-00000N/state.json    the solver's state (``history.State``: lambda and f, or
                                  the step count t; the generator's state; the training time;
                                  the records so far, summed over ranks), the configuration
                                  and the grid (layers, splits or null for the one-process
                                  dense model, rank count)
    DIR/manifest.json             written last, atomically: the step to resume from

so a checkpoint is complete or absent (as PyTorch's distributed checkpoint does with its
metadata file): a run killed while writing step N leaves the manifest on step N - k, whose
files are whole. Older steps are removed once the manifest points past them.

A block is the part of ``reference.flatten``'s vector that a partition holds
(``partition.Grid.param_slices``; the dense model's one block is the whole vector), so a
run resumes on another grid or rank count by placing the old blocks with the old grid's
slices and reading its own with the new grid's. Every message goes through the model's
``comm.Comm`` (none on one process): this module is part of the MPI layer without importing
MPI.
"""
import io
import json
import os
import re
import shutil
import zipfile
from dataclasses import asdict, dataclass

import numpy as np

from . import reference as ref
from .history import State
from .ledger import combine_records, modeled_over_ranks
from .model import DTYPES, ConfigError
from .outputs import check_writable, write_atomic
from .partition import Grid

MANIFEST, STATE = "manifest.json", "state.json"
STEP = re.compile(r"step-\d{6}$")
KEYS = ["done", "scalars", "rng", "train_time", "vectors", "records", "config", "grid"]
OLD_DEFAULTS = {"dtype": "float64"}    # what checkpoints and weights from before a field hold


@dataclass(frozen=True)
class Plan:
    """What one train run keeps and continues from (the command line's options)."""
    directory: str | None = None      # --checkpoint DIR
    every: int = 1                    # --checkpoint-every K
    resume: str | None = None         # --resume DIR
    save: str | None = None           # --save FILE: the final weights
    optimizer: str = "newton"         # what is resumed must have been trained the same way
    budget: int | None = None         # --iters or --epochs, counted from the run's start
    solver: tuple = ()                # (key, value): the solver's settings but the budget,
    #                                   as the result's config names them ("sgd.lr", "gn", ...)


def solver_settings(optimizer, newton, sgd, gn, sync=None):
    """``Plan.solver``, (key, value) pairs: the settings of the ``optimizer``'s config
    (``newton.NewtonConfig`` or ``sgd.SGDConfig``; for Newton its Gauss-Newton matrix, and
    its ``sync`` unless None: one process has none) but its budget and its seed (the command
    line's --seed, checked as the objective's init_seed)."""
    if optimizer != "newton":
        return tuple((f"sgd.{k}", v) for k, v in asdict(sgd).items() if k not in ("epochs", "seed"))
    return tuple((f"newton.{k}", v) for k, v in asdict(newton).items() if k not in (
        "iters", "seed")) + (("gn", gn),) + ((("sync", sync),) if sync is not None else ())


@dataclass(frozen=True)
class Saved:
    """A complete checkpoint, as read: its directory, step and state.json."""
    directory: str
    step: str
    state: dict

    @property
    def done(self):
        return self.state["done"]


def check_plan(plan, overwrite):
    """Before the first iteration (rank 0): the checkpoint directory can be written and
    holds no checkpoint, unless --overwrite or --resume. ValueError otherwise."""
    if plan.every < 1:
        raise ValueError(f"--checkpoint-every must be at least 1, got {plan.every}")
    if not plan.directory:
        return
    if os.path.exists(plan.directory) and not os.path.isdir(plan.directory):
        raise ValueError(f"cannot write checkpoints into {plan.directory}: not a directory")
    manifest = os.path.join(plan.directory, MANIFEST)
    resuming_here = plan.resume and os.path.realpath(plan.resume) == \
        os.path.realpath(plan.directory)
    if os.path.lexists(manifest) and not (overwrite or resuming_here):
        raise ValueError(f"{plan.directory} holds a checkpoint; pass --resume "
                         f"{plan.directory} to continue it or --overwrite to replace it")
    check_writable([manifest], overwrite=True)


def read(directory):
    """The checkpoint the manifest of ``directory`` points at; ValueError if none."""
    manifest = _read_json(os.path.join(directory, MANIFEST),
                          f"no checkpoint in {directory} (no readable {MANIFEST})")
    step = manifest.get("step") if isinstance(manifest, dict) else None
    if not isinstance(step, str) or not STEP.match(step):
        raise ValueError(f"{os.path.join(directory, MANIFEST)} names no step")
    path = os.path.join(directory, step, STATE)
    state = _read_json(path, f"cannot read {path}")
    missing = [key for key in KEYS if key not in state] if isinstance(state, dict) else KEYS
    if missing:
        raise ValueError(f"{path} is not a checkpoint's state: no {', '.join(missing)}")
    _check_grid(state["grid"], path)
    return Saved(directory, step, state)


def _check_grid(g, path):
    """ValueError, one line, unless ``g`` is {"layers": [n_0..n_L], "splits": [P_0..P_L] or
    None, "ranks": 1 to the partitions' count (1 without splits)}, every count a positive int."""
    def counts(v):
        return isinstance(v, list) and len(v) >= 2 and all(type(x) is int and x > 0 for x in v)
    ok = isinstance(g, dict) and counts(g.get("layers")) and isinstance(g.get("ranks"), int)
    if ok and g.get("splits") is not None:
        ok = counts(g["splits"]) and len(g["splits"]) == len(g["layers"]) and \
            all(p <= n for p, n in zip(g["splits"], g["layers"])) and \
            1 <= g["ranks"] <= Grid(tuple(g["layers"]), tuple(g["splits"])).size
    if not ok:
        raise ValueError(f"{path}: its grid is not layers, splits and ranks of this kit (got {g!r:.120})")


def _read_json(path, message):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{message}: {getattr(e, 'strerror', None) or e}") from None


def check_compatible(saved, layers, plan, data, objective=None, digest=None, limit=None):
    """ValueError, one line, if ``saved`` was not written by a run of the same layers,
    optimizer, data set (its name, and its contents: ``digest``, ``data.Source.digest``),
    the training instances it used (``limit``: --train-limit K, None for all), objective
    (activation, loss, C, evaluation batch, seed, dtype: a float64 run is not continued in
    float32 nor the reverse) and solver settings (``plan.solver``: a learning rate changed
    half way is another run), or has already done more than the budget. A checkpoint from
    before the dtype option is float64, one from before the digest (or a setting) is not
    checked for it."""
    config, grid = saved.state["config"], saved.state["grid"]
    pairs = [("data set is", config.get("data"), data),
             ("data digest (of its contents) is", config.get("data_digest", digest), digest),
             ("--train-limit is", config.get("train_limit") or "none", limit or "none"),
             ("optimizer is", config.get("optimizer"), plan.optimizer),
             ("layers are", _dash(grid["layers"]), _dash(layers))]
    if objective is not None:        # keep_forward changes the rounding only, as a grid does
        pairs += [(f"{key} is", config.get(f"objective.{key}", OLD_DEFAULTS.get(key)), value)
                  for key, value in vars(objective).items() if key != "keep_forward"]
    pairs += [(f"{key.split('.')[-1]} is", config[key], value)       # the solver's own
              for key, value in plan.solver if key in config]
    differ = [f"{what} {theirs}, this run's {ours}" for what, theirs, ours in pairs
              if theirs != ours]
    if differ:
        options = any(not w.startswith("data digest") for w, a, b in pairs if a != b)
        raise ValueError(f"cannot resume from {saved.directory}: its " + "; its ".join(differ)
                         + (" (a checkpoint keeps the state, not the command line: give the "
                            "options of the run that wrote it)" if options else ""))
    unit = "iterations" if plan.optimizer == "newton" else "epochs"
    if plan.budget is not None and plan.budget < saved.done:
        raise ValueError(f"cannot resume from {saved.directory}: it is after {saved.done} "
                         f"{unit}, more than the {plan.budget} asked (they count from the "
                         "start of the run)")


def _dash(layers):
    return "-".join(map(str, layers))


def restore(saved, model):
    """The ``history.State`` this rank resumes from: its block of the saved theta (and of
    SGD's velocity) on the model's grid, whatever grid wrote them. ValueError if a block
    file is missing or does not fit."""
    s, grid = saved.state, getattr(model, "grid", None)
    mine = grid.param_slices(model.comm.rank) if grid is not None else \
        np.arange(ref.n_params(model.layers))
    blocks = {name: _own_block(saved, name, mine).astype(model.theta.dtype, copy=False)
              for name in ["theta"] + s["vectors"]}
    return State(s["done"], blocks.pop("theta"), s["scalars"], s["rng"], s["train_time"],
                 s["records"], blocks)


def _own_block(saved, name, mine):
    """Vector ``name`` at the flat positions ``mine`` (sorted within a layer's W and b),
    read from the saved blocks that overlap them only: a rank never holds the whole."""
    g = saved.state["grid"]
    old = Grid(tuple(g["layers"]), tuple(g["splits"]), g["ranks"]) if g["splits"] else None
    out, filled = np.empty(len(mine)), np.zeros(len(mine), dtype=bool)
    for rank in range(g["ranks"] if old else 1):
        where = old.param_slices(rank) if old else np.arange(ref.n_params(g["layers"]))
        if where.max() < mine.min() or where.min() > mine.max():
            continue                                  # another layer: not read
        _, here, there = np.intersect1d(mine, where, assume_unique=True, return_indices=True)
        if not len(here):
            continue
        out[here], filled[here] = _block_of(saved, rank, name, where.size)[there], True
    if not filled.all():
        raise ValueError(f"{saved.directory}: the blocks of {saved.step} do not cover {name}")
    return out


def _block_of(saved, rank, name, size):
    """Vector ``name`` of the block rank ``rank`` saved: ValueError naming the file unless it
    holds ``size`` values, all finite."""
    path = os.path.join(saved.directory, saved.step, f"block-{rank}.npz")
    block = _read_block(path, name)
    if block.shape != (size,):
        raise ValueError(f"{path}: {name} has {block.size} values, the grid says {size}")
    if (bad := np.count_nonzero(~np.isfinite(block))):
        raise ValueError(f"{path}: {bad} of its {size} {name} values are NaN or infinite "
                         "(damaged, or saved from a run that diverged?)")
    return block


def _read_block(path, name):
    try:
        with np.load(path, allow_pickle=False) as z:
            return z[name]
    except (ValueError, EOFError, zipfile.BadZipFile):       # numpy's words would invite a pickle
        raise ValueError(f"cannot read {name} from {path}: not an .npz file as the kit writes "
                         "them (damaged, cut short or replaced?)") from None
    except (OSError, KeyError) as e:
        raise ValueError(f"cannot read {name} from {path}: {e}") from None


def whole(saved, name):
    """The whole flat vector ``name`` of a checkpoint, from every block it was saved in."""
    g = saved.state["grid"]
    old = Grid(tuple(g["layers"]), tuple(g["splits"]), g["ranks"]) if g["splits"] else None
    flat = np.full(ref.n_params(g["layers"]), np.nan)
    for rank in range(g["ranks"] if old else 1):
        where = old.param_slices(rank) if old else slice(None)
        flat[where] = _block_of(saved, rank, name, flat[where].size)
    if np.isnan(flat).any():
        raise ValueError(f"{saved.directory}: the blocks of {saved.step} do not cover {name}")
    return flat


def gather_records(comm, records):
    """Copies of ``records`` with messages and bytes summed over ranks (the slowest rank's
    seconds) and, for Newton, "cg_iters_per_rank" (each CG's: one a rank, or one a partition)
    and "cg_iters" their largest, on rank 0; None on the other ranks. Collective (one
    gather, phase "report"); ``comm`` None (the dense model): as they are."""
    records = [dict(r) for r in records]
    if comm is None:
        return records
    with comm.phase("report"):
        per_rank = comm.gather_objects([(r["comm"], r.get("cg_iters_per_rank", [r.get("cg_iters")]))
                                        for r in records])
    if comm.rank != 0:
        return None
    for k, r in enumerate(records):
        r["comm"] = combine_records([ledger[k][0] for ledger in per_rank])
        r.update(modeled_over_ranks([ledger[k][0] for ledger in per_rank]))  # with a network
        if "cg_iters" in r:
            each = [ledger[k][1] for ledger in per_rank]     # partition q: rank q mod R
            r["cg_iters_per_rank"] = [each[q % len(each)][q // len(each)] for q in range(sum(map(len, each)))]
            r["cg_iters"] = max(r["cg_iters_per_rank"])
    return records


class Writer:
    """The ``on_state`` hook of a run with --checkpoint: saves every ``every`` iterations
    (or epochs) and after the last one (``last``). Collective on a distributed model."""

    def __init__(self, directory, every, last, model, config, records=()):
        self.directory, self.every, self.last = directory, every, last
        self.model, self.config = model, config
        self.comm = getattr(model, "comm", None)
        self.rank = self.comm.rank if self.comm else 0
        self.records = list(records)              # rank 0: saved so far, summed over ranks
        self.gathered = len(self.records)         # every rank: records gathered so far
        grid = getattr(model, "grid", None)
        self.grid = dict(layers=list(model.layers), splits=list(grid.splits) if grid else None,
                         ranks=self.comm.size if grid else 1)

    def __call__(self, state):
        if state.done % self.every and state.done != self.last:
            return
        step = f"step-{state.done:06d}"
        with self.model.phase("report"):
            self._agree(self._clear, step)                    # also a barrier
            records = gather_records(self.comm, state.records[self.gathered:])
            self.gathered = len(state.records)
            self._agree(self._write, step, state, records)    # every block is written
            if self.rank == 0:
                self._publish(step, state.done)

    def _agree(self, action, *args):
        """Run ``action`` (which raises OSError or ValueError on failure), then agree."""
        error = None
        try:
            action(*args)
        except (OSError, ValueError) as e:
            error = f"checkpoint {os.path.join(self.directory, args[0])}: {e}"
        if self.comm is not None:
            self.comm.agree(error)
        elif error:
            raise ConfigError(error)

    def _clear(self, step):
        """Rank 0: an empty step directory, which no manifest points at."""
        if self.rank != 0:
            return
        where = os.path.join(self.directory, step)
        manifest = os.path.join(self.directory, MANIFEST)
        if os.path.exists(manifest) and _points_at(manifest) == step:
            os.unlink(manifest)                   # a checkpoint of another run: now absent
        shutil.rmtree(where, ignore_errors=True)
        os.makedirs(where)

    def _write(self, step, state, records):
        where = os.path.join(self.directory, step)
        arrays = dict(theta=state.theta, **state.vectors)
        write_atomic(os.path.join(where, f"block-{self.rank}.npz"), npz_bytes(arrays))
        if self.rank != 0:
            return
        self.records += records
        body = dict(optimizer=self.config.get("optimizer"), done=state.done,
                    scalars=state.scalars, rng=state.rng, train_time=state.train_time,
                    vectors=sorted(state.vectors), records=self.records,
                    config=self.config, grid=self.grid)
        write_atomic(os.path.join(where, STATE), json.dumps(body, indent=1))

    def _publish(self, step, done):
        """Rank 0, once every block is written: the manifest, then the old steps go."""
        write_atomic(os.path.join(self.directory, MANIFEST), json.dumps(dict(
            step=step, done=done, optimizer=self.config.get("optimizer"),
            data=self.config.get("data"), **self.grid), indent=1))
        for name in os.listdir(self.directory):
            if STEP.match(name) and name != step:
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)


def _points_at(manifest):
    try:
        with open(manifest) as f:
            return json.load(f).get("step")
    except (OSError, ValueError, AttributeError):
        return None


def npz_bytes(arrays):
    """The bytes of ``np.savez`` of ``arrays`` (for ``outputs.write_atomic``)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_model(path, model, theta, replace, **about):
    """Write the whole trained theta (gathered on rank 0 from every block, phase "report")
    and what evaluates it (layers, activation, loss, C, the batch size f is summed in, the
    dtype, and ``about``: the data set's name, the seed of its split, the label of each
    output unit) to ``path``, atomically;
    on rank 0, the number of its non-finite weights, which are not written (a run that
    diverged), else 0. Collective on a distributed model."""
    grid = getattr(model, "grid", None)
    if grid is not None:
        with model.comm.phase("report"):
            blocks = model.comm.gather_objects(theta)
        if model.comm.rank != 0:
            return None
        theta = np.empty(grid.n_params, blocks[0].dtype)
        for rank, block in enumerate(blocks):
            theta[grid.param_slices(rank)] = block
    if (bad := np.count_nonzero(~np.isfinite(theta))):
        return bad
    write_atomic(path, npz_bytes(dict(
        theta=theta, layers=np.asarray(model.layers), activation=model.config.activation,
        loss=model.config.loss, C=model.C, batch_size=model.config.batch_size,
        dtype=model.config.dtype, **about)),
        replace)
    return 0


def load_model(path):
    """What ``save_model`` wrote, as a dict of plain values; ValueError if it cannot."""
    try:
        if os.path.isfile(path) and not zipfile.is_zipfile(path):
            raise ValueError("not an .npz file (train --save writes one)")
        with np.load(path, allow_pickle=False) as z:
            out = {key: z[key] for key in z.files}
        if set(out) == {"theta"}:               # what a checkpoint keeps per rank
            raise ValueError("one rank's block of a checkpoint, not a model saved by train "
                             "--save (resume the checkpoint with --resume DIR)")
        missing = [k for k in ("theta", "layers", "activation", "loss", "C", "batch_size",
                               "data", "seed") if k not in out]
        if missing:
            raise ValueError(f"not a model saved by train --save (no {', '.join(missing)})")
        dtype = str(out.get("dtype", OLD_DEFAULTS["dtype"]))
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        model = dict(theta=out["theta"].astype(dtype, copy=False),
                     layers=tuple(int(n) for n in out["layers"]),
                     activation=str(out["activation"]), loss=str(out["loss"]),
                     C=float(out["C"]), batch_size=int(out["batch_size"]),
                     data=str(out["data"]), seed=int(out["seed"]), dtype=dtype,
                     data_path=str(out.get("data_path", "")),
                     data_digest=str(out.get("data_digest", "")),
                     train_limit=int(out.get("train_limit", 0)) or None,
                     classes=tuple(str(c) for c in np.atleast_1d(out["classes"]))
                     if "classes" in out
                     else None)                          # saved before models recorded them
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read a model from {path}: {e}") from None
    if model["theta"].shape != (ref.n_params(model["layers"]),):
        raise ValueError(f"{path}: theta has {model['theta'].size} values, a "
                         f"{_dash(model['layers'])} network {ref.n_params(model['layers'])}")
    if (bad := np.count_nonzero(~np.isfinite(model["theta"]))):
        raise ValueError(f"{path}: {bad} of its {model['theta'].size} weights are NaN or "
                         "infinite (saved from a run that diverged?)")
    return model
