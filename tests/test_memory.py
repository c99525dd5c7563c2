"""Each rank holds only its share (docs/method.md §3), and a share that does not fit is refused.

The closed form of ``memory`` is held against the peak that tracemalloc measures (numpy
reports its arrays to it) on one process; the refusal against a real address-space limit
(RLIMIT_AS, set in the child before it starts). The demonstration of the premise: a
network that one process cannot train under a per-process limit trains on 8 ranks, each
under the same limit.
"""
import hashlib
import json
import platform
import re
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dnewton_core import memory
from dnewton_core.comm import Comm
from dnewton_core.data import Dataset
from dnewton_core.dense import DenseModel
from dnewton_core.distributed import DistributedModel
from dnewton_core.environment import LaunchError, local_environment, local_launch
from dnewton_core.model import ConfigError, ObjectiveConfig
from dnewton_core.newton import NewtonConfig, newton
from dnewton_core.partition import Grid

MiB = 2 ** 20


def _dataset(n_train, n_test, n_features, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, n_features), dtype=dtype)   # no float64 copy
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return Dataset("t", X[:n_train], y[:n_train], X[n_train:], y[n_train:], (0, 1, 2), "here",
                   dtype)


def _peak_and_estimate(n_train, n_test, n_features, hidden, splits=None, dtype="float64"):
    """(tracemalloc's peak over data, model and two Newton iterations; ``memory``'s need)."""
    config = ObjectiveConfig(batch_size=256, dtype=dtype)
    newton_config = NewtonConfig(iters=2, cg_max=5)
    tracemalloc.start()
    try:
        if splits is None:                 # the one-process model holds the Dataset itself
            base = tracemalloc.get_traced_memory()[0]
            model = DenseModel(_dataset(n_train, n_test, n_features, dtype=dtype), hidden,
                               config)
        else:                              # a rank's share is copied out of what was read
            data = _dataset(n_train, n_test, n_features, dtype=dtype)
            base = tracemalloc.get_traced_memory()[0]
            model = DistributedModel(data.share(range(n_features), True), hidden, splits,
                                     Comm(), config)
        newton(model, newton_config)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    layers = model.layers
    sizes = (n_train, n_test, config.batch_size, newton_config.subsample_size(n_train))
    need = memory.dense_bytes(layers, *sizes, dtype) if splits is None else \
        memory.rank_bytes(layers, Grid(layers, splits, 1).blocks(0), *sizes, dtype=dtype)
    return peak, need["total"]


@pytest.mark.parametrize("shape", [
    dict(n_train=100, n_test=40, n_features=16, hidden=(600, 600)),   # parameters dominate
    dict(n_train=3000, n_test=500, n_features=300, hidden=(20,)),      # data dominates
    dict(n_train=3000, n_test=500, n_features=300, hidden=(), splits=(1, 1)),  # one partition
    dict(n_train=100, n_test=40, n_features=16, hidden=(600, 600), dtype="float32"),
    dict(n_train=3000, n_test=500, n_features=300, hidden=(20,), dtype="float32"),
    dict(n_train=3000, n_test=500, n_features=300, hidden=(), splits=(1, 1), dtype="float32"),
    # one rank holding every partition of a grid (memory.rank_bytes)
    dict(n_train=3000, n_test=500, n_features=300, hidden=(20,), splits=(2, 1, 2)),
    dict(n_train=100, n_test=40, n_features=16, hidden=(300, 300), splits=(1, 2, 1, 2)),
])
def test_the_closed_form_bounds_the_measured_peak_closely(shape):
    peak, need = _peak_and_estimate(**shape)
    assert peak <= need <= 2 * peak, (peak / MiB, need / MiB)


def test_a_rank_holding_several_partitions_counts_its_data_once():
    layers, sizes = (64, 32, 32, 10), (1000, 100, 256, 50)
    grid = Grid(layers, (2, 1, 2, 1), 2)
    for r in range(2):
        parts = grid.blocks(r)
        alone = [memory.partition_bytes(layers, p, *sizes) for p in parts]
        both = memory.rank_bytes(layers, parts, *sizes)
        assert both["parameters"] == sum(a["parameters"] for a in alone)
        assert both["data"] == 1100 * (8 * 32 + 8)      # X[:, 32 r:32 r + 32] and the codes
        assert both["total"] == sum(v for k, v in both.items() if k != "total")
    assert memory.rank_bytes(layers, grid.blocks(0)[:1], *sizes) == \
        memory.partition_bytes(layers, grid.blocks(0)[0], *sizes)


def test_float32_needs_half_but_the_class_codes():
    """--dtype float32: every term halves but the class codes (int64) of the data."""
    layers, grid = (300, 20, 3), Grid((300, 20, 3), (1, 1, 1))
    sizes = (3000, 500, 256, 150)
    for part in grid.partitions:
        b64, b32 = (memory.partition_bytes(layers, part, *sizes, dtype, activation="tanh")
                    for dtype in ("float64", "float32"))
        codes = 8 * 3500 * part.holds_labels
        assert b32["data"] - codes == (b64["data"] - codes) // 2
        assert all(2 * b32[k] == b64[k] for k in ("parameters", "jacobian", "work", "kept"))
        # relu's sigma'(s^m) is a bool mask, kept 8 entries a byte in either dtype (m < L)
        for dtype, E in (("float64", 8), ("float32", 4)):
            tanh, relu = (memory.partition_bytes(layers, part, *sizes, dtype, activation=a)
                          for a in ("tanh", "relu"))
            c = 0 if part.holds_labels else len(part.cols)
            assert tanh["kept"] - relu["kept"] == 3000 * (c * E - -(-c // 8))
            # D^{L-1} keeps sigma' on S (150 instances) beside W^L's rows: a byte an entry for relu
            last = part.m == len(layers) - 2
            assert tanh["jacobian"] - relu["jacobian"] == 150 * c * (E - 1) * last
    d64, d32 = (memory.dense_bytes(layers, *sizes, dtype) for dtype in ("float64", "float32"))
    assert d32["data"] - 8 * 3500 == (d64["data"] - 8 * 3500) // 2


def test_local_ranks_as_the_launchers_say():
    assert memory.local_ranks({"MPI_LOCALNRANKS": "8"}) == 8
    assert memory.local_ranks({"OMPI_COMM_WORLD_LOCAL_SIZE": "3"}) == 3
    assert memory.local_ranks({"MPI_LOCALNRANKS": "x"}) == 1 and memory.local_ranks({}) == 1


def test_available_memory_is_shared_among_the_local_ranks(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16000000 kB\nMemAvailable:   8000000 kB\n")
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        pytest.skip("this process runs under an address-space limit")
    have, why = memory.available_bytes(4, meminfo=str(meminfo))
    assert have == 8000000 * 1024 // 4 and why == "MemAvailable 7,812 MiB / 4 local ranks"


def test_the_address_space_limit_counts_what_is_in_use():
    limit = 3 * 2 ** 30
    code = ("from dnewton_core import memory; h, why = memory.available_bytes(1, '/nonexistent');"
            "used = memory._status_bytes('/proc/self/status', 'VmSize'); print(h + used, why)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, preexec_fn=lambda: resource.setrlimit(
                             resource.RLIMIT_AS, (limit, limit))).stdout.split(maxsplit=1)
    assert abs(int(out[0]) - limit) < 16 * MiB          # VmSize read twice: a page or two
    assert out[1].startswith("address-space limit 3,072 MiB (ulimit -v, prlimit --as) less ")


def test_the_refusal_is_one_line_with_the_bytes():
    need = {"data": 10 * MiB, "parameters": 90 * MiB, "total": 100 * MiB}
    assert memory.refusal(need, 100 * MiB, "x") is None
    assert memory.refusal(need, None, "unknown") is None
    line = memory.refusal(need, 60 * MiB, "MemAvailable 480 MiB / 8 local ranks")
    assert "\n" not in line
    assert line.startswith(f"not enough memory: this rank's share needs {100 * MiB:,} bytes "
                           f"(100 MiB: data 10 MiB, parameters 90 MiB) and has {60 * MiB:,} "
                           "bytes (60 MiB: MemAvailable 480 MiB / 8 local ranks)")
    assert "--no-keep-forward" not in line
    # when what the line search keeps is what does not fit, the line says so
    need = {"data": 10 * MiB, "kept": 50 * MiB, "total": 60 * MiB}
    assert f"use more ranks, --no-keep-forward (it would then need {10 * MiB:,})" in \
        memory.refusal(need, 20 * MiB, "x")
    assert "--no-keep-forward" not in memory.refusal(need, 5 * MiB, "x")
    layers, part = (16, 8, 3), Grid((16, 8, 3), (1, 1, 1)).partitions[1]
    off = memory.partition_bytes(layers, part, 100, 10, 32, 5, keep=False)
    on = memory.partition_bytes(layers, part, 100, 10, 32, 5)
    assert off["kept"] == 0 and on["total"] - off["total"] == on["kept"] == 8 * 100 * (8 + 3)
    # layer L keeps z^L; d xi / d z^L and p too only where they would need messages again
    split = Grid((16, 8, 4), (1, 1, 2)).partitions[1]
    for loss, extra in (("squared", 0), ("cross_entropy", 2)):
        kept = memory.partition_bytes((16, 8, 4), split, 100, 10, 32, 5, loss=loss)["kept"]
        assert kept == 8 * 100 * (8 + 2 * (1 + extra))


# -- the premise, under mpiexec --------------------------------------------------------------

HOLDINGS = """
import hashlib, json, sys
from dnewton_core.comm import Comm
from dnewton_core.experiment import Problem, build_model, prepare
comm = Comm.on_world()
p = prepare(Problem(data="digits", hidden=(16, 16), splits="2,1,1,1"), comm)
model = build_model(p.data, (16, 16), p.objective, comm, p.splits)
shape = lambda A: None if A is None else list(A.shape)
held = dict(rank=comm.rank, share=type(p.data).__name__, X=shape(p.data.X_train),
            y=shape(p.data.y_train), model_X=shape(model.X),
            model_Y=shape(next(iter(model.Y.values()), None)),
            same=model.X is p.data.X_train, theta=hashlib.sha256(model.theta).hexdigest())
sys.stdout.write(json.dumps(held) + chr(10))          # one write: ranks' lines never mix
"""


def test_each_rank_reads_and_keeps_only_its_columns_and_draws_only_its_block():
    from dnewton_core import reference
    p = subprocess.run(_launch(4) + [sys.executable, "-c", HOLDINGS], capture_output=True,
                       text=True, timeout=120, env=local_environment())
    assert p.returncode == 0, p.stderr
    got = sorted((json.loads(line) for line in p.stdout.splitlines()), key=lambda r: r["rank"])
    l = 1438                                              # digits: 1797 less 359 test
    assert [(r["share"], r["X"], r["y"]) for r in got] == [
        ("Share", [l, 32], None), ("Share", [l, 32], None), ("Share", None, None),
        ("Share", None, [l])]
    assert [(r["model_X"], r["model_Y"]) for r in got] == [
        ([l, 32], None), ([l, 32], None), (None, None), (None, [l, 10])]
    assert got[0]["same"] and got[1]["same"]              # the model keeps the share: no copy
    layers = (64, 16, 16, 10)
    theta = reference.flatten(reference.init_params(layers, 0))
    grid = Grid(layers, (2, 1, 1, 1))
    for r in got:                                         # bit for bit
        assert r["theta"] == hashlib.sha256(theta[grid.param_slices(r["rank"])]).hexdigest()


HIDDEN = "3000,3000"      # 9.1 M parameters: about 1.1 GB for one process, 0.2 GB per rank of 8


def _launch(n):
    try:
        return local_launch(n)
    except LaunchError:
        pytest.skip("no mpiexec")


def _svmlight(path, n=120, features=16):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, features))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    path.write_text("".join(f"{c} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(x))
                            + "\n" for x, c in zip(X, y)))
    return path


def _address_space_in_use():
    """VmSize of a process that has loaded what a run loads before its memory check."""
    code = ("import sklearn.datasets, dnewton_core.cli; from mpi4py import MPI;"
            "from dnewton_core import memory;"
            "print(memory._status_bytes('/proc/self/status', 'VmSize'))")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=local_environment()).stdout)


def _train(ranks, limit, data, *args):
    """`train` on ``ranks`` ranks (1: no mpiexec), every process under RLIMIT_AS = limit."""
    cmd = ([] if ranks == 1 else _launch(ranks)) + [
        sys.executable, "-m", "dnewton_core", "train", "--data", "svmlight", "--data-path",
        str(data), "--hidden", HIDDEN, "--iters", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=local_environment(),
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS,
                                                                (limit, limit)))


@pytest.fixture(scope="module")
def limit():
    """A per-process limit between the shares of 8 ranks and the whole network."""
    free = memory._status_bytes("/proc/meminfo", "MemAvailable") or 0
    if free < 4 * 2 ** 30:
        pytest.skip("8 ranks of this network need about 4 GB of available memory")
    return _address_space_in_use() + 512 * MiB


def test_a_network_one_process_cannot_hold_trains_on_8_ranks_under_the_same_limit(
        tmp_path, limit):
    data = _svmlight(tmp_path / "train.svm")
    alone = _train(1, limit, data)
    assert alone.returncode == 2, alone.stderr
    [line] = alone.stderr.splitlines()                 # one line, no MemoryError traceback
    assert line.startswith("error: not enough memory: the one-process model needs ")
    need, have = (int(n.replace(",", "")) for n in
                  re.fullmatch(r".* needs ([\d,]+) bytes .* has ([\d,]+) bytes .*", line).groups())
    assert need > 2 * have and "address-space limit" in line
    spread = _train(8, limit, data)
    assert spread.returncode == 0, spread.stderr[-2000:]
    assert "8 ranks, splits 1,2,2,1" in spread.stdout and "final: test accuracy" in spread.stdout


def test_a_share_that_does_not_fit_is_refused_on_every_rank_before_training(tmp_path, limit):
    data = _svmlight(tmp_path / "train.svm")
    p = _train(3, limit, data, "--splits", "1,1,1,1")  # rank 1 holds all of W^2
    assert p.returncode == 2, p.stderr
    [line] = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: rank 1: not enough memory: this rank's share "
                           "(W^2[0:3000, 0:3000]) needs ")
    assert "iter" not in p.stdout                      # refused before the first iteration


HEAP_PROBE = """
import ctypes, sys
import numpy as np
from dnewton_core import memory

class Info(ctypes.Structure):          # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
kept = memory.keep_freed_memory() if sys.argv[1] == "keep" else None
a = np.ones(2 ** 23)                   # 64 MiB
mapped = mallinfo2().hblkhd            # bytes in mapped blocks, this array's among them
del a
print(kept, mapped >= 2 ** 26, mallinfo2().fordblks >= 2 ** 26)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_arrays_stay_in_the_heap_for_the_next_ones():
    """By default glibc maps a 64 MiB array and unmaps it when freed (the next one writes
    into fresh pages the kernel must zero); after ``keep_freed_memory`` it comes from the
    heap and its memory stays there, free for the next array."""
    def probe(mode):
        return subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], capture_output=True,
                              text=True, check=True).stdout.split()
    assert probe("default") == ["None", "True", "False"]
    assert probe("keep") == ["True", "False", "True"]


@pytest.mark.skipif(not Path("/usr/bin/time").exists(), reason="GNU time measures the peaks")
@pytest.mark.parametrize("ranks", [1, 4])
def test_a_wide_svmlight_file_is_refused_before_it_is_made_dense(tmp_path, ranks):
    """An svmlight file is sparse: ten lines with one index of 5e8 make 40 GB when dense.
    It stays sparse until each rank has checked what its share needs (a tester's run made
    the whole set dense on every rank first: 3 GB each, 24 s, before the refusal)."""
    path = tmp_path / "wide.svm"
    path.write_text("".join(f"{1 + i % 2} {1 + i % 3}:1\n" for i in range(9)) + "1 500000000:1\n")
    cmd = [sys.executable, "-m", "dnewton_core", "train", "--data", "svmlight", "--data-path",
           str(path), "--hidden", "4", "--iters", "1"]
    launch = local_launch(ranks) if ranks > 1 else []
    for _ in range(3):   # a CI run under load printed 3 of the 4 ranks' peaks (likely cause,
        #                  not shown: mpiexec ends a rank's `time` once another rank has ended
        #                  with status 2): measure again; the assertions below are unchanged
        proc = subprocess.run([*launch, "/usr/bin/time", "-f", "peak %M KB", *cmd],
                              capture_output=True, text=True, timeout=120, env=local_environment())
        assert proc.returncode == 2 and "not enough memory" in proc.stderr, proc.stderr[-800:]
        peaks = [int(kb) for kb in re.findall(r"peak (\d+) KB", proc.stderr)]
        if len(peaks) == ranks:
            break
    assert len(peaks) == ranks and max(peaks) < 500_000, peaks     # KB: far below 40 GB


def test_an_svmlight_file_too_large_to_read_under_the_limit_is_refused_in_one_line(tmp_path):
    """Reading an svmlight file holds its nonzeros (scikit-learn's reader: 16-23 bytes each,
    at the peak; the kit's split and share then up to 33 in all): 10 million of them do not fit
    128 MiB more than a run has in use (a whole run on a small file needs less than 96), and
    the run says so before reading, instead of a MemoryError from inside the reader."""
    path = tmp_path / "big.svm"
    line = " ".join(f"{j}:0.5" for j in range(1, 501)) + "\n"
    path.write_text("".join(f"{i % 3} {line}" for i in range(20_000)))
    proc = _train(1, _address_space_in_use() + 128 * MiB, path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [error] = proc.stderr.splitlines()
    assert error.startswith(f"error: not enough memory: reading {path} (at most 10,000,000 "
                            "nonzeros, 40 bytes each, and 20,001 lines, 80 bytes each) needs "
                            f"{40 * 10_000_000 + 80 * 20_001:,} bytes (383 MiB: nonzeros "
                            "381 MiB, lines 2 MiB) and has "), error
    assert "(ulimit -v, prlimit --as) less " in error and error.endswith("; raise the limit")


def test_a_limit_too_small_for_the_svmlight_reader_says_so(tmp_path):
    """scikit-learn's libraries need about 200 MiB of address space more than the kit: under
    a limit between the two, a run on svmlight files failed inside the dynamic loader
    ('ImportError: ... failed to map segment from shared object')."""
    path = _svmlight(tmp_path / "train.svm")
    proc = _train(1, _address_space_in_use() - 100 * MiB, path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [error] = proc.stderr.splitlines()
    assert error.startswith(f"error: {path}: cannot load scikit-learn's svmlight reader ("), error
    assert re.search(r"\); it runs under an address-space limit [\d,]+ MiB: raise it$", error)


def test_running_out_of_memory_where_no_closed_form_counts_is_one_line():
    def allocate():
        raise MemoryError("Unable to allocate 38.1 MiB for an array with shape (4997472,)")
    with pytest.raises(ConfigError) as e:
        memory.within(allocate, "reading the data set svmlight")
    assert str(e.value).startswith("not enough memory reading the data set svmlight: Unable to "
                                   "allocate 38.1 MiB for an array with shape (4997472,) (this "
                                   "process may allocate ")
    assert memory.within(lambda: 7, "x") == 7


def test_evaluate_refuses_a_data_set_that_does_not_fit_before_it_is_made_dense(
        tmp_path, monkeypatch):
    from dnewton_core import data, experiment
    model = tmp_path / "m.npz"
    subprocess.run([sys.executable, "-m", "dnewton_core", "train", "--hidden", "8", "--iters",
                    "1", "--save", str(model)], check=True, capture_output=True, timeout=120,
                   env=local_environment())
    need = memory.evaluate_bytes((64, 8, 10), 1438, 359, 4096)["total"]
    monkeypatch.setattr(memory, "available_bytes", lambda n_local=1: (need, "a test's limit"))
    experiment.evaluate(str(model))                                # just fits: evaluated
    monkeypatch.setattr(memory, "available_bytes", lambda n_local=1: (need - 1, "a limit"))
    monkeypatch.setattr(data.Source, "load", lambda *a, **k: pytest.fail("made dense"))
    with pytest.raises(ConfigError) as e:
        experiment.evaluate(str(model))
    assert str(e.value).startswith(f"not enough memory: evaluate needs {need:,} bytes (")
    assert str(e.value).endswith(f"and has {need - 1:,} bytes (4 MiB: a limit); use a "
                                 "machine with more memory")
    # what it counts: the dense data, 3 copies of the weights, one batch's forward pass
    assert memory.evaluate_bytes((64, 8, 10), 1438, 359, 4096) == dict(
        data=1797 * (8 * 64 + 8), parameters=3 * 8 * (65 * 8 + 9 * 10),
        work=3 * 8 * 1438 * 82, total=need)
