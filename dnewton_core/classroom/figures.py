"""The notebooks' figures: each function returns a Figure in the kit's style
(``dnewton_core.figures``: 900 pixels wide, fonts of 11 pt and more, one colour per method
and per phase, plain numbers on log axes); the notebook shows it."""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from ..figures import METHOD_COLOURS as _METHOD_COLOURS
from ..figures import (
    OTHER_COLOURS,
    PHASE_COLOURS,
    SMALLEST_FONT,
    log_axis,
    method_of,
    run_styles,
    styled,
    subplots,
)
from ..figures import rank_colours as _colours
from .tables import message_steps, round_bytes

SMALL = SMALLEST_FONT


@styled
def partition_network(grid, title=None):
    """The network's weight matrices with every block coloured by the rank that holds it.

    One panel per layer m: W^m with n_{m-1} rows (neurons of layer m-1, cut into the groups
    T_{m-1,i}) and n_m columns (neurons of layer m, cut into T_{m,j}), and below it the bias
    row b^m. Partition (m, i, j) is the block W^m[T_{m-1,i}, T_{m,j}], labelled with its
    rank; the bias b^m[T_{m,j}] belongs to partition (m, 0, j) (docs/method.md §3).
    """
    colours = _colours(grid.size)
    widths = [n for n in grid.layers[1:]]
    fig, axes = subplots(grid.L, height=4.8, gridspec_kw={"width_ratios": widths}, squeeze=False)
    for m, ax in enumerate(axes[0], start=1):
        n_in, n_out = grid.layers[m - 1], grid.layers[m]
        gap = max(1.0, n_in / 16)                        # bias row drawn one "gap" below W
        bias_h = max(1.0, n_in / 20)
        for p in (q for q in grid.partitions if q.m == m):
            r0, r1, c0, c1 = p.rows.start, p.rows.stop, p.cols.start, p.cols.stop
            ax.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=colours[p.rank],
                                   alpha=0.75, edgecolor="k", lw=1))
            ax.text((c0 + c1) / 2, (r0 + r1) / 2, f"rank {p.rank}\n{r1 - r0}x{c1 - c0}",
                    ha="center", va="center", fontsize=SMALL)
            if p.has_bias:
                ax.add_patch(Rectangle((c0, n_in + gap), c1 - c0, bias_h, facecolor=colours[p.rank],
                                       alpha=0.75, edgecolor="k", lw=1))
        ax.set_xlim(0, n_out)
        ax.set_ylim(n_in + gap + bias_h, 0)
        rows, cols = grid.groups(m - 1), grid.groups(m)
        ax.set_yticks([T.start + len(T) / 2 for T in rows] + [n_in + gap + bias_h / 2],
                      [f"$T_{{{m - 1},{i}}}$" for i in range(len(rows))] + [f"$b^{m}$"])
        ax.xaxis.tick_top()
        ax.set_xticks([T.start + len(T) / 2 for T in cols],
                      [f"$T_{{{m},{j}}}$" for j in range(len(cols))])
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_xlabel(f"$W^{m}$: {n_in} x {n_out}\n($P_{m - 1}$ = {grid.splits[m - 1]}, "
                      f"$P_{m}$ = {grid.splits[m]})")
    handles = [Patch(color=colours[p.rank], alpha=0.75,
                     label=f"rank {p.rank}: ({p.m}, {p.i}, {p.j})") for p in grid.partitions]
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                       frameon=False)
    fig.suptitle(title or f"layers {'-'.join(map(str, grid.layers))}, splits "
                          f"{','.join(map(str, grid.splits))}: {grid.size} partitions")
    fig.tight_layout()
    return fig


@styled
def feature_split(grid, X, image_shape=None, n_rows=60):
    """The feature-wise split of the data: who holds which columns of X.

    Left: the first ``n_rows`` instances (rows) by features (columns), with the column
    groups T_{0,i} outlined; the ranks (1, i, j) for all j hold X[:, T_{0,i}]. Right (when
    ``image_shape`` is given, e.g. (8, 8) for digits): the same groups on one image.
    """

    groups = grid.groups(0)
    holders = grid.feature_holders                 # i -> ranks (1, i, j) for all j
    rank_colours = _colours(grid.size)             # as in partition_network
    colours = [rank_colours[holders[i][0]] for i in range(len(groups))]
    panels = 2 if image_shape else 1
    fig, axes = subplots(panels, height=4.4, gridspec_kw={"width_ratios": [1.6, 1][:panels]})
    axes = np.atleast_1d(axes)
    ax = axes[0]
    rows = X[:n_rows]
    ax.imshow(rows, aspect="auto", cmap="gray_r", interpolation="nearest")
    for i, T in enumerate(groups):
        ax.add_patch(Rectangle((T.start - 0.5, -0.5), len(T), len(rows), fill=False,
                               edgecolor=colours[i], lw=2.5))
        ranks = ",".join(map(str, holders[i]))
        plural = "s" if len(holders[i]) > 1 else ""
        ax.text(T.start + len(T) / 2 - 0.5, -1.5, f"$T_{{0,{i}}}$: rank{plural} {ranks}",
                ha="center", va="bottom", fontsize=SMALL, color=colours[i])
    ax.set_xlabel("feature")
    ax.set_ylabel("instance")
    ax.set_title("X, split by columns", pad=22)
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


@styled
def bytes_by_phase(per_iteration, title="bytes per iteration"):
    """Grouped bars: mean bytes per iteration (summed over ranks) for each phase and run,
    each run in its method's colour.

    ``per_iteration`` is {run name: {phase: bytes}} (``tables.bytes_per_iteration``). The
    axis is logarithmic, labelled in bytes ("100 B", "10 kB"): a few scalars and megabytes
    share one picture.
    """
    phases = [p for p in ("function", "gradient", "jacobian", "cg", "sync", "line_search", "sgd")
              if any(p in d for d in per_iteration.values())]
    fig, ax = subplots(height=4.2)
    width = 0.8 / max(1, len(per_iteration))
    x = np.arange(len(phases))
    styles = run_styles(per_iteration)
    for k, (name, d) in enumerate(per_iteration.items()):
        values = [d.get(p, 0) for p in phases]
        ax.bar(x + (k - (len(per_iteration) - 1) / 2) * width, values, width, label=name,
               color=styles[name]["color"])
    ax.set_xticks(x, phases)
    log_axis(ax, "y", label=round_bytes)
    ax.set_ylabel("bytes per iteration (all ranks)")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


@styled
def history_curves(runs, ys=("objective", "test_accuracy"), x="iter", xlabel=None,
                   logy=("objective",)):
    """One panel per quantity in ``ys``, one line per run, against ``x`` (a record key such
    as "iter" or "wall_time"). ``runs`` is {name: result}; each run is drawn in its method's
    colour (several settings of one method in shades of it, with their own line style)."""
    fig, axes = subplots(len(ys), height=4.2)
    styles = run_styles(runs)
    for ax, y in zip(np.atleast_1d(axes), ys):
        for name, run in runs.items():
            h = [r for r in run["history"] if r.get(y) is not None]
            ax.plot([r[x] for r in h], [r[y] for r in h], label=name, markersize=4,
                    **styles[name])
        ax.set_xlabel(xlabel or {"iter": "iteration", "wall_time": "training time (s)"}.get(x, x))
        if x == "iter":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(y.replace("_", " "))
        if y in logy:
            log_axis(ax, "y")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend()
    fig.tight_layout()
    return fig


@styled
def cg_iterations(runs):
    """CG iterations per Newton iteration and rank: one CG for all ranks (full G) is one
    line; with the block-diagonal G every rank runs its own CG (one line each). Each run in
    its method's colour."""
    fig, ax = subplots(height=4.0)
    styles = run_styles(runs)
    for name, run in runs.items():
        per_rank = run["cg_iters_per_rank"]
        style = dict(color=styles[name]["color"])
        if all(r == per_rank[0] for r in per_rank):
            ax.plot(range(1, len(per_rank[0]) + 1), per_rank[0], marker="o", label=name, **style)
            continue
        for rank, iters in enumerate(per_rank):
            ax.plot(range(1, len(iters) + 1), iters, marker=".", alpha=0.7, lw=1.2,
                    label=f"{name} (each rank)" if rank == 0 else None, **style)
    ax.set_xlabel("Newton iteration")
    ax.set_ylabel("CG iterations")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


@styled
def seconds_by_rank(runs, phases=("cg", "sync")):
    """Stacked bars: seconds each rank spent in ``phases`` over a run, one panel per run
    (``runs`` from ``tables.gather_run``, with "per_rank" totals); phases in their colours."""
    fig, axes = subplots(len(runs), height=3.8, sharey=True)
    for ax, (name, run) in zip(np.atleast_1d(axes), runs.items()):
        per_rank = run["per_rank"]
        bottom = np.zeros(len(per_rank))
        for k, phase in enumerate(phases):
            values = np.array([t.get(phase, {}).get("seconds", 0.0) for t in per_rank])
            ax.bar(range(len(per_rank)), values, bottom=bottom, label=phase,
                   color=PHASE_COLOURS.get(phase, OTHER_COLOURS[k % len(OTHER_COLOURS)]))
            bottom += values
        ax.set_xticks(range(len(per_rank)))
        ax.set_xlabel("rank")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("seconds")
    np.atleast_1d(axes)[-1].legend()
    fig.tight_layout()
    return fig


def _method_colour(label, runs):
    """The colour of a group of runs: its runs' method's, else its label's, else grey."""
    method = next(iter(filter(None, map(method_of, runs.values()))), None) or method_of(label)
    return _METHOD_COLOURS.get(method, "#7f7f7f")


@styled
def accuracy_by_setting(groups, key="test_accuracy"):
    """Final test accuracy of every run, one column of dots per method, in the method's
    colour: how much does each method depend on its settings? ``groups`` is
    {method: {setting label: result}}; a run that diverged is a cross at 0."""
    fig, ax = subplots(height=4.4)
    x, ticks, labels, handles = 0, [], [], []
    for label, runs in groups.items():
        colour = _method_colour(label, runs)
        for setting, run in runs.items():
            value = run["final"].get(key)
            if value is None:                      # diverged: drawn at the bottom
                ax.plot(x, 0.0, marker="x", color=colour, ms=9, mew=2)
            else:
                ax.plot(x, value, marker="o", color=colour, ms=9)
            ticks.append(x)
            labels.append(setting)
            x += 1
        x += 0.8
        handles.append(Line2D([], [], marker="o", ls="", color=colour, label=label))
    ax.set_xticks(ticks, labels, rotation=40, ha="right")
    ax.set_ylabel(key.replace("_", " ") + " (final)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="lower right")
    fig.tight_layout()
    return fig


@styled
def timeline(trace, title="every rank's time line"):
    """Every rank's phases (wide bars, in the phases' colours) and, above them, its MPI calls
    (thin black bars; where a network is modeled, a red tick where the call's modeled time
    ends) from a Chrome trace (``ledger.trace_events``); the legend names all three."""
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    ranks = sorted({e["pid"] for e in events})
    fig, ax = subplots(height=1.6 + 0.6 * len(ranks))
    modeled = False
    for e in events:
        y, start, width = e["pid"], e["ts"] / 1e3, e["dur"] / 1e3
        if e["tid"] == 0:                             # phases below, calls on top (zorder)
            ax.barh(y, width, left=start, height=0.7, color=PHASE_COLOURS.get(e["name"], "k"),
                    edgecolor="none", zorder=1)
            continue
        ax.barh(y + 0.25, max(width, 1e-3), left=start, height=0.2, color="black", zorder=2)
        if (us := e.get("args", {}).get("modeled_us")) is not None:
            ax.plot([start + us / 1e3] * 2, [y + 0.1, y + 0.4], color="red", lw=1, zorder=3)
            modeled = True
    order = list(PHASE_COLOURS)                                   # the ledger's order
    seen = sorted({e["name"] for e in events if e["tid"] == 0},
                  key=lambda p: (order.index(p) if p in order else len(order), p))
    handles = [Patch(color=PHASE_COLOURS.get(p, "k"), label=p) for p in seen]
    if any(e["tid"] != 0 for e in events):
        handles.append(Line2D([], [], color="black", lw=4, label="MPI call"))
    if modeled:
        handles.append(Line2D([], [], color="red", lw=1, label="modeled end"))
    fits = max(1, int((fig.get_size_inches()[1] - 0.8) / 0.3))     # legend rows that fit
    ax.legend(handles=handles, ncol=-(-len(handles) // fits), loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_yticks(ranks, [f"rank {r}" for r in ranks])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds")
    ax.set_title(title)
    fig.tight_layout()
    return fig


@styled
def message_flow(reports, grid, title="who sends what to whom"):
    """The message log of one step (``lessons.traced_step`` on every rank) as a picture.

    Top: one row per rank (its block of W^m), one column per collective in the order of
    :func:`tables.message_steps`, in its phase's colour. A filled dot is a rank whose part
    carries data; an arrow points at a hollow dot, a rank that only receives the sum (its
    part is zeros).
    A column of filled dots only is a sum that every member adds to and receives.
    Bottom: the bytes of each collective, summed over the ranks taking part.
    """
    steps = message_steps(reports)
    fig, (ax, bars) = subplots(nrows=2, height=2.2 + 0.45 * grid.size,
                               gridspec_kw={"height_ratios": [grid.size, 2.5]}, sharex=True)
    for x, (phase, _, _, ranks, nbytes, senders) in enumerate(steps, 1):
        colour = PHASE_COLOURS.get(phase, "k")
        ax.plot([x, x], [min(ranks), max(ranks)], color=colour, lw=1.5, alpha=0.5)
        ax.scatter([x] * len(senders), senders, s=60, color=colour, zorder=3)
        receivers = sorted(set(ranks) - set(senders))
        ax.scatter([x] * len(receivers), receivers, s=60, facecolor="white", edgecolor=colour,
                   lw=1.5, zorder=3)
        for r in receivers:
            source = min(senders, key=lambda s: abs(s - r), default=r)
            ax.annotate("", xy=(x, r), xytext=(x, source), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.5,
                                        shrinkA=5, shrinkB=5, mutation_scale=14))
        bars.bar(x, nbytes * len(ranks), 0.7, color=colour)
    ax.set_yticks(range(grid.size), [f"rank {p.rank}: $W^{p.m}_{{{p.i}{p.j}}}$"
                                     for p in grid.partitions])
    ax.set_ylim(grid.size - 0.5, -0.5)
    for m in range(1, grid.L):                          # a line between layers
        ax.axhline(max(p.rank for p in grid.partitions if p.m == m) + 0.5, color="0.7", lw=1)
    ax.grid(axis="x", alpha=0.2)
    seen = list(dict.fromkeys(step[0] for step in steps))
    roles = [Line2D([], [], ls="", marker="o", ms=8, color="k", label="sends its part"),
             Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec="k", label="receives")]
    ax.legend(handles=[Patch(color=PHASE_COLOURS.get(p, "k"), label=p) for p in seen] + roles,
              loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title)
    log_axis(bars, "y", label=round_bytes)
    bars.set_ylabel("bytes")
    bars.set_xlabel("collective, in the order they happen")
    bars.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
