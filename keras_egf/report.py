"""The paper-style report of a sweep (design.md §5).

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
"""

import csv
import dataclasses
import json
import math
import os

import numpy as np

from keras_egf.architectures import ACTIVATIONS
from keras_egf.experiment import OPTIMIZERS
from keras_egf.files import save_figure_atomic
from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

MEASURES = GRADIENT_FLOW_METRICS  # gf_1, gf_2, egf_1, egf_2
MEASURE_LABELS = {"gf_1": "gf_1", "gf_2": "gf_2", "egf_1": "EGF_1", "egf_2": "EGF_2"}
TARGETS = ("test_loss", "test_accuracy")
TARGET_LABELS = {"test_loss": "test loss", "test_accuracy": "test accuracy"}
MODELS = ("sparse", "dense")
REGULARIZER_ORDER = ("NR", "L2", "DA", "SC", "BN", "DA_BN", "L2_BN", "SC_BN",
                     "DA_SC_BN", "DA_L2_SC_BN")
CELL_AXES = {"optimizer": OPTIMIZERS, "regularizer": REGULARIZER_ORDER,
             "activation": ACTIVATIONS}
DEFAULT_MIN_PAIRS = 5  # the smallest n whose exact one-sided p can reach 0.05


@dataclasses.dataclass
class Trial:
    """One comparison's stored results."""
    trial_id: str
    path: str
    config: dict
    models: dict
    num_classes: int = None

    @property
    def regularizer(self):
        from keras_egf.grid import regularizer_label
        return regularizer_label(self.config.get("regularizers") or ())

    def axis(self, name):
        return self.regularizer if name == "regularizer" else self.config.get(name)

    def measure(self, model, name):
        """`model`'s `name` averaged over training, or None if not finite."""
        value = ((self.models.get(model) or {}).get("average") or {}).get(name)
        return value if _finite(value) else None

    def diverged(self, model):
        """True when `model` was trained and diverged."""
        return bool((self.models.get(model) or {}).get("diverged"))

    def finished(self, model):
        """True when `model` trained without diverging and has test metrics."""
        r = self.models.get(model)
        return bool(r) and not r.get("diverged") and all(
            _finite(r.get(t)) for t in TARGETS)


@dataclasses.dataclass
class Sweep:
    """All trials of a sweep folder, and the folders that have no results."""
    sweep_dir: str
    trials: list
    incomplete: list

    def left_out(self, model):
        """{reason: count} of trials whose `model` the statistics skip."""
        counts = {}
        for t in self.trials:
            r = t.models.get(model)
            if r is None:
                reason = "not trained"
            elif r.get("diverged"):
                reason = "diverged"
            elif not t.finished(model):
                reason = "no finite test metrics"
            else:
                continue
            counts[reason] = counts.get(reason, 0) + 1
        return counts


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_results(path):
    """(config, models, num_classes) of a results.json, or ValueError why not."""
    try:
        with open(path) as f:
            results = json.load(f)
        config, models = results["config"], results["models"]
        if not isinstance(config, dict) or not isinstance(models, dict):
            raise TypeError("config/models are not objects")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a keras-egf results file ({e})") from None
    num_classes = (results.get("dataset") or {}).get("num_classes")
    return config, models, num_classes


def load_sweep(sweep_dir, strict=False):
    """Reads every results.json below `sweep_dir` (a sweep's trial_* folders,
    or any folder of keras-egf-train outputs).

    An unreadable results.json is listed in `Sweep.incomplete` as failed and
    the rest is read; with `strict` it raises ValueError instead.
    """
    if not os.path.isdir(sweep_dir):
        raise ValueError(f"sweep_dir={sweep_dir!r}: not a folder")
    trials, incomplete = [], []
    for root, dirs, files in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if d != "tensorboard")
        name = os.path.relpath(root, sweep_dir)
        if "results.json" in files:
            path = os.path.join(root, "results.json")
            try:
                config, models, num_classes = read_results(path)
            except ValueError as e:
                if strict:
                    raise
                incomplete.append(f"{name} (failed: unreadable results.json: "
                                  f"{str(e).split(': ', 1)[-1]})")
                continue
            trials.append(Trial(name, path, config, models, num_classes))
        elif "trial.json" in files:  # a Keras Tuner trial without results
            try:
                with open(os.path.join(root, "trial.json")) as f:
                    status = json.load(f).get("status") or "RUNNING"
            except (OSError, ValueError, AttributeError):
                status = "RUNNING"
            incomplete.append(name if status == "RUNNING" else f"{name} ({status.lower()})")
    if not trials:
        failed = [i for i in incomplete if "unreadable results.json" in i]
        if failed:
            raise ValueError(f"sweep_dir={sweep_dir!r}: no readable results.json "
                             f"found; unreadable: {'; '.join(failed)}")
        raise ValueError(f"sweep_dir={sweep_dir!r}: no results.json found "
                         "(has the sweep run? keras-egf-sweep --output_dir=...)")
    return Sweep(sweep_dir, trials, incomplete)


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
    from scipy import stats

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
    if stat not in ("kendall", "spearman"):
        raise ValueError(f"stat={stat!r}: must be 'kendall' or 'spearman'")
    columns = [(m, t) for m in MODELS for t in TARGETS]
    by_key = {(r["model"], r["measure"], r["target"]): r for r in rows}
    header = "| measure | " + " | ".join(
        f"{m} {TARGET_LABELS[t]}" for m, t in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for measure in MEASURES:
        cells = [_cell_text(by_key[(m, measure, t)], stat) for m, t in columns]
        lines.append(f"| {MEASURE_LABELS[measure]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# design.md §5: the paper's |Kendall τ| on Fashion-MNIST MLPs, for reference.
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
    from scipy import stats

    if not isinstance(min_pairs, int) or min_pairs < 1:
        raise ValueError(f"min_pairs={min_pairs!r}: must be an integer >= 1")
    if diverged not in DIVERGED_TREATMENTS:
        raise ValueError(f"diverged={diverged!r}: must be one of "
                         f"{list(DIVERGED_TREATMENTS)}")
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


def plot_heatmap(rows, cols, cells, path, title, min_pairs):
    """p-value heatmap, the value (or "n<k") written in each cell."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            cell = cells.get((r, c))
            if cell is not None and cell["status"] == "ok":
                data[i, j] = cell["p_value"]
    fig, ax = plt.subplots(figsize=(max(5.5, 2.5 + 1.0 * len(cols)),
                                    max(2.8, 1.6 + 0.55 * len(rows))))
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1,
                      aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            label = cell_label(cells.get((r, c)), min_pairs)
            value = data[i, j]
            color = "white" if np.isfinite(value) and value > 0.5 else "black"
            ax.text(j, i, label, ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="p-value")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def plot_width(sweep, optimizer, path, measure="egf_2"):
    """Average `measure` and test accuracy against dense width, sparse vs
    dense, for one optimizer (mean over the other settings, trials dotted)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, color in (("sparse", "tab:red"), ("dense", "tab:blue")):
        points = [(t.config["dense_width"], t.measure(model, measure),
                   t.models[model]["test_accuracy"])
                  for t in sweep.trials
                  if t.config.get("optimizer") == optimizer and t.finished(model)
                  and t.measure(model, measure) is not None]
        if not points:
            continue
        widths = sorted({p[0] for p in points})
        for ax, k in ((axes[0], 1), (axes[1], 2)):
            ax.scatter([p[0] for p in points], [p[k] for p in points], s=10,
                       alpha=0.35, color=color)
            means = [np.mean([p[k] for p in points if p[0] == w]) for w in widths]
            ax.plot(widths, means, "o-", color=color, label=f"{model} (mean)")
    axes[0].set_ylabel(f"average {MEASURE_LABELS[measure]} over training")
    axes[1].set_ylabel("test accuracy")
    all_widths = sorted({t.config["dense_width"] for t in sweep.trials
                         if t.config.get("optimizer") == optimizer})
    for ax in axes:
        ax.set_xticks(all_widths)
        ax.set_xlabel("dense width (same capacity)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{optimizer}: gradient flow and accuracy against width")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def _write_csv(path, rows, fields):
    from keras_egf.files import write_text_atomic
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in fields})
    write_text_atomic(path, buffer.getvalue())


def _left_out_text(sweep):
    parts = []
    for model in MODELS:
        counts = sweep.left_out(model)
        if counts:
            parts.append(f"{model}: " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(counts.items())))
    pairs_out = sum(1 for t in sweep.trials
                    if not (t.finished("sparse") and t.finished("dense")))
    text = (f"{len(sweep.trials)} trials read; left out of the correlations: "
            + ("; ".join(parts) if parts else "none")
            + f" ({pairs_out} trial(s) without a matched pair of finished "
            "models).")
    if sweep.incomplete:
        text += (f" {len(sweep.incomplete)} trial folder(s) without usable "
                 f"results (interrupted, running or failed): "
                 f"{', '.join(sweep.incomplete)}.")
    return text


def write_report(sweep_dir, output_dir, min_pairs=DEFAULT_MIN_PAIRS,
                 width_measure="egf_2", diverged="loss", strict=False):
    """Writes the report files into `output_dir`; returns the markdown text.

    `diverged`: "loss" (a diverged model counts at chance accuracy in the
    Wilcoxon pairs) or "exclude". `strict`: fail on an unreadable
    results.json instead of listing it as failed.
    """
    from keras_egf.files import check_output_dir, write_text_atomic

    if width_measure not in MEASURES:
        raise ValueError(f"width_measure={width_measure!r}: must be one of {list(MEASURES)}")
    if diverged not in DIVERGED_TREATMENTS:
        raise ValueError(f"diverged={diverged!r}: must be one of "
                         f"{list(DIVERGED_TREATMENTS)}")
    sweep = load_sweep(sweep_dir, strict=strict)
    check_output_dir(output_dir)
    files = []
    corr = correlation_table(sweep)
    _write_csv(os.path.join(output_dir, "correlations.csv"), corr,
               ["model", "measure", "target", "kendall_tau", "kendall_p",
                "spearman_rho", "spearman_p", "n"])
    files.append("correlations.csv")
    table = correlation_markdown(corr)
    sections = [
        f"# keras-egf report: {sweep_dir}", "",
        _left_out_text(sweep), "",
        "## Kendall's τ between gradient flow (averaged over training) and "
        "test performance", "",
        "Each cell: τ (sign kept), p-value, n models.", "",
        "Measure scale: the fixed-batch measure of the EGF callback, i.e. the "
        "norm of the mean gradient of the training objective over a fixed "
        "batch set (`egf_batches` batches from the `egf_data` split), taken "
        "at `egf_points` evenly spread epochs and averaged over those points "
        "(the paper's \"average EGF\"). Not the per-step measure of the "
        "training history (mean of per-batch norms), which is larger.", "",
        table, "",
        "Spearman's ρ, same layout:", "", correlation_markdown(corr, "spearman"), "",
        "For reference, the paper's |correlation| on Fashion-MNIST MLPs "
        "(Tessera et al.; 600 MLPs × 500 epochs, design.md §5):", "",
        paper_reference_markdown(), ""]
    sections += ["## H1: Sparse > Dense (one-sided Wilcoxon signed-rank on "
                 "matched pairs, test accuracy)", "",
                 f"Wilcoxon drops pairs with equal accuracy: a cell with fewer "
                 f"than {min_pairs} non-zero differences (effective n) shows "
                 f"n<{min_pairs}; wilcoxon.csv has n, n_effective and "
                 "n_diverged per cell. " + diverged_treatment_text(diverged), ""]
    wilcoxon_rows = []
    for col_axis in ("regularizer", "activation"):
        rows, cols, cells = wilcoxon_cells(sweep, "optimizer", col_axis, min_pairs,
                                           diverged=diverged)
        name = f"wilcoxon_optimizer_x_{col_axis}"
        plot_heatmap(rows, cols, cells, os.path.join(output_dir, name + ".png"),
                     f"H1: Sparse > Dense, one-sided Wilcoxon p\n(optimizer × {col_axis}; n<{min_pairs}: too few pairs)",
                     min_pairs)
        files.append(name + ".png")
        for (r, c), cell in sorted(cells.items(), key=lambda kv: str(kv[0])):
            wilcoxon_rows.append({"cells": f"optimizer x {col_axis}", "optimizer": r,
                                  "column": c, **cell})
        sections += [f"### optimizer × {col_axis}", "",
                     "| optimizer | " + " | ".join(cols) + " |",
                     "|" + "---|" * (len(cols) + 1)]
        for r in rows:
            sections.append(f"| {r} | " + " | ".join(
                cell_label(cells.get((r, c)), min_pairs) for c in cols) + " |")
        sections += ["", f"![{name}]({name}.png)", ""]
    _write_csv(os.path.join(output_dir, "wilcoxon.csv"), wilcoxon_rows,
               ["cells", "optimizer", "column", "n", "n_effective", "n_diverged",
                "p_value", "statistic", "median_difference", "status"])
    files.append("wilcoxon.csv")
    sections += [f"## Average {MEASURE_LABELS[width_measure]} and test accuracy "
                 "against dense width", ""]
    optimizers = _ordered({t.config.get("optimizer") for t in sweep.trials},
                          OPTIMIZERS)
    for optimizer in optimizers:
        name = f"width_{optimizer}.png"
        plot_width(sweep, optimizer, os.path.join(output_dir, name), width_measure)
        files.append(name)
        sections += [f"![{optimizer}]({name})", ""]
    text = "\n".join(sections)
    write_text_atomic(os.path.join(output_dir, "correlations.md"), table + "\n")
    write_text_atomic(os.path.join(output_dir, "report.md"), text)
    files[:0] = ["report.md", "correlations.md"]
    return {"markdown": text, "table": table,
            "left_out": _left_out_text(sweep) + " " + diverged_treatment_text(diverged),
            "files": files, "sweep": sweep}
