"""Per-rank time lines: the ledger's timeline and the Chrome trace built from it."""
import json

from dnewton_core.comm import Comm
from dnewton_core.ledger import trace_events


def test_timeline_spans_every_phase_and_the_trace_has_one_process_per_rank():
    comm = Comm()
    comm.keep_timeline()
    with comm.phase("gradient"):
        with comm.phase("jacobian"):
            pass
    with comm.phase("cg"):
        pass
    spans = [e["name"] for e in comm.timeline]
    assert spans == ["gradient", "jacobian", "gradient", "cg"]      # nested: outer paused
    trace = json.loads(json.dumps(trace_events([comm.timeline, comm.timeline],
                                               names=["rank 0 (1,0,0)", "rank 1 (2,0,0)"])))
    assert {e["pid"] for e in trace["traceEvents"]} == {0, 1}
    names = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert names == ["rank 0 (1,0,0)", "rank 1 (2,0,0)"]
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert min(e["ts"] for e in spans) == 0 and all(e["dur"] >= 0 for e in spans)
