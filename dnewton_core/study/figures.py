"""The study's figures, written to files: from results as ``experiment.result`` writes
them (``compare``) and from the study's tables (``reproduce``).

The command line sets the file-only Agg backend.
"""
import matplotlib.pyplot as plt

from ..figures import METHOD_COLORS
from ..figures import save as _save


def accuracy_against_time(results, path, title="", replace=True):
    """Test accuracy against training time, one line per run; saved to ``path`` (see
    ``figures.save`` for ``replace``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        h = [rec for rec in r["history"] if rec.get("test_accuracy") is not None]
        ax.plot([rec["wall_time"] for rec in h], [rec["test_accuracy"] for rec in h],
                marker=".", label=name)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path, replace=replace)


def accuracy_time_panels(panels, path, title="", replace=True):
    """Test accuracy against training time, one panel per method, one line per setting.

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
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (method, lines) in zip(axes[0], panels.items()):
        cmap = plt.get_cmap("viridis")
        for k, (label, (t, acc)) in enumerate(lines.items()):
            color = next((c for m, c in METHOD_COLORS.items() if label.startswith(m + " ")),
                         cmap(k / max(1, len(lines) - 1) * 0.9))
            ax.plot(t, acc, marker=".", markersize=3, lw=1.2, color=color, label=label)
        ax.set_title(method)
        ax.set_xlabel("training time (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("test accuracy")
    return _save(fig, path, title, replace)


def robustness_strip(groups, path, title="", replace=True):
    """Final test accuracy of every run, one column per setting, grouped by method.

    ``groups``: [(method, setting label, accuracies over seeds, diverged flags)]. Runs are
    dots (diverged runs are crosses), the mean over seeds a bar; the right panel boxes the
    per-setting means of each method, i.e. the spread over each method's own settings.
    """
    fig, (ax, box) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True,
                                  gridspec_kw=dict(width_ratios=[3, 1]))
    means = {}
    for x, (method, _, accs, diverged) in enumerate(groups):
        color = METHOD_COLORS.get(method, "gray")
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
    ax.set_xticklabels([g[1] for g in groups], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3, axis="y")
    for method, color in METHOD_COLORS.items():
        ax.plot([], [], "o", color=color, label=method)
    ax.plot([], [], "x", color="gray", label="diverged")
    ax.legend(fontsize=7, loc="lower left")
    names = list(means)
    newton = [m for k in names if k.startswith("newton") for m in means[k]]
    data = ([("Newton\n(all settings)", newton)] if newton else []) + \
           [(k, means[k]) for k in names if not k.startswith("newton")]
    if data:
        box.boxplot([d for _, d in data], showmeans=True)
        for k, (_, d) in enumerate(data, start=1):
            box.plot([k] * len(d), d, "o", color="black", ms=3, alpha=0.6)
        box.set_xticks(range(1, len(data) + 1))
        box.set_xticklabels([name for name, _ in data], fontsize=8)
    box.set_title("spread of per-setting means", fontsize=9)
    box.grid(alpha=0.3, axis="y")
    return _save(fig, path, title, replace)


def projection_figure(projection, path, replace=True):
    """Seconds per Newton iteration (full, diagonal) and per SGD epoch against machines,
    one line style per network (``project --json``'s content)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = ["-", "--", ":", "-."]
    for k, (name, rows) in enumerate(projection["networks"].items()):
        rows = [r for r in rows if r.get("splits")]
        for method in METHOD_COLORS:
            ax.plot([r["machines"] for r in rows], [r[method + " seconds"] for r in rows],
                    styles[k % len(styles)], marker="o", ms=3, color=METHOD_COLORS[method],
                    label=f"{method}, {name}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("machines (one rank each)")
    ax.set_ylabel("seconds per Newton iteration / SGD epoch")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    layers = "-".join(map(str, projection["layers"]))
    return _save(fig, path, f"projection: {layers}, l = {projection['l']}", replace=replace)
