"""The report's sections: each returns its markdown lines and writes its
CSV tables and figures, naming each file it wrote in `written`."""

import csv
import io
import os

from keras_egf.config import OPTIMIZERS
from keras_egf.files import write_text_atomic
from keras_egf.report.figures import plot_heatmap
from keras_egf.report.figures import plot_width
from keras_egf.report.loading import mixed_grids_text
from keras_egf.report.loading import mixed_versions_text
from keras_egf.report.loading import plural
from keras_egf.statistics import _ordered
from keras_egf.statistics import MEASURE_LABELS
from keras_egf.statistics import MEASURES
from keras_egf.statistics import MODELS
from keras_egf.statistics import cell_label
from keras_egf.statistics import correlation_markdown
from keras_egf.statistics import diverged_treatment_text
from keras_egf.statistics import paper_reference_markdown
from keras_egf.statistics import per_setting_correlations
from keras_egf.statistics import setting_means
from keras_egf.statistics import wilcoxon_cells


def write_csv(path, rows, fields):
    """`rows` (dicts) as a CSV file of `fields`, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in fields})
    write_text_atomic(path, buffer.getvalue())


def left_out_text(sweep):
    """What the statistics leave out, the folders without usable results,
    and warnings about mixed keras_egf versions or grids."""
    parts = []
    for model in MODELS:
        counts = sweep.left_out(model)
        if counts:
            parts.append(f"{model}: " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(counts.items())))
    pairs_out = sum(1 for t in sweep.trials
                    if not (t.finished("sparse") and t.finished("dense")))
    text = (f"{plural(len(sweep.trials), 'trial')} read; left out of the correlations: "
            + ("; ".join(parts) if parts else "none")
            + f" ({pairs_out} trial(s) without a matched pair of finished "
            "models).")
    if sweep.incomplete:
        text += (f" {len(sweep.incomplete)} trial folder(s) without usable "
                 f"results (interrupted, running or failed): "
                 f"{', '.join(sweep.incomplete)}.")
    mixed = mixed_versions_text(sweep.library_versions())
    if sweep.grids:
        mixed = (f"Warning: these trials come from {len(sweep.grids)} different "
                 f"grids, reported together (allow_mixed_grids): "
                 f"{mixed_grids_text(sweep.grids)}." + (f" {mixed}" if mixed else ""))
    return text + (f"\n\n**{mixed}**" if mixed else "")


def correlation_section(corr, output_dir, written):
    """Kendall's τ and Spearman's ρ of the averaged measures with test
    performance (correlations.csv), beside the paper's."""
    write_csv(os.path.join(output_dir, "correlations.csv"), corr,
              ["model", "measure", "target", "kendall_tau", "kendall_p",
               "spearman_rho", "spearman_p", "n"])
    written.append("correlations.csv")
    return [
        "## Kendall's τ between gradient flow (averaged over training) and "
        "test performance", "",
        "Each cell: τ (sign kept), p-value, n models.", "",
        "Measure scale: the fixed-batch measure of the EGF callback, i.e. the "
        "norm of the mean gradient of the training objective over a fixed "
        "batch set (`egf_batches` batches from the `egf_data` split), taken "
        "at `egf_points` evenly spread epochs and averaged over those points "
        "(the paper's \"average EGF\"). Not the per-step measure of the "
        "training history (mean of per-batch norms), which is larger.", "",
        correlation_markdown(corr), "",
        "Spearman's ρ, same layout:", "", correlation_markdown(corr, "spearman"), "",
        "For reference, the paper's |correlation| on Fashion-MNIST MLPs "
        "(Tessera et al.; 600 MLPs × 500 epochs; see docs/method.md §5 of keras-egf):", "",
        paper_reference_markdown(), ""]


def _wilcoxon_cells_section(sweep, col_axis, output_dir, min_pairs, diverged,
                            written, rows_out):
    """One optimizer × `col_axis` table and heatmap; its cells go to
    `rows_out` (wilcoxon.csv)."""
    rows, cols, cells = wilcoxon_cells(sweep, "optimizer", col_axis, min_pairs,
                                       diverged=diverged)
    name = f"wilcoxon_optimizer_x_{col_axis}"
    plot_heatmap(rows, cols, cells, os.path.join(output_dir, name + ".png"),
                 "H1: Sparse > Dense, one-sided Wilcoxon p\n(optimizer × "
                 f"{col_axis}; n<{min_pairs}: too few pairs)", min_pairs)
    written.append(name + ".png")
    for (r, c), cell in sorted(cells.items(), key=lambda kv: str(kv[0])):
        rows_out.append({"cells": f"optimizer x {col_axis}", "optimizer": r,
                         "column": c, **cell})
    lines = [f"### optimizer × {col_axis}", "",
             "| optimizer | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {r} | " + " | ".join(cell_label(cells.get((r, c)), min_pairs)
                                       for c in cols) + " |" for r in rows]
    return lines + ["", f"![{name}]({name}.png)", ""]


def wilcoxon_section(sweep, output_dir, min_pairs, diverged, written):
    """H1: Sparse > Dense per cell (wilcoxon.csv and one heatmap per column
    axis: regulariser, activation and, when the sweep varies it, pruning)."""
    lines = ["## H1: Sparse > Dense (one-sided Wilcoxon signed-rank on "
             "matched pairs, test accuracy)", "",
             f"Wilcoxon drops pairs with equal accuracy: a cell with fewer "
             f"than {min_pairs} non-zero differences (effective n) shows "
             f"n<{min_pairs}; wilcoxon.csv has n, n_effective and "
             "n_diverged per cell. " + diverged_treatment_text(diverged), ""]
    col_axes = ["regularizer", "activation"]
    if len({t.config.get("pruning", "random") for t in sweep.trials}) > 1:
        col_axes.append("pruning")  # a sweep over pruning methods
    rows_out = []
    for col_axis in col_axes:
        lines += _wilcoxon_cells_section(sweep, col_axis, output_dir, min_pairs,
                                         diverged, written, rows_out)
    write_csv(os.path.join(output_dir, "wilcoxon.csv"), rows_out,
              ["cells", "optimizer", "column", "n", "n_effective", "n_diverged",
               "p_value", "statistic", "median_difference", "status"])
    written.append("wilcoxon.csv")
    return lines


def _setting_means_section(sweep, output_dir, written):
    """Mean accuracies per regulariser / activation / optimizer
    (by_setting.csv)."""
    lines = ["## Sparse and dense test accuracy by setting", "",
             "Matched pairs (both models finished); difference = sparse − "
             "dense, per pair; wins = pairs where sparse is better.", ""]
    means = []
    for axis in ("regularizer", "activation", "optimizer"):
        rows = setting_means(sweep, axis)
        means += rows
        if len({t.axis(axis) for t in sweep.trials}) < 2:
            continue
        lines += [f"| {axis} | pairs | sparse acc | dense acc | mean diff | "
                  "median diff | sparse wins |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['value']} | {r['pairs']} | {r['sparse_accuracy']:.4f} | "
                  f"{r['dense_accuracy']:.4f} | {r['mean_difference']:+.4f} | "
                  f"{r['median_difference']:+.4f} | {r['sparse_wins']} |" for r in rows]
        lines.append("")
    write_csv(os.path.join(output_dir, "by_setting.csv"), means,
              ["axis", "value", "pairs", "sparse_accuracy", "dense_accuracy",
               "mean_difference", "median_difference", "sparse_wins"])
    written.append("by_setting.csv")
    return lines


def _sensitivity_section(sweep, output_dir, written):
    """The per-optimizer τ of gradient flow with test loss (sensitivity.csv)."""
    corr = per_setting_correlations(sweep, "optimizer", "test_loss")
    write_csv(os.path.join(output_dir, "sensitivity.csv"), corr,
              ["axis", "value", "model", "measure", "target", "kendall_tau",
               "kendall_p", "n"])
    written.append("sensitivity.csv")
    lines = ["## Sensitivity to gradient flow, per optimizer", "",
             "Kendall's τ between each averaged measure and test loss within "
             "one optimizer's trials (positive: more gradient flow, worse "
             "loss); τ (p, n).", "",
             "| optimizer | model | " + " | ".join(
                 MEASURE_LABELS[m] for m in MEASURES) + " |",
             "|---|---|" + "---|" * len(MEASURES)]
    for value in _ordered({r["value"] for r in corr}, OPTIMIZERS):
        for model in MODELS:
            cells = {r["measure"]: r for r in corr
                     if r["value"] == value and r["model"] == model}
            lines.append(f"| {value} | {model} | " + " | ".join(
                f"{cells[m]['kendall_tau']:+.3f} ({cells[m]['kendall_p']:.3g}, "
                f"{cells[m]['n']})" for m in MEASURES) + " |")
    return lines + [""]


def by_setting_sections(sweep, output_dir, written):
    """Mean accuracies per regulariser / activation / optimizer and the
    per-optimizer τ of gradient flow with test loss (by_setting.csv,
    sensitivity.csv)."""
    return (_setting_means_section(sweep, output_dir, written)
            + _sensitivity_section(sweep, output_dir, written))


def width_section(sweep, output_dir, measure, written):
    """Average `measure` and test accuracy against dense width, one figure
    per optimizer (width_<optimizer>.png)."""
    lines = [f"## Average {MEASURE_LABELS[measure]} and test accuracy "
             "against dense width", ""]
    for optimizer in _ordered({t.config.get("optimizer") for t in sweep.trials},
                              OPTIMIZERS):
        name = f"width_{optimizer}.png"
        plot_width(sweep, optimizer, os.path.join(output_dir, name), measure)
        written.append(name)
        lines += [f"![{optimizer}]({name})", ""]
    return lines
