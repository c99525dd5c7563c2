"""The kit's figure style, shared by the study's and the classroom's figures.

One look for every figure, sized to be projected: ``WIDTH`` inches wide at ``DPI`` dots
per inch (``WIDTH * DPI`` pixels, a notebook's output width), fonts of at least 11 pt at
that size, one colour per method everywhere (``METHOD_COLOURS``; the settings of one
method in shades of its colour), one per phase (``PHASE_COLOURS``), and log axes labelled
with plain numbers (0.01, 1, 1,000; not 10^-2). Every figure function runs inside
``styled`` and makes its figure with ``subplots``: a ``KitFigure``, which a notebook shows
as a PNG of at most ``PALETTE`` colours (the same picture in about a third of the bytes,
so the executed notebooks stay small in git).
"""
import base64
import functools
import io
import math
import os
import shutil
import sys

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, LogLocator
from PIL import Image  # matplotlib's own PNG writer (a dependency of it)

from .outputs import atomic_path

DPI = 100              # dots per inch, on screen and in files
WIDTH = 9.0            # inches: every figure is WIDTH * DPI = 900 pixels wide
HEIGHT = 4.0           # inches: the usual height (a figure may be taller)
SMALLEST_FONT = 11     # points, at the figure's size: tick labels, legends, labels in a plot
PALETTE = 256          # colours of a figure's PNG in a notebook
STYLE = {
    "figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (WIDTH, HEIGHT),
    "figure.facecolor": "white", "savefig.facecolor": "white",
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "figure.titlesize": 14,
    "xtick.labelsize": SMALLEST_FONT, "ytick.labelsize": SMALLEST_FONT,
    "legend.fontsize": SMALLEST_FONT, "legend.title_fontsize": SMALLEST_FONT,
    "lines.linewidth": 2.0, "lines.markersize": 6, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
}

# One colour per method, in every figure of the kit (tab10's first three).
METHOD_COLOURS = {"newton-full": "#1f77b4", "newton-diag": "#ff7f0e", "sgd": "#2ca02c"}
# One colour per phase (ledger.PHASES), none of them a method's; and a rank's CG time split
# into computing and waiting (classroom.waiting) in the colours of cg and sync.
PHASE_COLOURS = {"function": "#7f7f7f", "gradient": "#9467bd", "jacobian": "#8c564b",
                 "cg": "#17becf", "sync": "#d62728", "line_search": "#bcbd22", "sgd": "#e377c2",
                 "evaluate": "#c7c7c7", "report": "#ececec", "setup": "#ececec",
                 "computing": "#17becf", "waiting": "#d62728"}
# Runs of no known method: colours that are neither a method's nor black.
OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def styled(function):
    """Run a figure function inside the kit's style (``STYLE``): the figures, texts and
    lines it makes take the style's size, dpi and fonts."""
    @functools.wraps(function)
    def inner(*args, **kwargs):
        with plt.rc_context(STYLE):
            return function(*args, **kwargs)
    return inner


class KitFigure(Figure):
    """A Figure of the kit: in a notebook (IPython), shown by ``notebook_png``."""


def notebook_png(fig):
    """``fig`` as a notebook shows it, base64: a PNG cropped to its content (as IPython's
    inline backend crops it) at the figure's dpi, in at most ``PALETTE`` colours."""
    raw = io.BytesIO()
    fig.canvas.print_figure(raw, format="png", dpi=fig.dpi, bbox_inches="tight",
                            facecolor=fig.get_facecolor())
    image = Image.open(raw).convert("RGB").quantize(PALETTE, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _show_in_notebooks():
    """Inside IPython, show every ``KitFigure`` through ``notebook_png`` (a printer for the
    subclass wins over the inline backend's printer for Figure)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(KitFigure, notebook_png)


def subplots(ncols=1, height=HEIGHT, nrows=1, **kwargs):
    """(KitFigure, axes) of ``nrows`` by ``ncols`` panels, ``WIDTH`` by ``height`` inches,
    at ``DPI``."""
    _show_in_notebooks()
    return plt.subplots(nrows, ncols, figsize=(WIDTH, height), dpi=DPI, FigureClass=KitFigure,
                        **kwargs)


def check_format(path):
    """ValueError unless matplotlib writes the format ``path``'s suffix names (none: PNG)
    here: PGF only where its TeX system is installed."""
    suffix = os.path.splitext(path)[1][1:]
    formats = Figure().canvas.get_supported_filetypes()
    if not shutil.which(plt.rcParams["pgf.texsystem"]):
        formats.pop("pgf", None)
    if suffix and suffix.lower() not in formats:
        raise ValueError(f"cannot write a figure to {path}: matplotlib writes no .{suffix} "
                         f"files here (it writes {', '.join('.' + f for f in sorted(formats))})")


def save(fig, path, title="", replace=True):
    """Write ``fig`` to ``path`` (PNG) atomically (``outputs.atomic_path``; with
    ``replace=False`` a file that appeared meanwhile is a FileExistsError) and free it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path, replace) as tmp:
            fig.savefig(tmp, dpi=DPI, format=os.path.splitext(path)[1][1:] or "png")
    finally:
        plt.close(fig)
    return path


def rank_colours(n):
    """One colour per MPI rank, the same in every figure."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(k % cmap.N) for k in range(n)]


# ----------------------------------------------------------------------- methods' colours

def method_of(run_or_label):
    """"newton-full", "newton-diag" or "sgd": of a result (its config's "optimizer" and
    "gn") or of a label that starts with the method ("sgd lr = 0.1", "Newton (default)",
    "newton-diag, tau = 0.5"); None for anything else."""
    if isinstance(run_or_label, dict):
        config = run_or_label.get("config") or {}
        if config.get("optimizer") == "sgd":
            return "sgd"
        if config.get("optimizer") == "newton":
            return f"newton-{config.get('gn') or 'full'}"
        return None
    label = str(run_or_label).lower()
    if label.startswith("sgd"):
        return "sgd"
    if label.startswith("newton"):
        return "newton-diag" if "diag" in label else "newton-full"
    return None


def shade(colour, amount):
    """``colour`` mixed towards black (``amount`` < 0) or white (> 0) by |amount| in [0, 1]."""
    target = 0.0 if amount < 0 else 1.0
    return to_hex([c + (target - c) * abs(amount) for c in to_rgb(colour)])


def variant_colours(method, n):
    """n colours for n settings of ``method``: its own colour first, then alternately
    darker and lighter shades of it."""
    half = max(1, math.ceil((n - 1) / 2))
    return [shade(METHOD_COLOURS[method], 0.0 if k == 0 else
                  (-0.55 if k % 2 else 0.6) * ((k + 1) // 2) / half) for k in range(n)]


def run_styles(runs):
    """{name: dict(color, ls, marker)} for ``runs`` ({name: result, or anything for a run
    known by its name only}): every run of a method in a shade of that method's colour,
    its k-th setting in the k-th line style and marker; a run of no known method in
    ``OTHER_COLOURS``."""
    methods = {name: method_of(run) if method_of(run) else method_of(name)
               for name, run in runs.items()}
    out, others = {}, 0
    for method in dict.fromkeys(methods.values()):
        names = [name for name, m in methods.items() if m == method]
        if method is None:
            colours = [OTHER_COLOURS[(others + k) % len(OTHER_COLOURS)] for k in range(len(names))]
            others += len(names)
        else:
            colours = variant_colours(method, len(names))
        for k, (name, colour) in enumerate(zip(names, colours)):
            out[name] = dict(color=colour, ls=LINE_STYLES[k % len(LINE_STYLES)],
                             marker=MARKERS[k % len(MARKERS)])
    return out


# ------------------------------------------------------------------------- log axes

def plain_number(x):
    """A tick value as a person writes it: "0.001", "20", "1,000" (scientific notation
    only below 1e-6 or from 1e9)."""
    if x == 0:
        return "0"
    if not 1e-6 <= abs(x) < 1e9:
        return f"{x:.3g}"
    text = f"{x:,.6f}".rstrip("0").rstrip(".")
    return text


class PlainLogFormatter(Formatter):
    """Labels of a log axis through ``label`` (``plain_number`` unless given, e.g. bytes
    as "10 kB"). With ``minor=True`` it labels the minor ticks at 2 and 5 times a power of
    ten, and only on an axis spanning less than three decades, where few majors show."""

    def __init__(self, label=None, minor=False):
        self.label = label or plain_number
        self.minor = minor

    def __call__(self, x, pos=None):
        if x <= 0:
            return ""
        if self.minor:
            low, high = sorted(self.axis.get_view_interval())
            mantissa = x / 10 ** math.floor(math.log10(x) + 1e-9)
            if low <= 0 or high / low >= 1000 or min(abs(mantissa - 2), abs(mantissa - 5)) > 1e-6:
                return ""
        return self.label(x)


def log_axis(ax, which="y", label=None, base=10):
    """Make ``ax``'s x or y axis logarithmic (``base``) with plain-number tick labels
    (``PlainLogFormatter``; ``label`` formats a value, e.g. as bytes)."""
    (ax.set_yscale if which == "y" else ax.set_xscale)("log", base=base)
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(LogLocator(base=base))
    axis.set_major_formatter(PlainLogFormatter(label))
    if base == 10:
        axis.set_minor_locator(LogLocator(base=base, subs=(2, 3, 4, 5, 6, 7, 8, 9)))
        axis.set_minor_formatter(PlainLogFormatter(label, minor=True))
    else:
        axis.set_minor_formatter(PlainLogFormatter(lambda x: ""))


def machines_lines(ax, rows_by_network, ylabel):
    """A projection on ``ax``: seconds against machines, one colour per method and one line
    style per network (``rows_by_network``: {network: the projection's rows})."""
    styles = ["-", "--", ":", "-."]
    for k, (name, rows) in enumerate(rows_by_network.items()):
        rows = [r for r in rows if r.get("splits")]
        for method, colour in METHOD_COLOURS.items():
            ax.plot([r["machines"] for r in rows], [r[method + " seconds"] for r in rows],
                    styles[k % len(styles)], marker="o", ms=4, color=colour,
                    label=f"{method}, {name}")
    log_axis(ax, "x", base=2)
    log_axis(ax, "y")
    ax.set_xlabel("machines (one rank each)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
