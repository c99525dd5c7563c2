"""The network model checked against itself made real: for each case, the modeled time of
a run (``--network NAME``, model mode: the measured run with every collective lasting at
least its modeled time, ``ledger.modeled_seconds``) against the training clock of the same
run with every collective made to last its modeled time (``--network-mode inject``).

    .venv/bin/python bench/network.py            # digits, 4 and 6 ranks, 1gbe and 10gbe
    .venv/bin/python bench/network.py --wait nap # one of the two tables
    .venv/bin/python bench/network.py --runs 3   # medians of 3 runs per mode and case

Prints one row per case: ranks, network, method, modeled seconds, injected seconds, ratio.
They differ where a delay travels from rank to rank (a rank sleeping in inject mode holds up
those that wait for it later, and lends its core meanwhile), which the model does not know.

Two tables, by how a waiting rank waits (``DNEWTON_WAIT``, polling.py): "auto", the kit's
choice (for digits' short passes: spinning, as MPI does), and "nap", every rank in both modes
sleeping between polls. With more ranks than cores the two modes differ under "auto" in a
way the network model is not about: in model mode the waiting ranks spin on the cores that
the computing ones need, in inject mode the ranks sleep out their delays and lend them. Under
"nap" both modes wait alike, so their difference is the network model's alone (every run is
slower: a napping rank wakes up late).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnewton_core.environment import local_environment, local_launch  # noqa: E402

CASES = [("newton full", ["--iters", "8"]), ("newton diag", ["--iters", "8", "--gn", "diag"]),
         ("sgd", ["--optimizer", "sgd", "--epochs", "3"])]


def run(n, network, args, mode, out, wait):
    cmd = [*local_launch(n), sys.executable, "-m", "dnewton_core", "train", "--network",
           network, "--network-mode", mode, "--json", str(out), "--overwrite", *args]
    env = local_environment()
    if wait != "auto":
        env["DNEWTON_WAIT"] = wait
    else:
        env.pop("DNEWTON_WAIT", None)
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    final = json.loads(out.read_text())["final"]
    return final["modeled_time"] if mode == "model" else final["wall_time"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wait", choices=("auto", "nap"), nargs="+", default=["auto", "nap"],
                    help="how waiting ranks wait, one table each (default: both)")
    ap.add_argument("--runs", type=int, default=1,
                    help="pairs of runs per case, model and inject in turn; the table gives "
                         "the medians (default 1)")
    opts = ap.parse_args()
    if opts.runs < 1:
        ap.error("--runs must be at least 1")
    for wait in opts.wait:
        print(f"\n# ranks wait: {wait}; median of {opts.runs} run(s) per mode\n"
              f"{'ranks':>5} {'network':>8} {'method':<12} {'modeled s':>10} "
              f"{'injected s':>11} {'ratio':>6}")
        within = 0
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run.json"
            for n in (4, 6):
                for network in ("1gbe", "10gbe"):
                    for name, args in CASES:
                        pairs = [(run(n, network, args, "model", out, wait),
                                  run(n, network, args, "inject", out, wait))
                                 for _ in range(opts.runs)]
                        model, inject = (statistics.median(x) for x in zip(*pairs))
                        within += abs(model / inject - 1) <= 0.15
                        print(f"{n:>5} {network:>8} {name:<12} {model:>10.3f} "
                              f"{inject:>11.3f} {model / inject:>6.2f}", flush=True)
        print(f"# within 15%: {within} of {4 * len(CASES)}")


if __name__ == "__main__":
    main()
