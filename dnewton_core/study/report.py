"""The study's report: the table per setting, the paper's claims against the numbers,
summary.md, and the inputs of the figures. Pure functions of the rows of runs.csv and
curves.csv (``records.py``).
"""
import itertools
import math

import numpy as np

from ..model import default_C
from . import modeled
from .provenance import command_line
from .settings import METHODS, changes, reductions
from .wording import count, duration, fmt, plus_minus


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _std(values):
    """Sample standard deviation (ddof = 1); None with fewer than two values."""
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def aggregate(rows):
    """One dict per setting (sorted: method, S, sync descending, lr): means over seeds."""
    groups = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    out = []
    order = lambda rs: (METHODS.index(rs[0]["method"]), rs[0]["subsample"] or 0,
                        -(rs[0]["sync"] or 0), rs[0].get("step") or "", rs[0]["lr"] or 0)
    for label, rs in sorted(groups.items(), key=lambda item: order(item[1])):
        r0 = rs[0]
        per_iter = lambda key, rs=rs: _mean([r[key] / r["iterations"] for r in rs
                                             if r["iterations"] and r[key] is not None])
        out.append(dict(
            setting=label, method=r0["method"], subsample=r0["subsample"], sync=r0["sync"],
            step=r0.get("step") or ("none" if r0["method"] == "newton-diag" else None),
            lr=r0["lr"], unit=r0["unit"], seeds=len(rs),
            test=_mean([r["test_accuracy"] for r in rs]),
            test_std=_std([r["test_accuracy"] for r in rs]),
            test_all=[r["test_accuracy"] for r in rs],
            train=_mean([r["train_accuracy"] for r in rs]),
            objective=_mean([r["objective"] for r in rs]),
            iterations=_mean([r["iterations"] for r in rs]), time=_mean([r["wall_time"] for r in rs]),
            time_per_iter=per_iter("wall_time"),
            bytes_per_iter=per_iter("bytes_total"), cg_bytes_per_iter=per_iter("bytes_cg"),
            gn_bytes_per_iter=_mean([(r["bytes_jacobian"] + r["bytes_cg"]) / r["iterations"]
                                     for r in rs if r["iterations"]]),
            cg_per_iter=per_iter("cg_iters"), cg_seconds_per_iter=per_iter("seconds_cg"),
            jacobian_seconds_per_iter=per_iter("seconds_jacobian"),
            diverged=sum(bool(r["diverged"]) for r in rs)))
    return out


def accuracy_at(curves, run, t):
    """Test accuracy of ``run`` at its last record with wall_time <= t (None before any)."""
    best = None
    for c in curves:
        if c["run"] == run and c["wall_time"] <= t + 1e-12:
            best = c["test_accuracy"]
    return best


def settings_table(stats):
    """The markdown table: one line per setting."""
    head = ("| method | S | sync | step | lr | seeds | test acc (mean ± std) | train acc | f | "
            "iters/epochs | time (s) | MB / iter | CG MB / iter | CG its / iter | diverged |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in stats:
        lines.append("| " + " | ".join([
            s["method"],
            fmt(s["subsample"] and 100 * s["subsample"], "g") + ("%" if s["subsample"] else ""),
            fmt(s["sync"], "g"), s.get("step") or "–", fmt(s["lr"], "g"), str(s["seeds"]),
            plus_minus(s["test"], s["test_std"]), fmt(s["train"], ".4f"), fmt(s["objective"], ".4g"),
            fmt(s["iterations"], "g") + (" ep" if s["unit"] == "epoch" else ""),
            fmt(s["time"], ".2f"), fmt(s["bytes_per_iter"] and s["bytes_per_iter"] / 1e6, ".3f"),
            fmt(s["cg_bytes_per_iter"] and s["cg_bytes_per_iter"] / 1e6, ".4f")
            if s["method"] != "sgd" else "–",
            fmt(s["cg_per_iter"], ".1f"), f"{s['diverged']}/{s['seeds']}"]) + " |")
    return "\n".join(lines)


def without_step(stats):
    """The settings of the paper's methods: no step after CG (docs/method.md §6)."""
    return [x for x in stats if x.get("step") in (None, "none")]


def find(stats, **where):
    for s in stats:
        if all(s[k] == v for k, v in where.items()):
            return s
    return None


def claims(stats, rows, curves, networks=()):
    """(title, bullet lines): each claim of the paper against the numbers of this study;
    with ``networks``, claims 1 and 3 also on each modeled network. Claims 1-3 compare the
    paper's diagonal method (no step after CG); the kit's steps after CG (rescale,
    subspace: docs/method.md §6) get their own lines under claim 1, and claim 4 counts them
    among Newton's settings (as robustness.png and study.across do)."""
    every, stats = stats, without_step(stats)
    return [("1. Diagonalization removes the communication inside CG at little cost in "
             "progress", _diagonalization(stats) + _on_networks(
                 stats, rows, curves, networks, diagonal_pairs(stats)) + _steps(every)
             + _on_networks(every, rows, curves, networks, _step_pairs(every))
             or ["not measured (needs newton-full and newton-diag with sync 1 at the same S)"]),
            ("2. Subsampling cuts the cost of the Gauss-Newton part",
             _subsampling(stats) or ["not measured (needs two subsample fractions)"]),
            ("3. Early CG termination (sync fraction) cuts the waiting",
             _sync(stats) + _on_networks(stats, rows, curves, networks, _sync_pairs(stats))
             or ["not measured (needs newton-diag at two sync fractions)"]),
            ("4. Newton is more robust to its settings than SGD to its learning rate, and "
             "may reach better test accuracy",
             _robustness(every, rows, curves) or ["not measured (needs both methods)"])]


def diagonal_pairs(stats):
    """(newton-full, newton-diag sync 1) at each S where both ran."""
    pairs = []
    for s in sorted({x["subsample"] for x in stats if x["method"] == "newton-full"}):
        full = find(stats, method="newton-full", subsample=s)
        diag = find(stats, method="newton-diag", subsample=s, sync=1.0)
        if full and diag:
            pairs.append((full, diag))
    return pairs


def _sync_pairs(stats):
    """(newton-diag sync 1, newton-diag sync tau < 1) at each S."""
    return [(one, x) for one in stats if one["method"] == "newton-diag" and one["sync"] == 1.0
            for x in stats if x["method"] == "newton-diag" and x["sync"] < 1.0
            and x["subsample"] == one["subsample"]]


def _on_networks(stats, rows, curves, networks, pairs):
    """Each pair of settings on each modeled network, to the lowest final test accuracy of
    any of their runs, which every run of both reaches (``modeled.pair_lines``; the lower of
    the two means would leave the lower setting's seeds below its mean short of it)."""
    lines = []
    for a, b in pairs:
        finals = [[t for t in x["test_all"] if t is not None and math.isfinite(t)]
                  for x in (a, b)]
        if networks and all(finals):
            target = min(min(f) for f in finals)
            lines += [f"{a['setting']} against {b['setting']} " + line for line in
                      modeled.pair_lines(rows, curves, networks, a["setting"], b["setting"],
                                         target)]
    return lines


def _mb(nbytes):
    return fmt(nbytes and nbytes / 1e6, ".3g")


def _step_pairs(stats):
    """(newton-full, newton-diag sync 1 with a step after CG) at each S where both ran."""
    return [(full, x) for full in stats if full["method"] == "newton-full"
            for x in stats if x["method"] == "newton-diag" and x["sync"] == 1.0
            and x.get("step") not in (None, "none") and x["subsample"] == full["subsample"]]


def _steps(stats):
    """Each step after CG of newton-diag (sync 1) against the plain diagonal and full G."""
    lines = []
    for x in stats:
        if x["method"] != "newton-diag" or x["sync"] != 1.0 or x.get("step") in (None, "none"):
            continue
        plain = find(stats, method="newton-diag", subsample=x["subsample"], sync=1.0, step="none")
        full = find(stats, method="newton-full", subsample=x["subsample"])
        acc = lambda y: plus_minus(y["test"], y["test_std"]) if y else "–"
        lines.append(
            f"newton-diag with the {x['step']} step, S={100 * x['subsample']:g}%: test accuracy "
            f"{acc(x)} (without it {acc(plain)}, full G {acc(full)}); "
            f"f {fmt(x['objective'], '.4g')}; "
            f"CG MB/iter {_mb(x['cg_bytes_per_iter'])}, all training bytes "
            f"{_mb(x['bytes_per_iter'])} MB/iter; time {fmt(x['time'], '.1f')} s.")
    return lines


def _diagonalization(stats):
    lines = []
    for full, diag in diagonal_pairs(stats):
        lines.append(
            f"S={100 * full['subsample']:g}%: CG sends {_mb(full['cg_bytes_per_iter'])} MB per Newton "
            f"iteration with the full G, {_mb(diag['cg_bytes_per_iter'])} MB with the "
            f"diagonal G (sync 1); all training bytes {_mb(full['bytes_per_iter'])} against "
            f"{_mb(diag['bytes_per_iter'])} MB/iter; test accuracy "
            f"{plus_minus(full['test'], full['test_std'])} against "
            f"{plus_minus(diag['test'], diag['test_std'])}; final f {fmt(full['objective'], '.4g')}"
            f" against {fmt(diag['objective'], '.4g')}; time {fmt(full['time'], '.1f')} s "
            f"against {fmt(diag['time'], '.1f')} s.")
    return lines




def _subsampling(stats):
    lines = []
    for method, sync in (("newton-full", 1.0), ("newton-diag", 1.0)):
        pts = sorted((x for x in stats if x["method"] == method and x["sync"] == sync),
                     key=lambda x: x["subsample"])
        if len(pts) > 1:
            lines.append(f"{method}: " + "; ".join(
                f"S={100 * x['subsample']:g}%: {fmt(x['time_per_iter'], '.3g')} s/iter "
                f"(Jacobian {fmt(x['jacobian_seconds_per_iter'], '.3g')} s, CG "
                f"{fmt(x['cg_seconds_per_iter'], '.3g')} s), Jacobian+CG "
                f"{_mb(x['gn_bytes_per_iter'])} MB/iter, {fmt(x['cg_per_iter'], '.1f')} CG its/iter, "
                f"test {plus_minus(x['test'], x['test_std'])}, f {fmt(x['objective'], '.4g')}"
                for x in pts) + ".")
    return lines


def _sync(stats):
    lines = []
    for s in sorted({x["subsample"] for x in stats if x["method"] == "newton-diag"}):
        pts = sorted((x for x in stats if x["method"] == "newton-diag" and x["subsample"] == s),
                     key=lambda x: -x["sync"])
        if len(pts) > 1:
            lines.append(f"newton-diag S={100 * s:g}%: " + "; ".join(
                f"sync {x['sync']:g}: CG {fmt(x['cg_seconds_per_iter'], '.3g')} s/iter "
                f"(slowest rank), {fmt(x['cg_per_iter'], '.1f')} CG its/iter, total "
                f"{fmt(x['time'], '.3g')} s, test {plus_minus(x['test'], x['test_std'])}, "
                f"f {fmt(x['objective'], '.4g')}" for x in pts) + ".")
    return lines


def spread(pts):
    vals = [x["test"] for x in pts if x["test"] is not None]
    return min(vals), max(vals), float(np.std(vals))


def _robustness(stats, rows, curves):
    lines = []
    newton = [x for x in stats if x["method"] != "sgd"]
    sgd = [x for x in stats if x["method"] == "sgd"]
    if not (newton and sgd):
        return lines
    n_lo, n_hi, n_sd = spread(newton)
    s_lo, s_hi, s_sd = spread(sgd)
    best_n = max(newton, key=lambda x: x["test"])
    best_s = max(sgd, key=lambda x: x["test"])
    conv = [x for x in sgd if not x["diverged"]]
    if len(newton) > 1:
        lines.append(f"Newton, {len(newton)} settings: mean test accuracy from {n_lo:.4f} to "
                     f"{n_hi:.4f} (range {n_hi - n_lo:.4f}, std over settings {n_sd:.4f}).")
    if len(sgd) > 1:
        lines.append(f"SGD, {len(sgd)} learning rates: from {s_lo:.4f} to {s_hi:.4f} (range "
                     f"{s_hi - s_lo:.4f}, std {s_sd:.4f}); "
                     f"{sum(x['diverged'] > 0 for x in sgd)} rate(s) diverged in some seed"
                     + (f"; without them: {min(x['test'] for x in conv):.4f} to "
                        f"{max(x['test'] for x in conv):.4f}" if conv and len(conv) < len(sgd)
                        else "") + ".")
    if len(newton) == 1 or len(sgd) == 1:
        lines.append("Robustness not measured: it needs two or more settings of each method.")
    lines.append(f"Best Newton: {best_n['setting']}, {plus_minus(best_n['test'], best_n['test_std'])}"
                 f" in {fmt(best_n['time'], '.1f')} s; best SGD: {best_s['setting']}, "
                 f"{plus_minus(best_s['test'], best_s['test_std'])} in {fmt(best_s['time'], '.1f')} s"
                 f" (difference {best_n['test'] - best_s['test']:+.4f}).")
    t = min(best_n["time"], best_s["time"])
    at = {}
    for best in (best_n, best_s):
        runs = [r["run"] for r in rows if r["setting"] == best["setting"]]
        at[best["setting"]] = _mean([accuracy_at(curves, run, t) for run in runs])
    lines.append(f"At the same training time t = {t:.1f} s (the shorter of the two): "
                 + "; ".join(f"{k} {fmt(v, '.4f')}" for k, v in at.items()) + ".")
    return lines


def summary_markdown(plan, info, stats, rows, curves, notes, started, seconds, data_note):
    """summary.md: how the study ran, the table per setting, the claims."""
    lines = _header(plan, info, stats, rows, notes, started, seconds, data_note) + [
        "",
        "Columns: test/train accuracy and f at the end of the run, mean over seeds (± sample "
        "std); time = training seconds; MB / iter = bytes sent for training (every phase but "
        "evaluate/report), summed over ranks, per Newton iteration or SGD epoch; CG MB / iter "
        "= the part in CG; CG its / iter = CG iterations per Newton iteration (slowest "
        "partition). Every run is a row of runs.csv; every iteration a row of curves.csv.",
        "", settings_table(stats), ""] + _modeled_section(plan, stats, rows, curves) + [
        "## The claims, measured (generated from the table)", ""]
    for title, items in claims(stats, rows, curves, plan.networks):
        lines += [f"### {title}", ""] + [f"- {x}" for x in items] + [""]
    lines += ["Figures: `accuracy_vs_time.png` (test accuracy against training time, mean "
              "over seeds, one panel per method), `robustness.png` (final test accuracy of "
              "every run, per setting).", ""]
    return "\n".join(lines)


def _modeled_section(plan, stats, rows, curves):
    """The time to accuracy on each modeled network (``reproduce --network``)."""
    target = modeled.common_target(stats)
    if not plan.networks or target is None:
        return []
    return ["## Time to accuracy on the modeled networks", "",
            f"Target: test accuracy {target:.4f}, the highest that the best setting of every "
            "method reaches at its end as a mean over seeds (as the figure's curves; a seed may"
            " stop short). Seconds to it: each run's first record at or above it, mean over "
            "seeds (\"not reached (k/n)\": k of n seeds got there); measured = training time "
            "here; on a network = its modeled time (curves.csv's modeled_time_NAME columns). "
            "s / iter: modeled seconds per Newton iteration or SGD epoch.", "",
            modeled.time_table(stats, rows, curves, plan.networks, target), "",
            "Figure: `accuracy_vs_modeled_time.png` (the best setting of each method against "
            "its modeled time, one panel per network).", ""]


def _budget(plan, stats):
    newton = [x for x in stats if x["method"] != "sgd"]
    sgd = [x for x in stats if x["method"] == "sgd"]
    conv = [x for x in sgd if not x["diverged"]] or sgd
    out = []
    if newton:
        out.append(f"Newton {count(plan.iters, 'iteration')} per run took "
                   f"{duration(_mean([x['time'] for x in newton]))} of training on average "
                   f"({_mean([x['time_per_iter'] for x in newton]):.3g} s/iteration)")
    if sgd:
        out.append(f"SGD {count(plan.epochs, 'epoch')} took {duration(_mean([x['time'] for x in conv]))}"
                   f" on average over the rates that did not diverge "
                   f"({_mean([x['time_per_iter'] for x in conv]):.3g} s/epoch)")
    return out


def _header(plan, info, stats, rows, notes, started, seconds, data_note):
    first, p, n, s = rows[0], plan.problem, plan.newton, plan.sgd
    C_text = p.C or default_C(p.data)
    return [
        f"# Reproduction study: {p.data}, network {first['network']}", "",
        f"- command: `{command_line(info['ranks'])}`",
        f"- date: {started} (study wall time {duration(seconds)}, data loading and "
        "accuracy checks included" + (f"; this part only: it continued {info['continued']} "
                                      "runs finished before (--continue)"
                                      if info.get("continued") else "") + ")",
        "- runs, by part (one more with each --continue; runs.csv's columns part, started, "
        "code, nice, load): " + "; ".join(parts(rows)),
        f"- machine: {info['cores']} cores ({info['usable_cores']} usable), {info['cpu']}, "
        f"{info['platform']}; Python {info['python']}, numpy {info['numpy']}, mpi4py "
        f"{info['mpi4py']}, {info['mpi']}; BLAS threads: {info['threads']}",
        f"- load average (1 min) at the start and the end: {info['load_start']} and "
        f"{info['load_end']}, {100 * info.get('stolen', 0):.1f}% of the busy time stolen by a virtual "
        f"machine's host (on {info['cores']} cores: other work slows the runs, noisy times)",
        f"- ranks: {info['ranks']}, splits {first['splits'] or '(one process, dense model)'}",
        f"- data: {data_note}",
    ] + (modeled.describe(plan.networks, info["ranks"] == 1) if plan.networks else []) + [
        f"- network {first['network']}, {p.activation}, {p.loss} loss, C = {first['C']:g} "
        f"({C_text}{'' if p.C else ', the kit' + chr(39) + 's default, model.KIT_C'})",
        f"- Newton: simpleNN's constants (xi = {n.xi:g}, CG_max = {n.cg_max}, lambda_0 = "
        f"{n.lambda0:g}, boost 3/2, drop 2/3, eta = 1e-4), {plan.iters} iterations; subsamples "
        f"{', '.join(f'{100 * x:g}%' for x in plan.subsamples)}"
        + (f"; sync fractions {', '.join(f'{t:g}' for t in plan.syncs)} (newton-diag only)"
           if plan.syncs and "newton-diag" in plan.methods else ""),
        f"- SGD with momentum {s.momentum:g}, batch {s.batch_size}, no decay, {plan.epochs} "
        f"epochs; learning rates {', '.join(f'{lr:g}' for lr in plan.lrs)} (a diverged run "
        "stops at the epoch where f overflows and is kept as a result)",
    ] + (["- settings: an explicit list (--settings) instead of the full grid: "
          + "; ".join(x.label for x in plan.settings)] if plan.settings else []) + [
        f"- seeds 0..{plan.seeds - 1} (initialization, subsamples, batch order); the train/test "
        "split is fixed",
        "- time budget: " + ("; ".join(_budget(plan, stats)) or "–") + f". SGD epochs: "
        f"{plan.epochs_rule}; they are meant to give SGD about the training time of Newton "
        "on this machine. The table gives each run's training time (accuracy checks not "
        "counted), and claim 4 also compares the two at the same time.",
    ] + [f"- left out: {x}" for x in notes] + [
        f"- REDUCED against the default study: {x}"
        for x in reductions(plan, info["ranks"] > 1, info.get("sync_possible", True))] + \
        [f"- {x}" for x in changes(plan)]


def parts(rows):
    """One text per part of the study (a launch of reproduce): its runs, when its first run
    started, the kit's code, the niceness and the range of the 1-minute load averages at its
    runs' starts."""
    out = []
    for part, group in itertools.groupby(rows, key=lambda r: r.get("part")):
        rs = list(group)
        runs = f"runs {rs[0]['run']}-{rs[-1]['run']}" if len(rs) > 1 else f"run {rs[0]['run']}"
        if part is None:
            out.append(f"{runs} written before runs.csv recorded when and with which code")
            continue
        out.append(f"part {part}, {runs} from {rs[0]['started']} (code {rs[0]['code']}, nice "
                   f"{_span(rs, 'nice', 'd')}, 1-minute load average {_span(rs, 'load', '.2f')})")
    return out


def _span(rows, key, spec):
    """'lo-hi' (or one value, or '–') of the rows' ``key`` in the format ``spec``."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return format(lo, spec) + (f"-{format(hi, spec)}" if hi > lo else "")


def figure_inputs(stats, rows, curves):
    """(panels for figures.accuracy_time_panels, groups for figures.robustness_strip)."""
    panels = {}
    by_run = {}
    for c in curves:
        by_run.setdefault(c["run"], []).append(c)
    for s in stats:
        runs = [by_run.get(r["run"], []) for r in rows if r["setting"] == s["setting"]]
        n = min(len(c) for c in runs) if runs else 0
        if n == 0:
            continue
        t = [float(np.mean([c[k]["wall_time"] for c in runs])) for k in range(n)]
        acc = [float(np.mean([c[k]["test_accuracy"] for c in runs])) for k in range(n)]
        label = s["setting"].split(" ", 1)[1] + (" (diverged)" if s["diverged"] else "")
        panels.setdefault(s["method"], {})[label] = (t, acc)
    groups = [(s["method"], s["setting"].split(" ", 1)[1],
               [r["test_accuracy"] for r in rows if r["setting"] == s["setting"]],
               [bool(r["diverged"]) for r in rows if r["setting"] == s["setting"]])
              for s in stats]
    return panels, groups
