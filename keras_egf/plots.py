"""Figures: a sparse-vs-dense comparison of accuracy and gradient flow."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from keras_egf.files import save_figure_atomic  # noqa: E402

COLORS = {"sparse": "tab:red", "dense": "tab:blue"}


def plot_comparison(results, path):
    """PNG with training accuracy, per-step EGF_2 and fixed-batch EGF points."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, r in results["models"].items():
        h, color = r["history"], COLORS.get(name)
        epochs = range(len(h.get("accuracy", [])))
        label = name
        if r.get("test_accuracy") is not None:
            label += f" (test acc {r['test_accuracy']:.3f})"
        # Markers: a 1-epoch run has one point per curve, which a bare line
        # would not draw.
        axes[0].plot(epochs, h.get("accuracy", []), "o-", ms=3, color=color,
                     label=label)
        axes[1].plot(epochs, h.get("egf_2", []), "o-", ms=3, color=color,
                     label=f"{name} EGF_2")
        axes[1].plot(epochs, h.get("gf_2", []), "^--", ms=3, color=color,
                     label=f"{name} gf_2")
        pts = r.get("egf_points", [])
        axes[2].plot([p["epoch"] for p in pts], [p["egf_2"] for p in pts],
                     "o-", color=color, label=f"{name} EGF_2")
        axes[2].plot([p["epoch"] for p in pts], [p["egf_1"] for p in pts],
                     "s:", color=color, label=f"{name} EGF_1")
    axes[0].set(title="Training accuracy", xlabel="epoch", ylabel="accuracy")
    axes[1].set(title="Per-step gradient flow (epoch mean of batch norms)",
                xlabel="epoch", yscale="log")
    axes[2].set(title="Fixed-batch EGF (norm of the mean gradient)",
                xlabel="epoch", yscale="log")
    for ax in axes[1:]:
        if not any(v > 0 for line in ax.get_lines() for v in line.get_ydata()
                   if v == v):
            ax.set_yscale("linear")  # nothing positive to log-scale
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    c = results["config"]
    fig.suptitle(f"SC-SDC on {c['dataset']}: {c['optimizer']} lr={c['learning_rate']}, "
                 f"{c['activation']}, depth {c['depth']}, dense width "
                 f"{c['dense_width']}, sparse x{c['sparse_width_multiplier']}, "
                 f"regularizers {','.join(c['regularizers']) or 'none'}")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path
