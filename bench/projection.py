"""The projection (``projection.py``) checked against real runs at every rank count this
machine holds: digits 64-64-64-10, 1 to 6 ranks, each collective made to last its modeled
time on 1gbe and 10gbe (``--network-mode inject``), against the projection's seconds per
Newton iteration (full and block-diagonal G) and per SGD epoch for the same grid, CG
iterations and line-search trials (``project.check``).

    .venv/bin/python bench/projection.py [--ranks 1,3,4] [--networks 1gbe] [--iters 8]
                                         [--hidden 64] [--repeats 3]

Prints one row per case: measured seconds, then the projection refined step by step, each
with its ratio to the measurement: with one core per rank ("1/machine", the projection's own
assumption); with the ranks sharing this machine's cores (the ranks of a layer compute in
turn); and with every collective on the chain longer by the overshoot of a short sleep
measured just then ("+sleeps"; "coll." collectives per iteration, "us" the overshoot).
The compute rate is fitted on the one-process runs, so one rank agrees by construction.
Other work on the machine slows the runs: the load average is printed, and the share of
time a virtual machine's host took (its ranks then wake up late); use --repeats.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnewton_core.environment import load_average, processor_ticks, stolen_share  # noqa: E402
from dnewton_core.project import CHECK_HEAD, METHODS, check  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2,3,4,5,6")
    p.add_argument("--networks", default="1gbe,10gbe")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--iters", type=int, default=8, help="Newton iterations and SGD epochs")
    p.add_argument("--hidden", default="64,64", help="hidden widths (64 for a split on 2 ranks)")
    p.add_argument("--repeats", type=int, default=1, help="runs per case; the fastest is kept")
    args = p.parse_args()
    print(f"load average {load_average()} at the start")
    print(CHECK_HEAD, flush=True)
    tic, ticks = time.perf_counter(), processor_ticks()
    check(tuple(int(x) for x in args.ranks.split(",")), tuple(args.networks.split(",")),
          tuple(args.methods.split(",")), args.iters,
          hidden=tuple(int(x) for x in args.hidden.split(",")), repeats=args.repeats,
          say=lambda line: print(line, flush=True))
    print(f"{time.perf_counter() - tic:.0f} s; load average {load_average()} at the end; "
          f"{100 * stolen_share(ticks):.1f}% of the processors' busy time "
          "stolen by a virtual machine's host")


if __name__ == "__main__":
    main()
