"""How the study's numbers read in its text: missing values, means with their spread, counts
and durations (``report.py``, ``runner.py``, ``across.py``)."""
import math


def fmt(value, spec, missing="–"):
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def count(n, unit):
    """'1 epoch', '6 epochs'."""
    return f"{n} {unit}{'s' * (n != 1)}"


def duration(seconds):
    """Seconds as one reads them: 0.031 s, 4.2 s, 3.5 min (never a time rounded to 0.0);
    "–" for None."""
    if seconds is None:
        return "–"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"


def plus_minus(mean, std):
    return fmt(mean, ".4f") + (f" ± {std:.4f}" if std is not None else "")
