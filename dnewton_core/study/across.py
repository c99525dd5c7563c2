"""The paper's claims across data sets: one Markdown table per claim, one row per committed
study, generated from the studies' runs.csv (for results/README.md's tables).

    python -m dnewton_core.study.across results/digits/network results/dna

Each study is one ``reproduce`` output directory, or several of one data set, network, C and
splits joined by "+" (their runs pooled: different settings, or other seeds); its rows are
aggregated over seeds as in its own summary.md (``report.aggregate``), leaving out settings
without a test accuracy. A table leaves out the studies that did not run what it compares.
Where the data set has an SVM anchor (``data.STATLOG_FILES``: Hsu and Lin, 2002, on the same
split), the last table gives the gap to it.
"""
import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..data import STATLOG_FILES
from . import modeled, report
from .records import read_runs
from .wording import fmt, plus_minus

SAME = ("data", "network", "C", "splits")      # what the studies joined by "+" share


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
    """The ``Study`` in a directory, or in several joined by "+" (one data set, network, C and
    splits: results/fashion-mnist/long+results/fashion-mnist/long-others)."""
    spec = str(spec)
    directories = spec.split("+")
    if len(set(directories)) < len(directories):
        raise ValueError(f"{spec}: a directory is joined twice")
    parts = [_read(d, k) for k, d in enumerate(directories)]
    rows = [r for p in parts for r in p[0]]
    for key in SAME:
        if len({str(r.get(key)) for r in rows}) > 1:
            raise ValueError(f"{spec}: the studies differ in {key}; only studies of one "
                             f"{', '.join(SAME)} can be joined")
    seen = [(r["setting"], r["seed"]) for r in rows]
    if len(set(seen)) < len(seen):
        raise ValueError(f"{spec}: the same setting and seed ran in two of the studies")
    stats = [x for x in report.aggregate(rows)
             if x["test"] is not None and not math.isnan(x["test"])]
    return Study(rows[0]["data"], f"{rows[0]['data']} ({spec})", rows,
                 [c for p in parts for c in p[1]], stats)


def _table(head, rows):
    if not rows:
        return "Not measured in these studies."
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _acc(x):
    return plus_minus(x["test"], x["test_std"]) if x else "–"


def _mb_of(x, key):
    """Bytes per iteration in MB (three digits, whole MB from 100 MB), or in bytes under
    10 kB."""
    if not x or x[key] is None:
        return "–"
    mb = x[key] / 1e6
    return f"{x[key]:.0f} B" if x[key] < 1e4 else f"{mb:,.0f}" if mb >= 100 else f"{mb:.3g}"


def diagonalization(studies):
    """Claim 1 at each S where the full and the diagonal G (sync 1) both ran."""
    rows = []
    for study in studies:
        for full, diag in report.diagonal_pairs(report.without_step(study.stats)):
            rescale = report.find(study.stats, method="newton-diag", subsample=full["subsample"],
                                  sync=1.0, step="rescale")
            rows.append([study.name, f"{100 * full['subsample']:g}%",
                         _mb_of(full, "cg_bytes_per_iter"), _mb_of(diag, "cg_bytes_per_iter"),
                         _acc(full), _acc(diag), _acc(rescale)]
                        + [fmt(x and x["objective"], ".3g") for x in (full, diag, rescale)])
    return _table(["study", "S", "CG MB/iter, full G", "diag G", "test acc, full G", "diag G",
                   "diag G + rescale", "f, full", "diag", "diag + rescale"], rows)


def subsampling(studies):
    """Claim 2: the full G at each subsample fraction."""
    rows = []
    for study in studies:
        pts = sorted((x for x in study.stats if x["method"] == "newton-full"),
                     key=lambda x: x["subsample"])
        if len(pts) > 1:
            rows += [[study.name, f"{100 * x['subsample']:g}%", _mb_of(x, "gn_bytes_per_iter"),
                      fmt(x["time_per_iter"], ".3g"), fmt(x["cg_per_iter"], ".1f"),
                      _acc(x), fmt(x["objective"], ".3g")] for x in pts]
    return _table(["study", "S", "Jacobian + CG MB/iter", "s/iter (measured)", "CG its/iter",
                   "test acc", "f"], rows)


def sync_fraction(studies):
    """Claim 3: the diagonal G (no step after CG) at each sync fraction, at the smallest S
    that ran more than one."""
    rows = []
    for study in studies:
        diag = [x for x in report.without_step(study.stats) if x["method"] == "newton-diag"]
        several = sorted(s for s in {x["subsample"] for x in diag}
                         if len({x["sync"] for x in diag if x["subsample"] == s}) > 1)
        if several:
            pts = sorted((x for x in diag if x["subsample"] == several[0]), key=lambda x: -x["sync"])
            rows += [[study.name, f"{100 * several[0]:g}%", f"{x['sync']:g}",
                      fmt(x["cg_per_iter"], ".1f"), fmt(x["cg_seconds_per_iter"], ".3g"),
                      fmt(x["time"], ".1f"), _acc(x)] for x in pts]
    return _table(["study", "S", "sync", "CG its/iter (slowest)", "CG s/iter (slowest rank)",
                   "time (s)", "test acc"], rows)


def _spread(pts):
    lo, hi, _ = report.spread(pts)
    return f"{lo:.4f} - {hi:.4f} ({hi - lo:.4f})"


def _best(stats, method, step=None):
    """The setting of ``method`` (Newton: both; with ``step``, that step after CG only) with
    the highest mean test accuracy, or None."""
    of = (lambda m: m != "sgd") if method == "newton" else (lambda m: m == method)
    pts = [x for x in stats if of(x["method"]) and (step is None or x.get("step") == step)]
    return max(pts, key=lambda x: x["test"], default=None)


def robustness(studies):
    """Claim 4: the spread of final test accuracy over each method's settings, and the best."""
    rows = []
    for study in studies:
        newton = [x for x in study.stats if x["method"] != "sgd"]
        sgd = [x for x in study.stats if x["method"] == "sgd"]
        if len(newton) > 1 and len(sgd) > 1:
            diverged = sum(bool(x["diverged"]) for x in sgd)
            best_n, best_s = _best(study.stats, "newton"), _best(study.stats, "sgd")
            rows.append([study.name, f"{_spread(newton)}, {len(newton)} settings",
                         f"{_spread(sgd)}, {len(sgd)} rates; {diverged} diverged in some seed",
                         f"{best_n['setting']}: {_acc(best_n)}",
                         f"{best_s['setting']}: {_acc(best_s)}"])
    return _table(["study", "Newton: range of test acc (width)", "SGD: range (width)",
                   "best Newton", "best SGD"], rows)


def anchors(studies):
    """The best Newton and SGD settings against the SVM of Hsu and Lin (Statlog sets)."""
    rows = []
    for study in studies:
        statlog = STATLOG_FILES.get(study.data)
        if statlog is not None:
            svm = statlog.svm_accuracy
            rows.append([study.name, f"{svm:.4f}"] + [
                f"{x['setting']}: {_acc(x)}, gap {100 * (svm - x['test']):+.2f}" if x else "–"
                for x in (_best(study.stats, "newton"), _best(study.stats, "sgd"))])
    return _table(["study", "SVM (Hsu and Lin 2002)", "best Newton, gap in points",
                   "best SGD, gap in points"], rows)


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
        for net in study.networks if target is not None else ():
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
