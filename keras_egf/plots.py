"""Figures: a sparse-vs-dense comparison of accuracy and gradient flow, and
the report's p-value heatmaps and width plots (drawn from data the report
computes)."""

import matplotlib
import numpy as np

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
    every = results["config"].get("gradient_flow_every", 1)
    steps = "every step" if every == 1 else f"steps 0, {every}, {2 * every}, …"
    axes[1].set(title=f"Per-step gradient flow (epoch mean, {steps})",
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
                 f"{c['dense_width']}, sparse "
                 f"{'width ' + str(c['sparse_width']) if c.get('sparse_width') else 'x' + str(c['sparse_width_multiplier'])}, "
                 f"regularizers {','.join(c['regularizers']) or 'none'}")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path


def plot_p_value_heatmap(rows, cols, values, labels, path, title):
    """Heatmap of p-values {(row, col): p} (grey where absent), each cell
    labelled with labels[(row, col)]."""
    data = np.full((len(rows), len(cols)), np.nan)
    for (r, c), p in values.items():
        if r in rows and c in cols:
            data[rows.index(r), cols.index(c)] = p
    fig, ax = plt.subplots(figsize=(max(5.5, 2.5 + 1.0 * len(cols)),
                                    max(2.8, 1.6 + 0.55 * len(rows))))
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1,
                      aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            value = data[i, j]
            color = "white" if np.isfinite(value) and value > 0.5 else "black"
            ax.text(j, i, labels.get((r, c), ""), ha="center", va="center",
                    color=color, fontsize=9)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="p-value")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_against_width(points, widths, path, title, measure_label):
    """Two panels against dense width: a measure and test accuracy.

    `points`: {model: [(width, measure, accuracy), ...]}; each trial is a
    dot, the per-width mean a line.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, model_points in points.items():
        if not model_points:
            continue
        color = COLORS.get(model)
        present = sorted({p[0] for p in model_points})
        for ax, k in ((axes[0], 1), (axes[1], 2)):
            ax.scatter([p[0] for p in model_points], [p[k] for p in model_points],
                       s=10, alpha=0.35, color=color)
            means = [np.mean([p[k] for p in model_points if p[0] == w])
                     for w in present]
            ax.plot(present, means, "o-", color=color, label=f"{model} (mean)")
    axes[0].set_ylabel(measure_label)
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.set_xticks(widths)
        ax.set_xlabel("dense width (same capacity)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path
