"""``python -m dnewton_core project``: the projection to many machines as a table, a JSON
file and a figure (``projection.py`` holds the model). A front end, like ``cli.py``."""
import json
import math
import time

from . import data as datasets
from . import projection
from .model import ConfigError, network_layers
from .network import network_names, parse_network
from .newton import NewtonConfig
from .outputs import check_writable, write_atomic
from .splits import proposal

METHODS = ("newton-full", "newton-diag", "sgd")


def project_command(args):
    """Print the table; write --json and --figure. Exit status 0."""
    try:
        check_writable([p for p in (args.json, args.figure) if p], args.overwrite,
                       inputs=datasets.data_files(args.data, args.data_path))
        if args.figure:
            from .figures import check_format
            check_format(args.figure)
        data = datasets.open_dataset(args.data, args.data_path)   # its sizes only
        networks = [parse_network(n) for n in dict.fromkeys(network_names(args.network))]
        if None in networks:
            raise ValueError("--network: the projection needs a network, not none")
        layers = network_layers(data.n_features, args.hidden, data.n_classes)
        machines = _machines(args.machines, layers)
        l = len(data.y_train)
        size = NewtonConfig(subsample=args.subsample).subsample_size(l)
        if args.rate is not None and not 0 < args.rate < math.inf:
            raise ValueError(f"--rate: {args.rate:g} is not a number of GFLOP/s above 0")
    except ValueError as e:
        raise ConfigError.of_option(e) from None
    tic = time.perf_counter()
    rate, source = ((args.rate * 1e9, "given (--rate)") if args.rate is not None else
                    (projection.calibrate(layers), "measured by a 1 s calibration here"))
    workload = projection.Workload(layers, l, size)
    out = {"layers": list(layers), "l": l, "subsample": size, "rate_gflops": rate / 1e9,
           "rate_source": source, "assumptions": projection.__doc__.split("\n\n")[1],
           "workload": vars(workload) | {"layers": list(layers)}, "grids": args.grids,
           "networks": {}}
    for net in networks:
        propose = proposal(layers) if args.grids == "kit" else \
            (lambda P, net=net: projection.fastest_splits(workload, P, rate, net))
        rows = projection.project(workload, machines, rate, net, propose)
        out["networks"][net.name] = rows
        print(_table(net, rows))
    print(f"compute rate {rate / 1e9:.1f} GFLOP/s per core ({source}); projected in "
          f"{time.perf_counter() - tic:.1f} s")
    if args.json:
        write_atomic(args.json, json.dumps(out, indent=1), args.overwrite)
    if args.figure:
        from .study.figures import projection_figure
        projection_figure(out, args.figure, replace=args.overwrite)
    written = [p for p in (args.json, args.figure) if p]
    if written:
        print(f"wrote {' and '.join(written)}")
    return 0


def _machines(given, layers):
    """The machine counts asked for, each once (ValueError if none); by default those of
    1, 2, 4, ..., 64 with a grid of ``layers``."""
    if given is None:
        return tuple(P for P in (1, 2, 4, 8, 16, 32, 64) if P == 1 or proposal(layers)(P))
    if not given:
        raise ValueError("--machines: give at least one machine count")
    return tuple(dict.fromkeys(given))


def _table(net, rows):
    lines = [f"{net.name}: alpha {net.latency * 1e6:g} us, {net.bandwidth * 8 / 1e9:g} Gbit/s"
             + (f", gamma {net.gamma:g} s/byte" if net.gamma else "") + f" ({net.source})",
             f"{'machines':>8} {'splits':<14} " + " ".join(f"{m + ' s':>14}" for m in METHODS)
             + f" {'network share (full)':>21}"]
    for r in rows:
        if not r.get("splits"):
            lines.append(f"{r['machines']:>8} no grid: one machine per block is sum over m "
                         f"of P_(m-1) P_m (1 <= P_m <= n_m), and none sums to {r['machines']}")
            continue
        full = r["newton-full"]
        share = sum(d["network"] for d in full.values()) / r["newton-full seconds"]
        lines.append(f"{r['machines']:>8} {','.join(map(str, r['splits'])):<14} "
                     + " ".join(f"{r[m + ' seconds']:>#14.4g}" for m in METHODS)
                     + f" {share:>20.0%}")
    return "\n".join(lines)


# -- the projection checked against real runs on this machine (bench/projection.py) ---------

def launch_run(ranks, args, path, mode="inject"):
    """``python -m dnewton_core train ARGS --json PATH`` on ``ranks`` local ranks (one
    process: the dense model), with the network of ARGS, if any, injected (``mode``); its
    result."""
    import subprocess
    import sys

    from .environment import local_environment, local_launch
    network = ["--network-mode", mode] if "--network" in args else []
    cmd = [*local_launch(ranks), sys.executable, "-m", "dnewton_core", "train", *args, *network,
           "--json", str(path), "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=local_environment())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    with open(path) as f:
        return json.load(f)


def measured_seconds(result, start=2):
    """Training seconds per record (Newton iteration or SGD epoch) from ``start`` on."""
    h = result["history"]
    before = h[start - 2]["wall_time"] if start > 1 else 0.0
    return (h[-1]["wall_time"] - before) / (len(h) - start + 1)


CHECK_RUNS = {"newton-full": ["--iters"], "newton-diag": ["--gn", "diag", "--iters"],
              "sgd": ["--optimizer", "sgd", "--epochs"]}


def check(ranks=(1, 2, 3, 4, 5, 6), networks=("1gbe", "10gbe"), methods=METHODS, iters=8,
          data="digits", hidden=(64, 64), cores=None, repeats=1, say=print):
    """The projection against runs of this machine, made real (``--network-mode inject``):
    one row per (ranks, network, method) with the measured seconds per Newton iteration or
    SGD epoch (``measured_seconds``: iterations 2.. of ``iters``), and those ``projection
    .predict`` gives for the run's own grid, CG iterations and line-search trials, with a
    core per rank ("one per machine") and with ``cores`` shared cores (default: this
    machine's); "messages" is the projection's network part alone, a lower bound of an
    injected run. The compute rate is fitted on the one-process run of each optimizer
    (``projection.fitted_rate``; the one-rank rows are those runs, so they agree by
    construction); a row without splits is a rank count the network cannot be split into.
    Each run is made ``repeats`` times and the fastest kept (other work on the machine only
    ever slows a run down)."""
    import os
    import tempfile
    cores = cores or os.cpu_count()
    d = datasets.load_dataset(data)
    l, layers = len(d.y_train), network_layers(d.n_features, hidden, d.n_classes)
    base = ["--data", data, "--hidden", ",".join(map(str, hidden))]
    rows, rates = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.json")
        fastest = lambda n, args: min((launch_run(n, args, path) for _ in range(repeats)),
                                      key=measured_seconds)
        ones = {}
        for method in ("newton-full", "sgd"):                 # the fitted compute rates
            ones[method] = fastest(1, base + CHECK_RUNS[method] + [str(iters)])
            rates[method] = projection.fitted_rate(ones[method], l,
                                                   measured_seconds(ones[method]))
        rates["newton-diag"] = rates["newton-full"]
        say(f"compute rate fitted on one process: {rates['newton-full'] / 1e9:.2f} GFLOP/s "
            f"(Newton), {rates['sgd'] / 1e9:.2f} GFLOP/s (SGD); {cores} cores")
        for n in ranks:
            if n > 1 and proposal(layers)(n) is None:
                rows.append(dict(ranks=n, splits=None))
                say(check_line(rows[-1]))
                continue
            for name in (networks if n > 1 else ("none",)):
                for method in methods:
                    if n == 1 and method == "newton-diag":
                        continue
                    args = base + ["--network", name] + CHECK_RUNS[method] + [str(iters)]
                    run = ones[method] if n == 1 else fastest(n, args)
                    rows.append(_check_row(run, n, name, method, l, rates[method], cores))
                    say(check_line(rows[-1]))
    return rows


def _check_row(result, n, name, method, l, rate, cores):
    """The measured seconds of ``result`` and the projection's, refined step by step: one
    core per rank; the ranks sharing ``cores`` cores; and each collective on the chain
    longer by a sleep's overshoot measured now (``projection.sleep_overshoot``)."""
    net, overshoot = parse_network(name), projection.sleep_overshoot()
    network = lambda phases: projection.seconds({p: (0.0, w) for p, (_, w) in phases.items()})
    alone = projection.predict(result, l, rate, net)
    shared = projection.seconds(projection.predict(result, l, rate, net, cores))
    collectives = network(projection.predict(result, l, rate, projection.COUNT))
    return dict(ranks=n, network=name, method=method, splits=result["config"]["splits"],
                measured=measured_seconds(result), one_per_machine=projection.seconds(alone),
                messages=network(alone), shared_cores=shared, cores=cores,
                collectives=collectives, overshoot=overshoot,
                with_sleeps=shared + collectives * overshoot, rate_gflops=rate / 1e9)


def check_line(row):
    """One line of the check's table (``check``)."""
    if row.get("splits") is None and row["ranks"] > 1:
        return f"{row['ranks']:>5}  no grid of exactly {row['ranks']} partitions (one machine a partition)"
    m = row["measured"]
    return (f"{row['ranks']:>5} {row['network']:>6} {row['method']:<12} {m:>9.4f} "
            + " ".join(f"{row[k]:>9.4f} {row[k] / m:>5.2f}"
                       for k in ("one_per_machine", "shared_cores", "with_sleeps"))
            + f" {row['collectives']:>5.0f} {1e6 * row['overshoot']:>5.0f}")


CHECK_HEAD = (f"{'ranks':>5} {'net':>6} {'method':<12} {'measured':>9} {'1/machine':>9} "
              f"{'ratio':>5} {'shared':>9} {'ratio':>5} {'+sleeps':>9} {'ratio':>5} "
              f"{'coll.':>5} {'us':>5}")
