"""The study's figures, written to files: from results as ``experiment.result`` writes
them (``compare``) and from the study's tables (``reproduce``).

Every figure is in the kit's style (``dnewton_core.figures``): 900 pixels wide, fonts of
11 pt and more, one colour per method, plain numbers on log axes. The command line sets
the file-only Agg backend.
"""
import matplotlib.pyplot as plt

from ..figures import (
    METHOD_COLOURS,
    machines_lines,
    run_styles,
    styled,
    subplots,
    variant_colours,
)
from ..figures import save as _save


@styled
def accuracy_against_time(results, path, title="", replace=True, network=None):
    """Test accuracy against training time (with ``network``, the records' modeled time on
    it), one line per run in its method's colour; saved to ``path`` (see ``figures.save``
    for ``replace``)."""
    fig, ax = subplots(height=4.8)
    styles = run_styles(results)
    time = "modeled_time" if network else "wall_time"
    for name, r in results.items():
        h = [rec for rec in r["history"] if rec.get("test_accuracy") is not None and time in rec]
        ax.plot([rec[time] for rec in h], [rec["test_accuracy"] for rec in h],
                label=name, markersize=4, **styles[name])
    ax.set_xlabel(f"modeled time on {network} (s)" if network else "training time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path, replace=replace)


@styled
def accuracy_time_panels(panels, path, title="", replace=True):
    """Test accuracy against training time, one panel per method, one line per setting (in
    shades of the method's colour).

    ``panels``: {method: {setting label: (times, accuracies)}} (e.g. means over seeds).
    With several methods, a last panel puts the best setting of each (by its final
    accuracy) side by side. The panels share both axes, so the methods compare at equal time.
    """
    panels = dict(panels)
    if len(panels) > 1:            # and the best setting of each method, side by side
        best = {}
        for method, lines in panels.items():
            label, curve = max(lines.items(), key=lambda item: item[1][1][-1])
            best[f"{method} {label}"] = curve
        panels["best of each method"] = best
    n = max(1, len(panels))
    rows, cols = (n + 1) // 2 if n > 2 else 1, min(n, 2)
    fig, axes = subplots(cols, height=4.6 * rows, nrows=rows, sharex=True, sharey=True,
                         squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (method, lines) in zip(axes.flat, panels.items()):
        styles = run_styles(lines)
        if method in METHOD_COLOURS:             # a method's settings: shades of its colour
            for name, colour in zip(lines, variant_colours(method, len(lines))):
                styles[name]["color"] = colour
        for label, (t, acc) in lines.items():
            ax.plot(t, acc, markersize=3, lw=1.5, label=label, **styles[label])
        ax.set_title(method)
        ax.set_xlabel("training time (s)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy")
    return _save(fig, path, title, replace)


@styled
def robustness_strip(groups, path, title="", replace=True):
    """Final test accuracy of every run, one column per setting, grouped by method.

    ``groups``: [(method, setting label, accuracies over seeds, diverged flags)]. Runs are
    dots (diverged runs are crosses), the mean over seeds a bar; the right panel boxes the
    per-setting means of each method, i.e. the spread over each method's own settings.
    """
    fig, (ax, box) = subplots(2, height=5.6, sharey=True, gridspec_kw=dict(width_ratios=[3, 1]))
    means = {}
    for x, (method, _, accs, diverged) in enumerate(groups):
        color = METHOD_COLOURS.get(method, "gray")
        vals = [a if a is not None else float("nan") for a in accs]
        jitter = [x + 0.08 * (k - (len(vals) - 1) / 2) for k in range(len(vals))]
        for xj, a, d in zip(jitter, vals, diverged):
            ax.plot(xj, a, "x" if d else "o", color=color, alpha=0.8, ms=5)
        finite = [a for a in vals if a == a]
        if finite:
            m = sum(finite) / len(finite)
            ax.plot([x - 0.25, x + 0.25], [m, m], color=color, lw=2)
            means.setdefault(method, []).append(m)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[1] for g in groups], rotation=60, ha="right")
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3, axis="y")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=m)
               for m, c in METHOD_COLOURS.items()]
    ax.legend(handles=handles + [plt.Line2D([], [], marker="x", ls="", color="gray",
                                            label="diverged")], loc="lower left")
    names = list(means)
    newton = [m for k in names if k.startswith("newton") for m in means[k]]
    data = ([("Newton\n(all settings)", newton)] if newton else []) + \
           [(k, means[k]) for k in names if not k.startswith("newton")]
    if data:
        box.boxplot([d for _, d in data], showmeans=True,   # black: no method's colour
                    medianprops=dict(color="black"),
                    meanprops=dict(marker="^", markerfacecolor="white", markeredgecolor="black"))
        for k, (_, d) in enumerate(data, start=1):
            box.plot([k] * len(d), d, "o", color="black", ms=3, alpha=0.6)
        box.set_xticks(range(1, len(data) + 1))
        box.set_xticklabels([name for name, _ in data])
    box.set_title("spread of the\nper-setting means")
    box.grid(alpha=0.3, axis="y")
    return _save(fig, path, title, replace)


@styled
def projection_figure(projection, path, replace=True):
    """Seconds per Newton iteration (full, diagonal) and per SGD epoch against machines,
    one line style per network (``project --json``'s content); both axes logarithmic,
    labelled with plain numbers."""
    fig, ax = subplots(height=5.4)
    machines_lines(ax, projection["networks"], "seconds per Newton iteration / SGD epoch")
    ax.legend(ncol=2)
    layers = "-".join(map(str, projection["layers"]))
    return _save(fig, path, f"projection: {layers}, l = {projection['l']}", replace=replace)


@styled
def accuracy_against_modeled_time(panels, path, target=None, title="", replace=True):
    """Test accuracy against modeled training time, one panel per modeled network
    (``reproduce --network``), one line per setting in its method's colour; a dotted line
    at ``target``. ``panels``: {network: {setting: (modeled times, accuracies)}}."""
    n = max(1, len(panels))
    fig, axes = subplots(n, height=4.8, sharey=True, squeeze=False)
    for ax, (name, lines) in zip(axes[0], panels.items()):
        styles = run_styles(lines)
        for label, (t, acc) in lines.items():
            ax.plot(t, acc, markersize=3, lw=1.5, label=label, **styles[label])
        if target is not None:
            ax.axhline(target, color="gray", ls=":", lw=1,
                       label=f"target test accuracy {target:.4g}")
        ax.set_title(f"on {name} (modeled)")
        ax.set_xlabel("modeled training time (s)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][-1].legend(loc="lower right")
    return _save(fig, path, title, replace)
