"""``python -m dnewton_core project``: the projection to many machines as a table, a JSON
file and a figure (``projection.py`` holds the model). A front end, like ``cli.py``."""
import json
import time

from . import data as datasets
from . import projection
from .model import ConfigError, network_layers
from .network import parse_network
from .newton import NewtonConfig
from .outputs import check_writable, write_atomic
from .splits import propose_splits

METHODS = ("newton-full", "newton-diag", "sgd")


def project_command(args):
    """Print the table; write --json and --figure. Exit status 0."""
    try:
        check_writable([p for p in (args.json, args.figure) if p], args.overwrite)
        data = datasets.load_dataset(args.data, args.data_path)
        networks = [parse_network(name) for name in args.network.split(",")]
        if None in networks:
            raise ValueError("--network: the projection needs a network, not none")
        layers = network_layers(data.n_features, args.hidden, data.n_classes)
        l = len(data.y_train)
        size = NewtonConfig(subsample=args.subsample).subsample_size(l)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    tic = time.perf_counter()
    rate, source = ((args.rate * 1e9, "given (--rate)") if args.rate else
                    (projection.calibrate(layers), "measured by a 1 s calibration here"))
    workload = projection.Workload(layers, l, size)
    out = {"layers": list(layers), "l": l, "subsample": size, "rate_gflops": rate / 1e9,
           "rate_source": source, "assumptions": projection.__doc__.split("\n\n")[1],
           "workload": vars(workload) | {"layers": list(layers)}, "networks": {}}
    for net in networks:
        rows = projection.project(workload, args.machines, rate, net, _proposal(layers))
        out["networks"][net.name] = rows
        print(_table(net, rows))
    print(f"compute rate {rate / 1e9:.1f} GFLOP/s per core ({source}); "
          f"{time.perf_counter() - tic:.1f} s")
    if args.json:
        write_atomic(args.json, json.dumps(out, indent=1), args.overwrite)
    if args.figure:
        from .study.figures import projection_figure
        projection_figure(out, args.figure, replace=args.overwrite)
    return 0


def _proposal(layers):
    def propose(P):
        try:
            return propose_splits(layers, P)
        except ValueError:
            return None
    return propose


def _table(net, rows):
    lines = [f"{net.name}: alpha {net.latency * 1e6:g} us, {net.bandwidth * 8 / 1e9:g} Gbit/s "
             f"({net.source})",
             f"{'machines':>8} {'splits':<14} " + " ".join(f"{m + ' s':>14}" for m in METHODS)
             + f" {'network share (full)':>21}"]
    for r in rows:
        if not r.get("splits"):
            lines.append(f"{r['machines']:>8} {'no split':<14}")
            continue
        full = r["newton-full"]
        share = sum(d["network"] for d in full.values()) / r["newton-full seconds"]
        lines.append(f"{r['machines']:>8} {','.join(map(str, r['splits'])):<14} "
                     + " ".join(f"{r[m + ' seconds']:>14.3f}" for m in METHODS)
                     + f" {share:>20.0%}")
    return "\n".join(lines)
