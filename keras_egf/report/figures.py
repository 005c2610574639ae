"""The report's figures: p-value heatmaps of the Wilcoxon cells, and
average gradient flow and test accuracy against dense width."""

from keras_egf.statistics import MEASURE_LABELS
from keras_egf.statistics import MODELS
from keras_egf.statistics import cell_label


def plot_heatmap(rows, cols, cells, path, title, min_pairs):
    """p-value heatmap of `wilcoxon_cells`, the value (or "n<k") in each cell."""
    # matplotlib loads for a second: only when a report draws
    from keras_egf.plots import plot_p_value_heatmap

    values = {k: c["p_value"] for k, c in cells.items() if c["status"] == "ok"}
    labels = {(r, c): cell_label(cells.get((r, c)), min_pairs)
              for r in rows for c in cols}
    plot_p_value_heatmap(rows, cols, values, labels, path, title)


def plot_width(sweep, optimizer, path, measure="egf_2"):
    """Average `measure` and test accuracy against dense width, sparse vs
    dense, for one optimizer (mean over the other settings, trials dotted)."""
    # matplotlib loads for a second: only when a report draws
    from keras_egf.plots import plot_against_width

    points = {}
    for model in MODELS:
        points[model] = [(t.config["dense_width"], t.measure(model, measure),
                          t.models[model]["test_accuracy"])
                         for t in sweep.trials
                         if t.config.get("optimizer") == optimizer
                         and t.finished(model)
                         and t.measure(model, measure) is not None]
    widths = sorted({t.config["dense_width"] for t in sweep.trials
                     if t.config.get("optimizer") == optimizer})
    plot_against_width(points, widths, path,
                       f"{optimizer}: gradient flow and accuracy against width",
                       f"average {MEASURE_LABELS[measure]} over training")
