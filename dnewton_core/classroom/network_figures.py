"""Notebook 7's figures (the network, docs/method.md §8), in the kit's style
(``dnewton_core.figures``); each function returns a Figure. The time line of every rank is
``figures.timeline``."""
import numpy as np
from matplotlib.patches import Patch

from ..figures import METHOD_COLOURS, PHASE_COLOURS, log_axis, machines_lines, styled, subplots


@styled
def phase_stack(per_method, title="one Newton iteration, by phase"):
    """Stacked bars, one per method: per phase its computing (solid) and its modeled
    network time (hatched), seconds per iteration. ``per_method``: {method: {phase:
    (computing, network)}} (``network.phase_seconds``)."""
    fig, ax = subplots(height=4.4)
    phases = list(dict.fromkeys(p for d in per_method.values() for p in d))
    for x, d in enumerate(per_method.values()):
        bottom = 0.0
        for p in phases:
            compute, network = d.get(p, (0.0, 0.0))
            colour = PHASE_COLOURS.get(p, "#7f7f7f")
            ax.bar(x, 1e3 * compute, 0.6, bottom=bottom, color=colour, edgecolor="white")
            ax.bar(x, 1e3 * network, 0.6, bottom=bottom + 1e3 * compute, color=colour,
                   alpha=0.45, hatch="//", edgecolor="white")
            bottom += 1e3 * (compute + network)
        ax.text(x, bottom, f"{bottom:.3g} ms", ha="center", va="bottom")
    ax.set_xticks(range(len(per_method)), list(per_method))
    ax.set_ylabel("milliseconds per iteration")
    handles = [Patch(color=PHASE_COLOURS.get(p, "#7f7f7f"), label=p) for p in phases]
    handles += [Patch(facecolor="white", edgecolor="black", label="computing"),
                Patch(facecolor="white", edgecolor="black", hatch="//", label="network")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


@styled
def projection_lines(rows_by_network, title="projection to many machines"):
    """Seconds per Newton iteration (full, diagonal G) and per SGD epoch against machines,
    one line style per network. ``rows_by_network``: {name: ``projection.project`` rows}."""
    fig, ax = subplots(height=4.6)
    machines_lines(ax, rows_by_network, "seconds per iteration / epoch")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@styled
def crossover_curve(latencies, full, diag, tie=None, chosen=None,
                    title="seconds to the target accuracy"):
    """Seconds each method needs to reach a test accuracy against the latency (log axes),
    the tie as a dotted line and the chosen network's latency as a grey one."""
    fig, ax = subplots(height=4.2)
    us = 1e6 * np.asarray(latencies)
    ax.plot(us, full, color=METHOD_COLOURS["newton-full"], label="newton-full")
    ax.plot(us, diag, color=METHOD_COLOURS["newton-diag"], label="newton-diag")
    if tie is not None:
        ax.axvline(1e6 * tie, color="black", ls=":", lw=1.5, label=f"tie, {1e6 * tie:.3g} us")
    if chosen is not None:
        ax.axvline(1e6 * chosen, color="gray", lw=1, label="chosen network")
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.set_xlabel("latency alpha (us)")
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig
