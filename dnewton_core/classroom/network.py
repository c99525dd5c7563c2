"""Notebook 7, the network (docs/method.md §8): a network to choose, training on the engines
with every message charged its modeled time (or made to last it), every rank's time line of
one Newton iteration, and the tables the notebook prints.

Engine side: ``train_on`` and ``traced_iteration`` (through ``MPICluster.run``). Client
side: ``NetworkPicker`` (ipywidgets, imported only when it is shown), ``phase_seconds``,
the tables, the projection's rows and the crossover's lines. No MPI is loaded here.
"""

from .. import projection
from ..ledger import TRAINING_PHASES, trace_events
from ..network import PRESETS, Network, parse_network
from ..newton import NewtonConfig
from ..partition import Grid
from ..splits import proposal
from .lessons import fit, partitioned_model, the_partition
from .tables import Table, fixed

# -- on the engines --------------------------------------------------------------------------

def _on(model, network, inject):
    """Charge every collective of ``model`` on ``network`` (made real with ``inject``)."""
    comm = model.comm
    comm.network, comm.also, comm.inject = network, (), bool(inject and network is not None)
    return model


def train_on(data, hidden, network, gn="full", iters=10, inject=False):
    """A fresh model on every rank, trained ``iters`` Newton iterations with its messages
    charged on ``network`` (model mode, or ``inject``); a report for ``tables.gather_run``."""
    return fit(_on(partitioned_model(data, hidden, gn=gn), network, inject), "newton",
               NewtonConfig(iters=iters))


def traced_iteration(data, hidden, network, gn="full", inject=True, iteration=2):
    """Every event of this rank during Newton iteration ``iteration`` (the first one also
    evaluates f at the start), from the line-up before it (``model.Model.line_up``) to the
    accuracy check after it: {"rank", "mij", "events"} for ``trace``."""
    from ..experiment import run
    model = _on(partitioned_model(data, hidden, gn=gn), network, inject)
    comm, kept = model.comm, {}

    def each(record):
        if record["iter"] == iteration - 1:
            comm.keep_timeline()
        elif record["iter"] == iteration:
            kept["events"], comm.timeline = comm.timeline, None
    run(model, "newton", NewtonConfig(iters=iteration), callback=each)
    p = the_partition(model)
    return {"rank": comm.rank, "mij": (p.m, p.i, p.j), "events": kept.get("events", [])}


# -- on the client ---------------------------------------------------------------------------

def trace(reports):
    """The Chrome trace (``ledger.trace_events``) of ``traced_iteration``'s reports."""
    reports = sorted(reports, key=lambda r: r["rank"])
    return trace_events([r["events"] for r in reports],
                        [f"rank {r['rank']} {tuple(r['mij'])}" for r in reports])


def describe(network):
    """One line: the network's latency, bandwidth and where the numbers come from."""
    return (f"{network.name}: latency alpha = {1e6 * network.latency:g} us, bandwidth "
            f"1/beta = {8e-9 * network.bandwidth:g} Gbit/s ({network.bandwidth / 1e6:g} MB/s)"
            + (f"; {network.source}" if network.source else ""))


class NetworkPicker:
    """A dropdown of ``network.PRESETS`` and two sliders, latency (us) and bandwidth
    (Gbit/s); ``picker.network`` is the ``Network`` they show. In a notebook the picker shows
    its widgets (ipywidgets); cells run after moving them use the new network."""

    def __init__(self, name="1gbe"):
        self.network = parse_network(name)

    def _ipython_display_(self):
        from IPython.display import display
        try:
            import ipywidgets as widgets
        except ImportError:
            print("ipywidgets is not installed: set the network in the next cell")
            return
        net, log = self.network, dict(continuous_update=False, readout_format=".3g")
        choice = widgets.Dropdown(options=[*PRESETS, "custom"], value=net.name
                                  if net.name in PRESETS else "custom", description="network")
        latency = widgets.FloatLogSlider(value=1e6 * net.latency, base=10, min=-0.5, max=4,
                                         description="latency us", **log)
        gbit = widgets.FloatLogSlider(value=8e-9 * net.bandwidth, base=10, min=-2, max=2.7,
                                      description="Gbit/s", **log)

        def preset(change):
            if change["new"] in PRESETS:
                self.network = PRESETS[change["new"]]
                latency.value, gbit.value = 1e6 * self.network.latency, \
                    8e-9 * self.network.bandwidth

        def custom(_):
            if (latency.value, gbit.value) != (1e6 * self.network.latency,
                                              8e-9 * self.network.bandwidth):
                self.network = parse_network(f"{latency.value:.4g}:{gbit.value:.4g}")
                choice.value = "custom"
        choice.observe(preset, "value")
        latency.observe(custom, "value")
        gbit.observe(custom, "value")
        display(widgets.VBox([choice, widgets.HBox([latency, gbit])]))


def phase_seconds(run, start=2):
    """{phase: (computing, network)} seconds per Newton iteration of a gathered run, from
    iteration ``start`` on: per training phase the slowest rank's measured seconds less its
    MPI seconds, and its modeled network seconds (docs/method.md §8, mode "model")."""
    records = [r for r in run["history"] if r["iter"] >= start]
    out = {}
    for phase in TRAINING_PHASES:
        d = [r["comm"].get(phase, {}) for r in records]
        compute = sum(x.get("seconds", 0.0) - x.get("mpi_seconds", 0.0) for x in d)
        network = sum(x.get("network_seconds", 0.0) for x in d)
        if compute or network:
            out[phase] = (compute / len(records), network / len(records))
    return out


def phase_table(per_method):
    """A ``Table``: per phase, computing and network milliseconds per iteration of each
    method, and their totals."""
    names = list(per_method)
    phases = [p for p in TRAINING_PHASES if any(p in d for d in per_method.values())]
    rows = []
    for p in phases + ["total"]:
        row = [p]
        for d in per_method.values():
            c, w = (sum(x[0] for x in d.values()), sum(x[1] for x in d.values())) \
                if p == "total" else d.get(p, (0.0, 0.0))
            row += [1e3 * c, 1e3 * w]
        rows.append(row)
    header = ["phase"] + [f"{n} {part} (ms)" for n in names for part in ("compute", "network")]
    return Table(header, rows, [None] + [fixed(2)] * 2 * len(names), totals=1)


def per_iteration(run, key, start=2):
    """Seconds per iteration of ``key`` ("wall_time" or "modeled_time") from ``start`` on."""
    h = [r for r in run["history"] if r.get(key) is not None]
    before = h[start - 2][key] if start > 1 else 0.0
    return (h[-1][key] - before) / (len(h) - start + 1)


def iterations_to(run, target):
    """The first iteration whose test accuracy reaches ``target`` (None: never)."""
    return next((r["iter"] for r in run["history"]
                 if (r.get("test_accuracy") or 0.0) >= target - 1e-12), None)


def fitted_rate(run, l):
    """The computing rate (FLOP/s) that makes the projection's computing match this run's
    (``projection.fitted_rate`` on ``phase_seconds``' computing per iteration)."""
    compute = sum(c for c, _ in phase_seconds(run).values())
    return projection.fitted_rate(run, l, compute)


def projected(layers, l, networks, machines, rate, subsample=0.05):
    """{network name: ``projection.project`` rows} for ``layers`` on l instances."""
    size = NewtonConfig(subsample=subsample).subsample_size(l)
    w = projection.Workload(tuple(layers), l, size)
    return {net.name: projection.project(w, machines, rate, net, proposal(tuple(layers)))
            for net in networks}


def crossover(run_full, run_diag, l, network, target):
    """Where the full and the diagonal G reach test accuracy ``target`` at the same time on
    these runs' grid (one rank per machine): {"iterations": (full, diag) to the target,
    "rate", "latency" and "bandwidth": ``projection.crossover`` with the other parameter of
    ``network`` kept}; each method with its own CG iterations and line-search trials, the
    computing rate fitted on the full-G run. None if a run never reached the target."""
    k = iterations_to(run_full, target), iterations_to(run_diag, target)
    if None in k:
        return None
    c = run_full["config"]
    full, diag = projection.workload_of(run_full, l), projection.workload_of(run_diag, l)
    w = projection.Workload(full.layers, l, full.subsample, full.batch, cg_full=full.cg_full,
                            trials_full=full.trials_full, cg_diag=diag.cg_diag,
                            trials_diag=diag.trials_diag)
    grid, rate = Grid(tuple(c["layers"]), tuple(c["splits"])), fitted_rate(run_full, l)
    return {"iterations": k, "rate": rate, "grid": grid, "workload": w,
            **{vary: projection.crossover(grid, w, rate, network, vary, k)
               for vary in ("latency", "bandwidth")}}


def crossover_lines(got, network, target):
    """``crossover``'s answer in sentences."""
    if got is None:
        return [f"a method never reached test accuracy {target:.3f}: no crossover"]
    k_full, k_diag = got["iterations"]
    lines = [f"iterations to test accuracy {target:.3f}: full G {k_full}, diagonal G {k_diag}; "
             f"computing rate fitted on the full-G run: {got['rate'] / 1e9:.2f} GFLOP/s"]
    for vary, unit, scale, kept in (
            ("latency", "us", 1e6, f"at {8e-9 * network.bandwidth:g} Gbit/s"),
            ("bandwidth", "Gbit/s", 8e-9, f"at {1e6 * network.latency:g} us")):
        c = got[vary]
        if c["value"] is None:
            lines.append(f"{vary} {kept}: no tie, {c['faster_below']} is always sooner")
        else:
            lines.append(f"{vary} {kept}: they tie at {scale * c['value']:.3g} {unit}; below "
                         f"it {c['faster_below']} is sooner, above it {c['faster_above']}")
    return lines


def latency_sweep(got, network, latencies):
    """Seconds to the target of each method at each latency (``network``'s bandwidth kept),
    from ``crossover``'s answer: (full, diag) lists for ``network_figures.crossover_curve``."""
    out = ([], [])
    for a in latencies:
        net = Network("sweep", a, network.bandwidth, network.gamma)
        for k, gn, times in zip(got["iterations"], ("full", "diag"), out):
            times.append(k * projection.seconds(projection.newton_iteration(
                got["grid"], got["workload"], got["rate"], net, gn)))
    return out


def inject_table(model_runs, inject_runs, l, network, cores):
    """A ``Table``: per method, ms per iteration in model mode (modeled), in inject mode
    (measured), and the projection's for the same grid and counts on ``network``: one rank
    per machine, then with the ranks sharing ``cores`` cores and every collective longer by
    a short sleep's overshoot (docs/method.md §8, the check; the computing rate fitted on
    the model-mode run)."""
    overshoot = projection.sleep_overshoot()
    rows = []
    for name, run in model_runs.items():
        real, rate = inject_runs[name], fitted_rate(run, l)
        alone, shared, count = (projection.predict(real, l, rate, n, c) for n, c in
                                ((network, None), (network, cores), (projection.COUNT, None)))
        refined = projection.seconds(shared) + overshoot * sum(w for _, w in count.values())
        rows.append([f"newton-{name}", 1e3 * per_iteration(run, "modeled_time"),
                     1e3 * per_iteration(real, "wall_time"), 1e3 * projection.seconds(alone),
                     1e3 * refined])
    return Table(["method", "model mode, modeled (ms)", "inject, measured (ms)",
                  "projection, 1/machine (ms)",
                  f"+ {cores} cores, sleeps of +{1e6 * overshoot:.0f} us (ms)"],
                 rows, [None] + [fixed(1)] * 4)
