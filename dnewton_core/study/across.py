"""The paper's claims across data sets: one Markdown table per claim, one row per committed
study, generated from the studies' runs.csv (results/README.md's tables come from here).

    python -m dnewton_core.study.across results/digits/network results/dna results/satimage

Each study is one ``reproduce`` output directory, or several of one data set joined by "+"
(their runs pooled); its rows are aggregated over seeds as in
its own summary.md (``report.aggregate``). A table leaves out the studies that did not run
what it compares. Where the data set has an SVM anchor (``data.STATLOG_FILES``: Hsu and Lin,
2002, on the same split), the last table gives the gap to it.
"""
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from ..data import STATLOG_FILES
from . import modeled, report
from .records import read_runs


@dataclass(frozen=True)
class Study:
    """One reproduce output: its data set, its name (data set and directory), runs.csv and
    curves.csv as rows, and its settings aggregated over seeds."""
    data: str
    name: str
    rows: list
    curves: list
    stats: list

    @property
    def networks(self):
        """The modeled networks of the study (its modeled_time_NAME columns)."""
        prefix = modeled.column("")
        return [k[len(prefix):] for k in self.rows[0] if k.startswith(prefix)]


def _read(directory, k):
    """runs.csv and curves.csv of ``directory``, their run numbers prefixed with ``k``."""
    path = Path(directory)
    if not (path / "runs.csv").is_file() or not (path / "curves.csv").is_file():
        raise ValueError(f"{directory}: no runs.csv and curves.csv (not a reproduce output?)")
    rows, curves = read_runs(path / "runs.csv"), read_runs(path / "curves.csv")
    if not rows:
        raise ValueError(f"{path / 'runs.csv'}: no runs")
    for r in rows + curves:
        r["run"] = f"{k}:{r['run']}"
    return rows, curves


def load(spec):
    """The ``Study`` in a directory, or in several joined by "+" (studies of one data set
    that ran different settings: results/fashion-mnist/long+results/fashion-mnist/long-others)."""
    spec = str(spec)
    parts = [_read(d, k) for k, d in enumerate(spec.split("+"))]
    rows = [r for p in parts for r in p[0]]
    if len({r["data"] for r in rows}) > 1:
        raise ValueError(f"{spec}: studies of different data sets cannot be joined")
    return Study(rows[0]["data"], f"{rows[0]['data']} ({spec})", rows,
                 [c for p in parts for c in p[1]], report.aggregate(rows))


def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _acc(x):
    return report.plus_minus(x["test"], x["test_std"]) if x else "–"


def _mb_of(x, key):
    """Bytes per iteration in MB (three digits, whole MB from 100 MB), or in bytes under
    10 kB."""
    if not x or x[key] is None:
        return "–"
    mb = x[key] / 1e6
    return f"{x[key]:.0f} B" if x[key] < 1e4 else f"{mb:,.0f}" if mb >= 100 else f"{mb:.3g}"


def _plain(stats, **where):
    """The setting of ``where`` without a step after CG (the paper's method)."""
    return report.find([x for x in stats if x.get("step") in (None, "none")], **where)


def diagonalization(studies):
    """Claim 1 at each S where the full and the diagonal G (sync 1) both ran."""
    rows = []
    for study in studies:
        name, stats = study.name, study.stats
        for full, diag in report.diagonal_pairs(
                [x for x in stats if x.get("step") in (None, "none")]):
            rescale = report.find(stats, method="newton-diag", subsample=full["subsample"],
                                   sync=1.0, step="rescale")
            rows.append([name, f"{100 * full['subsample']:g}%", _mb_of(full, "cg_bytes_per_iter"),
                         _mb_of(diag, "cg_bytes_per_iter"), _acc(full), _acc(diag), _acc(rescale),
                         report.fmt(full["objective"], ".3g"),
                         report.fmt(diag["objective"], ".3g"),
                         report.fmt(rescale and rescale["objective"], ".3g")])
    return _table(["study", "S", "CG MB/iter, full G", "diag G", "test acc, full G", "diag G",
                   "diag G + rescale", "f, full", "diag", "diag + rescale"], rows)


def subsampling(studies):
    """Claim 2: the full G at each subsample fraction."""
    rows = []
    for study in studies:
        name, stats = study.name, study.stats
        pts = sorted((x for x in stats if x["method"] == "newton-full"),
                     key=lambda x: x["subsample"])
        if len(pts) > 1:
            rows += [[name, f"{100 * x['subsample']:g}%", _mb_of(x, "gn_bytes_per_iter"),
                      report.fmt(x["time_per_iter"], ".3g"), report.fmt(x["cg_per_iter"], ".1f"),
                      _acc(x), report.fmt(x["objective"], ".3g")] for x in pts]
    return _table(["study", "S", "Jacobian + CG MB/iter", "s/iter (measured)", "CG its/iter",
                   "test acc", "f"], rows)


def sync_fraction(studies):
    """Claim 3: the diagonal G (no step after CG) at each sync fraction, smallest S."""
    rows = []
    for study in studies:
        name, stats = study.name, study.stats
        diag = [x for x in stats if x["method"] == "newton-diag" and x.get("step") in (None, "none")]
        if len({x["sync"] for x in diag}) > 1:
            s = min(x["subsample"] for x in diag)
            rows += [[name, f"{100 * s:g}%", f"{x['sync']:g}", report.fmt(x["cg_per_iter"], ".1f"),
                      report.fmt(x["cg_seconds_per_iter"], ".3g"), report.fmt(x["time"], ".1f"),
                      _acc(x)] for x in sorted((x for x in diag if x["subsample"] == s),
                                               key=lambda x: -x["sync"])]
    return _table(["study", "S", "sync", "CG its/iter (slowest)", "CG s/iter (slowest rank)",
                   "time (s)", "test acc"], rows)


def _spread(pts):
    tests = [x["test"] for x in pts if x["test"] is not None]
    return f"{min(tests):.4f} - {max(tests):.4f} ({max(tests) - min(tests):.4f})"


def robustness(studies):
    """Claim 4: the spread of final test accuracy over each method's settings, and the best."""
    rows = []
    for study in studies:
        name, stats = study.name, study.stats
        newton = [x for x in stats if x["method"] != "sgd"]
        sgd = [x for x in stats if x["method"] == "sgd"]
        if len(newton) > 1 and len(sgd) > 1:
            converged = [x for x in sgd if not x["diverged"]]
            best_n, best_s = (max(p, key=lambda x: x["test"]) for p in (newton, sgd))
            rows.append([name, f"{_spread(newton)}, {len(newton)} settings",
                         f"{_spread(sgd)}, {len(sgd)} rates; "
                         f"{len(sgd) - len(converged)} diverged in some seed",
                         f"{best_n['setting']}: {_acc(best_n)}", f"{best_s['setting']}: {_acc(best_s)}"])
    return _table(["study", "Newton: range of test acc (width)", "SGD: range (width)",
                   "best Newton", "best SGD"], rows)


def anchors(studies):
    """The best Newton and SGD settings against the SVM of Hsu and Lin (Statlog sets)."""
    rows = []
    for study in studies:
        name, stats = study.name, study.stats
        svm = STATLOG_FILES.get(name.split(" ")[0])
        if svm is None:
            continue
        best = {m: max((x for x in stats if (x["method"] == "sgd") == (m == "sgd")),
                       key=lambda x: x["test"], default=None) for m in ("newton", "sgd")}
        rows.append([name, f"{svm.svm_accuracy:.4f}"] + [
            f"{x['setting']}: {_acc(x)}, gap {100 * (svm.svm_accuracy - x['test']):+.2f}"
            if x else "–" for x in best.values()])
    return _table(["study", "SVM (Hsu and Lin 2002)", "best Newton, gap in points",
                   "best SGD, gap in points"], rows)


def _best(stats, method, step=None):
    pts = [x for x in stats if x["method"] == method and (step is None or x.get("step") == step)]
    return max(pts, key=lambda x: x["test"], default=None)


def _seconds_to(study, setting, target, net):
    return modeled.cell(modeled.setting_time(study.rows, study.curves, setting["setting"],
                                              target, modeled.column(net)))


def on_networks(studies):
    """Claims 1 and 4 on each modeled network: the seconds the best setting of each method
    takes to the study's common target (``modeled.common_target``), mean over seeds."""
    kinds = (("newton-full", None), ("newton-diag", "none"), ("newton-diag", "rescale"),
             ("sgd", None))
    rows = []
    for study in studies:
        target = modeled.common_target(study.stats)
        best = [_best(study.stats, *kind) for kind in kinds]
        for net in study.networks:
            rows.append([study.name, net, f"{target:.4f}"] + [
                f"{_seconds_to(study, x, target, net)} ({x['setting']})" if x else "–"
                for x in best])
    return _table(["study", "network", "target test acc", "full G", "diag G", "diag G + rescale",
                   "SGD"], rows)


CLAIMS = (("Claim 1: diagonalization", diagonalization), ("Claim 2: subsampling", subsampling),
          ("Claim 3: the sync fraction", sync_fraction), ("Claim 4: robustness", robustness),
          ("Claims 1 and 4 on the modeled networks: seconds to the target", on_networks),
          ("Against the SVM anchors", anchors))


def markdown(directories):
    """Every table, each under its heading."""
    studies = [load(d) for d in directories]
    return "\n\n".join(f"### {title}\n\n{table(studies)}" for title, table in CLAIMS) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+", help="reproduce output directories (with runs.csv)")
    args = p.parse_args(argv)
    try:
        sys.stdout.write(markdown(args.studies))
    except ValueError as e:
        p.exit(2, f"across: {e}\n")


if __name__ == "__main__":
    main()
