"""Statistics of a sweep, as functions of its trials (`report.Sweep`):
Kendall's τ / Spearman's ρ between gradient flow and test performance, and
one-sided Wilcoxon signed-rank tests of H1: Sparse > Dense per cell.

A trial (`report.Trial`) gives `finished(model)`, `diverged(model)`,
`measure(model, name)`, `axis(name)`, `models` and `num_classes`.
"""

import math

import numpy as np

from keras_egf import validation
from keras_egf.architectures import ACTIVATIONS
from keras_egf.config import OPTIMIZERS, PRUNING_METHODS
from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

MEASURES = GRADIENT_FLOW_METRICS  # gf_1, gf_2, egf_1, egf_2
MEASURE_LABELS = {"gf_1": "gf_1", "gf_2": "gf_2", "egf_1": "EGF_1", "egf_2": "EGF_2"}
TARGETS = ("test_loss", "test_accuracy")
TARGET_LABELS = {"test_loss": "test loss", "test_accuracy": "test accuracy"}
MODELS = ("sparse", "dense")
REGULARIZER_ORDER = ("NR", "L2", "DA", "SC", "BN", "DA_BN", "L2_BN", "SC_BN",
                     "DA_SC_BN", "DA_L2_SC_BN")
CELL_AXES = {"optimizer": OPTIMIZERS, "regularizer": REGULARIZER_ORDER,
             "pruning": PRUNING_METHODS,
             "activation": ACTIVATIONS}
DEFAULT_MIN_PAIRS = 5  # the smallest n whose exact one-sided p can reach 0.05


def measure_values(sweep, model):
    """(measures {name: array}, targets {name: array}) over `model`'s finished
    trials, measures averaged over training."""
    rows = [t for t in sweep.trials if t.finished(model)
            and all(t.measure(model, m) is not None for m in MEASURES)]
    measures = {m: np.array([t.measure(model, m) for t in rows]) for m in MEASURES}
    targets = {k: np.array([t.models[model][k] for t in rows]) for k in TARGETS}
    return measures, targets


def correlation_table(sweep):
    """Rows: model, measure, target, kendall_tau, kendall_p, spearman_rho,
    spearman_p, n (τ and ρ keep their sign; NaN where undefined)."""
    from scipy import stats  # scipy's import is slow: the report only

    rows = []
    for model in MODELS:
        measures, targets = measure_values(sweep, model)
        for measure in MEASURES:
            for target in TARGETS:
                x, y = measures[measure], targets[target]
                n = len(x)
                tau = p = rho = rho_p = float("nan")
                if n >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
                    k = stats.kendalltau(x, y)
                    s = stats.spearmanr(x, y)
                    tau, p = float(k.statistic), float(k.pvalue)
                    rho, rho_p = float(s.statistic), float(s.pvalue)
                rows.append({"model": model, "measure": measure, "target": target,
                             "kendall_tau": tau, "kendall_p": p,
                             "spearman_rho": rho, "spearman_p": rho_p, "n": n})
    return rows


def _cell_text(row, stat="kendall"):
    value, p = (row["kendall_tau"], row["kendall_p"]) if stat == "kendall" else (
        row["spearman_rho"], row["spearman_p"])
    if not math.isfinite(value):
        return f"n/a (n={row['n']})"
    return f"{value:+.3f} (p={p:.3g}, n={row['n']})"


def correlation_markdown(rows, stat="kendall"):
    """The paper's layout: a row per measure; columns sparse/dense × loss/acc.
    `stat`: "kendall" (τ) or "spearman" (ρ)."""
    validation.one_of("stat", stat, ("kendall", "spearman"))
    columns = [(m, t) for m in MODELS for t in TARGETS]
    by_key = {(r["model"], r["measure"], r["target"]): r for r in rows}
    header = "| measure | " + " | ".join(
        f"{m} {TARGET_LABELS[t]}" for m, t in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for measure in MEASURES:
        cells = [_cell_text(by_key[(m, measure, t)], stat) for m, t in columns]
        lines.append(f"| {MEASURE_LABELS[measure]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# docs/method.md §5: the paper's |Kendall τ| on Fashion-MNIST MLPs, for reference.
PAPER_FASHION_MNIST = {  # measure: (sparse loss, sparse acc, dense loss, dense acc)
    "gf_1": (.355, .316, .365, .354), "gf_2": (.282, .292, .285, .329),
    "egf_1": (.419, .373, .365, .354), "egf_2": (.360, .323, .298, .320)}


def paper_reference_markdown():
    """The paper's |τ| table (Fashion-MNIST MLPs) in the same layout."""
    lines = ["| measure | " + " | ".join(
        f"{m} {TARGET_LABELS[t]}" for m in MODELS for t in TARGETS) + " |",
             "|" + "---|" * 5]
    for measure in MEASURES:
        lines.append(f"| {MEASURE_LABELS[measure]} | " + " | ".join(
            f"{v:.3f}" for v in PAPER_FASHION_MNIST[measure]) + " |")
    return "\n".join(lines)


def _ordered(values, order):
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


DIVERGED_TREATMENTS = ("loss", "exclude")


def diverged_treatment_text(diverged):
    """One sentence saying how the Wilcoxon tests treat diverged models."""
    if diverged == "loss":
        return ("A diverged model counts as a loss for that model: chance "
                "accuracy (1 / number of classes) in its pair "
                "(--diverged=loss; --diverged=exclude drops such pairs).")
    return ("Pairs with a diverged model are left out (--diverged=exclude; "
            "this favours the model that diverged more often).")


def _pair_value(trial, model, metric, diverged):
    """`model`'s metric in a matched pair, chance accuracy if it diverged
    (treatment "loss"), or None when the pair cannot be used."""
    if trial.finished(model):
        return trial.models[model][metric]
    if (diverged == "loss" and trial.diverged(model)
            and metric == "test_accuracy" and trial.num_classes):
        return 1.0 / trial.num_classes
    return None


def wilcoxon_cells(sweep, row_axis="optimizer", col_axis="regularizer",
                   min_pairs=DEFAULT_MIN_PAIRS, metric="test_accuracy",
                   diverged="loss"):
    """One-sided Wilcoxon signed-rank test of H1: Sparse > Dense per cell.

    Pairs are the trials of the cell where both models finished; with
    `diverged="loss"` (default) also those where a model diverged, counted
    at chance accuracy. Wilcoxon drops zero differences, so the gate is the
    effective n (non-zero differences). Returns (row labels, column labels,
    {(row, col): cell}) where a cell has n (pairs), n_effective, n_diverged,
    p_value (NaN when not computed), statistic, median_difference and status
    "ok", "few" (n_effective < min_pairs) or "ties" (every difference 0).
    """
    from scipy import stats  # scipy's import is slow: the report only

    validation.positive_int("min_pairs", min_pairs)
    validation.one_of("diverged", diverged, DIVERGED_TREATMENTS)
    groups = {}
    for t in sweep.trials:
        key = (t.axis(row_axis), t.axis(col_axis))
        groups.setdefault(key, [])
        pair = [_pair_value(t, m, metric, diverged) for m in ("sparse", "dense")]
        if None not in pair:
            groups[key].append((*pair, t.diverged("sparse") or t.diverged("dense")))
    cells = {}
    for key, pairs in groups.items():
        sparse = np.array([p[0] for p in pairs], float)
        dense = np.array([p[1] for p in pairs], float)
        diff = sparse - dense
        n_effective = int(np.count_nonzero(diff))
        cell = {"n": len(pairs), "n_effective": n_effective,
                "n_diverged": sum(1 for p in pairs if p[2]),
                "p_value": float("nan"), "statistic": float("nan"),
                "median_difference": float(np.median(diff)) if len(pairs) else float("nan")}
        if len(pairs) and n_effective == 0:
            cell["status"] = "ties"
        elif n_effective < min_pairs:
            cell["status"] = "few"
        else:
            result = stats.wilcoxon(sparse, dense, alternative="greater")
            cell.update(status="ok", p_value=float(result.pvalue),
                        statistic=float(result.statistic))
        cells[key] = cell
    rows = _ordered({k[0] for k in cells}, CELL_AXES.get(row_axis, ()))
    cols = _ordered({k[1] for k in cells}, CELL_AXES.get(col_axis, ()))
    return rows, cols, cells


def cell_label(cell, min_pairs):
    if cell is None:
        return ""
    if cell["status"] == "few":
        return f"n<{min_pairs}"
    if cell["status"] == "ties":
        return "ties"
    return f"{cell['p_value']:.3f}"


def setting_means(sweep, axis):
    """Per value of `axis` (regularizer, activation, optimizer, ...): the
    matched pairs (both models finished), mean sparse and dense test
    accuracy, and the mean and median of sparse - dense. Rows in the axis's
    usual order."""
    groups = {}
    for t in sweep.trials:
        if t.finished("sparse") and t.finished("dense"):
            groups.setdefault(t.axis(axis), []).append(
                (t.models["sparse"]["test_accuracy"], t.models["dense"]["test_accuracy"]))
    rows = []
    for value in _ordered(set(groups), CELL_AXES.get(axis, ())):
        pairs = np.array(groups[value])
        diff = pairs[:, 0] - pairs[:, 1]
        rows.append({"axis": axis, "value": value, "pairs": len(pairs),
                     "sparse_accuracy": float(pairs[:, 0].mean()),
                     "dense_accuracy": float(pairs[:, 1].mean()),
                     "mean_difference": float(diff.mean()),
                     "median_difference": float(np.median(diff)),
                     "sparse_wins": int((diff > 0).sum())})
    return rows


def per_setting_correlations(sweep, axis="optimizer", target="test_loss"):
    """Kendall's τ between each averaged measure and `target` within each
    value of `axis`, per model: rows axis value, model, measure, tau, p, n.
    (How sensitive each optimizer's results are to its gradient flow.)"""
    from scipy import stats  # scipy's import is slow: the report only

    rows = []
    values = _ordered({t.axis(axis) for t in sweep.trials}, CELL_AXES.get(axis, ()))
    for value in values:
        for model in MODELS:
            trials = [t for t in sweep.trials if t.axis(axis) == value
                      and t.finished(model)]
            for measure in MEASURES:
                pairs = [(t.measure(model, measure), t.models[model][target])
                         for t in trials if t.measure(model, measure) is not None]
                tau = p = float("nan")
                x, y = (np.array(v) for v in zip(*pairs)) if pairs else ([], [])
                if len(pairs) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
                    k = stats.kendalltau(x, y)
                    tau, p = float(k.statistic), float(k.pvalue)
                rows.append({"axis": axis, "value": value, "model": model,
                             "measure": measure, "target": target,
                             "kendall_tau": tau, "kendall_p": p, "n": len(pairs)})
    return rows
