"""The projection to many machines (projection.py) on a grid small enough to work by hand."""
import pytest

from dnewton_core import network as net
from dnewton_core import projection as pj
from dnewton_core.partition import Grid

GIG = net.PRESETS["1gbe"]
GRID = Grid((4, 2, 3), (2, 1, 1))      # N = 3: (1,0,0), (1,1,0), (2,0,0); link(1,0) has 3 ranks
RATE = 1e9


def test_a_forward_pass_by_hand():
    compute, comm = pj._pass(GRID, 10, RATE, GIG)
    # layer 1: blocks 2 x 2, 2 b r c; layer 2: one block 2 x 3
    assert compute == pytest.approx((2 * 10 * 2 * 2 + 2 * 10 * 2 * 3) / RATE)
    # s^1 (10 x 2 float64) summed over link(1, 0) = column group (2 ranks) + row group (1)
    assert comm == pytest.approx(net.allreduce(8 * 10 * 2, 3, GIG))


def test_backward_and_jacobian_passes_by_hand():
    compute, comm = pj._pass(GRID, 10, RATE, GIG, backward=True)
    # layer 1: z^T delta only; layer 2: z^T delta and delta W^T
    assert compute == pytest.approx((2 * 10 * 2 * 2 + 2 * 2 * 10 * 2 * 3) / RATE)
    assert comm == pytest.approx(net.allreduce(8 * 10 * 2, 3, GIG))
    compute, comm = pj._pass(GRID, 10, RATE, GIG, backward=True, width=3)
    assert compute == pytest.approx(2 * 10 * 3 * 2 * 3 / RATE)        # D W^T on layer 2 only
    assert comm == pytest.approx(net.allreduce(8 * 10 * 3 * 2, 3, GIG))


def test_cg_sends_its_big_message_only_with_the_full_matrix():
    w = pj.Workload(GRID.layers, l=50, subsample=10, cg_full=4, cg_diag=4)
    full = pj.newton_iteration(GRID, w, RATE, GIG)["cg"]
    diag = pj.newton_iteration(GRID, w, RATE, GIG, "diag")["cg"]
    assert full[0] == diag[0]                        # the same products, on the slowest block
    assert diag[1] == pytest.approx(3 * net.allreduce(8, 3, GIG))
    assert full[1] == pytest.approx(4 * net.allreduce(8 * 10 * 3, 3, GIG)
                                    + (1 + 2 * 4 + 3) * net.allreduce(8, 3, GIG))


def test_one_machine_sends_nothing_and_computes_every_block():
    w = pj.Workload(GRID.layers, l=50, subsample=10)
    rows = pj.project(w, [1, 3], RATE, GIG, lambda P: (2, 1, 1) if P == 3 else None)
    one, three = rows
    assert one["splits"] == [1, 1, 1] and three["splits"] == [2, 1, 1]
    assert all(d["network"] == 0.0 for d in one["newton-full"].values())
    assert three["newton-full"]["cg"]["network"] > 0
    free = net.Network("free", 0.0, 1e30, 0.0)
    fast = pj.project(w, [3], RATE, free, lambda P: (2, 1, 1))[0]
    assert fast["newton-full seconds"] < one["newton-full seconds"]


def test_no_split_is_said_and_a_bad_rate_refused():
    w = pj.Workload(GRID.layers, l=50, subsample=10)
    assert pj.project(w, [2], RATE, GIG, lambda P: None) == [dict(machines=2, splits=None)]
    with pytest.raises(ValueError, match="compute rate"):
        pj.project(w, [1], 0.0, GIG, lambda P: None)


def test_the_project_command_writes_a_table_a_json_and_a_figure(tmp_path):
    import json
    import subprocess
    import sys
    out, fig = tmp_path / "p.json", tmp_path / "p.png"
    proc = subprocess.run([sys.executable, "-m", "dnewton_core", "project", "--network",
                           "1gbe,10gbe", "--machines", "1,2,4", "--rate", "20", "--json",
                           str(out), "--figure", str(fig)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "no split" in proc.stdout and "given (--rate)" in proc.stdout
    got = json.loads(out.read_text())
    assert set(got["networks"]) == {"1gbe", "10gbe"} and got["rate_gflops"] == 20
    four = got["networks"]["1gbe"][2]
    assert four["machines"] == 4 and four["splits"] == [2, 1, 1, 1]
    assert four["newton-full seconds"] > got["networks"]["10gbe"][2]["newton-full seconds"]
    assert fig.stat().st_size > 10_000
