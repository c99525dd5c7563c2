"""Runs as data: build a model for this communicator, train it, return a JSON-ready result.

Shared by the command line, the notebooks and the reproduction study. No printing here.
"""
import math
from dataclasses import asdict

from .comm import Comm, ConfigError, combine_records
from .distributed import DistributedModel
from .model import DenseModel, network_layers
from .newton import NewtonConfig, newton
from .partition import propose_splits
from .sgd import SGDConfig, sgd

METHODS = ("newton", "sgd")


def build_model(data, hidden, objective, comm=None, splits=None, gn="full", sync=1.0,
                slow=None):
    """DenseModel on one process without a grid, else this rank's DistributedModel.

    Without ``splits``, the proposal for the communicator's size is used.
    """
    comm = comm or Comm()
    if comm.size == 1 and splits is None:
        if gn != "full" or sync != 1.0:
            raise ConfigError("--gn diag and --sync need a grid of several partitions: "
                              "run under mpiexec -n N (or give --splits)")
        return DenseModel(data, hidden, objective)
    if splits is None:
        try:
            splits = propose_splits(network_layers(data.n_features, hidden, data.n_classes),
                                    comm.size)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return DistributedModel(data, hidden, splits, comm, objective, gn=gn, sync=sync, slow=slow)


def train(model, method, newton_config=NewtonConfig(), sgd_config=SGDConfig(), callback=None):
    """Train with "newton" or "sgd"; returns the History."""
    if method == "newton":
        return newton(model, newton_config, callback)
    if method == "sgd":
        return sgd(model, sgd_config, callback)
    raise ConfigError(f"unknown optimizer {method!r}; choose from {', '.join(METHODS)}")


def result(model, history, config):
    """{"config", "history", "final"} with messages and bytes summed over ranks.

    Collective on a distributed model (one gather of the per-iteration ledgers); the
    complete result is on rank 0, other ranks get None.
    """
    records = [dict(r) for r in history.records]
    comm = getattr(model, "comm", None)
    if comm is not None:       # each rank ran its own CG in diag mode: keep every count
        with comm.phase("report"):
            per_rank = comm.gather_objects([(r["comm"], r.get("cg_iters")) for r in records])
        if comm.rank != 0:
            return None
        for k, r in enumerate(records):
            r["comm"] = combine_records([ledger[k][0] for ledger in per_rank])
            if "cg_iters" in r:
                r["cg_iters_per_rank"] = [ledger[k][1] for ledger in per_rank]
    last = records[-1] if records else {}
    final = {key: last.get(key) for key in ("test_accuracy", "train_accuracy", "objective",
                                            "wall_time")}
    grid = getattr(model, "grid", None)
    config = dict(config, layers=list(model.layers), C=model.C,
                  splits=list(grid.splits) if grid else None)
    return finite({"config": config, "history": records, "final": final})


def finite(obj):
    """The same structure with inf and NaN as None, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item"):                       # numpy scalars
        return finite(obj.item())
    return obj


def config_dict(**configs):
    """Frozen config dataclasses (and plain values) as one flat JSON-ready dict."""
    out = {}
    for name, value in configs.items():
        if hasattr(value, "__dataclass_fields__"):
            out.update({f"{name}.{k}": v for k, v in asdict(value).items()})
        else:
            out[name] = value
    return out
