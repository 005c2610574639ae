"""The paper-style report of a sweep (docs/method.md §5).

From every trial's results.json under a sweep folder:
- `correlation_table`: Kendall's τ (and Spearman's ρ) between each gradient
  flow measure averaged over training (gf_1, gf_2, EGF_1, EGF_2; the mean of
  the fixed-batch points the EGF callback took) and test loss / test
  accuracy, across models, sparse and dense separately, with p-value and n;
- `wilcoxon_cells`: per cell (optimizer × regulariser, optimizer ×
  activation) the one-sided Wilcoxon signed-rank test of H1: Sparse > Dense
  in test accuracy on matched pairs (the two models of one trial);
- plots: p-value heatmaps and average EGF / test accuracy against dense width.

A diverged model (NaN/Inf or exploding loss, see DivergenceMonitor) has no
test metrics: it is left out of the correlations; in the Wilcoxon pairs it
counts at chance accuracy by default (dropping it would bias the test
towards the model that diverges more). The report says how many it left out
or counted, and which treatment it used.

Modules: `loading` (`load_sweep`: the results as `Trial`s of a `Sweep`,
read by `keras_egf.results`), `sections` (each section's markdown and CSV
tables), `figures` (heatmaps, width plots), `writing` (`write_report`); the
statistics are `keras_egf.statistics`'.
"""

from keras_egf.report.figures import plot_heatmap
from keras_egf.report.figures import plot_width
from keras_egf.report.loading import REPORT_SETTINGS
from keras_egf.report.loading import Sweep
from keras_egf.report.loading import Trial
from keras_egf.report.loading import load_sweep
from keras_egf.report.loading import mixed_grids_text
from keras_egf.report.loading import mixed_versions_text
from keras_egf.report.loading import plural
from keras_egf.report.writing import REPORT_FILES
from keras_egf.report.writing import report_files
from keras_egf.report.writing import write_report
from keras_egf.statistics import (  # the report's API
    CELL_AXES,
    DEFAULT_MIN_PAIRS,
    DIVERGED_TREATMENTS,
    MEASURE_LABELS,
    MEASURES,
    MODELS,
    PAPER_FASHION_MNIST,
    REGULARIZER_ORDER,
    TARGET_LABELS,
    TARGETS,
    cell_label,
    correlation_markdown,
    correlation_table,
    diverged_treatment_text,
    measure_values,
    paper_reference_markdown,
    per_setting_correlations,
    setting_means,
    wilcoxon_cells,
)

__all__ = [
    "REPORT_FILES", "REPORT_SETTINGS", "Sweep", "Trial", "load_sweep",
    "mixed_grids_text", "mixed_versions_text", "plot_heatmap", "plot_width",
    "plural", "report_files", "write_report",
    # the statistics it reports
    "CELL_AXES", "DEFAULT_MIN_PAIRS", "DIVERGED_TREATMENTS", "MEASURE_LABELS",
    "MEASURES", "MODELS", "PAPER_FASHION_MNIST", "REGULARIZER_ORDER",
    "TARGET_LABELS", "TARGETS", "cell_label", "correlation_markdown",
    "correlation_table", "diverged_treatment_text", "measure_values",
    "paper_reference_markdown", "per_setting_correlations", "setting_means",
    "wilcoxon_cells",
]
