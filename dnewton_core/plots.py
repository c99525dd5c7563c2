"""Figures from results (dicts as written by ``experiment.result``) and from the notebooks.

The command line sets the file-only Agg backend; in a notebook the inline backend shows them.
"""
import matplotlib.pyplot as plt


def _save(fig, path, title=""):
    """Write ``fig`` to ``path`` (PNG) and free it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_against_time(results, path, title=""):
    """Test accuracy against training time, one line per run; saved to ``path``."""
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
    return _save(fig, path)


METHOD_COLORS = {"newton-full": "tab:blue", "newton-diag": "tab:orange", "sgd": "tab:green"}


def accuracy_time_panels(panels, path, title=""):
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
    return _save(fig, path, title)


def robustness_strip(groups, path, title=""):
    """Final test accuracy of every run, one column per setting, grouped by method.

    ``groups``: [(method, setting label, accuracies over seeds, diverged flags)]. Runs are
    dots (diverged runs are crosses), the mean over seeds a bar; the right panel boxes the
    per-setting means of each method, i.e. the spread over each method's own settings.
    """
    fig, (ax, box) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True,
                                  gridspec_kw=dict(width_ratios=[3, 1]))
    means = {}
    for x, (method, label, accs, diverged) in enumerate(groups):
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
    ax.plot([], [], "x", color="gray", label="diverged (SGD)")
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
    return _save(fig, path, title)


# -- figures for the notebooks (they return the Figure; the notebook shows it) ---------------

from matplotlib.ticker import MaxNLocator  # noqa: E402

NOTEBOOK_DPI = 72


def _colours(n):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(k % cmap.N) for k in range(n)]


def _neuron_y(n):
    """Heights of n neurons spread over [0, 1], top to bottom."""
    import numpy as np
    return np.linspace(1.0, 0.0, n) if n > 1 else np.array([0.5])


def partition_network(grid, title=None):
    """The network's weight matrices with every block coloured by the rank that holds it.

    One panel per layer m: W^m with n_{m-1} rows (neurons of layer m-1, cut into the groups
    T_{m-1,i}) and n_m columns (neurons of layer m, cut into T_{m,j}), and below it the bias
    row b^m. Partition (m, i, j) is the block W^m[T_{m-1,i}, T_{m,j}], labelled with its
    rank; the bias b^m[T_{m,j}] belongs to partition (m, 0, j) (METHOD.md §3).
    """
    from matplotlib.patches import Patch, Rectangle
    colours = _colours(grid.size)
    widths = [n for n in grid.layers[1:]]
    fig, axes = plt.subplots(1, grid.L, figsize=(2.2 + 1.9 * grid.L, 3.9), dpi=NOTEBOOK_DPI,
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for m, ax in enumerate(axes[0], start=1):
        n_in, n_out = grid.layers[m - 1], grid.layers[m]
        gap = max(1.0, n_in / 16)                        # bias row drawn one "gap" below W
        bias_h = max(1.0, n_in / 20)
        for p in (q for q in grid.partitions if q.m == m):
            r0, r1, c0, c1 = p.rows.start, p.rows.stop, p.cols.start, p.cols.stop
            ax.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=colours[p.rank],
                                   alpha=0.75, edgecolor="k", lw=1))
            ax.text((c0 + c1) / 2, (r0 + r1) / 2, f"rank {p.rank}\n{r1 - r0}x{c1 - c0}",
                    ha="center", va="center", fontsize=8)
            if p.has_bias:
                ax.add_patch(Rectangle((c0, n_in + gap), c1 - c0, bias_h, facecolor=colours[p.rank],
                                       alpha=0.75, edgecolor="k", lw=1))
        ax.set_xlim(0, n_out)
        ax.set_ylim(n_in + gap + bias_h, 0)
        rows, cols = grid.groups(m - 1), grid.groups(m)
        ax.set_yticks([T.start + len(T) / 2 for T in rows] + [n_in + gap + bias_h / 2],
                      [f"$T_{{{m - 1},{i}}}$" for i in range(len(rows))] + [f"$b^{m}$"], fontsize=8)
        ax.xaxis.tick_top()
        ax.set_xticks([T.start + len(T) / 2 for T in cols],
                      [f"$T_{{{m},{j}}}$" for j in range(len(cols))], fontsize=8)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_xlabel(f"$W^{m}$: {n_in} x {n_out}\n($P_{m - 1}$ = {grid.splits[m - 1]}, "
                      f"$P_{m}$ = {grid.splits[m]})", fontsize=9)
    handles = [Patch(color=colours[p.rank], alpha=0.75,
                     label=f"rank {p.rank}: ({p.m}, {p.i}, {p.j})") for p in grid.partitions]
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                       fontsize=8, frameon=False)
    fig.suptitle(title or f"layers {'-'.join(map(str, grid.layers))}, splits "
                          f"{','.join(map(str, grid.splits))}: {grid.size} partitions", fontsize=11)
    fig.tight_layout()
    return fig


def feature_split(grid, X, image_shape=None, n_rows=60):
    """The feature-wise split of the data: who holds which columns of X.

    Left: the first ``n_rows`` instances (rows) by features (columns), with the column
    groups T_{0,i} outlined; the ranks (1, i, j) for all j hold X[:, T_{0,i}]. Right (when
    ``image_shape`` is given, e.g. (8, 8) for digits): the same groups on one image.
    """
    import numpy as np
    from matplotlib.patches import Rectangle
    groups = grid.groups(0)
    holders = grid.feature_holders                 # i -> ranks (1, i, j) for all j
    rank_colours = _colours(grid.size)             # as in partition_network
    colours = [rank_colours[holders[i][0]] for i in range(len(groups))]
    panels = 2 if image_shape else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels + 1, 3.6), dpi=NOTEBOOK_DPI,
                             gridspec_kw={"width_ratios": [1.6, 1][:panels]})
    axes = np.atleast_1d(axes)
    ax = axes[0]
    rows = X[:n_rows]
    ax.imshow(rows, aspect="auto", cmap="gray_r", interpolation="nearest")
    for i, T in enumerate(groups):
        ax.add_patch(Rectangle((T.start - 0.5, -0.5), len(T), len(rows), fill=False,
                               edgecolor=colours[i], lw=2.5))
        ranks = ",".join(map(str, holders[i]))
        ax.text(T.start + len(T) / 2 - 0.5, -1.5, f"$T_{{0,{i}}}$: rank{'s' if len(holders[i]) > 1 else ''} {ranks}",
                ha="center", va="bottom", fontsize=8, color=colours[i])
    ax.set_xlabel("feature")
    ax.set_ylabel("instance")
    ax.set_title("X, split by columns", pad=16)
    if image_shape:
        ax = axes[1]
        ax.imshow(X[0].reshape(image_shape), cmap="gray_r", interpolation="nearest")
        owner = np.zeros(X.shape[1], dtype=int)
        for i, T in enumerate(groups):
            owner[T.start:T.stop] = i
        overlay = np.array([colours[i] for i in owner]).reshape(*image_shape, 4)
        overlay[..., 3] = 0.35
        ax.imshow(overlay, interpolation="nearest")
        ax.set_title("one instance, pixels by group")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def bytes_by_phase(per_iteration, title="bytes per iteration"):
    """Grouped bars: mean bytes per iteration (summed over ranks) for each phase and run.

    ``per_iteration`` is {run name: {phase: bytes}} (``cluster.bytes_per_iteration``). The
    axis is logarithmic: a few scalars and megabytes share one picture.
    """
    import numpy as np
    phases = [p for p in ("function", "gradient", "jacobian", "cg", "sync", "line_search", "sgd")
              if any(p in d for d in per_iteration.values())]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=NOTEBOOK_DPI)
    width = 0.8 / max(1, len(per_iteration))
    x = np.arange(len(phases))
    for k, (name, d) in enumerate(per_iteration.items()):
        values = [d.get(p, 0) for p in phases]
        ax.bar(x + (k - (len(per_iteration) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, phases)
    ax.set_yscale("log")
    ax.set_ylabel("bytes per iteration (all ranks)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def history_curves(runs, ys=("objective", "test_accuracy"), x="iter", xlabel=None,
                   logy=("objective",)):
    """One panel per quantity in ``ys``, one line per run, against ``x`` (a record key such
    as "iter" or "wall_time"). ``runs`` is {name: result}."""
    import numpy as np
    fig, axes = plt.subplots(1, len(ys), figsize=(4.2 * len(ys), 3.2), dpi=NOTEBOOK_DPI)
    for ax, y in zip(np.atleast_1d(axes), ys):
        for name, run in runs.items():
            h = [r for r in run["history"] if r.get(y) is not None]
            ax.plot([r[x] for r in h], [r[y] for r in h], marker=".", label=name)
        ax.set_xlabel(xlabel or {"iter": "iteration", "wall_time": "training time (s)"}.get(x, x))
        if x == "iter":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(y.replace("_", " "))
        if y in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def cg_iterations(runs):
    """CG iterations per Newton iteration and rank: one CG for all ranks (full G) is one
    line; with the block-diagonal G every rank runs its own CG (one line each)."""
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=NOTEBOOK_DPI)
    for k, (name, run) in enumerate(runs.items()):
        per_rank = run["cg_iters_per_rank"]
        style = dict(color=f"C{k}")
        if all(r == per_rank[0] for r in per_rank):
            ax.plot(range(1, len(per_rank[0]) + 1), per_rank[0], marker="o", label=name, **style)
            continue
        for rank, iters in enumerate(per_rank):
            ax.plot(range(1, len(iters) + 1), iters, marker=".", alpha=0.7, lw=1,
                    label=f"{name} (each rank)" if rank == 0 else None, **style)
    ax.set_xlabel("Newton iteration")
    ax.set_ylabel("CG iterations")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def seconds_by_rank(runs, phases=("cg", "sync")):
    """Stacked bars: seconds each rank spent in ``phases`` over a run, one panel per run
    (``runs`` from ``cluster.gather_run``, with "per_rank" totals)."""
    import numpy as np
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 3.0), dpi=NOTEBOOK_DPI,
                             sharey=True)
    for ax, (name, run) in zip(np.atleast_1d(axes), runs.items()):
        per_rank = run["per_rank"]
        bottom = np.zeros(len(per_rank))
        for k, phase in enumerate(phases):
            values = np.array([t.get(phase, {}).get("seconds", 0.0) for t in per_rank])
            ax.bar(range(len(per_rank)), values, bottom=bottom, color=f"C{k}", label=phase)
            bottom += values
        ax.set_xticks(range(len(per_rank)))
        ax.set_xlabel("rank")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("seconds")
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_by_setting(groups, key="test_accuracy"):
    """Final test accuracy of every run, one column of dots per method: how much does each
    method depend on its settings? ``groups`` is {method: {setting label: result}}."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=NOTEBOOK_DPI)
    x, ticks, labels = 0, [], []
    for k, (method, runs) in enumerate(groups.items()):
        for setting, run in runs.items():
            value = run["final"].get(key)
            if value is None:                      # diverged: drawn at the bottom
                ax.plot(x, 0.0, marker="x", color=f"C{k}", ms=8)
            else:
                ax.plot(x, value, marker="o", color=f"C{k}", ms=7)
            ticks.append(x)
            labels.append(setting)
            x += 1
        x += 0.8
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(key.replace("_", " ") + " (final)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=f"C{k}", label=m)
               for k, m in enumerate(groups)]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
