"""How the kit's C per data set was chosen (model.KIT_C): Newton on the Statlog sets over C
and the loss, one process, 300-300, and the results against the SVM anchors.

    python bench/defaults_study.py --run DIR      # train every setting (about an hour on
                                                  # 2 cores), one JSON per run in DIR
    python bench/defaults_study.py DIR --out results/defaults   # runs.csv, table.md

The anchors are the RBF-kernel SVM accuracies of Hsu and Lin (IEEE TNN 2002) on the same
splits (data/README.md).
"""
import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnewton_core.data import STATLOG_FILES  # noqa: E402

SVM = {name: f.svm_accuracy for name, f in STATLOG_FILES.items()}   # Hsu and Lin (2002)
GRID = [(data, loss, C, 100) for data in SVM for loss in ("squared", "cross_entropy")
        for C in ("0.01l", "1l", "100l")]
LONG = [("letter", "squared", "1l", 300), ("satimage", "squared", "1l", 300),
        ("dna", "squared", "0.01l", 300), ("shuttle", "squared", "1l", 300)]
FIELDS = ["data", "loss", "C", "iters", "test_accuracy", "train_accuracy", "objective",
          "seconds", "svm", "gap_points"]


def name(data, loss, C, iters):
    return f"{data}-{loss}-{C}-{iters}.json"


def run(directory):
    directory.mkdir(parents=True, exist_ok=True)
    for data, loss, C, iters in GRID + LONG:
        out = directory / name(data, loss, C, iters)
        if not out.exists():
            subprocess.run([sys.executable, "-m", "dnewton_core", "train", "--data", data,
                            "--hidden", "300,300", "--iters", str(iters), "--loss", loss,
                            "--C", C, "--json", str(out)], check=True)


def rows(directory):
    for path in sorted(directory.glob("*.json")):
        data, loss, C, iters = path.stem.rsplit("-", 3)
        final = json.loads(path.read_text())["final"]
        yield dict(data=data, loss=loss, C=C, iters=int(iters),
                   test_accuracy=round(final["test_accuracy"], 4),
                   train_accuracy=round(final["train_accuracy"], 4),
                   objective=round(final["objective"], 6), seconds=round(final["wall_time"], 1),
                   svm=SVM[data], gap_points=round(100 * (SVM[data] - final["test_accuracy"]), 2))


def write(directory, out):
    out.mkdir(parents=True, exist_ok=True)
    table = sorted(rows(directory), key=lambda r: (r["data"], r["iters"], r["loss"], r["C"]))
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(table)
    lines = ["| data | loss | C | iterations | test acc | train acc | f | SVM | gap (points) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['data']} | {r['loss']} | {r['C']} | {r['iters']} | {r['test_accuracy']:.4f} "
              f"| {r['train_accuracy']:.4f} | {r['objective']:.4g} | {r['svm']:.4f} "
              f"| {r['gap_points']:+.2f} |" for r in table]
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--run", action="store_true", help="train the missing runs first")
    parser.add_argument("--out", type=Path, help="write runs.csv and table.md here")
    args = parser.parse_args()
    if args.run:
        run(args.directory)
    if args.out:
        write(args.directory, args.out)


if __name__ == "__main__":
    main()
