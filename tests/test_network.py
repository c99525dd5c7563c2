"""The network model (network.py) against values worked by hand from the formulas of
docs/method.md §8."""
import pytest

from dnewton_core import ledger
from dnewton_core import network as net
from dnewton_core.ledger import TRAINING_PHASES
from dnewton_core.network import Network, parse_network

GIG = net.PRESETS["1gbe"]                      # 50 us, 125 MB/s, gamma 0.25 ns/byte
TEN = Network("10gbe, no gamma", 20e-6, 1.25e9, gamma=0.0)


def test_short_allreduce_is_recursive_doubling():
    # p = 4: two steps of (alpha + n beta + n gamma), n = 8 bytes
    assert net.allreduce(8, 4, GIG) == pytest.approx(2 * (50e-6 + 8 / 125e6 + 8 * 2.5e-10))


def test_short_allreduce_folds_extra_ranks_when_p_is_not_a_power_of_two():
    a, b, c, n = 50e-6, 1 / 125e6, 2.5e-10, 16
    # p = 3: fold in (a + nb + nc), one step on p' = 2, send back (a + nb)
    assert net.allreduce(n, 3, GIG) == pytest.approx(3 * a + 3 * n * b + 2 * n * c)
    # p = 6: fold, two steps on p' = 4, send back
    assert net.allreduce(n, 6, GIG) == pytest.approx(4 * a + 4 * n * b + 3 * n * c)


def test_long_allreduce_is_rabenseifner():
    # the example of docs/method.md §8: 72 x 10 float64 over 8 ranks on 10 GbE, no gamma
    assert net.allreduce(5760, 8, TEN) == pytest.approx(6 * 20e-6 + 2 * 7 / 8 * 5760 / 1.25e9)
    assert net.allreduce(5760, 8, TEN) == pytest.approx(128.064e-6)


def test_the_switch_is_at_mpich_2048_bytes():
    short = net.allreduce(2048, 8, TEN)
    assert short == pytest.approx(3 * (20e-6 + 2048 / 1.25e9))
    assert net.allreduce(2049, 8, TEN) == pytest.approx(6 * 20e-6 + 2 * 7 / 8 * 2049 / 1.25e9)


def test_bcast_reduce_gather_send():
    assert net.bcast(1000, 4, GIG) == pytest.approx(2 * (50e-6 + 1000 / 125e6))
    assert net.bcast(10**6, 4, GIG) == pytest.approx(5 * 50e-6 + 2 * 0.75 * 10**6 / 125e6)
    assert net.reduce(800, 5, GIG) == pytest.approx(3 * (50e-6 + 800 / 125e6 + 800 * 2.5e-10))
    assert net.reduce(2048, 5, GIG) == pytest.approx(3 * (50e-6 + 2048 / 125e6 + 2048 * 2.5e-10))
    # longer: reduce-scatter, then gather; 3 ranks fold one in first (hand-worked: 16.525 ms)
    assert net.reduce(10**6, 4, GIG) == pytest.approx(4 * 50e-6 + 1.5 * 8e-3 + 0.75e6 * 2.5e-10)
    assert net.reduce(10**6, 3, GIG) == pytest.approx(16.525e-3)
    assert net.gather(100, 4, GIG) == pytest.approx(2 * 50e-6 + 3 * 100 / 125e6)
    assert net.send(8, GIG) == pytest.approx(50e-6 + 8 / 125e6)


def test_one_rank_costs_nothing():
    assert all(net.seconds(op, 10**6, 1, GIG) == 0.0 for op in net.SECONDS)


def test_presets_and_parsing():
    assert parse_network("none") is None and parse_network(None) is None
    assert parse_network("1gbe") is GIG and all(p.source for p in net.PRESETS.values())
    custom = parse_network("20:10")
    assert custom.latency == pytest.approx(20e-6) and custom.bandwidth == pytest.approx(1.25e9)
    assert parse_network("20:10:1").gamma == pytest.approx(1e-9)
    for bad in ("fast", "20", "20:x", "1:2:3:4", "-1:10", "20:0", "20:-1", "inf:1", "nan:1",
                "20:1:-1"):
        with pytest.raises(ValueError, match="network"):
            parse_network(bad)


# -------------------------------------------------------------- on a run (command line)

def _train(tmp_path, name, *args, n=4):
    import json
    import subprocess
    import sys

    from dnewton_core.environment import local_environment, local_launch
    out = tmp_path / f"{name}.json"
    cmd = [*local_launch(n), sys.executable, "-m", "dnewton_core", "train", "--iters", "4",
           "--json", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=local_environment(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_a_run_on_a_modeled_network_records_its_time_and_inject_makes_it_real(tmp_path):
    modeled = _train(tmp_path, "model", "--network", "1gbe")
    for record in modeled["history"]:
        phases = [d for p, d in record["comm"].items() if p not in ("evaluate", "report")]
        assert all("network_seconds" in d and "mpi_seconds" in d for d in phases)
        assert record["modeled_seconds"] > 0
    times = [r["modeled_time"] for r in modeled["history"]]
    assert times == sorted(times) and modeled["final"]["modeled_time"] == times[-1]
    # the same run with every collective lasting its modeled time: the training clock is at
    # least the slowest rank's modeled network seconds
    real = _train(tmp_path, "inject", "--network", "1gbe", "--network-mode", "inject")
    network = [sum(d.get("network_seconds", 0.0) for p, d in r["comm"].items()
                   if p in TRAINING_PHASES) for r in real["history"]]
    assert all(r["modeled_seconds"] >= 0.999 * n for r, n in zip(real["history"], network))
    assert real["final"]["wall_time"] >= max(network)
    assert [r["objective"] for r in real["history"]] == \
        [r["objective"] for r in modeled["history"]]            # the model changes no result
    assert (modeled["config"]["network"], modeled["config"]["network_mode"]) == ("1gbe", "model")
    assert (real["config"]["network"], real["config"]["network_mode"]) == ("1gbe", "inject")


def test_inject_sleeps_what_model_mode_adds():
    from dnewton_core.comm import Comm, Group
    gig, group, t = net.PRESETS["1gbe"], Group("g", None, (0, 1)), net.allreduce(10**5, 2,
                                                                             net.PRESETS["1gbe"])
    phases = {}
    for inject in (False, True):
        comm = Comm(network=gig, inject=inject)
        with comm.phase("cg"):
            comm._wait("allreduce", group, lambda: None, 10**5)    # a call that returns at once
        phases[inject] = comm.totals()["cg"]
    model, real = phases[False], phases[True]
    assert model["network_seconds"] == real["network_seconds"] == pytest.approx(t)
    # the modeled time the call did not already take (none if a busy machine held it longer)
    assert model["network_added_seconds"] == pytest.approx(max(0.0, t - model["mpi_seconds"]))
    assert real["network_added_seconds"] == 0.0 and real["mpi_seconds"] >= t   # slept it


def test_compare_on_a_modeled_network_gives_the_modeled_times(tmp_path):
    import json
    import subprocess
    import sys

    from dnewton_core.environment import local_environment, local_launch
    proc = subprocess.run([*local_launch(3), sys.executable, "-m", "dnewton_core", "compare",
                           "--iters", "2", "--epochs", "1", "--hidden", "8", "--network",
                           "1gbe", "--out", str(tmp_path)], capture_output=True, text=True,
                          env=local_environment(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads((tmp_path / "compare.json").read_text())
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method"))
    assert lines[header].split()[-5:] == ["seconds", "modeled", "s", "MB", "sent"]
    for line, (name, r) in zip(lines[header + 1:], runs.items()):
        words = line.split()
        # the modeled column is the run's modeled time, the sum of its records' modeled
        # seconds (longer or shorter than the wall time, as this machine is busy or not)
        assert words[0] == name and r["final"]["modeled_time"] == pytest.approx(
            sum(h["modeled_seconds"] for h in r["history"]), rel=1e-12)
        assert words[-3:-1] == [f"{r['final'][k]:.2f}" for k in ("wall_time", "modeled_time")]


def test_no_network_records_no_network_time(tmp_path):
    plain = _train(tmp_path, "plain")
    assert "modeled_time" not in plain["final"]
    assert all("network_seconds" not in d for r in plain["history"] for d in r["comm"].values())


def test_a_trace_has_one_process_row_per_rank(tmp_path):
    import json
    trace = tmp_path / "trace.json"
    _train(tmp_path, "traced", "--network", "10gbe", "--trace", str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["pid"] for e in events} == {0, 1, 2, 3}
    names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert names[0].startswith("rank 0 (m, i, j) = (1, 0, 0)")
    messages = [e for e in events if e.get("tid") == 1 and e["ph"] == "X"]
    assert messages and all("modeled_us" in e["args"] and "bytes" in e["args"] for e in messages)
    assert {e["name"] for e in events if e.get("tid") == 0 and e["ph"] == "X"} >= \
        {"gradient", "cg", "line_search"}


def test_a_one_process_trace_has_its_phases(tmp_path):
    """One process sends nothing, but its time line still shows what each phase costs (to
    set beside a distributed run's)."""
    import json
    trace = tmp_path / "trace.json"
    run = _train(tmp_path, "alone", "--trace", str(trace), n=1)
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["pid"] for e in events} == {0}
    assert not [e for e in events if e.get("tid") == 1 and e["ph"] == "X"]   # no messages
    spans = [e for e in events if e.get("tid") == 0 and e["ph"] == "X"]
    assert {e["name"] for e in spans} >= {"gradient", "cg", "line_search"}
    cg = sum(e["dur"] for e in spans if e["name"] == "cg") / 1e6
    assert cg == pytest.approx(sum(r["comm"]["cg"]["seconds"] for r in run["history"]),
                               rel=0.05)


def test_a_bad_network_is_one_line():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "dnewton_core", "train", "--network", "fast"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: --network: expected none, infiniband")
    for command, networks in (("train", ["1gbe", "10gbe"]), ("compare", ["1gbe,10gbe"])):
        proc = subprocess.run([sys.executable, "-m", "dnewton_core", command, "--network",
                               *networks], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr == (
            f"error: --network 1gbe 10gbe: {command} charges one network (reproduce --network "
            "charges every run on each of several)\n")


# -------------------------------------------------------------- several networks at once

def _rank_record(compute, mpi, on):
    """One rank's record of one iteration: phase gradient, one collective that took ``mpi``
    seconds, charged on networks ``on`` ({name: modeled seconds})."""
    led = ledger.Ledger()
    led.charge(on["1gbe"], mpi, on)
    d = dict(messages=3, bytes=24, seconds=compute + mpi,
             **{key: per_phase["other"] for key, per_phase in led.extra.items()})
    return {"gradient": d, "evaluate": dict(messages=1, bytes=8, seconds=5.0)}


def test_the_modeled_time_keeps_the_waits_and_adds_what_the_network_adds():
    led = ledger.Ledger()
    with led.phase("cg"):
        led.charge(0.003, 0.001, {"1gbe": 0.003, "10gbe": 0.0005})  # 1 ms here, 3 on 1gbe
        led.charge(0.002, 0.010, {"1gbe": 0.002, "10gbe": 0.0004})  # waited 10 ms for a rank
        led.charge(0.001, None, {"1gbe": 0.001, "10gbe": 0.0001})   # a send: does not block
    d = led.totals()["cg"]
    assert d["mpi_seconds"] == pytest.approx(0.011)
    assert d["network_seconds"] == pytest.approx(0.006)
    assert d["network_added_seconds"] == pytest.approx(0.002 + 0.0 + 0.001)
    assert d[ledger.added_key("10gbe")] == pytest.approx(0.0001)
    assert d[ledger.network_key("10gbe")] == pytest.approx(0.001)
    record = {"cg": dict(d, seconds=0.05)}
    assert ledger.modeled_seconds(record) == pytest.approx(0.053)
    assert ledger.modeled_seconds(record, "10gbe") == pytest.approx(0.0501)


def test_every_network_is_the_slowest_rank_of_its_own_sum():
    # rank 0 computes more, rank 1 sends more: which is slowest depends on the network
    ranks = [_rank_record(0.010, 0.001, {"1gbe": 0.002, "10gbe": 0.001}),
             _rank_record(0.004, 0.001, {"1gbe": 0.020, "10gbe": 0.002})]
    got = ledger.modeled_over_ranks(ranks)
    assert got["modeled_seconds"] == pytest.approx(0.024)             # rank 1 on 1gbe
    assert got["modeled_seconds_on"] == pytest.approx({"1gbe": 0.024, "10gbe": 0.011})
    combined = ledger.combine_records(ranks)["gradient"]
    assert combined[ledger.network_key("1gbe")] == 0.020 and combined["messages"] == 6
    assert ledger.modeled_over_ranks([{"gradient": dict(seconds=1.0)}]) == {}
    records = ledger.accumulate_modeled([dict(got), dict(got)])
    assert records[1]["modeled_time"] == pytest.approx(0.048)
    assert records[1]["modeled_time_on"]["10gbe"] == pytest.approx(0.022)


def test_an_sgd_epoch_is_timed_without_its_f_as_its_wall_time_is():
    epoch = {"sgd": dict(seconds=0.5, mpi_seconds=0.1, network_added_seconds=0.1),
             "function": dict(seconds=0.3, mpi_seconds=0.1, network_added_seconds=0.05)}
    assert ledger.modeled_seconds(epoch) == pytest.approx(0.6)
    newton = {"function": epoch["function"], "cg": epoch["sgd"]}
    assert ledger.modeled_seconds(newton) == pytest.approx(0.95)


def test_the_notebook_reads_seconds_per_phase_and_iterations_to_a_target():
    from dnewton_core.classroom import network as wire
    rec = lambda k, acc: dict(iter=k, test_accuracy=acc, wall_time=0.5 * k, modeled_time=0.2 * k,
                              comm={"cg": dict(seconds=0.3, mpi_seconds=0.1, network_seconds=0.05),
                                    "evaluate": dict(seconds=9.0)})
    run = {"history": [rec(1, 0.5), rec(2, 0.7), rec(3, 0.9)]}
    assert wire.phase_seconds(run) == {"cg": pytest.approx((0.2, 0.05))}
    assert wire.per_iteration(run, "wall_time") == pytest.approx(0.5)
    assert wire.per_iteration(run, "modeled_time") == pytest.approx(0.2)
    assert (wire.iterations_to(run, 0.7), wire.iterations_to(run, 0.95)) == (2, None)
    assert wire.describe(net.PRESETS["1gbe"]).startswith(
        "1gbe: latency alpha = 50 us, bandwidth 1/beta = 1 Gbit/s (125 MB/s)")
