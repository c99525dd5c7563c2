"""The paper's claims and what the committed results say of them (notebook 0, notebook 6).

Read, never typed: the claims and their verdicts come from ``results/README.md`` (its
"## Claim N." sections, and the bold sentence that opens each verdict paragraph), the
numbers from the studies' ``runs.csv``. When a study is re-run or a verdict rewritten, the
overview changes with it. Standard library only; runs on the client.
"""
import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .tables import Table

# Which notebook shows each claim live, and which committed studies measured it.
NOTEBOOKS = {1: ("03_jacobian_and_gauss_newton.ipynb", "04_diagonalization.ipynb"),
             2: ("05_subsampling_and_sync.ipynb",),
             3: ("05_subsampling_and_sync.ipynb",),
             4: ("06_newton_vs_sgd.ipynb",)}
STUDIES = {1: ("fashion-mnist", "fashion-mnist/long", "fashion-mnist/long-others"),
           2: ("fashion-mnist",),
           3: ("digits/straggler", "fashion-mnist/sync-after-fix"),
           4: ("fashion-mnist/long", "fashion-mnist/long-others")}
NOT_RUN_HEADING = "What the kit does not reproduce or did not run"


@dataclass(frozen=True)
class Claim:
    """One "## Claim N." section of results/README.md: its title, its anchor there, and its
    verdicts [(aspect, verdict)] ("Communication", "reproduced"; aspect "" for the whole)."""
    number: int
    title: str
    anchor: str
    verdicts: tuple

    @property
    def status(self):
        """"reproduced" if every verdict opens with it, "not reproduced" likewise, else "partly"."""
        opens = [v.lower() for _, v in self.verdicts]
        if opens and all(v.startswith("reproduced") for v in opens):
            return "reproduced"
        if opens and all(v.startswith("not reproduced") for v in opens):
            return "not reproduced"
        return "partly"


@dataclass(frozen=True)
class Overview:
    """What results/ says of the paper's claims: the claims, the evidence read from runs.csv
    ({claim number: [sentences]}), and what was not reproduced or not run. Shown as a
    Markdown table in a notebook (links relative to notebooks/)."""
    claims: tuple
    evidence: dict = field(default_factory=dict)
    not_run: tuple = ()

    def markdown(self, results_link="../results"):
        rows = ["| claim (the paper's) | verdict (results/README.md) | measured (runs.csv) | live | study |",
                "| --- | --- | --- | --- | --- |"]
        for c in self.claims:
            verdict = "<br>".join(f"**{a}:** {v}" if a else f"**{v}**" for a, v in c.verdicts)
            measured = "<br>".join(self.evidence.get(c.number, ())) or "–"
            live = ", ".join(f"[notebook {int(nb[:2])}]({nb})" for nb in NOTEBOOKS.get(c.number, ())) or "–"
            study = ", ".join(f"[{s}]({results_link}/{s}/summary.md)" for s in STUDIES.get(c.number, ()))
            title = f"[{c.number}. {c.title}]({results_link}/README.md#{c.anchor})"
            rows.append(f"| {title} | {_STATUS[c.status]} {verdict} | {measured} | {live} | {study or '–'} |")
        if self.not_run:
            rows += ["", f"**Not reproduced here, or not run** ([results/README.md]({results_link}/"
                         f"README.md#{anchor(NOT_RUN_HEADING)})):", ""] + [f"- {x}" for x in self.not_run]
        return "\n".join(rows)

    def only(self, *numbers):
        """The same overview restricted to the claims ``numbers``."""
        return Overview(tuple(c for c in self.claims if c.number in numbers), self.evidence, ())

    def _repr_markdown_(self):
        return self.markdown()

    def __repr__(self):
        return "\n".join(f"claim {c.number}: {c.status}: {c.title}" for c in self.claims)


_STATUS = {"reproduced": "✅", "not reproduced": "❌", "partly": "◐"}


def results_dir(root=None):
    """The results directory: ``root`` if given, else the one beside the package (a source
    checkout) or beside or above the working directory (a notebook runs in notebooks/)."""
    here = Path(__file__).resolve().parents[2]
    candidates = [Path(root)] if root is not None else \
        [here / "results", Path.cwd() / "results", Path.cwd().parent / "results"]
    for path in candidates:
        if (path / "README.md").is_file():
            return path
    raise FileNotFoundError("no results/README.md found: run from the kit's checkout (or its "
                            "notebooks/), or pass root=")


def anchor(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections(text, level=2):
    """{heading: body} of a Markdown text's headings of ``level`` (#'s), in order."""
    marker = "#" * level + " "
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith(marker):
            current = line[len(marker):].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def paragraphs(body):
    """The paragraphs (and list items) of a Markdown body, each joined into one line."""
    out = []
    for block in re.split(r"\n\s*\n", body):
        items = re.split(r"\n(?=\s*- )", block)
        out += [" ".join(line.strip() for line in item.splitlines()).strip() for item in items]
    return [p for p in out if p]


def verdicts(body):
    """[(aspect, verdict)]: the bold sentence that opens a paragraph, "**Aspect: verdict.**" or
    "**Verdict.**" (list items and bold words inside a sentence are not verdicts)."""
    out = []
    for p in paragraphs(body):
        m = re.match(r"\*\*([^*]+?)\.\*\*", p)
        if m:
            aspect, _, verdict = m.group(1).partition(": ")
            out.append((aspect, verdict) if verdict else ("", aspect))
    return out


def read_claims(text):
    """The Claims of results/README.md's text. ValueError if it has no "## Claim N." section
    or a claim without a verdict."""
    claims = []
    for heading, body in sections(text).items():
        m = re.match(r"Claim (\d+)\.\s+(.+)", heading)
        if not m:
            continue
        found = tuple(verdicts(body))
        if not found:
            raise ValueError(f"results/README.md: claim {m.group(1)} has no verdict (a paragraph "
                             f"opening with **Aspect: verdict.**)")
        claims.append(Claim(int(m.group(1)), m.group(2).strip(), anchor(heading), found))
    if not claims:
        raise ValueError("results/README.md has no '## Claim N. ...' section")
    return tuple(claims)


def read_not_run(text):
    """The list items of results/README.md's section on what was not reproduced or not run."""
    body = sections(text).get(NOT_RUN_HEADING, "")
    return tuple(p[2:] for p in paragraphs(body) if p.startswith("- "))


def overview(root=None):
    """The Overview of the committed results (see :func:`results_dir` for ``root``)."""
    results = results_dir(root)
    text = (results / "README.md").read_text(encoding="utf-8")
    claims = read_claims(text)
    evidence = {c.number: evidence_for(c.number, results) for c in claims}
    return Overview(claims, evidence, read_not_run(text))


# -- the numbers, from runs.csv ----------------------------------------------------------------

def read_runs(results, study):
    """The rows of ``results/study/runs.csv`` (dicts of text), or None if it is missing."""
    path = Path(results) / study / "runs.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def by_setting(rows):
    """{setting: [rows over seeds]} in the order settings first appear."""
    out = {}
    for r in rows:
        out.setdefault(r["setting"], []).append(r)
    return out


def mean_std(rows, key):
    """(mean, sample std or None for one row) of a numeric column over rows."""
    values = [float(r[key]) for r in rows]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def accuracy(rows):
    """Final test accuracy over seeds, as results/README.md writes it: "0.8880 ± 0.0023"."""
    mean, std = mean_std(rows, "test_accuracy")
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def per_iteration(rows, *keys):
    """Mean over seeds of sum(keys) / iterations (bytes or seconds per iteration or epoch)."""
    return sum(sum(float(r[k]) for k in keys) / int(r["iterations"]) for r in rows) / len(rows)


def megabytes(n):
    """Bytes for people: "96 B", "30.4 MB", "1,570 MB"."""
    if n < 1e4:
        return f"{n:,.0f} B"
    mb = float(f"{n / 1e6:.3g}")                              # three significant digits
    return f"{mb:,.0f} MB" if mb >= 100 else f"{mb:g} MB"


def seeds(rows):
    return f"{len(rows)} seed" + ("s" if len(rows) != 1 else "")


def evidence_for(number, results):
    """The sentences of measured evidence for claim ``number``; a sentence naming the missing
    file when a study is not there."""
    studies = STUDIES.get(number, ())
    runs = {s: read_runs(results, s) for s in studies}
    missing = [s for s, r in runs.items() if r is None]
    if missing:
        return [f"not measured: no {', '.join(f'results/{s}/runs.csv' for s in missing)}"]
    return _EVIDENCE[number](*[by_setting(runs[s]) for s in studies]) if number in _EVIDENCE else []


def _claim1(short, long, others):
    full, diag = short["newton-full S=5%"], short["newton-diag S=5% sync=1"]
    full100, diag100 = long["newton-full S=5%"], others["newton-diag S=5% sync=1"]
    return [f"Fashion-MNIST, \\|S\\| = 5%: CG sends {megabytes(per_iteration(full, 'bytes_cg'))} per "
            f"Newton iteration with the full G, {megabytes(per_iteration(diag, 'bytes_cg'))} with the "
            f"block-diagonal G.",
            f"Test accuracy after {full100[0]['iterations']} iterations: {accuracy(full100)} (full, "
            f"{seeds(full100)}) against {accuracy(diag100)} (block-diagonal, {seeds(diag100)})."]


def _claim2(short):
    out = []
    for setting in ("newton-full S=5%", "newton-full S=20%"):
        rows = short[setting]
        sent = megabytes(per_iteration(rows, "bytes_jacobian", "bytes_cg"))
        out.append(f"Fashion-MNIST, {setting}: Jacobian + CG {sent}"
                   f" and {per_iteration(rows, 'wall_time'):.1f} s per iteration, test accuracy "
                   f"{accuracy(rows)} after {rows[0]['iterations']} iterations.")
    return out


def _claim3(straggler, fashion):
    mean = lambda rows, key: mean_std(rows, key)[0]
    joined = lambda values, digits: " / ".join(f"{v:.{digits}f}" for v in values)
    full = straggler["newton-full S=5%"]
    diag = {s.rsplit("=", 1)[1]: r for s, r in straggler.items() if s.startswith("newton-diag")}
    taus = " / ".join(s.rsplit("=", 1)[1] for s in fashion)
    iterations = next(iter(fashion.values()))[0]["iterations"]
    return [f"digits, rank 0 slow ({seeds(full)}), seconds of training: full G "
            f"{mean(full, 'wall_time'):.1f}; block-diagonal G at sync {' / '.join(diag)}: "
            f"{joined((mean(r, 'wall_time') for r in diag.values()), 1)} "
            f"(f {joined((mean(r, 'objective') for r in diag.values()), 3)}).",
            f"No slow rank (Fashion-MNIST, {iterations} iterations), sync {taus}: seconds in CG "
            f"{joined((mean(r, 'seconds_cg') for r in fashion.values()), 1)}, waiting for the "
            f"notifications {joined((mean(r, 'seconds_sync') for r in fashion.values()), 1)}."]


def _claim4(long, others):
    runs = long | others
    newton = {s: r for s, r in runs.items() if s.startswith("newton")}
    sgd = {s: r for s, r in runs.items() if s.startswith("sgd")}
    diverged = [s for s, r in sgd.items() if any(x["diverged"] == "True" for x in r)]
    spread = lambda group: _spread([mean_std(r, "test_accuracy")[0] for r in group.values()])
    converged = {s: r for s, r in sgd.items() if s not in diverged}
    best_n = max(newton.values(), key=lambda r: mean_std(r, "test_accuracy")[0])
    best_s = max(sgd.values(), key=lambda r: mean_std(r, "test_accuracy")[0])
    return [f"Fashion-MNIST, {best_n[0]['iterations']} iterations / epochs: test accuracy spread over "
            f"Newton's {len(newton)} settings {spread(newton)}, over SGD's {len(sgd)} rates "
            f"{spread(sgd)} ({len(diverged)} diverged; without them {spread(converged)}).",
            f"Best: {best_n[0]['setting']} {accuracy(best_n)} in {mean_std(best_n, 'wall_time')[0]:.0f} s, "
            f"{best_s[0]['setting']} {accuracy(best_s)} in {mean_std(best_s, 'wall_time')[0]:.0f} s."]


def _spread(values):
    return f"{max(values) - min(values):.3f}"


_EVIDENCE = {1: _claim1, 2: _claim2, 3: _claim3, 4: _claim4}


# -- one study's table, for a notebook ---------------------------------------------------------

def study_table(*studies, root=None):
    """A ``tables.Table``: one row per setting of the committed ``studies`` (e.g.
    "fashion-mnist/long"): seeds, iterations or epochs, final test accuracy (mean ± std over
    seeds), f, seconds of training (mean), and how many seeds diverged."""
    results = results_dir(root)
    rows = []
    for study in studies:
        runs = read_runs(results, study)
        if runs is None:
            raise FileNotFoundError(f"no committed study results/{study}/runs.csv")
        for setting, group in by_setting(runs).items():
            diverged = sum(r["diverged"] == "True" for r in group)
            f = "–" if diverged else f"{mean_std(group, 'objective')[0]:.3f}"
            done = max(int(r["iterations"]) for r in group)
            unit = ("epoch" if group[0]["unit"] == "epoch" else "iteration") + ("s" if done != 1 else "")
            rows.append((setting, len(group), f"{done} {unit}",
                         accuracy(group), f, mean_std(group, "wall_time")[0],
                         f"{diverged} of {len(group)}", study))
    seconds = lambda v: f"{v:,.0f} s"
    return Table(("setting", "seeds", "trained", "test accuracy", "f", "time", "diverged", "study"),
                 rows, formats=(None,) * 5 + (seconds,))
