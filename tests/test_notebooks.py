"""The notebooks, cell by cell, against their committed outputs (nbval, strict).

Each notebook runs in its own ``pytest --nbval`` process, which starts a kernel, which starts
its own MPI engines. Every process of that tree inherits a marker in its environment
(``DNEWTON_NOTEBOOK_RUN``), so afterwards the test can tell whether any engine, controller
or kernel outlived the notebook: if so it fails, naming them, and ends them.

Outputs are compared exactly except where ``notebooks/sanitize.cfg`` says a value varies
(times, memory addresses) or a cell is tagged ``nbval-ignore-output``: the cells that stop a
cluster, the few whose numbers depend on timing, and those that print the digits of a
training trajectory, which another BLAS kernel or CPU rounds onto another path. Those
cells assert what holds on any machine instead. The training notebooks also run under a
second OpenBLAS kernel, as another machine would.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dnewton_core.classroom.cluster import cluster_processes
from dnewton_core.environment import blas_environment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SANITIZE = NOTEBOOK_DIR / "sanitize.cfg"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb"))
MARK = "DNEWTON_NOTEBOOK_RUN"
RUN_TIMEOUT = 400            # seconds for one notebook, engines included (they take ~20-60 s)
MAX_BYTES = 200_000


def _ends(procs):
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass


def _leftovers(marker, wait=15.0):
    """Processes carrying ``marker`` after the run, given ``wait`` seconds to exit."""
    deadline = time.monotonic() + wait
    while True:
        left = cluster_processes(**{MARK: marker})
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def _describe(procs):
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
        except Exception:
            out.append(str(p.pid))
    return "\n".join(out)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_outputs_and_no_process_left(notebook):
    run_notebook(notebook)


NOT_HASWELL = ("skylakex", "cooperlake", "sapphirerapids",    # one AVX-512 GEMM kernel
               "sandybridge")


def second_kernel(in_use, flags):
    """An OpenBLAS kernel that rounds otherwise than ``in_use`` (OpenBLAS's name of the kernel
    it runs, lower case; None: the BLAS is not OpenBLAS) on a CPU with ``flags``: SkylakeX
    (AVX-512) where the CPU has it, else Sandybridge (AVX without FMA: each product rounded
    on its own, where Haswell's kernel fuses the multiply and the add); Haswell where one of
    those is in use. None where no other kernel runs on the CPU."""
    if in_use is None:
        return None
    if in_use in NOT_HASWELL:
        return "Haswell" if "avx2" in flags else None
    return "SkylakeX" if "avx512f" in flags else "Sandybridge" if "avx" in flags else None


def _other_kernel():
    """``second_kernel`` of this process's OpenBLAS (threadpoolctl, a test dependency) on
    this CPU."""
    import numpy  # noqa: F401  (loads its OpenBLAS, for threadpoolctl to see)
    from threadpoolctl import threadpool_info
    kernels = [i.get("architecture") or "" for i in threadpool_info()
               if i.get("internal_api") == "openblas"]
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None
    return second_kernel(kernels[0].lower() if kernels else None, flags)


@pytest.mark.parametrize("in_use, flags, second", [
    ("haswell", {"avx", "avx2"}, "Sandybridge"), ("zen", {"avx", "avx2"}, "Sandybridge"),
    ("haswell", {"avx", "avx2", "avx512f"}, "SkylakeX"),
    ("skylakex", {"avx", "avx2", "avx512f"}, "Haswell"),
    ("cooperlake", {"avx", "avx2", "avx512f"}, "Haswell"),
    ("sandybridge", {"avx", "avx2"}, "Haswell"), ("sandybridge", {"avx"}, None),
    ("nehalem", set(), None), (None, {"avx", "avx2"}, None)])
def test_the_second_kernel_is_another_one_the_cpu_runs(in_use, flags, second):
    assert second_kernel(in_use, flags) == second


TRAINING_NOTEBOOKS = [nb for nb in NOTEBOOKS if nb.stem[:2] in ("04", "05", "06")]


@pytest.mark.parametrize("notebook", TRAINING_NOTEBOOKS, ids=lambda p: p.stem)
def test_training_notebook_on_another_blas_kernel(notebook):
    kernel = _other_kernel()
    if kernel is None:
        pytest.skip("no second OpenBLAS kernel for this CPU (SkylakeX needs AVX-512, Haswell "
                    "AVX2, Sandybridge AVX)")
    run_notebook(notebook, OPENBLAS_CORETYPE=kernel)


def run_notebook(notebook, **extra_env):
    """``pytest --nbval`` on one notebook in its own process tree; fails on any difference
    and on any process left behind."""
    marker = f"{notebook.stem}-{uuid.uuid4().hex[:12]}"
    env = dict(os.environ, IPP_NONINTERACTIVE="1", **{MARK: marker},
               **blas_environment(), **extra_env)
    cmd = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", str(SANITIZE), "--nbval-cell-timeout", "300",
           "-p", "no:cacheprovider", "-q", "-o", "addopts=", str(notebook)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        _ends(cluster_processes(**{MARK: marker}))
        pytest.fail(f"{notebook.name} did not finish within {RUN_TIMEOUT} s:\n{output[-4000:]}")
    left = _leftovers(marker)
    _ends(left)
    assert proc.returncode == 0, f"pytest --nbval {notebook.name} failed:\n{output[-6000:]}"
    assert not left, (f"{notebook.name} left {len(left)} process(es) running (now ended):\n"
                      f"{_describe(left)}")


# Outputs that would differ on another machine: absolute paths, engine ids, Python objects'
# addresses.
_NOT_PORTABLE = re.compile(r"(/work/|/home/|/root/|/tmp/|site-packages|at 0x[0-9a-f]+)")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_small_executed_and_portable(notebook):
    assert notebook.stat().st_size < MAX_BYTES, f"{notebook.name}: shrink its figures"
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), \
        f"{notebook.name}: commit it executed (jupyter nbconvert --execute --inplace)"
    for c in code:
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"{notebook.name}: a cell failed"
            text = "".join(out.get("text", "")) + "".join(
                "".join(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
            bad = _NOT_PORTABLE.search(text)
            assert not bad, f"{notebook.name}: output shows {bad.group(0)!r}: {text[:200]}"
