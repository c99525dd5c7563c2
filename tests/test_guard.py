"""The guard (``comm.Guard``): a stalled rank, a rank that never arrives, and a signal to
mpiexec or to a single rank each end the whole job within seconds, with one line that
says what happened and the right exit status; no process is left. Each job is
``tests/guarded_job.py`` under ``mpiexec -n 4`` in its own process group."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from dnewton_core.classroom.cluster import cluster_processes
from dnewton_core.comm import INTERRUPT_EXIT, STALL_EXIT
from dnewton_core.environment import local_environment, local_launch

ROOT = Path(__file__).resolve().parent.parent
JOB = str(ROOT / "tests" / "guarded_job.py")
MARK = "DNEWTON_GUARD_TEST"


def start(*args):
    marker = uuid.uuid4().hex
    env = dict(local_environment(), **{MARK: marker})
    proc = subprocess.Popen([*local_launch(4), sys.executable, JOB, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, marker


def ranks(marker, program="guarded_job"):
    """{MPI rank: process} of a job."""
    out = {}
    for p in cluster_processes(**{MARK: marker}):    # live ones: zombies are ended
        try:
            env, cmd = p.environ(), " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "PMI_RANK" in env and program in cmd:
            out[int(env["PMI_RANK"])] = p
    return out


def finish(proc, marker, within, program="guarded_job"):
    """(exit status, error lines, seconds); fails if the job outlives ``within`` seconds or
    leaves a process."""
    tic = time.monotonic()
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for p in ranks(marker, program).values():
            p.kill()
        pytest.fail(f"the job did not end within {within} s")
    time.sleep(0.5)
    left = ranks(marker, program)
    for p in left.values():
        p.kill()
    assert not left, f"ranks left running: {sorted(left)}"
    return proc.returncode, [ln for ln in err.splitlines() if ln.startswith("error:")], \
        time.monotonic() - tic


def test_a_stopped_rank_ends_the_job_naming_it():
    proc, marker = start("--stop", 2, "--stall-timeout", 2)
    code, errors, seconds = finish(proc, marker, within=15)
    assert code == STALL_EXIT and len(errors) == 1, errors
    assert "stall:" in errors[0] and "phase cg" in errors[0] and "over world" in errors[0]
    assert "did not arrive: rank 2" in errors[0] and "no answer from rank 2" in errors[0]


def test_a_rank_that_never_arrives_is_named_and_the_others_are_not():
    proc, marker = start("--hang", 3, "--stall-timeout", 2)
    code, errors, _ = finish(proc, marker, within=15)
    assert code == STALL_EXIT and len(errors) == 1, errors
    assert "did not arrive: rank 3" in errors[0] and "no answer" not in errors[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_mpiexec_ends_every_rank_within_5_s(sig):
    proc, marker = start("--stall-timeout", 0)
    time.sleep(1.0)
    tic = time.monotonic()
    proc.send_signal(sig)
    code, errors, _ = finish(proc, marker, within=10)
    assert time.monotonic() - tic < 5.0 + 1.0          # + finish's look for leftovers
    assert code == INTERRUPT_EXIT and len(errors) == 1, errors
    assert f"interrupted by {sig.name}" in errors[0]


def test_ctrl_c_on_one_rank_ends_the_job():
    proc, marker = start("--stall-timeout", 0)
    time.sleep(1.0)
    ranks(marker)[2].send_signal(signal.SIGINT)
    code, errors, seconds = finish(proc, marker, within=10)
    assert code == INTERRUPT_EXIT and errors == ["error: interrupted by SIGINT (rank 2)"]
    assert seconds < 5.0


def test_a_zero_stall_timeout_never_ends_a_slow_job():
    proc, marker = start("--hang", 3, "--stall-timeout", 0)
    time.sleep(4.0)
    assert proc.poll() is None                        # still waiting for rank 3
    proc.send_signal(signal.SIGINT)
    code, _, _ = finish(proc, marker, within=10)
    assert code == INTERRUPT_EXIT


def test_a_guarded_job_that_finishes_says_nothing():
    proc, marker = start("--iters", 200, "--stall-timeout", 2)
    code, errors, _ = finish(proc, marker, within=30)
    assert code == 0 and errors == []


def _ctrl_c_as_in_a_terminal():
    """SIGINT as a terminal's Ctrl-C finds it. A test suite started in the background
    (``make test &``, nohup) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler: the signal the test sends would be ignored, as the shell
    asked, and the test would measure nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train(tmp_path, n, *extra, command=("train", "--iters", "100000", "--json", "run.json"),
           written="run.json"):
    """A long run in ``tmp_path``, once it has written ``written``."""
    marker = uuid.uuid4().hex
    env = dict(local_environment(), **{MARK: marker})
    cmd = [sys.executable, "-m", "dnewton_core", *command, *extra]
    if n > 1:
        cmd = [*local_launch(n), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, start_new_session=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while not (tmp_path / written).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    return proc, marker


@pytest.mark.parametrize("n, sig", [(4, signal.SIGINT), (4, signal.SIGTERM),
                                    (1, signal.SIGINT), (1, signal.SIGTERM)])
def test_an_interrupted_training_ends_with_one_line_and_keeps_its_history(tmp_path, n, sig):
    """... as the finished run would have it (summed over ranks, with its modeled time), and
    its --trace: every event of one process, rank 0's of several."""
    proc, marker = _train(tmp_path, n, "--trace", "trace.json", "--network", "1gbe")
    line = _interrupt(proc, sig)
    if n == 1:                                   # (a study's line speaks of --continue)
        assert line.endswith("files written during the run hold its last completed "
                             "iteration"), line
    saved = json.loads((tmp_path / "run.json").read_text())
    assert len(saved["history"]) >= 1 and saved["final"]["status"] == "interrupted"
    assert saved["config"]["network"] == "1gbe"
    if n > 1:
        whole = _finished(tmp_path, n, "train", "--iters", 1, "--network", "1gbe", "--json",
                          "whole.json")["history"][0]
        first = saved["history"][0]
        assert first["cg_iters_per_rank"] == whole["cg_iters_per_rank"]
        assert {p: d["bytes"] for p, d in first["comm"].items() if p != "report"} == \
            {p: d["bytes"] for p, d in whole["comm"].items() if p != "report"}
        assert saved["final"]["modeled_time"] == saved["history"][-1]["modeled_time"] > 0
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["otherData"]["status"] == "interrupted"
    assert {e["pid"] for e in trace["traceEvents"]} == {0}
    assert ("ranks" in trace["otherData"]) == (n > 1)
    assert {"gradient", "cg"} <= {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}


@pytest.mark.parametrize("n", [1, 3])
def test_an_interrupted_compare_keeps_the_runs_it_has(tmp_path, n):
    """compare.json holds the finished runs and the one interrupted, as it was; the figure
    of the compare --overwrite replaced is gone."""
    _finished(tmp_path, n, "compare", "--iters", 1, "--epochs", 1, "--out", ".")
    assert (tmp_path / "accuracy_vs_time.png").exists()
    proc, _ = _train(tmp_path, n, command=("compare", "--iters", "3", "--epochs", "100000",
                                           "--out", ".", "--overwrite"), written="compare.json")
    deadline = time.monotonic() + 60
    while not _in_sgd(tmp_path / "compare.json") and time.monotonic() < deadline:
        time.sleep(0.2)
    _interrupt(proc, signal.SIGINT)
    runs = json.loads((tmp_path / "compare.json").read_text())
    assert list(runs) == ["newton-full"] + (["newton-diag"] if n > 1 else []) + ["sgd"]
    assert [r["final"]["status"] for r in runs.values()][:-1] == ["finished"] * (len(runs) - 1)
    assert runs["newton-full"]["history"][-1]["iter"] == 3
    assert runs["sgd"]["final"]["status"] == "interrupted" and runs["sgd"]["history"]
    assert not (tmp_path / "accuracy_vs_time.png").exists()


def _in_sgd(path):
    """Whether the compare.json at ``path`` is this compare's, in its SGD run."""
    try:
        runs = json.loads(path.read_text())
    except (OSError, ValueError):                     # the old one removed, the new not yet
        return False
    return "sgd" in runs and len(runs["newton-full"]["history"]) == 3


def _finished(tmp_path, n, *args):
    """A run in ``tmp_path`` that ends by itself; its --json, if it writes one."""
    cmd = [sys.executable, "-m", "dnewton_core", *map(str, args)]
    proc = subprocess.run([*local_launch(n), *cmd] if n > 1 else cmd, capture_output=True,
                          text=True, env=local_environment(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / args[args.index("--json") + 1]).read_text()) \
        if "--json" in args else None


def _interrupt(proc, sig):
    """Send ``sig``; the run ends within 5 s with one line, "interrupted"."""
    tic = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run did not end within 10 s of the signal")
    assert time.monotonic() - tic < 5.0
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert proc.returncode == INTERRUPT_EXIT and len(errors) == 1, err[-2000:]
    assert "interrupted" in errors[0]
    return errors[0]


def _holds_signals(process):
    """Whether ``process`` catches SIGTERM, as a rank does once MPI has started
    (interrupts.hold_all) and Python alone does not."""
    with open(f"/proc/{process.pid}/status") as f:
        caught = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigCgt:"))
    return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_job_starts_ends_it_as_a_later_one_does(sig):
    """A signal to every process of the job as soon as its ranks have started MPI and keep
    signals (interrupts.hold_all), while they agree on the machine and make the guard's
    communicator: ranks that acted on it at once left the others waiting in MPI_Comm_dup
    for good. (The window is short: the signal may also come once the guards are up.)"""
    marker = uuid.uuid4().hex
    env = dict(local_environment(), **{MARK: marker})
    proc = subprocess.Popen([*local_launch(4), sys.executable, "-m", "dnewton_core", "train",
                             "--iters", "100000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = ranks(marker, "dnewton_core")
        try:
            if len(started) == 4 and all(map(_holds_signals, started.values())):
                break
        except (OSError, StopIteration):              # a rank just started or ended
            pass
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    code, errors, seconds = finish(proc, marker, within=20, program="dnewton_core")
    assert code == INTERRUPT_EXIT and len(errors) == 1 and "interrupted by" in errors[0]
    assert seconds < 10


# a rank that exits with a status on Ctrl-C before MPI starts, as Python does (1) when its
# own start is interrupted
EXITS_ON_CTRL_C = ("import signal, sys, time; "
                   "signal.signal(signal.SIGINT, lambda *a: sys.exit(1)); time.sleep(60)")


def test_a_ctrl_c_while_a_rank_waits_in_mpi_init_ends_the_job():
    """Ctrl-C while rank 0 waits inside MPI_Init for rank 1, and rank 1 exits with status 1
    instead of starting MPI: Hydra does not end the job for such a rank, so a rank 0 that kept
    the signal inside MPI_Init waited there for good (interrupts.starting_mpi)."""
    marker = uuid.uuid4().hex
    env = dict(local_environment(), **{MARK: marker})
    proc = subprocess.Popen([*local_launch(1), sys.executable, "-m", "dnewton_core", "train",
                             ":", "-n", "1", sys.executable, "-c", EXITS_ON_CTRL_C],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline, in_init = time.monotonic() + 30, False
    while time.monotonic() < deadline and not in_init:
        time.sleep(0.05)
        try:
            rank0 = ranks(marker, "dnewton_core")[0]
            in_init = any("libmpi" in m.path for m in rank0.memory_maps())
        except (KeyError, psutil.Error):              # not started yet, or just changing
            pass
    assert in_init, "rank 0 did not start MPI within 30 s"
    time.sleep(1.0)                                   # waiting for rank 1, which never comes
    os.killpg(proc.pid, signal.SIGINT)
    code, _, seconds = finish(proc, marker, within=20, program="")    # rank 1 too
    assert code != 0 and seconds < 10


def test_a_stalled_training_says_so_in_its_json(tmp_path):
    proc, marker = _train(tmp_path, 4, "--stall-timeout", "2")
    before = json.loads((tmp_path / "run.json").read_text())
    ranks(marker, "dnewton_core")[2].suspend()       # as a rank whose machine hangs
    code, errors, _ = finish(proc, marker, within=30, program="dnewton_core")
    assert code == STALL_EXIT and len(errors) == 1, errors
    assert re.search(r"did not arrive: ranks? [\d,]*\b2\b", errors[0]), errors[0]
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["final"]["status"] == "stalled" and before["final"]["status"] == "running"
    assert len(saved["history"]) >= len(before["history"])
    assert saved["final"]["objective"] == saved["history"][-1]["objective"]


def test_a_run_interrupted_before_its_first_iteration_says_so_in_its_json(tmp_path):
    """A run stopped in its first iteration (here a Gauss-Newton product slowed to a
    minute) leaves its --json with no record, "interrupted"."""
    out = tmp_path / "run.json"
    proc = subprocess.Popen([sys.executable, "-m", "dnewton_core", "train", "--slow-rank",
                             "0:60", "--json", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=local_environment(),
                            cwd=ROOT, start_new_session=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        for line in proc.stdout:                      # the header: training starts
            if line.split()[:2] == ["iter", "f"]:
                break
        time.sleep(1.0)
        assert not out.exists()                       # written at the first iteration
        _interrupt(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    saved = json.loads(out.read_text())
    assert saved["final"]["status"] == "interrupted" and saved["history"] == []
    assert saved["config"]["layers"] == [64, 64, 64, 10]


def test_a_signal_the_run_was_started_ignoring_stays_ignored(tmp_path):
    """As under nohup: SIGHUP ignored from the start does not end a one-process run, and
    Ctrl-C still does."""
    out = tmp_path / "run.json"

    def nohup():
        _ctrl_c_as_in_a_terminal()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    proc = subprocess.Popen([sys.executable, "-m", "dnewton_core", "train", "--iters", "100000",
                             "--json", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=local_environment(),
                            cwd=ROOT, start_new_session=True, preexec_fn=nohup)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None, "SIGHUP ended a run started ignoring it"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == INTERRUPT_EXIT, err[-1000:]
    assert json.loads(out.read_text())["final"]["status"] == "interrupted"


def test_the_stall_timeout_is_checked():
    out = subprocess.run([sys.executable, "-m", "dnewton_core", "train", "--stall-timeout",
                          "-1"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--stall-timeout" in out.stderr


def test_the_report_names_the_stalled_ranks_not_one_that_just_began_to_wait():
    """ending.py on the reports a stall gathers: ranks 1-3 waited past the timeout in world's
    collective 4, rank 0 (slow on purpose) had just entered collective 5 when it heard: rank
    1 reports, and names rank 0 as the one that did not arrive; a rank in the same
    collective, under the timeout still, arrived."""
    from dnewton_core.ending import reporter_of, summary
    world = (0, 1, 2, 3)
    stalled = (("stall", "world", 4, world), "stall: rank 1 waited 2 s")
    reports = {0: (("waiting", "world", 5, world), "waiting: rank 0 waited 0 s"),
               1: stalled, 2: stalled, 3: stalled}
    assert reporter_of(reports) == 1
    assert summary(reports, 1, 4) == "stall: rank 1 waited 2 s; did not arrive: rank 0"
    reports[0] = (("waiting", "world", 4, world), "waiting: rank 0 waited 1 s")
    assert summary(reports, 1, 4).endswith("did not arrive: ranks -")
    assert reporter_of({0: reports[0], 2: (("running",), "rank 2 was computing")}) == 0
