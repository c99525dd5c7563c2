"""What notebook 0 and notebook 6 read from results/ (``classroom.claims``), the links the
notebooks give, and notebook 5's split of CG time into computing and waiting
(``lessons.mpi_seconds``, ``classroom.waiting``). No MPI: seconds."""
import csv
import json
import re
import time
from pathlib import Path

import pytest

from dnewton_core.classroom import claims, waiting
from dnewton_core.classroom.lessons import mpi_seconds
from dnewton_core.ledger import Ledger, event

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
README = (RESULTS / "README.md").read_text(encoding="utf-8")


# -- claims: the committed results ---------------------------------------------------------------

def test_the_committed_readme_gives_four_claims_each_with_a_verdict():
    overview = claims.overview(RESULTS)
    assert [c.number for c in overview.claims] == [1, 2, 3, 4]
    for c in overview.claims:
        assert c.verdicts and all(v for _, v in c.verdicts), c
        assert f"## Claim {c.number}. {c.title}" in README
        assert c.status in ("reproduced", "not reproduced", "partly")
        assert overview.evidence[c.number], f"claim {c.number}: no measured evidence"
    assert overview.not_run, "the section on what was not reproduced or not run is empty"


def test_every_number_the_overview_shows_is_one_results_readme_gives():
    """The overview computes its numbers from runs.csv; results/README.md was written from
    the same files: the two must agree (a re-run study with a stale README fails here)."""
    text = README.replace(",", "")
    for number, sentences in claims.overview(RESULTS).evidence.items():
        for sentence in sentences:
            for value in re.findall(r"\d+\.\d+", sentence.replace(",", "")):
                if float(value) != 0 and not re.search(rf"(?<![\d.]){re.escape(value)}(?!\d)", text):
                    pytest.fail(f"claim {number}: {value} ({sentence!r}) is not in results/README.md")


def test_the_overview_links_to_files_and_anchors_that_exist():
    overview = claims.overview(RESULTS)
    headings = {claims.anchor(h) for h in claims.sections(README)}
    for c in overview.claims:
        assert c.anchor in headings
        for nb in claims.NOTEBOOKS[c.number]:
            assert (ROOT / "notebooks" / nb).is_file(), nb
        for study in claims.STUDIES[c.number]:
            assert (RESULTS / study / "summary.md").is_file(), study
    table = overview.only(*[c.number for c in overview.claims]).markdown()
    assert table.count("\n") == 1 + len(overview.claims)            # header, rule, one row each
    assert overview.markdown().endswith("- " + overview.not_run[-1])


def test_a_study_table_reads_every_setting_and_counts_divergence():
    table = claims.study_table("fashion-mnist/long", "fashion-mnist/long-others", root=RESULTS)
    rows = {r[0]: r for r in table.rows}
    assert rows["newton-full S=5%"][1] == 3 and "0.8880 ± 0.0023" in rows["newton-full S=5%"]
    with open(RESULTS / "fashion-mnist/long-others/runs.csv") as f:   # the rate that diverges
        lr1 = [r for r in csv.DictReader(f) if r["setting"] == "sgd lr=1"]
    diverged = sum(r["diverged"] == "True" for r in lr1)
    assert diverged and rows["sgd lr=1"][1] == len(lr1)
    assert rows["sgd lr=1"][6] == f"{diverged} of {len(lr1)}" and rows["sgd lr=1"][2] == "1 epoch"
    assert "<th" in table._repr_html_() and "sgd lr=0.01" in str(table) and "816 s" in str(table)
    with pytest.raises(FileNotFoundError, match="no committed study results/nothing"):
        claims.study_table("nothing", root=RESULTS)


# -- claims: a README that changes -------------------------------------------------------------

SMALL = """# Results

## Claim 1. Diagonalization removes the communication inside CG

**Communication: not reproduced.** Text
that goes on.

- **A list item: is not a verdict.**

**Progress: not reproduced here.** A *sentence* with **bold: inside.**

## Claim 2. Subsampling cuts the cost

**Reproduced.**

## What the kit does not reproduce or did not run

- One thing: not run.
- Another
  on two lines.
"""


def test_verdicts_come_from_the_readme_so_a_changed_verdict_shows(tmp_path):
    (tmp_path / "README.md").write_text(SMALL)
    overview = claims.overview(tmp_path)
    one, two = overview.claims
    assert one.verdicts == (("Communication", "not reproduced"), ("Progress", "not reproduced here"))
    assert one.status == "not reproduced" and two.status == "reproduced"
    assert two.verdicts == (("", "Reproduced"),)
    assert overview.not_run == ("One thing: not run.", "Another on two lines.")
    # no study directories here: the evidence names what is missing instead of a number
    assert overview.evidence[1] == ["not measured: no results/fashion-mnist/runs.csv, "
                                    "results/fashion-mnist/long/runs.csv, "
                                    "results/fashion-mnist/long-others/runs.csv"]
    assert "❌ **Communication:** not reproduced<br>**Progress:** not reproduced here" in overview.markdown()
    assert [c.number for c in overview.only(2).claims] == [2]


def test_a_readme_without_claims_or_verdicts_is_a_one_line_error(tmp_path):
    (tmp_path / "README.md").write_text("# Results\n\nNothing yet.\n")
    with pytest.raises(ValueError, match="no '## Claim N. ...' section"):
        claims.overview(tmp_path)
    (tmp_path / "README.md").write_text("## Claim 3. Something\n\nNo verdict here.\n")
    with pytest.raises(ValueError, match="claim 3 has no verdict"):
        claims.overview(tmp_path)
    with pytest.raises(FileNotFoundError, match="no results/README.md"):
        claims.results_dir(tmp_path / "missing")


def test_anchor_and_number_formats():
    assert claims.anchor("§2 The Newton iteration") == "2-the-newton-iteration"
    assert claims.anchor("Claim 3. Early CG termination (sync fraction) cuts the waiting") == \
        "claim-3-early-cg-termination-sync-fraction-cuts-the-waiting"
    assert [claims.megabytes(n) for n in (96, 30_402_200, 390e6, 1_567_042_200)] == \
        ["96 B", "30.4 MB", "390 MB", "1,570 MB"]


# -- the notebooks' links ----------------------------------------------------------------------

def _markdown_sources():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        yield nb, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for md in sorted((ROOT / "notebooks").glob("solutions/*.md")):
        yield md, md.read_text()


def test_every_relative_link_of_the_notebooks_and_solutions_resolves():
    """Files exist, and an anchor into a Markdown file names one of its headings (GitHub's
    anchors, as docs/method.md's own contents list writes them)."""
    checked = 0
    for source, text in _markdown_sources():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue                                              # http:, mailto:
            path, _, fragment = target.partition("#")
            resolved = (source.parent / path).resolve() if path else source
            assert resolved.exists(), f"{source.name}: broken link {target}"
            if fragment and resolved.suffix == ".md":
                text_there = resolved.read_text(encoding="utf-8")
                anchors = {claims.anchor(line.lstrip("#")) for line in text_there.splitlines()
                           if line.startswith("#")}
                assert fragment in anchors, f"{source.name}: no heading #{fragment} in {path}"
            checked += 1
    assert checked > 20


# -- computing and waiting ------------------------------------------------------------------------

def test_mpi_seconds_charges_each_blocking_call_to_the_phase_it_ran_in():
    ledger = Ledger()
    ledger.keep_timeline()

    def call(seconds):
        start = time.time()
        time.sleep(seconds)
        ledger.timeline.append(event("allreduce", "world", 8, start, time.time()))

    with ledger.phase("cg"):
        time.sleep(0.02)                        # computing
        with ledger.phase("sync"):
            call(0.03)
        call(0.01)
    with ledger.phase("line_search"):
        call(0.01)
    spent = mpi_seconds(ledger.timeline)
    assert set(spent) == {"cg", "sync", "line_search"}
    assert 0.03 <= spent["sync"] < 0.03 + 0.02
    assert 0.01 <= spent["cg"] < ledger.seconds["cg"] - 0.02 + 1e-3
    assert mpi_seconds([]) == {}


def _run(per_rank_cg, per_rank_mpi, iters, sync=1.0):
    return {"config": {"sync": sync}, "cg_iters_per_rank": iters,
            "per_rank": [{"cg": {"seconds": s, "mpi_seconds": w}} for s, w in
                         zip(per_rank_cg, per_rank_mpi)]}


def test_split_waiting_and_its_table():
    runs = {"tau = 1.0": _run([0.6, 0.6], [0.0, 0.59], [[3, 4], [1, 1]]),
            "tau = 0.5": _run([0.2, 0.2], [0.0, 0.19], [[1, 1], [1, 1]], sync=0.5)}
    split = waiting.split_waiting(runs["tau = 1.0"])["per_rank"]
    assert split[1]["waiting"]["seconds"] == pytest.approx(0.59)
    assert split[1]["computing"]["seconds"] == pytest.approx(0.01)
    assert waiting.cg_seconds(runs["tau = 0.5"]) == pytest.approx([0.0, 0.19])
    assert waiting.cg_seconds(runs["tau = 0.5"], "computing") == pytest.approx([0.2, 0.01])
    assert waiting.waiting_rows(runs, slow_rank=0)[0] == ("tau = 1.0", "0 (slow)", 7, 0.6, 0.0)
    lines = str(waiting.waiting_table(runs, slow_rank=0)).splitlines()
    assert lines[2].split() == ["tau", "=", "1.0", "2", "of", "2", "0", "(slow)", "7", "0.60", "s",
                                "0.00", "s"]
    assert lines[3].split() == ["1", "2", "0.01", "s", "0.59", "s"]    # run named once
    assert "1 of 2" in lines[4]
    with pytest.raises(ValueError, match="waits=True"):
        waiting.split_waiting({"per_rank": [{"cg": {"seconds": 1.0}}]})


# -- the splits widget's plain call ---------------------------------------------------------------

def test_show_splits_prints_the_plan_and_the_bytes_and_one_line_errors(capsys):
    plt = pytest.importorskip("matplotlib.pyplot")
    from dnewton_core import costs
    from dnewton_core.classroom import widgets
    from dnewton_core.partition import Grid
    layers, l = (64, 16, 16, 10), 1438
    try:
        widgets.show_splits(layers, (4, 1, 1, 1), l, ranks=6)
        out = capsys.readouterr().out
        assert Grid(layers, (4, 1, 1, 1)).describe(n_instances=l) in out
        function = costs.function(Grid(layers, (4, 1, 1, 1)), l, 4096)
        assert f"{function['bytes']:,} bytes" in out and "engines are running" not in out
        assert plt.get_fignums(), "no partition drawn"
        widgets.show_splits(layers, (2, 1, 2, 1), l, ranks=4)
        assert "4 engines are running; these splits need 6" in capsys.readouterr().out
        widgets.show_splits(layers, (1, 0, 1, 1), l)
        out = capsys.readouterr().out
        assert out.startswith("error: ") and out.count("\n") == 1
    finally:
        plt.close("all")


def test_the_splits_widget_has_one_slider_per_layer():
    pytest.importorskip("ipywidgets")
    plt = pytest.importorskip("matplotlib.pyplot")
    from dnewton_core.classroom import widgets
    try:
        box = widgets.splits_widget((64, 16, 16, 10), 1438, splits=(2, 1, 2, 1))
    finally:
        plt.close("all")                  # the widget draws once when it is built
    sliders = box.children[0].children
    assert [s.value for s in sliders] == [2, 1, 2, 1]
    assert [s.max for s in sliders] == [4, 4, 4, 4]
