"""The kit's figure style, shared by the study's and the classroom's figures."""
import matplotlib.pyplot as plt

METHOD_COLORS = {"newton-full": "tab:blue", "newton-diag": "tab:orange", "sgd": "tab:green"}


def save(fig, path, title=""):
    """Write ``fig`` to ``path`` (PNG) and free it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rank_colours(n):
    """One colour per MPI rank, the same in every figure."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(k % cmap.N) for k in range(n)]
