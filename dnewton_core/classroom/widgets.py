"""Sliders for a teacher (ipywidgets), and the plain call behind each one.

Every widget redraws by calling a plain function of this module with the sliders' values
(``show_splits``, ``show_sync``). A notebook also calls that function once with fixed values,
so a static render, and nbval, show a result without a live kernel. ``ipywidgets`` is
imported only when a widget is built, and matplotlib (``figures``) only when one draws: the
engines import the classroom too, and need neither.
"""
from .. import costs
from ..newton import NewtonConfig
from ..partition import Grid
from .lessons import train_new
from .tables import gather_run
from .waiting import split_waiting, waiting_table

MAX_SPLIT = 4        # a slider per P_m goes from 1 to min(n_m, MAX_SPLIT)


def show(table):
    """Display ``table`` (HTML in a notebook), or print it outside IPython."""
    try:
        from IPython.display import display
    except ImportError:
        print(table)
        return
    display(table)


def show_figures():
    """Show the figures just drawn, here: inside a widget's output, not after the next cell.

    ipywidgets flushes the inline backend's figures only when matplotlib names it by its
    module path, and matplotlib 3.9 and later call it "inline"; so flush it ourselves (a
    no-op with another backend, or when nothing was drawn)."""
    try:
        from matplotlib_inline.backend_inline import flush_figures
    except ImportError:
        return
    flush_figures()


# -- the splits (notebook 1) -------------------------------------------------------------------

def splits_costs(grid, l, batch_size=4096, subsample=0.05):
    """{phase: {"messages", "bytes"}} of one function evaluation, one gradient (with S) and
    the Jacobian on S, for ``grid`` and ``l`` instances (``costs``, docs/method.md §5)."""
    size = NewtonConfig(subsample=subsample).subsample_size(l)
    return {"function": costs.function(grid, l, batch_size),
            "gradient": costs.gradient(grid, l, size, batch_size),
            "jacobian": costs.jacobian(grid, size, batch_size)}


def show_splits(layers, splits, l, batch_size=4096, ranks=None):
    """Draw the partition of ``layers`` by ``splits`` and print who holds what
    (``Grid.describe``) and the bytes each pass sends. ``ranks``: the engines running, to
    say whether these splits fit them. Prints a one-line error for splits that do not exist."""
    try:
        grid = Grid(tuple(layers), tuple(splits))
    except ValueError as err:
        print(f"error: {err}")
        return
    print(grid.describe(n_instances=l))
    print()
    for phase, cost in splits_costs(grid, l, batch_size).items():
        print(f"{phase:<9} {cost['messages']:>5,} messages  {cost['bytes']:>12,} bytes")
    if ranks is not None and ranks != grid.size:
        print(f"\n{ranks} engines are running; these splits need {grid.size}: "
              f"start {grid.size} to build them")
    from .figures import partition_network
    partition_network(grid)


def splits_widget(layers, l, splits=None, batch_size=4096, ranks=None):
    """One slider per P_m; moving one redraws :func:`show_splits` (nothing runs on the engines)."""
    import ipywidgets as widgets
    splits = splits or (1,) * len(layers)
    sliders = [widgets.IntSlider(value=p, min=1, max=min(n, MAX_SPLIT), description=f"P_{m}",
                                 continuous_update=False, layout=widgets.Layout(width="220px"))
               for m, (n, p) in enumerate(zip(layers, splits))]

    def redraw(**values):
        show_splits(layers, [values[f"P{m}"] for m in range(len(layers))], l, batch_size, ranks)
        show_figures()

    out = widgets.interactive_output(redraw, {f"P{m}": s for m, s in enumerate(sliders)})
    return widgets.VBox([widgets.HBox(sliders), out])


# -- tau and the slow rank (notebook 5) --------------------------------------------------------

def sync_run(cl, data, hidden, tau=1.0, slow_rank=0, seconds=0.05, iters=5):
    """One run of the block-diagonal method on the cluster ``cl`` with rank ``slow_rank``
    sleeping ``seconds`` in each Gauss-Newton product and sync fraction ``tau``; trained with
    ``waits=True`` so that :mod:`waiting` can tell computing from waiting."""
    slow = None if slow_rank is None or seconds <= 0 else (slow_rank, seconds)
    reports = cl.run(train_new, data, hidden, "newton", NewtonConfig(iters=iters), waits=True,
                     gn="diag", sync=tau, slow=slow)
    return gather_run(reports)


def show_sync(runs, slow_rank=None):
    """Show every rank's CG iterations, seconds computing and seconds waiting
    (:func:`waiting.waiting_table`), and draw them as bars, one panel per run."""
    from .figures import seconds_by_rank
    show(waiting_table(runs, slow_rank))
    seconds_by_rank({name: split_waiting(run) for name, run in runs.items()},
                    phases=("computing", "waiting"))


def sync_widget(cl, data, hidden, iters=5):
    """Sliders for tau, the slow rank and its delay; each change trains once (a few seconds)
    and redraws :func:`show_sync`."""
    import ipywidgets as widgets
    n = cl.n
    style = dict(continuous_update=False, layout=widgets.Layout(width="300px"))
    controls = {
        "tau": widgets.SelectionSlider(options=[round(k / n, 4) for k in range(1, n + 1)],
                                       value=1.0, description="tau", **style),
        "slow_rank": widgets.IntSlider(value=0, min=0, max=n - 1, description="slow rank", **style),
        "seconds": widgets.FloatSlider(value=0.05, min=0.0, max=0.2, step=0.01,
                                       description="delay (s)", **style)}

    def redraw(tau, slow_rank, seconds):
        try:
            run = sync_run(cl, data, hidden, tau, slow_rank, seconds, iters)
        except Exception as err:        # shown in the widget as one line, not a traceback
            text = str(err).strip()
            print(f"error: {text.splitlines()[0] if text else type(err).__name__}")
            return
        show_sync({f"tau = {tau}": run}, slow_rank if seconds > 0 else None)
        show_figures()

    out = widgets.interactive_output(redraw, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())), out])
