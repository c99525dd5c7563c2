"""The classroom: what the notebooks use, in one namespace (``from dnewton_core import
classroom as lesson``).

``cluster.py`` starts and stops the MPI engines; ``lessons.py`` holds what each engine is
asked to do; ``tables.py`` turns the engines' answers into tables on the client;
``figures.py`` draws; ``waiting.py`` tells a rank's computing from its waiting;
``claims.py`` reads what the committed results say of the paper's claims; ``widgets.py`` has
the sliders. Importing this package loads no MPI library on the client (only the engines
import ``comm``), nor matplotlib or ipywidgets until something is drawn.
"""
from . import claims, widgets
from .cluster import ClusterError, EngineError, MPICluster, cluster_processes, whoami
from .lessons import (
                      fit,
                      holdings,
                      jacobian_factors,
                      mpi_seconds,
                      newton_directions,
                      parameters,
                      partitioned_model,
                      subsample,
                      traced_step,
                      train_new,
)
from .tables import (
                      assemble,
                      bytes_per_iteration,
                      directions_table,
                      gather_run,
                      holdings_match,
                      holdings_table,
                      jacobian_table,
                      measured,
                      message_steps,
                      message_table,
                      phase_table,
                      reference_block_diagonal,
                      relative_error,
                      runs_table,
)
from .waiting import cg_seconds, split_waiting, waiting_table

__all__ = ["ClusterError", "EngineError", "MPICluster", "cluster_processes", "whoami", "fit", "holdings",
           "jacobian_factors", "newton_directions", "parameters", "partitioned_model",
           "subsample", "traced_step", "train_new", "assemble", "bytes_per_iteration",
           "directions_table", "gather_run", "holdings_match", "holdings_table",
           "jacobian_table", "measured", "message_steps", "message_table", "phase_table",
           "reference_block_diagonal", "relative_error", "runs_table",
           "claims", "widgets", "mpi_seconds", "cg_seconds", "split_waiting",
           "waiting_table"]
