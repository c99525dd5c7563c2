"""The kit's figure style (dnewton_core/figures.py) on every figure function: size, dpi,
fonts, one colour per method across figures, plain numbers on log axes, small notebook PNGs."""
import base64
import io
import json
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.text import Text
from PIL import Image

from dnewton_core import figures as style
from dnewton_core.classroom import figures as plots
from dnewton_core.ledger import trace_events
from dnewton_core.partition import Grid
from dnewton_core.study import figures as study_figures

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (64, 16, 16, 10)


def result(optimizer, gn="full", n=6, ranks=4, seed=0):
    """A result as ``experiment.result`` shapes it (the keys the figures read)."""
    rng = np.random.default_rng(seed)
    history = [dict(iter=k, objective=300 * 0.7 ** k + 40, test_accuracy=0.9 * (1 - 0.5 ** k),
                    wall_time=0.1 * k, comm={"cg": {"bytes": 1000 * k}}) for k in range(1, n + 1)]
    return {"config": {"optimizer": optimizer, "gn": gn}, "history": history,
            "final": {"test_accuracy": history[-1]["test_accuracy"]},
            "cg_iters_per_rank": [list(rng.integers(2, 8, n)) for _ in range(ranks)],
            "per_rank": [{"cg": {"seconds": 1.0 + r}, "sync": {"seconds": 0.5}} for r in range(ranks)]}


def trace():
    per_rank = [[dict(name=p, ph="X", tid=0, ts=1e4 * k, dur=1e4) for k, p in
                 enumerate(("function", "gradient", "cg", "sync"))] +
                [dict(name="Allreduce", ph="X", tid=1, ts=5e3, dur=1e3, args={"modeled_us": 900})]
                for _ in range(3)]
    return trace_events(per_rank)


# one forward pass on the grid (2, 1, 2, 1) as the ranks log it: (group, senders, receivers)
FORWARD = (("link(1,0)", (0, 1), (2, 3)), ("link(2,0)", (2,), (4,)), ("link(2,1)", (3,), (5,)),
           ("link(3,0)", (4, 5), ()), ("world", tuple(range(6)), ()))


def forward_reports():
    """``traced_step`` reports of FORWARD: each rank logs the collectives it takes part in."""
    return [{"rank": r, "trace": [("function", "allreduce", group, 8 * 10, r in senders)
                                  for group, senders, receivers in FORWARD
                                  if r in senders + receivers]} for r in range(6)]


RUNS = {"newton-full": result("newton"), "newton-diag": result("newton", "diag")}
CLASSROOM = {
    "partition_network": lambda: plots.partition_network(Grid(LAYERS, (2, 1, 2, 1))),
    "feature_split": lambda: plots.feature_split(Grid(LAYERS, (2, 1, 2, 1)),
                                                 np.random.default_rng(0).random((80, 64)), (8, 8)),
    "bytes_by_phase": lambda: plots.bytes_by_phase({"newton-full": {"function": 800, "cg": 3e6},
                                                    "sgd": {"sgd": 4e4}}),
    "history_curves": lambda: plots.history_curves(RUNS),
    "cg_iterations": lambda: plots.cg_iterations(RUNS),
    "seconds_by_rank": lambda: plots.seconds_by_rank(RUNS),
    "accuracy_by_setting": lambda: plots.accuracy_by_setting(
        {"Newton": {"a": result("newton")}, "SGD": {"b": result("sgd"), "c": result("sgd")}}),
    "timeline": lambda: plots.timeline(trace()),
    "message_flow": lambda: plots.message_flow(forward_reports(), Grid(LAYERS, (2, 1, 2, 1))),
}


def study_figure(monkeypatch, draw):
    """The Figure a study figure function saves (its file write replaced by a capture)."""
    kept = []
    monkeypatch.setattr(study_figures, "_save", lambda fig, *a, **k: kept.append(fig))
    draw()
    return kept[0]


STUDY = {
    "accuracy_against_time": lambda: study_figures.accuracy_against_time(
        {"newton-full": result("newton"), "sgd": result("sgd")}, "x.png"),
    "accuracy_time_panels": lambda: study_figures.accuracy_time_panels(
        {"newton-full": {"|S| = 5%": ([1, 2], [0.5, 0.6])}, "sgd": {"lr = 0.1": ([1, 2], [0.4, 0.7])},
         "newton-diag": {"|S| = 5%": ([1, 2], [0.3, 0.5])}}, "x.png"),
    "robustness_strip": lambda: study_figures.robustness_strip(
        [("newton-full", "|S| = 5%", [0.8, 0.81], [False, False]),
         ("sgd", "lr = 0.1", [0.7, None], [False, True])], "x.png"),
    "projection_figure": lambda: study_figures.projection_figure(
        json.loads((ROOT / "results/projection/fashion-mnist.json").read_text()), "x.png"),
}


def drawn_texts(fig):
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.fixture
def figure(request, monkeypatch):
    kind, name = request.param
    fig = CLASSROOM[name]() if kind == "classroom" else study_figure(monkeypatch, STUDY[name])
    yield fig
    plt.close(fig)


@pytest.mark.parametrize("figure", [("classroom", n) for n in CLASSROOM] +
                         [("study", n) for n in STUDY], indirect=True, ids=lambda p: p[1])
def test_every_figure_has_the_style_size_dpi_and_fonts(figure):
    assert figure.dpi == style.DPI >= 100
    assert figure.get_size_inches()[0] == style.WIDTH
    small = [(t.get_text(), t.get_fontsize()) for t in drawn_texts(figure)
             if t.get_fontsize() < style.SMALLEST_FONT]
    assert not small, f"text under {style.SMALLEST_FONT} pt: {small[:5]}"


def line_colours(fig):
    return {line.get_label(): to_hex(line.get_color())
            for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_a_method_has_one_colour_in_every_figure(monkeypatch):
    sgd, full = style.METHOD_COLOURS["sgd"], style.METHOD_COLOURS["newton-full"]
    runs = {"SGD, lr = 0.1": result("sgd"), "Newton (default)": result("newton")}
    curves = plots.history_curves(runs)                        # known by the runs' configs
    assert line_colours(curves) == {"SGD, lr = 0.1": sgd, "Newton (default)": full}
    bars = plots.bytes_by_phase({"sgd": {"sgd": 10.0}, "newton-full": {"cg": 100.0}})
    colours = {bar.get_label(): to_hex(bar.patches[0].get_facecolor())
               for bar in bars.axes[0].containers}
    assert colours == {"sgd": sgd, "newton-full": full}        # known by the runs' names
    saved = study_figure(monkeypatch, lambda: study_figures.accuracy_against_time(
        {"sgd": result("sgd"), "newton-full": result("newton")}, "x.png"))
    assert line_colours(saved) == {"sgd": sgd, "newton-full": full}
    for fig in (curves, bars, saved):
        plt.close(fig)


def test_the_settings_of_one_method_are_shades_of_its_colour():
    shades = style.variant_colours("newton-diag", 5)
    assert shades[0] == style.METHOD_COLOURS["newton-diag"] and len(set(shades)) == 5
    styles = style.run_styles({"lr = 0.1": result("sgd"), "lr = 1": result("sgd"),
                               "|S| = 5%": result("newton")})
    assert [s["color"] for s in styles.values()] == [*style.variant_colours("sgd", 2),
                                                     style.METHOD_COLOURS["newton-full"]]
    assert styles["lr = 0.1"]["ls"] != styles["lr = 1"]["ls"]
    assert style.method_of("newton-diag tau = 0.5") == "newton-diag"
    assert style.method_of({"config": {"optimizer": "newton", "gn": "diag"}}) == "newton-diag"
    assert style.method_of("|S| = 5%") is None


def tick_labels(fig, ax_index=0, which="y"):
    fig.canvas.draw()
    axis = fig.axes[ax_index].yaxis if which == "y" else fig.axes[ax_index].xaxis
    return [t.get_text() for t in axis.get_ticklabels(which="both") if t.get_text()]


def test_log_axes_read_as_plain_numbers():
    bars = plots.bytes_by_phase({"newton-full": {"function": 800, "cg": 3e6}})
    labels = tick_labels(bars)
    assert {"1 kB", "1 MB"} <= set(labels), labels
    curves = plots.history_curves(RUNS, ys=("objective",))      # 40 to 250: under a decade
    labels = tick_labels(curves)
    assert "100" in labels and "50" in labels, labels
    for label in labels + tick_labels(bars):
        assert "$" not in label and "10^" not in label and "e" not in label, label
    assert [style.plain_number(x) for x in (0.001, 0.5, 20.0, 1000.0, 1e7)] == \
        ["0.001", "0.5", "20", "1,000", "10,000,000"]
    plt.close(bars)
    plt.close(curves)


def test_a_notebook_shows_a_kit_figure_as_a_small_palette_png(monkeypatch):
    registered = {}
    formatter = types.SimpleNamespace(for_type=lambda cls, f: registered.setdefault(cls, f))
    shell = types.SimpleNamespace(display_formatter=types.SimpleNamespace(
        formatters={"image/png": formatter}))
    monkeypatch.setitem(__import__("sys").modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: shell))
    fig = plots.history_curves(RUNS)
    assert isinstance(fig, style.KitFigure) and registered == {style.KitFigure: style.notebook_png}
    png = base64.b64decode(style.notebook_png(fig))
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P" and len(image.getcolors(style.PALETTE + 1)) <= style.PALETTE
    assert 0.9 * style.WIDTH * style.DPI < image.size[0] <= style.WIDTH * style.DPI
    full = io.BytesIO()
    fig.savefig(full, format="png", bbox_inches="tight")
    assert len(png) < 0.7 * len(full.getvalue())
    plt.close(fig)


def test_the_message_flow_points_an_arrow_at_every_rank_that_only_receives():
    fig = plots.message_flow(forward_reports(), Grid(LAYERS, (2, 1, 2, 1)))
    flow = fig.axes[0]
    arrows = [(a.xy, a.xyann) for a in flow.texts if a.arrow_patch is not None]
    # (column, receiver) <- (column, nearest sender): 1 -> 2 and 1 -> 3, 2 -> 4, 3 -> 5
    assert sorted(arrows) == [((1, 2), (1, 1)), ((1, 3), (1, 1)), ((2, 4), (2, 2)),
                              ((3, 5), (3, 3))]
    hollow = [tuple(map(tuple, c.get_offsets())) for c in flow.collections
              if len(c.get_offsets()) and to_hex(c.get_facecolor()[0]) == "#ffffff"]
    assert sorted(p for points in hollow for p in points) == sorted(
        (float(x), float(r)) for x, (_, _, receivers) in enumerate(FORWARD, 1) for r in receivers)
    plt.close(fig)


def test_the_timeline_draws_the_calls_above_the_phases_and_names_them():
    """A teacher found the MPI calls hidden under the phases and the red ticks unexplained."""
    fig = plots.timeline(trace())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["function", "gradient", "cg", "sync", "MPI call", "modeled end"]
    calls = [p for p in ax.patches if round(p.get_height(), 6) == 0.2]
    phases = [p for p in ax.patches if round(p.get_height(), 6) == 0.7]
    assert len(calls) == 3 and len(phases) == 12
    assert min(c.zorder for c in calls) > max(p.zorder for p in phases)
    plt.close(fig)
    assert len({style.PHASE_COLOURS[p] for p in ("evaluate", "report", "function")}) == 3


def test_a_figure_format_is_checked_before_anything_is_written(monkeypatch):
    """project --figure: a suffix matplotlib cannot write here is refused up front, PGF
    too where its TeX system is missing (it failed after the --json was written)."""
    style.check_format("p.png"), style.check_format("p.svg"), style.check_format("p")
    with pytest.raises(ValueError, match=r"matplotlib writes no \.txt files here"):
        style.check_format("p.txt")
    monkeypatch.setattr(style.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"no \.pgf files here \(it writes .*\.png"):
        style.check_format("p.pgf")
