"""The kit's launcher (``python -m dnewton_core.environment``, environment.supervise) ends a
job on a signal, whatever the job does with it.

An MPI job can miss a Ctrl-C in its first moments (Hydra passes it on only to the ranks it
has started; a rank ended in Python's own start leaves the others waiting in MPI_Init). The
launcher runs mpiexec in a process group of its own, passes each signal on once (and writes
it to a file for ranks not started yet), and tears the job down ``--grace`` seconds later if
it still runs. A stand-in for mpiexec records the signals it gets, so each way a job can
take a signal is made on purpose here.
"""
import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dnewton_core.environment import find_mpiexec, local_environment

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for mpiexec, run as ``mpiexec -n N END_AT LOG``: writes "ready" to LOG (if its
# stdin is /dev/null), then each SIGINT and SIGTERM it gets with what the launcher's mark file
# (DNEWTON_SIGNALLED) holds then; ends (status 130) at SIGTERM or the END_AT-th SIGINT (0: never).
FAKE = """#!{python}
import os, signal, sys, time
end_at, log = int(sys.argv[3]), sys.argv[4]     # after mpiexec's -n N
got = []
def mark():
    try:
        return open(os.environ["DNEWTON_SIGNALLED"]).read()
    except (KeyError, OSError):
        return "-"
def on(sig, frame):
    got.append(signal.Signals(sig).name + ":" + mark())
    with open(log, "w") as f:
        f.write(" ".join(got))
    if sig == signal.SIGTERM or len(got) == end_at:
        sys.exit(130)
signal.signal(signal.SIGINT, on)
signal.signal(signal.SIGTERM, on)
null = os.path.samestat(os.fstat(0), os.stat(os.devnull))
open(log, "w").write("ready" if null else "ready, but stdin is not /dev/null")
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_mpiexec(tmp_path):
    path = tmp_path / "mpiexec"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


def launch(fake, end_at, log, grace=1.0):
    """The launcher in a process group of its own (as a shell's job), its mpiexec the fake;
    returns once the fake is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "dnewton_core.environment", "--mpiexec",
                             str(fake), "--grace", str(grace), "-n", "2", str(end_at), str(log)],
                            cwd=ROOT, env=local_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert log.read_text() == "ready"
    return proc


def ended(proc, within):
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the launcher did not end within {within} s") from None
    return proc.returncode, err


def test_a_ctrl_c_reaches_mpiexec_once(fake_mpiexec, tmp_path):
    """A terminal's Ctrl-C goes to the launcher's whole process group. mpiexec must get it
    once (Hydra takes a second for "tear the job down now"), and the launcher ends with
    mpiexec's status."""
    log = tmp_path / "log"
    proc = launch(fake_mpiexec, 1, log)
    os.killpg(proc.pid, signal.SIGINT)
    rc, err = ended(proc, 10)
    assert (rc, log.read_text()) == (130, "SIGINT:2"), err       # the mark written first
    assert not list(Path(tempfile.gettempdir()).glob(f"dnewton-signal-{proc.pid}-*"))  # removed


def test_a_job_that_misses_the_signal_is_torn_down(fake_mpiexec, tmp_path):
    """A job still running --grace seconds after the signal gets a second SIGINT (on which
    Hydra tears it down); one that ignores that too, after twice --grace, SIGKILL."""
    log = tmp_path / "log"
    proc = launch(fake_mpiexec, 2, log)
    tic = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rc, err = ended(proc, 10)
    assert (rc, log.read_text()) == (130, "SIGINT:2 SIGINT:2"), err
    assert 1.0 <= time.monotonic() - tic < 5 and "still running 1 s after the signal" in err

    log = tmp_path / "log2"
    proc = launch(fake_mpiexec, 0, log)
    proc.send_signal(signal.SIGINT)                    # to the launcher alone: passed on
    rc, err = ended(proc, 10)
    assert (rc, log.read_text()) == (128 + signal.SIGKILL, "SIGINT:2 SIGINT:2"), err
    assert "sending SIGKILL" in err


def test_a_launcher_killed_outright_ends_its_job(fake_mpiexec, tmp_path):
    """SIGKILL cannot be passed on: mpiexec gets SIGTERM when its launcher dies (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    log = tmp_path / "log"
    proc = launch(fake_mpiexec, 0, log)
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 10
    while log.read_text() != "SIGTERM:-" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text() == "SIGTERM:-"


def test_a_ctrl_c_before_mpiexec_starts_runs_nothing(fake_mpiexec, tmp_path):
    """A Ctrl-C while the launcher enters its private network, where it forks, waits until
    the fork is done (a child must not take it: it would go on as the launcher), then ends
    the launcher with one line and status 130, and mpiexec never starts."""
    log, forked = tmp_path / "log", tmp_path / "forked"
    script = f"""import os, signal, sys
from dnewton_core import environment, netns
def enter(*args):                       # a Ctrl-C, then a fork as netns's
    os.kill(os.getpid(), signal.SIGINT)
    pid = os.fork()
    if pid == 0:
        os._exit(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    open({str(forked)!r}, "w").write(str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
netns.enter = netns.forward = enter
sys.argv[1:] = ["--mpiexec", {str(fake_mpiexec)!r}, "-n", "2", "1", {str(log)!r}]
environment.main()
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 130 and not log.exists(), proc.stderr
    assert proc.stderr == "interrupted before the job started: nothing ran\n"
    assert forked.read_text() == "1"                     # the child had SIGINT blocked


def test_a_terminal_that_stops_background_writers_does_not_stop_the_job(tmp_path):
    """mpiexec runs in a background process group of the launcher's terminal: where the
    terminal stops such a group's writes (``stty tostop``), it must still print."""
    import pty
    import termios
    main_fd, tty_fd = pty.openpty()
    attrs = termios.tcgetattr(tty_fd)
    attrs[3] |= termios.TOSTOP
    termios.tcsetattr(tty_fd, termios.TCSANOW, attrs)
    tty = os.ttyname(tty_fd)

    def foreground():                   # the launcher leads a session whose terminal is the pty
        os.setsid()
        fd = os.open(tty, os.O_RDWR)
        os.tcsetpgrp(fd, os.getpgrp())

    cmd = [sys.executable, "-m", "dnewton_core.environment", "-n", "1", sys.executable, "-c",
           "print('hello from the job')"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=local_environment(), stdin=tty_fd, stdout=tty_fd,
                            stderr=tty_fd, preexec_fn=foreground)
    os.close(tty_fd)
    out, deadline = b"", time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if select.select([main_fd], [], [], 0.2)[0]:
            with contextlib.suppress(OSError):
                out += os.read(main_fd, 4096)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    os.close(main_fd)
    assert proc.wait() == 0 and b"hello from the job" in out, out


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_rank_started_after_the_signal_ends_with_the_job(tmp_path, ranks):
    """mpiexec passes a signal on only to the ranks it has started; the launcher writes it to
    the file DNEWTON_SIGNALLED names, and a rank that reads it there once it can act on a
    signal ends as if it had taken it: status 130."""
    mark = tmp_path / "signal"
    mark.write_text(str(int(signal.SIGINT)))
    cmd = [sys.executable, "-m", "dnewton_core", "train", "--hidden", "8", "--iters", "50"]
    if ranks > 1:
        cmd = [find_mpiexec(), "-n", str(ranks), *cmd]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(local_environment(), DNEWTON_SIGNALLED=str(mark)))
    assert proc.returncode == 130, proc.stderr
    assert "interrupted by SIGINT" in proc.stderr, proc.stderr       # (without it: status 0)
