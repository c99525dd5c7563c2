"""The reproduction study (``python -m dnewton_core reproduce --quick``), as a user runs it.

Two launches, each a subprocess in its own process group with a timeout (a hang fails the
test instead of freezing CI), in a tmp_path: under ``mpiexec -n 4`` and on one process. The
tests read what they wrote: runs.csv (rows, columns, bytes that add up, the full and the
diagonal Gauss-Newton's CG bytes, diverged SGD kept), curves.csv, the table of summary.md,
the figures; a third launch must refuse to overwrite. The pure parts (grid, settings,
aggregation, table) are tested in-process.
"""
import csv
import datetime
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from dnewton_core import options
from dnewton_core.environment import LaunchError, find_mpiexec, local_environment
from dnewton_core.ledger import LEDGER_PHASES
from dnewton_core.network import parse_network
from dnewton_core.study import across, modeled, provenance, records, report, wording
from dnewton_core.study import settings as plan

ROOT = Path(__file__).resolve().parent.parent
QUICK_LIMIT = 120            # seconds: the promise of --quick (on 2 cores)
TIMEOUT = 180                # a launch that takes longer is a hang


def _mpiexec():
    """The launcher of local runs (environment.find_mpiexec), or None if there is none."""
    try:
        return find_mpiexec()
    except LaunchError:
        return None


MPIEXEC = _mpiexec()


def launch(args, n=None, timeout=TIMEOUT):
    """Run ``python -m dnewton_core ARGS`` (under mpiexec -n n if given): rc, out, err, s."""
    cmd = [sys.executable, "-m", "dnewton_core", *args]
    if n:
        cmd = [MPIEXEC, "-n", str(n), *cmd]
    env = local_environment()          # one BLAS thread per rank, MPI on loopback only
    tic = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s\n{out[-2000:]}\n{err[-2000:]}")
    return proc.returncode, out, err, time.perf_counter() - tic


@pytest.fixture(scope="module")
def quick4(tmp_path_factory):
    if MPIEXEC is None:
        pytest.skip("no mpiexec next to python or on PATH")
    out_dir = tmp_path_factory.mktemp("quick4") / "study"
    rc, out, err, seconds = launch(["reproduce", "--quick", "--out", str(out_dir),
                                    "--network", *NETWORKS], n=4)
    assert rc == 0, f"exit {rc}\n{out[-3000:]}\n{err[-3000:]}"
    return out_dir, out, seconds


@pytest.fixture(scope="module")
def quick1(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("quick1") / "study"
    rc, out, err, seconds = launch(["reproduce", "--quick", "--out", str(out_dir)])
    assert rc == 0, f"exit {rc}\n{out[-3000:]}\n{err[-3000:]}"
    return out_dir, out, seconds


NETWORKS = ("10gbe", "1gbe")         # quick4 is charged on both at once (model mode)
DIAG_SETTINGS = {"newton-diag S=5% sync=1", "newton-diag S=5% sync=0.5",
                 "newton-diag S=5% sync=1 rescale", "newton-diag S=5% sync=0.5 rescale"}
QUICK_SETTINGS = {"newton-full S=5%", "sgd lr=0.001", "sgd lr=0.1", "sgd lr=1"} | DIAG_SETTINGS


# --------------------------------------------------------------------------- under mpiexec -n 4

def test_quick_finishes_in_time_and_reports_each_run(quick4):
    _, out, seconds = quick4
    assert seconds < QUICK_LIMIT
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert len(progress) == 16 and progress[-1].startswith("[ 16/16]")   # 2 diag steps
    sgd = [line for line in progress if " sgd lr=" in line]              # no CG to show
    assert sgd and not any("(CG" in line for line in sgd)
    assert all("(CG" in line for line in progress if "newton" in line)
    assert all(", 1 epoch," in line for line in sgd if "DIVERGED" in line)
    assert re.search(r"\(\d+\.\d+ (s|min)\)$", out.strip().splitlines()[-1])


def test_durations_read_as_seconds_or_minutes_and_never_as_zero():
    assert [wording.duration(s) for s in (0.0312, 0.5, 4.24, 59.9, 75.0, 5400)] == \
        ["0.031 s", "0.5 s", "4.2 s", "59.9 s", "1.2 min", "90.0 min"]
    assert wording.duration(None) == "–" and wording.count(1, "epoch") == "1 epoch"


def test_runs_csv_has_a_row_per_run_and_every_column(quick4):
    rows = records.read_runs(quick4[0] / "runs.csv")
    assert list(rows[0]) == records.RUN_COLUMNS + modeled.columns(
        [parse_network(n) for n in NETWORKS])
    assert len(rows) == 2 * len(QUICK_SETTINGS)
    assert {r["setting"] for r in rows} == QUICK_SETTINGS
    for label in QUICK_SETTINGS:
        assert sorted(r["seed"] for r in rows if r["setting"] == label) == [0, 1]
    for r in rows:
        assert r["data"] == "digits" and r["network"] == "64-64-64-10"
        assert r["ranks"] == 4 and r["splits"] == "2,1,1,1"
        assert 0 <= r["test_accuracy"] <= 1 and r["wall_time"] > 0
        assert r["step"] == (r["setting"].split()[-1] if r["setting"].endswith("rescale")
                             else "none" if r["method"] == "newton-diag" else None)
        if r["method"] == "sgd":
            assert r["lr"] is not None and r["subsample"] is None and r["unit"] == "epoch"
            assert r["cg_iters"] is None
        else:
            assert r["lr"] is None and r["subsample"] == 0.05 and r["iterations"] == 8
            assert r["cg_iters"] >= r["iterations"]


def _git_head():
    """This checkout's commit as git abbreviates it to 7 digits, or None outside a checkout."""
    try:
        got = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=7", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return got.stdout.strip() if got.returncode == 0 else None


def test_each_run_records_when_and_with_which_code(quick4):
    """runs.csv's provenance: one part, the checkout's commit (or the package's version),
    start times in run order within the launch, the niceness the launch inherited."""
    rows = records.read_runs(quick4[0] / "runs.csv")
    head, started = _git_head(), [datetime.datetime.fromisoformat(r["started"]) for r in rows]
    assert {r["part"] for r in rows} == {1}
    assert {r["code"] for r in rows} <= ({head, head + "-dirty"} if head else
                                         {"dnewton_core " + version("dnewton_core")})
    assert started == sorted(started) and started[0].tzinfo is not None
    assert (started[-1] - started[0]).total_seconds() < QUICK_LIMIT
    assert {r["nice"] for r in rows} == {os.nice(0)}
    assert all(isinstance(r["load"], float) and r["load"] >= 0 for r in rows)
    assert f"part 1, runs 1-{len(rows)} from {rows[0]['started']}" in \
        (quick4[0] / "summary.md").read_text()


def _fake_git(tracked=True, changes=""):
    """subprocess.run as git answers in a checkout of the kit (``tracked``) or in another
    repository, with ``changes`` as ``git status --porcelain`` prints them."""
    def run(cmd, **kwargs):
        if "ls-files" in cmd:
            return subprocess.CompletedProcess(cmd, 0 if tracked else 1, stdout="")
        return subprocess.CompletedProcess(cmd, 0, stdout="abcdef1\n" if "rev-parse" in cmd
                                           else changes)
    return run


def test_code_version_of_a_checkout_says_when_the_kit_has_changes(monkeypatch):
    for changes, code in (("", "abcdef1"), (" M dnewton_core/cg.py\n", "abcdef1-dirty"),
                          ("?? dnewton_core/new.py\n", "abcdef1-dirty")):
        monkeypatch.setattr(provenance.subprocess, "run", _fake_git(changes=changes))
        assert provenance.code_version() == code


def test_code_version_outside_a_checkout_of_the_kit_is_the_package_version(monkeypatch):
    """Without git, or installed inside another repository (git answers rev-parse but does
    not track the kit's files): the package's version, never someone else's commit."""
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    package = "dnewton_core " + version("dnewton_core")
    for fake in (no_git, _fake_git(tracked=False)):
        monkeypatch.setattr(provenance.subprocess, "run", fake)
        assert provenance.code_version() == package


def test_read_runs_keeps_texts_as_written(tmp_path):
    """A commit such as 1e05432 or 1234567 stays text (float() would read 1e05432 as inf)."""
    path = tmp_path / "runs.csv"
    path.write_text("run,method,code,started,load\n"
                    "1,sgd,1e05432,2026-11-27T23:15:18+00:00,3.5\n2,sgd,1234567,,\n")
    rows = records.read_runs(path)
    assert [r["code"] for r in rows] == ["1e05432", "1234567"]
    assert rows[0]["load"] == 3.5 and rows[1]["started"] is None


def test_bytes_add_up_by_phase(quick4):
    for r in records.read_runs(quick4[0] / "runs.csv"):
        training = sum(r[f"bytes_{p}"] for p in LEDGER_PHASES if p not in ("evaluate", "report"))
        assert r["bytes_total"] == training > 0
        assert r["bytes_evaluate"] > 0                  # the accuracy checks: measured, not counted
        if r["method"] == "sgd":
            assert r["bytes_sgd"] > 0 and r["bytes_cg"] == 0 and r["bytes_jacobian"] == 0
        else:
            assert r["bytes_sgd"] == 0 and r["bytes_jacobian"] > 0
        assert (r["bytes_sync"] > 0) == (r["method"] == "newton-diag" and r["sync"] < 1)


def test_diagonal_gauss_newton_sends_almost_nothing_in_cg(quick4):
    rows = records.read_runs(quick4[0] / "runs.csv")
    for seed in (0, 1):
        full = next(r for r in rows if r["setting"] == "newton-full S=5%" and r["seed"] == seed)
        for r in rows:
            if r["method"] == "newton-diag" and r["seed"] == seed:
                # only the scalars g'd, d'r, d'd after CG: no |S| x n_L allreduce per CG step
                assert r["bytes_cg"] < 1e-3 * full["bytes_cg"]
                assert r["bytes_cg"] <= 3 * 8 * 4 * r["iterations"]


def test_diverged_sgd_is_kept_as_a_result(quick4):
    rows = records.read_runs(quick4[0] / "runs.csv")
    big = [r for r in rows if r["setting"] == "sgd lr=1"]
    assert len(big) == 2 and all(r["diverged"] and r["iterations"] < r["budget"] for r in big)
    assert not any(r["diverged"] for r in rows if r["setting"] == "sgd lr=0.1")


def test_curves_have_a_row_per_iteration(quick4):
    import csv
    with open(quick4[0] / "curves.csv", newline="") as f:
        curves = list(csv.DictReader(f))
    rows = records.read_runs(quick4[0] / "runs.csv")
    for r in rows:
        mine = [c for c in curves if int(c["run"]) == r["run"]]
        assert [int(c["iter"]) for c in mine] == list(range(1, r["iterations"] + 1))
        times = [float(c["wall_time"]) for c in mine]
        assert times == sorted(times)


def test_summary_has_the_command_machine_and_a_row_per_setting(quick4):
    text = (quick4[0] / "summary.md").read_text()
    assert "mpiexec -n 4 python -m dnewton_core reproduce --quick" in text
    for key in ("- date:", "- machine:", "numpy", "mpi4py", "C = 143.8", "0.1l",
                "6 epochs;", "SGD epochs: --quick's 6;"):
        assert key in text
    assert re.search(r"\d\.\d% of the busy time stolen by a virtual machine's host", text), text
    settings = text.split("## ")[0]                 # the first table, before any section
    table = [line for line in settings.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method |") and "test acc (mean ± std)" in table[0]
    body = table[1:]
    assert len(body) == len(QUICK_SETTINGS)
    assert sum(line.startswith("| newton-diag |") for line in body) == len(DIAG_SETTINGS)
    assert sorted(line.split("|")[4].strip() for line in body
                  if line.startswith("| newton-diag |")) == ["none", "none", "rescale", "rescale"]
    assert all(" ± " in line.split("|")[7] for line in body)     # two seeds: a std
    for claim in ("### 1.", "### 2.", "### 3.", "### 4."):
        assert claim in text


def test_the_command_names_the_launcher_that_started_the_ranks(monkeypatch):
    from dnewton_core.environment import LAUNCHED_BY
    monkeypatch.setattr(sys, "argv", [str(ROOT / "dnewton_core" / "__main__.py"), "reproduce",
                                      "--quick"])
    monkeypatch.delenv(LAUNCHED_BY, raising=False)
    assert provenance.command_line(4).endswith("mpiexec -n 4 python -m dnewton_core reproduce "
                                               "--quick")
    monkeypatch.setenv(LAUNCHED_BY, "python -m dnewton_core.environment -n 4")
    assert provenance.command_line(4).endswith("python -m dnewton_core.environment -n 4 python "
                                               "-m dnewton_core reproduce --quick")
    assert provenance.command_line(1).endswith("python -m dnewton_core reproduce --quick")
    assert "environment" not in provenance.command_line(1)     # one process: no launcher
    monkeypatch.setenv(LAUNCHED_BY, "python -m dnewton_core.environment -n 2")   # not these ranks
    assert "mpiexec -n 4 python -m dnewton_core" in provenance.command_line(4)


def test_every_run_has_its_modeled_time_on_each_network(quick4):
    import csv
    rows = records.read_runs(quick4[0] / "runs.csv")
    with open(quick4[0] / "curves.csv", newline="") as f:
        curves = [{k: float(v) if k.startswith("modeled_time_") else v for k, v in c.items()}
                  for c in csv.DictReader(f)]
    ten, one = modeled.column("10gbe"), modeled.column("1gbe")
    for r in rows:
        mine = [c for c in curves if int(c["run"]) == r["run"]]
        assert mine[-1][ten] == pytest.approx(r[ten], rel=1e-12)    # the run's last record
        times = [c[one] for c in mine]
        assert times == sorted(times) and times[0] > 0
        # the same run, charged on both: every message costs more on 1gbe (alpha and beta
        # both larger), and the computing is the same measured seconds
        assert all(c[one] >= c[ten] for c in mine)
    # A message is charged max(measured, modeled), so a run costs the same on both where a
    # busy machine held each of its messages longer than either model: a CI run on a loaded
    # machine met it in a run of few small messages. The run that sent the most bytes (tens
    # of megabytes: a tenth of a second more on 1gbe's beta alone) is surely longer there.
    most = max(rows, key=lambda r: r["bytes_total"])
    assert most["bytes_total"] > 1e7 and most[one] > most[ten]


def test_summary_gives_time_to_accuracy_per_network(quick4):
    text = (quick4[0] / "summary.md").read_text()
    assert "- modeled networks (model mode" in text and "`1gbe` alpha 50 us" in text
    section = text.split("## Time to accuracy on the modeled networks")[1].split("## ")[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| setting | measured s to target | 10gbe: s to target | "
                               "1gbe: s to target |")
    assert len(table) == 1 + len(QUICK_SETTINGS)             # the head, one row per setting
    claim1 = text.split("### 1.")[1].split("### 2.")[0]
    assert claim1.count("against newton-diag S=5% sync=1 on ") == len(NETWORKS)
    for line in claim1.splitlines():     # to the lowest final accuracy: every run reaches it
        if " against newton-diag S=5% sync=1 on " in line:
            times = re.search(r"to test accuracy [\d.]+: (\S+) s against (\S+) s \((.*)\)\.$",
                              line)
            assert times and "–" not in times.groups() and " sooner, by " in times[3], line
    data = (quick4[0] / "accuracy_vs_modeled_time.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_figures_are_written(quick4):
    for name in ("accuracy_vs_time.png", "robustness.png"):
        data = (quick4[0] / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def _table(text, heading):
    """The body rows of the Markdown table under ``### heading``, split into cells."""
    section = text.split(f"### {heading}")[1].split("###")[0]
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines()[4:] if line.startswith("| ")]


def test_the_claims_across_studies(quick4, quick1, tmp_path):
    statlog = tmp_path / "dna"                   # quick4's runs, as if on a Statlog set
    statlog.mkdir()
    for name in ("runs.csv", "curves.csv"):
        text = (quick4[0] / name).read_text()
        (statlog / name).write_text(text.replace(",digits,", ",dna,") if name == "runs.csv"
                                    else text)
    text = across.markdown([quick4[0], quick1[0], statlog])
    summary = (quick4[0] / "summary.md").read_text().split("## ")[0]    # its settings table
    accuracy = {(c[0], c[2], c[3]): c[6] for c in
                ([c.strip() for c in line.strip("|").split("|")] for line in summary.splitlines()
                 if line.startswith("| newton"))}
    claim1 = _table(text, "Claim 1")
    assert len(claim1) == 2                      # quick4 and its copy; one process: no diag
    assert claim1[0][4] == accuracy[("newton-full", "1", "–")]
    assert claim1[0][5] == accuracy[("newton-diag", "1", "none")]
    assert claim1[0][6] == accuracy[("newton-diag", "1", "rescale")]
    assert claim1[0][3] == "96 B"               # 3 scalars x 8 bytes x 4 ranks, per iteration
    assert [r[2] for r in _table(text, "Claim 3")] == ["1", "0.5", "1", "0.5"]
    assert [r[1] for r in _table(text, "Claims 1 and 4")] == list(NETWORKS) * 2
    best = max(report.aggregate(records.read_runs(statlog / "runs.csv")),
               key=lambda x: x["test"] if x["method"] != "sgd" else -1)
    (anchor,) = _table(text, "Against the SVM anchors")
    assert anchor[1] == "0.9545" and anchor[2].startswith(best["setting"])
    assert anchor[2].endswith(f"gap {100 * (0.9545 - best['test']):+.2f}")
    with pytest.raises(ValueError, match="no runs.csv"):
        across.load(str(tmp_path))
    with pytest.raises(ValueError, match="differ in data"):
        across.load(f"{quick4[0]}+{statlog}")
    with pytest.raises(ValueError, match="joined twice"):
        across.load(f"{quick4[0]}+{quick4[0]}")
    halves = []                                  # quick4's Newton runs and its SGD runs apart
    for name, keep in (("newton", lambda m: m != "sgd"), ("sgd", lambda m: m == "sgd")):
        where = tmp_path / name
        where.mkdir()
        for csv_name in ("runs.csv", "curves.csv"):
            with open(quick4[0] / csv_name, newline="") as f, \
                    open(where / csv_name, "w", newline="") as out:
                reader = csv.DictReader(f)
                writer = csv.DictWriter(out, reader.fieldnames)
                writer.writeheader()
                writer.writerows(r for r in reader if keep(r["method"]))
        halves.append(str(where))
    joined, whole = across.load("+".join(halves)), across.load(str(quick4[0]))
    assert joined.stats == whole.stats and len(joined.curves) == len(whole.curves)
    with pytest.raises(ValueError, match="same setting and seed"):
        across.load(f"{quick4[0]}+{halves[1]}")


def test_refuses_to_overwrite(quick4):
    before = {p.name: p.read_bytes() for p in quick4[0].iterdir()}
    rc, out, err, _ = launch(["reproduce", "--quick", "--out", str(quick4[0])], timeout=60)
    assert rc == 2 and "exists" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in quick4[0].iterdir()} == before


def _cut_study(study, cut, last, drop=()):
    """``cut``: a copy of ``study``'s runs.csv and curves.csv with runs up to ``last`` only
    and without the columns ``drop`` (as an older kit wrote them)."""
    cut.mkdir()
    for name in ("runs.csv", "curves.csv"):
        with open(study / name, newline="") as f, open(cut / name, "w", newline="") as out:
            reader = csv.DictReader(f)
            columns = [c for c in reader.fieldnames if c not in drop]
            writer = csv.DictWriter(out, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r for r in reader if int(r["run"]) <= last)
    return cut


def test_continue_finishes_a_study_cut_short(quick4, tmp_path):
    """quick4 cut after all but its last three runs (SGD), then --continue on 4 ranks: the
    three runs again, the same rows and curves as the study in one go (these are short runs on the same
    machine and grid, compared to a stated tolerance), and a report from all of them."""
    whole = records.read_runs(quick4[0] / "runs.csv")
    last = whole[-4]["run"]
    cut = _cut_study(quick4[0], tmp_path / "study", last)
    rc, out, err, _ = launch(["reproduce", "--quick", "--out", str(cut), "--network", *NETWORKS,
                              "--continue"], n=4)
    assert rc == 0, f"exit {rc}\n{out[-3000:]}\n{err[-3000:]}"
    assert f"({last} finished before: --continue)" in out
    assert len([line for line in out.splitlines() if line.startswith("[")]) == 3
    again = records.read_runs(cut / "runs.csv")
    same = ("run", "setting", "seed", "iterations", "diverged", "bytes_jacobian")
    assert [[r[k] for k in same] for r in again] == [[r[k] for k in same] for r in whole]
    for a, b in zip(again[last:], whole[last:]):
        if b["diverged"]:                        # f overflowed: no number to compare
            assert a["diverged"] and a["objective"] is None is b["objective"]
        else:
            assert a["objective"] == pytest.approx(b["objective"], rel=1e-9)
    assert len(records.read_runs(cut / "curves.csv")) == \
        len(records.read_runs(quick4[0] / "curves.csv"))
    text = (cut / "summary.md").read_text()
    assert f"it continued {last} runs finished before" in text
    assert [r["part"] for r in again] == [1] * last + [2] * (len(whole) - last)
    assert f"part 1, runs 1-{last} from {whole[0]['started']}" in text
    assert f"part 2, runs {last + 1}-{len(whole)} from {again[last]['started']}" in text
    assert {p.name for p in cut.iterdir()} == {p.name for p in quick4[0].iterdir()}


def test_continue_reads_a_study_from_before_a_phase_existed(quick1, tmp_path):
    """A study written before the kit had the diag_step phase (results/fashion-mnist/long/)
    lacks its columns, and those of each run's provenance; --continue takes its runs as having
    spent nothing there, finishes the study, writes every column, and its runs as part 2."""
    whole = records.read_runs(quick1[0] / "runs.csv")
    last = whole[-2]["run"]
    cut = _cut_study(quick1[0], tmp_path / "study", last,
                     drop=records.LATER_PHASE_COLUMNS + records.PROVENANCE + ("data_digest",))
    assert "bytes_diag_step" not in (cut / "runs.csv").read_text()
    rc, out, err, _ = launch(["reproduce", "--quick", "--out", str(cut), "--continue"])
    assert rc == 0, f"exit {rc}\n{out[-3000:]}\n{err[-3000:]}"
    assert f"({last} finished before: --continue)" in out
    again = records.read_runs(cut / "runs.csv")
    assert list(again[0]) == records.RUN_COLUMNS and len(again) == len(whole)
    assert all(r[c] == 0 for r in again[:last] for c in records.LATER_PHASE_COLUMNS)
    assert [r["part"] for r in again] == [None] * last + [2] * (len(whole) - last)
    assert f"runs 1-{last} written before runs.csv recorded when" in \
        (cut / "summary.md").read_text()


def test_continue_refuses_the_same_data_set_on_other_contents(quick1, tmp_path):
    """Every row keeps the data's digest: a study of a data set's name on other contents
    (another file under --data-path, say) is not continued."""
    cut = _cut_study(quick1[0], tmp_path / "study", records.read_runs(quick1[0] / "runs.csv")[0]["run"])
    digest = records.read_runs(cut / "runs.csv")[0]["data_digest"]
    assert len(digest) == 16
    runs = cut / "runs.csv"
    runs.write_text(runs.read_text().replace(digest, "0123456789abcdef"))
    rc, out, err, _ = launch(["reproduce", "--quick", "--out", str(cut), "--continue"])
    assert rc == 2 and "line 2: data_digest is '0123456789abcdef'" in err, err
    assert "--data-path" in err


def test_continue_names_hidden_when_the_network_differs(quick1, tmp_path):
    """Another --hidden proposes another grid as well: the refusal names --hidden, the option
    given, not --splits, which the user never gave."""
    cut = _cut_study(quick1[0], tmp_path / "study", records.read_runs(quick1[0] / "runs.csv")[0]["run"])
    rc, out, err, _ = launch(["reproduce", "--quick", "--out", str(cut), "--continue",
                              "--hidden", "32"])
    assert rc == 2 and "line 2: network is " in err and "(--hidden)" in err, err


# --------------------------------------------------------------------------- one process

def test_quick_on_one_process_leaves_out_the_diagonal(quick1):
    out_dir, out, seconds = quick1
    assert seconds < QUICK_LIMIT
    rows = records.read_runs(out_dir / "runs.csv")
    assert {r["setting"] for r in rows} == QUICK_SETTINGS - DIAG_SETTINGS
    assert all(r["ranks"] == 1 and r["bytes_total"] == 0 for r in rows)
    assert list(rows[0]) == records.RUN_COLUMNS                 # no network: no modeled time
    text = (out_dir / "summary.md").read_text()
    assert "left out: newton-diag" in text and "python -m dnewton_core reproduce" in text
    assert (out_dir / "robustness.png").exists() and (out_dir / "accuracy_vs_time.png").exists()


# --------------------------------------------------------------------------- in-process

def _args(*argv):
    return options.parser().parse_args(["reproduce", *argv])


def test_grid_sync_only_with_the_diagonal_and_diagonal_only_on_a_grid():
    settings, notes = plan.study_settings(plan.METHODS, (0.05, 0.2), (1.0, 0.5), (0.1, 1.0), True)
    assert len(settings) == 2 + 4 + 2 and not notes
    assert all(s.sync == 1.0 for s in settings if s.method == "newton-full")
    settings, notes = plan.study_settings(plan.METHODS, (0.05,), (1.0, 0.5), (0.1,), False)
    assert [s.method for s in settings] == ["newton-full", "sgd"] and len(notes) == 1
    settings, _ = plan.study_settings(("newton-diag",), (0.05,), (1.0, 0.5), (), True,
                                      ("none", "rescale", "subspace"))
    assert [(s.sync, s.diag_step) for s in settings] == [
        (t, k) for t in (1.0, 0.5) for k in ("none", "rescale", "subspace")]
    assert len({s.label for s in settings}) == 6                       # every run told apart


def test_sync_fractions_below_1_only_where_each_rank_holds_one_partition():
    settings, notes = plan.study_settings(plan.METHODS, (0.05,), (1.0, 0.5), (0.1,), True,
                                          sync_possible=False)
    assert [(s.method, s.sync) for s in settings] == [
        ("newton-full", 1.0), ("newton-diag", 1.0), ("sgd", None)] and notes == [plan.SYNC_NOTE]
    explicit = plan.resolve(_args("--settings", "newton-diag:0.05:0.5,newton-diag:0.05:1,sgd:0.01"))
    kept, notes = explicit.runs(True, sync_possible=False)
    assert [(s.method, s.sync) for s in kept] == [("newton-diag", 1.0), ("sgd", None)]
    assert notes == [plan.SYNC_NOTE] and len(explicit.runs(True)[0]) == 3


def test_resolve_defaults_and_checks():
    a = plan.resolve(_args())
    assert (a.data, a.hidden, a.iters, a.seeds, a.out) == ("digits", (64, 64), 100, 3, "results/digits")
    assert a.epochs == 200                      # 2 epochs per Newton iteration on digits
    a = plan.resolve(_args("--data", "fashion-mnist", "--iters", "10"))
    assert a.hidden == (300, 300) and a.out == "results/fashion-mnist" and a.epochs == 18
    assert plan.resolve(_args("--iters", "10", "--epochs", "3")).epochs == 3
    a = plan.resolve(_args("--quick"))
    assert a.seeds == 2 and a.iters == 8 and a.lrs == (1e-3, 1e-1, 1.0)
    assert a.out == "results/quick"                 # a scratch directory, not the committed study
    a = plan.resolve(_args("--settings", "newton-diag:0.05:0.5,sgd:0.01"))
    assert a.methods == ("newton-diag", "sgd") and a.settings[0].sync == 0.5
    a = plan.resolve(_args("--settings", "newton-diag:0.05:1:rescale"))
    assert a.settings[0].diag_step == "rescale" and a.steps == ("rescale",)
    assert plan.resolve(_args()).steps == ("none", "rescale")         # the default grid
    for bad in (["--syncs", "0"], ["--seeds", "0"], ["--methods", "adam"],
                ["--settings", "newton-diag:0.05"], ["--settings", "newton-full:2"],
                ["--settings", "newton-diag:0.05:1:bogus"], ["--diag-steps", "bogus"],
                ["--quick", "--data", "usps"]):
        with pytest.raises(ValueError):
            plan.resolve(_args(*bad))
    for bad, message in ((["--subsamples", "0.5,2"], "--subsamples: 2 is not a fraction of "
                          "the instances in (0, 1]"),
                         (["--lrs", "0.1,-1"], "--lrs: -1 is not a finite positive number"),
                         (["--lrs", "inf"], "--lrs: inf is not a finite positive number"),
                         (["--settings", "newton-full:2"], "--settings: subsample 2 is not a "
                          "fraction of the instances in (0, 1]"),
                         (["--settings", "sgd:-1"], "--settings: learning rate -1 is not "
                          "a finite positive number"),
                         (["--settings", "sgd:0"], "--settings: learning rate 0 is not "
                          "a finite"),               # not run with the default rate instead
                         (["--settings", "newton-full:0"], "--settings: subsample 0 is not"),
                         (["--subsamples", "1.0000001"], "--subsamples: 1.0000001 is not"),
                         (["--settings", "newton-full:0.05", "--lrs", "0.1"],   # not ignored
                          "--settings lists every run: leave out --lrs"),
                         (["--diag-steps", "none,bogus"], "--diag-steps: 'bogus' is not one of "
                          "none, rescale, subspace")):
        with pytest.raises(ValueError, match=re.escape(message)):   # the value that is wrong
            plan.resolve(_args(*bad))


def test_an_empty_item_in_a_list_of_numbers_is_refused(capsys):
    for bad in ("0.5,,0.2", "0.5,", ""):          # a typo: not a shorter grid, run silently
        with pytest.raises(SystemExit):
            _args("--subsamples", bad)
    assert "argument --subsamples: expected at least one number" in capsys.readouterr().err
    assert _args("--subsamples", "0.5, 0.2").subsamples == (0.5, 0.2)


def test_a_differing_value_is_shown_as_short_as_tells_it_apart():
    assert records._shown(0.01 * 140, 1.0) == ("'1.4'", "'1'")
    assert records._shown(0.01 * 140, 1.4) == ("'1.4000000000000001'", "'1.4'")
    assert records._shown(1, 1.0) == ("'1'", "'1.0'")
    assert records._shown(1, "1") == ("'1' (int)", "'1' (str)")
    assert records._shown(None, 3) == ("'(empty)'", "'3'")


def row(run, setting, seed, acc):
    """A row of runs.csv: 2 iterations, 4 s, 200 bytes (20 in CG), 6 CG iterations."""
    return dict(run=run, setting=setting.label, method=setting.method,
                subsample=setting.subsample, sync=setting.sync, lr=setting.lr,
                step=setting.step, seed=seed,
                unit="epoch" if setting.method == "sgd" else "iteration",
                iterations=2, test_accuracy=acc, train_accuracy=acc, objective=1.0,
                wall_time=4.0, bytes_total=200, bytes_cg=20, bytes_jacobian=10,
                cg_iters=6 if setting.method != "sgd" else None, seconds_cg=1.0,
                seconds_jacobian=0.5, diverged=False)


def test_aggregate_and_table():
    sgd, full = plan.Setting("sgd", lr=0.1), plan.Setting("newton-full", 0.05, 1.0)
    rows = [row(1, sgd, 0, 0.8), row(2, full, 0, 0.9), row(3, sgd, 1, 0.6), row(4, full, 1, 0.9)]
    stats = report.aggregate(rows)
    assert [s["method"] for s in stats] == ["newton-full", "sgd"]        # sorted, not run order
    assert stats[1]["test"] == pytest.approx(0.7) and stats[1]["test_std"] == pytest.approx(0.1414, abs=1e-4)
    assert stats[0]["bytes_per_iter"] == 100 and stats[0]["cg_per_iter"] == 3
    table = report.settings_table(stats).splitlines()
    assert len(table) == 4 and "0.7000 ± 0.1414" in table[3]


def test_claims_report_a_spread_only_over_two_or_more_settings():
    full, sgd = plan.Setting("newton-full", 0.05, 1.0), plan.Setting("sgd", lr=0.1)
    rows = [row(1, full, 0, 0.9), row(2, sgd, 0, 0.8)]
    curves = [dict(run=r["run"], iter=1, wall_time=4.0, test_accuracy=r["test_accuracy"])
              for r in rows]
    robustness = report.claims(report.aggregate(rows), rows, curves)[3][1]
    assert not any("range" in line for line in robustness)
    assert any("not measured" in line for line in robustness)
    assert any("Best Newton: newton-full S=5%, 0.9000" in line for line in robustness)
    rows.append(row(3, plan.Setting("sgd", lr=1.0), 0, 0.1))
    curves.append(dict(run=3, iter=1, wall_time=4.0, test_accuracy=0.1))
    robustness = report.claims(report.aggregate(rows), rows, curves)[3][1]
    assert any("SGD, 2 learning rates: from 0.1000 to 0.8000 (range 0.7000" in line
               for line in robustness)
    rows.append(row(4, plan.Setting("newton-diag", 0.05, 1.0, step="rescale"), 0, 0.95))
    curves.append(dict(run=4, iter=1, wall_time=4.0, test_accuracy=0.95))
    robustness = report.claims(report.aggregate(rows), rows, curves)[3][1]
    assert any("Newton, 2 settings: mean test accuracy from 0.9000 to 0.9500" in line
               for line in robustness)          # the kit's steps after CG count
    assert any("Best Newton: newton-diag S=5% sync=1 rescale, 0.9500" in line
               for line in robustness)


def test_summary_command_records_the_variables_that_change_speed(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "dnewton_core" / "__main__.py"),
                                      "reproduce", "--quick"])
    line = provenance.command_line(4)
    assert line.startswith("OMP_NUM_THREADS=1 ") and "MPIR_CVAR_CH4_PROGRESS_THROTTLE=1 " in line
    assert "UNRELATED" not in line
    assert line.endswith("mpiexec -n 4 python -m dnewton_core reproduce --quick")


def test_networks_of_the_command_line():
    assert plan.resolve(_args()).networks == ()
    assert plan.resolve(_args("--network", "none")).networks == ()
    nets = plan.resolve(_args("--network", "10gbe", "20:1")).networks
    assert [n.name for n in nets] == ["10gbe", "20:1"] and nets[1].bandwidth == 1e9 / 8
    assert plan.resolve(_args("--network", "10gbe,20:1")).networks == nets   # as project
    assert plan.resolve(_args("--network", "10gbe", "--network", "20:1")).networks == nets
    for bad in (["1gbe", "1gbe"], ["none", "1gbe"], ["fast"], ["1gbe,1gbe"]):
        with pytest.raises(ValueError, match="--network"):
            plan.resolve(_args("--network", *bad))


def test_time_to_accuracy_and_the_common_target():
    curves = [dict(run=1, test_accuracy=a, wall_time=t, m=2 * t)
              for a, t in ((0.5, 1.0), (0.8, 2.0), (0.9, 3.0))]
    curves += [dict(run=2, test_accuracy=a, wall_time=t, m=2 * t)
               for a, t in ((0.7, 1.0), (0.85, 2.0))]
    assert modeled.time_to(curves, 1, 0.8) == 2.0 and modeled.time_to(curves, 1, 0.8, "m") == 4.0
    assert modeled.time_to(curves, 2, 0.9) is None
    rows = [dict(run=1, setting="a"), dict(run=2, setting="a")]
    assert modeled.setting_time(rows, curves, "a", 0.8, "wall_time") == (2.0, 2, 2)
    assert modeled.setting_time(rows, curves, "a", 0.86, "wall_time") == (None, 1, 2)
    stats = [dict(method="newton-full", test=0.9), dict(method="sgd", test=0.7),
             dict(method="sgd", test=0.85), dict(method="newton-diag", test=None)]
    assert modeled.common_target(stats) == 0.85


def test_modeled_times_of_a_record():
    record = dict(wall_time=2.0, modeled_time_on={"1gbe": 3.5, "10gbe": 2.5})
    assert modeled.modeled_times(record, ["10gbe", "1gbe"], False) == \
        {"modeled_time_10gbe": 2.5, "modeled_time_1gbe": 3.5}
    # one process sends nothing: its time on any network is its measured time
    assert modeled.modeled_times(dict(wall_time=2.0), ["1gbe"], True) == {"modeled_time_1gbe": 2.0}
