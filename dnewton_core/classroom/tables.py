"""The notebooks' tables: the engines' answers (``lessons.py``), put in rank order and
checked against the reference. Runs on the client, which loads no MPI library.

Every ``*_table`` returns a :class:`Table`: its values as data, shown as aligned text by
``print`` (and in a terminal, and to nbval) and as an HTML table when a notebook displays
it, both with units and thousands separators (bytes as "1,234 B" or "30.1 MB", seconds as
"0.12 s").
"""
import html
from dataclasses import dataclass

import numpy as np

from .. import reference as ref
from ..ledger import TRAINING_PHASES

# ----------------------------------------------------------------------------- the table

_BYTE_UNITS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def format_bytes(n, exact=False):
    """Bytes for a person: "1,234 B" below 10,000 bytes (or always, with ``exact``), else
    three significant digits of decimal kB, MB, GB or TB ("30.1 MB", "123 kB")."""
    if exact or abs(n) < 10_000:
        return f"{round(n):,} B"
    for unit, name in _BYTE_UNITS:
        value = n / unit
        if abs(value) >= 1 - 5e-4:
            digits = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
            return f"{value:,.{digits}f} {name}"
    return f"{round(n):,} B"


def round_bytes(n):
    """A round number of bytes as short as it goes, for an axis: "10 B", "1 kB", "2.5 MB"."""
    for unit, name in _BYTE_UNITS:
        if abs(n) >= unit:
            return f"{n / unit:g} {name}"
    return f"{n:g} B"


def format_seconds(s):
    """Seconds with their unit: "0.12 s"."""
    return f"{s:,.2f} s"


def exact_bytes(n):
    """Every byte counted: "11,496 B"."""
    return format_bytes(n, exact=True)


def fixed(digits):
    """value -> text with ``digits`` decimals and thousands separators."""
    return lambda v: f"{v:,.{digits}f}"


def significant(digits):
    """value -> text with ``digits`` significant digits."""
    return lambda v: f"{v:.{digits}g}"


def _plain(v):
    return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)


@dataclass(frozen=True)
class Table:
    """A table as data, shown as text or HTML.

    ``header``: the column names; ``rows``: one tuple of values per row (numbers stay
    numbers; None where nothing applies, shown "-"; a string is shown as it is);
    ``formats``: per column, a function value -> text (None: ``str``, integers with
    thousands separators); ``totals``: how many of the last rows are totals (set apart).
    ``str``/``repr`` give aligned text, ``_repr_html_`` an HTML table; columns of
    numbers are right-aligned in both.
    """
    header: tuple
    rows: tuple
    formats: tuple = ()
    totals: int = 0

    def __post_init__(self):
        object.__setattr__(self, "header", tuple(self.header))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        if any(len(r) != len(self.header) for r in self.rows):
            raise ValueError(f"every row needs {len(self.header)} cells")
        formats = tuple(self.formats) + (None,) * (len(self.header) - len(self.formats))
        object.__setattr__(self, "formats", formats)

    def records(self):
        """The rows as [{column: value}]."""
        return [dict(zip(self.header, r)) for r in self.rows]

    def column(self, name):
        """The values of one column, totals included."""
        k = self.header.index(name)
        return [r[k] for r in self.rows]

    def cells(self):
        """The rows as text, cell by cell."""
        return [["-" if v is None else v if isinstance(v, str) else (f or _plain)(v)
                 for v, f in zip(r, self.formats)] for r in self.rows]

    def numeric(self):
        """Per column: True when it holds numbers (right-aligned)."""
        return [any(isinstance(r[k], (int, float, np.number)) and not isinstance(r[k], bool)
                    for r in self.rows) for k in range(len(self.header))]

    def __str__(self):
        cells, right = self.cells(), self.numeric()
        widths = [max(len(c) for c in col) for col in zip(self.header, *cells)]
        line = lambda row: "  ".join(c.rjust(w) if r else c.ljust(w)
                                     for c, w, r in zip(row, widths, right)).rstrip()
        rule = line(["-" * w for w in widths])
        body = [line(c) for c in cells]
        if self.totals:
            body.insert(len(body) - self.totals, rule)
        return "\n".join([line(self.header), rule] + body)

    __repr__ = __str__

    def _repr_html_(self):
        cells, right = self.cells(), self.numeric()
        align = ['style="text-align:right"' if r else 'style="text-align:left"' for r in right]
        head = "".join(f"<th {a}>{html.escape(h)}</th>" for h, a in zip(self.header, align))
        rows = []
        for k, row in enumerate(cells):
            total = k >= len(cells) - self.totals
            style = ' style="border-top:2px solid;font-weight:bold"' if total else ""
            rows.append(f"<tr{style}>" + "".join(f"<td {a}>{html.escape(c)}</td>"
                                                  for c, a in zip(row, align)) + "</tr>")
        return "\n".join(['<table class="dnewton-table" style="font-variant-numeric:tabular-nums">',
                          f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody>",
                          "</table>"])


# ------------------------------------------------------------------ the engines' answers


def gather_run(reports):
    """One run from the per-rank reports of :func:`fit`: rank 0's result, plus
    "per_rank" = [{phase: messages, bytes, seconds}] and "cg_iters_per_rank"."""
    reports = sorted(reports, key=lambda r: r["rank"])
    run = dict(reports[0]["result"])
    run["per_rank"] = [r["totals"] for r in reports]
    run["cg_iters_per_rank"] = [r["cg_iters"] for r in reports]
    return run


def assemble(blocks, grid):
    """The whole vector from per-rank blocks (in rank order), placed by ``grid.param_slices``."""
    out = np.zeros(grid.n_params)
    for rank, block in enumerate(blocks):
        out[grid.param_slices(rank)] = block
    return out


def relative_error(a, b):
    """max |a - b| / max |b|: normwise, as the kit's tests measure."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


def _shape(shape):
    return "-" if shape is None else "x".join(str(s) for s in shape)


def holdings_table(reports):
    """The engines' own account of what they hold, one row per rank."""
    rows = [[r["rank"], "({}, {}, {})".format(*r["mij"]), _shape(r["W"]), r["b"],
             _shape(r["X"]), _shape(r["Y"]), r["param_bytes"], r["data_bytes"]]
            for r in sorted(reports, key=lambda r: r["rank"])]
    return Table(["rank", "(m, i, j)", "W block", "bias", "X held", "Y held", "param bytes",
                  "data bytes"], rows, [None] * 6 + [exact_bytes] * 2)


def holdings_match(reports, grid, n_instances):
    """True when every engine holds exactly what ``grid`` (``Grid.describe``) says it should."""
    for r in reports:
        p = grid.partition(r["rank"])
        want_X = (n_instances, len(p.rows)) if p.holds_features else None
        want_Y = (n_instances, len(p.cols)) if p.holds_labels else None
        data = n_instances * 8 * ((len(p.rows) if p.holds_features else 0)   # X, class
                                  + p.holds_labels)                          # codes
        if ((p.m, p.i, p.j) != tuple(r["mij"]) or tuple(r["W"]) != p.block_shape
                or r["b"] != (len(p.cols) if p.has_bias else None) or r["X"] != want_X
                or r["Y"] != want_Y or r["param_bytes"] != 8 * p.n_params
                or r["data_bytes"] != data):
            return False
    return True


def message_steps(reports):
    """The messages of one step, merged over ranks in the order they happen.

    Every member of a group runs that group's collectives in the same order, so the k-th
    (group, op, bytes) of one rank is the k-th of every other member: one row per such
    collective, ordered consistently with every rank's own order (ties: lowest rank first).
    Returns [(phase, op, group, ranks, bytes per message, senders)]: ``senders`` are the
    ranks whose part carries data; the others take part to receive (zeros to a
    ``Comm.allreduce``, the non-roots of a ``Comm.bcast``, the root of a ``Comm.reduce``).
    """
    sequences, members, senders, phase_of = [], {}, {}, {}
    for r in sorted(reports, key=lambda r: r["rank"]):
        seen, seq = {}, []
        for phase, op, group, nbytes, sends in r["trace"]:
            k = seen[(op, group)] = seen.get((op, group), -1) + 1
            key = (op, group, k)
            seq.append(key)
            members.setdefault(key, []).append(r["rank"])
            senders.setdefault(key, []).extend([r["rank"]] if sends else [])
            phase_of[key] = (phase, nbytes)
        sequences.append(seq)
    after = {key: set() for key in members}          # key -> keys that must come before it
    first = {}
    for seq in sequences:
        for pos, key in enumerate(seq):
            first[key] = min(first.get(key, (pos,)), (pos,))
            if pos:
                after[key].add(seq[pos - 1])
    order, done = [], set()
    while len(order) < len(members):
        ready = [k for k in members if k not in done and after[k] <= done]
        key = min(ready, key=lambda k: (first[k], members[k][0]))
        order.append(key)
        done.add(key)
    return [(phase_of[k][0], k[0], k[1], tuple(members[k]), phase_of[k][1], tuple(senders[k]))
            for k in order]


def message_table(reports, floats_per_row=None):
    """:func:`message_steps` as a table, every byte counted, a last row of totals; with
    ``floats_per_row`` = {rows: label}, a column reads each buffer as rows x columns (e.g.
    {1437: "l", 72: "|S|"})."""
    rows, total_msgs, total_bytes = [], 0, 0
    for step, (phase, op, group, ranks, nbytes, _) in enumerate(message_steps(reports), 1):
        n = nbytes // 8
        shape = str(n)
        for count, label in (floats_per_row or {}).items():
            if n % count == 0 and n >= count:
                shape = f"{label} x {n // count}" if n > count else label
                break
        rows.append([step, phase, f"{op} over {group}", ",".join(map(str, ranks)), shape,
                     nbytes, len(ranks), nbytes * len(ranks)])
        total_msgs += len(ranks)
        total_bytes += nbytes * len(ranks)
    rows.append(["", "total", "", "", "", "", total_msgs, total_bytes])
    return Table(["step", "phase", "collective", "ranks", "floats", "bytes each", "messages",
                  "bytes"], rows, [None] * 5 + [exact_bytes, None, exact_bytes], totals=1)


def measured(reports):
    """{phase: {"messages", "bytes"}} summed over ranks, from :func:`traced_step` reports."""
    out = {}
    for r in reports:
        for phase, d in r["record"].items():
            o = out.setdefault(phase, {"messages": 0, "bytes": 0})
            o["messages"] += d["messages"]
            o["bytes"] += d["bytes"]
    return out


def bytes_per_iteration(run, key="bytes"):
    """{phase: mean bytes (or ``key="messages"``) per iteration (epoch for SGD), summed over
    ranks} of one run."""
    history = run["history"]
    return {p: sum(rec["comm"].get(p, {}).get(key, 0) for rec in history) / len(history)
            for p in TRAINING_PHASES
            if any(rec["comm"].get(p, {}).get(key, 0) for rec in history)}


def _cg_total(run):
    """CG iterations over a run; with one CG per rank (block-diagonal G), each iteration
    counts its slowest rank's."""
    per_rank = run.get("cg_iters_per_rank")
    if per_rank:
        return sum(max(c or 0 for c in iteration) for iteration in zip(*per_rank))
    return sum(rec.get("cg_iters") or 0 for rec in run["history"])


def runs_table(runs, seconds=False):
    """One row per run: iterations, CG iterations (per iteration the slowest rank's, when each
    rank runs its own CG), MB sent per iteration, final f, accuracies.

    Seconds (which vary from run to run) only with ``seconds=True``, shown as "x.xx s".
    """
    header = ["run", "iters", "CG iters", "MB/iter", "final f", "train acc", "test acc"]
    rows = []
    for name, run in runs.items():
        h = run["history"]
        cg_iters = _cg_total(run)
        mb = sum(bytes_per_iteration(run).values()) / 1e6
        f = run["final"]
        row = [name, len(h), cg_iters or None, mb, f["objective"], f["train_accuracy"],
               f["test_accuracy"]]
        if seconds:
            row.append(f["wall_time"])
        rows.append(row)
    return Table(header + (["time"] if seconds else []), rows,
                 [None, None, None, fixed(3), significant(4), fixed(3), fixed(3), format_seconds])


def jacobian_table(factors):
    """The factored Jacobian blocks (:func:`jacobian_factors`), one row per rank."""
    rows = [[r["rank"], "({}, {}, {})".format(*r["mij"]), _shape(r["D"]), _shape(r["z"]),
             r["factored_bytes"], r["dense_bytes"]]
            for r in sorted(factors, key=lambda r: r["rank"])]
    return Table(["rank", "(m, i, j)", "D_ij", "z^{m-1} on S", "bytes kept", "dense J block bytes"],
                 rows, [None] * 4 + [exact_bytes] * 2)


def reference_block_diagonal(theta, X_S, v, C, grid, activation="relu", loss="squared"):
    """The dense oracle of the block-diagonal product on ``grid``'s partitions
    (``reference.block_diagonal_gauss_newton_product``)."""
    blocks = [grid.param_slices(rank) for rank in range(grid.size)]
    return ref.block_diagonal_gauss_newton_product(theta, X_S, v, C, grid.layers, blocks,
                                                   activation, loss)


def phase_table(runs, key="bytes"):
    """Bytes (or ``key="messages"``) per iteration, summed over ranks, by phase, and their
    total; one column per run."""
    per = {name: bytes_per_iteration(run, key) for name, run in runs.items()}
    phases = [p for p in TRAINING_PHASES if any(p in d for d in per.values())]
    rows = [[p] + [per[name].get(p, 0) for name in runs] for p in phases]
    rows.append(["total"] + [sum(per[name].values()) for name in runs])
    fmt = format_bytes if key == "bytes" else fixed(0)
    return Table([f"{key} per iteration"] + list(runs), rows, [None] + [fmt] * len(runs),
                 totals=1)


def directions_table(points):
    """Full against block-diagonal Newton directions (:func:`newton_directions`), one row per
    point: ``points`` is {name: the engines' reports at that point}."""
    rows = []
    for name, reports in points.items():
        r0 = min(reports, key=lambda r: r["rank"])
        rows.append([name, r0["cos"], r0["cos_full_g"], r0["cos_diag_g"], r0["cg_full"],
                     " ".join(str(r["cg_diag"]) for r in sorted(reports, key=lambda r: r["rank"]))])
    return Table(["point", "cos(d_full, d_diag)", "cos(d_full, -g)", "cos(d_diag, -g)",
                  "CG full", "CG diag (each rank)"], rows, [None] + [fixed(3)] * 3)
