"""The notebooks' tables (dnewton_core/classroom/tables.py): values as data, shown as text
(print, nbval) and as HTML (a notebook) with units and thousands separators."""
import re

import pytest

from dnewton_core.classroom import tables
from dnewton_core.classroom.tables import Table, exact_bytes, format_bytes, format_seconds


@pytest.mark.parametrize("n, text", [(0, "0 B"), (8, "8 B"), (1234, "1,234 B"), (9999, "9,999 B"),
                                     (10_000, "10.0 kB"), (123_456, "123 kB"),
                                     (999_400, "999 kB"), (999_600, "1.00 MB"),
                                     (30_100_000, "30.1 MB"), (2.5e9, "2.50 GB"),
                                     (1234.6, "1,235 B")])
def test_bytes_read_with_units_and_separators(n, text):
    assert format_bytes(n) == text


def test_exact_bytes_and_seconds():
    assert exact_bytes(30_100_123) == "30,100,123 B"
    assert format_seconds(0.1234) == "0.12 s" and format_seconds(1234.5) == "1,234.50 s"
    assert [tables.round_bytes(x) for x in (10, 1000, 2.5e6)] == ["10 B", "1 kB", "2.5 MB"]


def html_cells(table):
    return [re.sub(r"<[^>]+>", "", cell) for cell in
            re.findall(r"<t[hd][^>]*>.*?</t[hd]>", table._repr_html_())]


def test_a_table_is_data_shown_as_text_and_html():
    t = Table(["step", "phase", "bytes"], [[1, "function", 11496], [2, "a<b", None],
                                           ["", "total", 11496]], [None, None, exact_bytes], totals=1)
    assert t.column("bytes") == [11496, None, 11496]                     # the values, as data
    assert t.records()[0] == {"step": 1, "phase": "function", "bytes": 11496}
    assert str(t).splitlines() == ["step  phase        bytes",
                                   "----  --------  --------",
                                   "   1  function  11,496 B",
                                   "   2  a<b              -",
                                   "----  --------  --------",
                                   "      total     11,496 B"]
    assert repr(t) == str(t)
    html = t._repr_html_()
    assert "a&lt;b" in html and "a<b" not in html
    assert html_cells(t) == ["step", "phase", "bytes", "1", "function", "11,496 B", "2", "a&lt;b",
                             "-", "", "total", "11,496 B"]
    assert html.count('style="text-align:right"') == 2 * 4                # step, bytes columns
    with pytest.raises(ValueError, match="3 cells"):
        Table(["a", "b", "c"], [[1, 2]])


def test_holdings_table_keeps_the_counts_and_shows_their_units():
    reports = [{"rank": r, "mij": (1, r, 0), "W": (32, 16), "b": 16 if r == 0 else None,
                "X": (1437, 32), "Y": None, "param_bytes": 8 * (512 + 16 * (r == 0)),
                "data_bytes": 1437 * 32 * 8} for r in (1, 0)]
    t = tables.holdings_table(reports)
    assert t.column("rank") == [0, 1] and t.column("param bytes") == [4224, 4096]
    text = str(t)
    assert "4,224 B" in text and "367,872 B" in text and "1437x32" in text
    row1 = text.splitlines()[3].split()
    assert row1[:3] == ["1", "(1,", "1,"] and "-" in row1                 # no bias: "-"


def run(bytes_per_iter, cg=(3, 4), objective=1.5, acc=0.9, seconds=1.25):
    history = [{"cg_iters": c, "comm": {"cg": {"bytes": b, "messages": 2}, "evaluate": {"bytes": 9}}}
               for c, b in zip(cg, bytes_per_iter)]
    return {"history": history, "final": {"objective": objective, "train_accuracy": acc,
                                          "test_accuracy": None, "wall_time": seconds}}


def test_runs_and_phase_tables():
    runs = {"newton-full": run([2e6, 4e6]), "sgd": run([0, 0], cg=(None, None))}
    t = tables.runs_table(runs, seconds=True)
    assert t.column("MB/iter") == [3.0, 0.0] and t.column("CG iters") == [7, None]
    lines = str(t).splitlines()
    assert lines[2].split() == ["newton-full", "2", "7", "3.000", "1.5", "0.900", "-", "1.25", "s"]
    assert lines[3].split()[2] == "-"
    p = tables.phase_table(runs)
    assert p.records()[-1] == {"bytes per iteration": "total", "newton-full": 3e6, "sgd": 0}
    assert str(p).splitlines()[2].split() == ["cg", "3.00", "MB", "0", "B"]
    assert tables.phase_table(runs, "messages").column("newton-full") == [2.0, 2.0]


def test_message_table_counts_every_byte():
    trace = [("function", "Allreduce", "layer 1", 11496, True),
             ("function", "Bcast", "world", 80, True)]
    reports = [{"rank": r, "trace": trace} for r in (0, 1)]
    t = tables.message_table(reports, {1437: "l"})
    assert t.column("bytes") == [2 * 11496, 2 * 80, 2 * (11496 + 80)]
    assert t.column("floats")[0] == "l" and t.column("messages")[-1] == 4
    assert str(t).splitlines()[-1].split() == ["total", "4", "23,152", "B"]


def test_message_steps_keep_who_sends_and_who_only_receives():
    forward = [("function", "allreduce", "link(1,0)", 80, True),
               ("function", "allreduce", "world", 8, True)]
    backward = [("gradient", "allreduce", "link(1,0)", 80, False),
                ("gradient", "allreduce", "world", 8, True)]
    receiver = [(p, op, g, n, g == "world") for p, op, g, n, _ in forward]
    sender = [(p, op, g, n, True) for p, op, g, n, _ in backward]
    reports = [{"rank": 0, "trace": forward + backward}, {"rank": 1, "trace": receiver + sender}]
    steps = tables.message_steps(reports)
    assert [(s[0], s[2], s[3], s[5]) for s in steps] == [
        ("function", "link(1,0)", (0, 1), (0,)), ("function", "world", (0, 1), (0, 1)),
        ("gradient", "link(1,0)", (0, 1), (1,)), ("gradient", "world", (0, 1), (0, 1))]
