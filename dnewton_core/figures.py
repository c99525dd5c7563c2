"""The kit's figure style, shared by the study's and the classroom's figures."""
import os

import matplotlib.pyplot as plt

from .outputs import atomic_path

METHOD_COLORS = {"newton-full": "tab:blue", "newton-diag": "tab:orange", "sgd": "tab:green"}


def save(fig, path, title="", replace=True):
    """Write ``fig`` to ``path`` (PNG) atomically (``outputs.atomic_path``; with
    ``replace=False`` a file that appeared meanwhile is a FileExistsError) and free it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path, replace) as tmp:
            fig.savefig(tmp, dpi=120, format=os.path.splitext(path)[1][1:] or "png")
    finally:
        plt.close(fig)
    return path


def rank_colours(n):
    """One colour per MPI rank, the same in every figure."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(k % cmap.N) for k in range(n)]
