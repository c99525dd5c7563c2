"""The records of a training run, and the solver's state between two iterations, shared by
``newton.py`` and ``sgd.py``."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class History:
    """Per-iteration (Newton) or per-epoch (SGD) records, and the final parameters.

    ``status`` is "finished", or "diverged" when a non-finite value ended the run (its
    last record has ``diverged=True``). A resumed run starts with the records of the run
    it continues: the first ``combined`` records come from a checkpoint, their messages
    already summed over ranks (``experiment.result`` sums only the others)."""
    records: list = field(default_factory=list)
    theta: np.ndarray = None
    status: str = "finished"
    combined: int = 0

    @property
    def diverged_at(self):
        """The iteration (or epoch) a diverged run stopped at; None otherwise."""
        return self.records[-1]["iter"] if self.status == "diverged" and self.records else None

    @property
    def final(self):
        return self.records[-1] if self.records else {}


@dataclass
class State:
    """What a solver needs to go on after ``done`` iterations (Newton) or epochs (SGD), as
    it is on this rank: its part of theta, the scalars (Newton: "lambda" and "f"; SGD:
    "t", the steps taken), the state of the generator of subsamples or batches
    (``rng.bit_generator.state``), the training time so far, the records so far and the
    solver's other vectors (SGD: "velocity", this rank's part). ``newton`` and ``sgd``
    hand one to their ``on_state`` hook after each iteration, and continue from one given
    as ``resume``: from the same state the same iterations follow, bit for bit. The arrays
    of a handed-out State are the solver's own: copy them to keep them."""
    done: int
    theta: np.ndarray
    scalars: dict
    rng: dict
    train_time: float = 0.0
    records: list = field(default_factory=list)
    vectors: dict = field(default_factory=dict)

    def history(self):
        """A History that continues this state's: its records, all already combined."""
        return History(records=list(self.records), combined=len(self.records))


def generator(seed, resume=None):
    """The solver's random generator: seeded, or at the state ``resume`` saved."""
    rng = np.random.default_rng(seed)
    if resume is not None:
        rng.bit_generator.state = resume.rng
    return rng


def record_iteration(model, theta, record, callback=None, kept=False):
    """Add accuracies and this iteration's messages to ``record``; report it; return it.
    ``kept``: theta is the point of the model's kept forward pass (``kept.py``)."""
    with model.phase("evaluate"):
        record["train_accuracy"], record["test_accuracy"] = model.accuracy(theta, kept=kept)
    record["comm"] = model.take_comm_record()
    if callback:
        callback(record)
    return record
