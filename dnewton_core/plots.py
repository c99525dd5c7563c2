"""Figures from results (dicts as written by ``experiment.result``); files, never windows."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def accuracy_against_time(results, path, title=""):
    """Test accuracy against training time, one line per run; saved to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        h = [rec for rec in r["history"] if rec.get("test_accuracy") is not None]
        ax.plot([rec["wall_time"] for rec in h], [rec["test_accuracy"] for rec in h],
                marker=".", label=name)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
