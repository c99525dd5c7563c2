"""The study on modeled networks (``reproduce --network NAME [NAME ...]``, docs/method.md §8):
one run is charged on every named network at once (model mode: nothing slows down), and
its time axis on each is the sum of the training phases' measured seconds with every
collective lasting at least its modeled time on that network (``ledger.modeled_seconds``;
what the measured clock holds between phases is left out, so on a fast network it can fall
a little below the measured time). This module
reads those times from the rows of runs.csv and curves.csv: the columns, the time each
setting takes to reach a test accuracy on each network, the claims' lines and the figure's
inputs. Pure functions, like ``report.py``.

On one process (the dense model) nothing is sent: the modeled time is the measured one.
"""
import numpy as np

from ..network import network_names, parse_network


def networks_of(names):
    """The ``network.Network``s of ``--network NAME [NAME ...]`` in order (a name may also
    be a comma-separated list, as project takes them); () for none or ["none"]. ValueError
    for a bad name, a repeated one, or "none" among others."""
    names = network_names(names)
    if names in ([], ["none"]):
        return ()
    if "none" in names:
        raise ValueError("--network: none models no network; leave it out of a list")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--network: {', '.join(repeated)} given twice")
    return tuple(parse_network(n) for n in names)


def column(name):
    """The column of runs.csv and curves.csv with the modeled time on network ``name``."""
    return f"modeled_time_{name}"


def columns(networks):
    return [column(net.name) for net in networks]


def modeled_times(record, names, one_process):
    """{column: modeled time} of one record (``experiment.result``'s history or final);
    on one process, the measured time (nothing is sent)."""
    on = record.get("modeled_time_on") or {}
    return {column(n): record.get("wall_time") if one_process else on.get(n) for n in names}


def time_to(curves, run, target, key="wall_time"):
    """The time (column ``key``) of ``run``'s first record with test accuracy >= target;
    None if it never gets there."""
    for c in curves:
        if c["run"] == run and c["test_accuracy"] is not None \
                and c["test_accuracy"] >= target - 1e-12 and c.get(key) is not None:
            return c[key]
    return None


def common_target(stats):
    """The highest test accuracy that the best setting of every method reaches at its end
    (mean over seeds): min over methods of max over their settings. None without runs."""
    best = {}
    for s in stats:
        if s["test"] is not None:
            best[s["method"]] = max(best.get(s["method"], 0.0), s["test"])
    return min(best.values()) if best else None


def setting_time(rows, curves, setting, target, key):
    """(mean over seeds of the time to ``target``, seeds that got there, seeds)."""
    runs = [r["run"] for r in rows if r["setting"] == setting]
    times = [time_to(curves, run, target, key) for run in runs]
    reached = [t for t in times if t is not None]
    return (float(np.mean(reached)) if len(reached) == len(runs) and runs else None,
            len(reached), len(runs))


def cell(got):
    mean, reached, runs = got
    return f"{mean:.3g}" if mean is not None else f"not reached ({reached}/{runs})"


def time_table(stats, rows, curves, networks, target):
    """Markdown: per setting, the seconds to ``target`` measured and on each network, and
    the modeled seconds per iteration (epoch) on each."""
    names = [n.name for n in networks]
    head = ("| setting | measured s to target | " + " | ".join(f"{n}: s to target"
                                                           for n in names)
            + " | " + " | ".join(f"{n}: s / iter" for n in names) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in stats:
        per_iter = [_mean([r[column(n)] / r["iterations"] for r in rows
                           if r["setting"] == s["setting"] and r["iterations"]
                           and r.get(column(n)) is not None]) for n in names]
        lines.append("| " + " | ".join(
            [s["setting"], cell(setting_time(rows, curves, s["setting"], target, "wall_time"))]
            + [cell(setting_time(rows, curves, s["setting"], target, column(n)))
               for n in names]
            + [f"{x:.3g}" if x is not None else "–" for x in per_iter]) + " |")
    return "\n".join(lines)


def _mean(values):
    return float(np.mean(values)) if values else None


def pair_lines(rows, curves, networks, a, b, target):
    """One line per network comparing settings ``a`` and ``b`` (labels): seconds per
    iteration and to ``target`` on that network, and which gets there sooner."""
    out = []
    for net in networks:
        key = column(net.name)
        ta, tb = (setting_time(rows, curves, x, target, key)[0] for x in (a, b))
        ia, ib = (_mean([r[key] / r["iterations"] for r in rows if r["setting"] == x
                         and r["iterations"] and r.get(key) is not None]) for x in (a, b))
        sooner = ("–" if ta is None or tb is None else
                  f"{a if ta < tb else b} sooner, by {abs(tb - ta) / max(ta, tb):.0%}")
        out.append(f"on {net.name} ({1e6 * net.latency:g} us, {8e-9 * net.bandwidth:g} Gbit/s, "
                   f"modeled): {_f(ia)} against {_f(ib)} s/iteration; to test accuracy "
                   f"{target:.4f}: {_f(ta)} s against {_f(tb)} s ({sooner}).")
    return out


def _f(x):
    return "–" if x is None else f"{x:.3g}"


def describe(networks, one_process):
    """The summary's lines on the modeled networks."""
    lines = ["- modeled networks (model mode, docs/method.md §8): " + "; ".join(
        f"`{n.name}` alpha {1e6 * n.latency:g} us, {8e-9 * n.bandwidth:g} Gbit/s "
        f"({n.source})" for n in networks)
        + ". Each run was charged on all of them at once; its modeled time is the sum of its "
        "training phases' measured seconds with every collective lasting at least its modeled "
        "time on that network, waits for other ranks kept (the slowest rank's, per iteration; "
        "what the measured clock holds between phases is left out)."]
    if one_process:
        lines.append("- one process: nothing is sent, so the modeled times are the measured "
                     "ones")
    return lines


def figure_inputs(stats, rows, curves, networks):
    """{network: {setting: (modeled times, accuracies)}}, the means over seeds of the best
    setting of each method (by final test accuracy)."""
    best = {}
    for s in stats:
        if s["test"] is not None and s["test"] > best.get(s["method"], (None, -1.0))[1]:
            best[s["method"]] = (s["setting"], s["test"])
    out = {}
    for net in networks:
        key, panel = column(net.name), {}
        for setting, _ in best.values():
            runs = [[c for c in curves if c["run"] == r["run"]] for r in rows
                    if r["setting"] == setting]
            n = min(len(c) for c in runs) if runs else 0
            if n and all(c[k].get(key) is not None for c in runs for k in range(n)):
                panel[setting] = ([float(np.mean([c[k][key] for c in runs])) for k in range(n)],
                                  [float(np.mean([c[k]["test_accuracy"] or 0.0 for c in runs]))
                                   for k in range(n)])
        out[net.name] = panel
    return out
