"""The records of a training run, shared by ``newton.py`` and ``sgd.py``."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class History:
    """Per-iteration (Newton) or per-epoch (SGD) records, and the final parameters.

    ``status`` is "finished", or "diverged" when a non-finite value ended the run (its
    last record has ``diverged=True``)."""
    records: list = field(default_factory=list)
    theta: np.ndarray = None
    status: str = "finished"

    @property
    def diverged_at(self):
        """The iteration (or epoch) a diverged run stopped at; None otherwise."""
        return self.records[-1]["iter"] if self.status == "diverged" and self.records else None

    @property
    def final(self):
        return self.records[-1] if self.records else {}


def record_iteration(model, theta, record, callback=None):
    """Add accuracies and this iteration's messages to ``record``; report it; return it."""
    with model.phase("evaluate"):
        record["train_accuracy"], record["test_accuracy"] = model.accuracy(theta)
    record["comm"] = model.take_comm_record()
    if callback:
        callback(record)
    return record
