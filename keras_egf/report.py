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
"""

import csv
import dataclasses
import json
import math
import os


from keras_egf.config import OPTIMIZERS

from keras_egf.statistics import (  # noqa: F401  (the report's API)
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
from keras_egf.statistics import _ordered


@dataclasses.dataclass
class Trial:
    """One comparison's stored results."""
    trial_id: str
    path: str
    config: dict
    models: dict
    num_classes: int = None
    library_version: str = None  # keras_egf's version that wrote it

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
    grids: list = dataclasses.field(default_factory=list)  # mixed grids only

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

    def library_versions(self):
        """{keras_egf version: number of trials} ("unknown" if not recorded)."""
        counts = {}
        for t in self.trials:
            v = t.library_version or "unknown"
            counts[v] = counts.get(v, 0) + 1
        return counts


def plural(count, noun):
    """"1 trial", "2 trials", "0 trials"."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def mixed_versions_text(counts):
    """A warning naming each keras_egf version and its trial count, or ""
    when all `counts` ({version: n}) are one version."""
    if len(counts) < 2:
        return ""
    listed = ", ".join(f"{v} ({plural(n, 'trial')})" for v, n in sorted(counts.items()))
    return (f"Warning: these trials were written by different keras_egf "
            f"versions: {listed}. Versions can build or train the same "
            "config differently, so their numbers are not comparable; re-run "
            "the older ones (delete their results.json, run the sweep again).")


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_results(path):
    """(config, models, num_classes) of a results.json, or ValueError why not."""
    results = _read_results(path)
    num_classes = (results.get("dataset") or {}).get("num_classes")
    return results["config"], results["models"], num_classes


def library_version(results):
    """The keras_egf version a results dict records, or None."""
    versions = results.get("versions")
    return versions.get("keras_egf") if isinstance(versions, dict) else None


# The settings the report groups trials by: a results.json must hold them.
REPORT_SETTINGS = ("optimizer", "regularizers", "activation", "dense_width")


class _Invalid(ValueError):
    """A results.json that was read but breaks the schema."""


def _read_results(path):
    """A results.json's dict, read and checked as the sweep reads it
    (`keras_egf.results`) and holding `REPORT_SETTINGS`; ValueError
    "PATH: not a keras-egf results file (why)" (`_Invalid` when the file
    was read but breaks the schema)."""
    from keras_egf import files
    from keras_egf import results as results_lib

    try:
        results = files.read_json(path)
    except ValueError as e:
        why = str(e)[len(str(path)) + 2:] if str(e).startswith(f"{path}: ") else e
        raise ValueError(f"{path}: not a keras-egf results file ({why})") from None
    try:
        results_lib.check(results, path)
    except ValueError as e:
        raise _Invalid(str(e)) from None
    missing = [k for k in REPORT_SETTINGS if k not in results["config"]]
    if missing:
        raise _Invalid(f"{path}: not a keras-egf results file (config."
                       f"{missing[0]}: missing; the report groups trials by "
                       f"{', '.join(REPORT_SETTINGS)})")
    return results


def _grid_identity(spec):
    """What makes two grid.json files one experiment: all but the name, the
    objective, the pack size and the seeds (a sweep re-run with other
    --seeds adds matched pairs to the same cells)."""
    if not isinstance(spec, dict):
        return repr(spec)
    fixed = {k: v for k, v in (spec.get("fixed") or {}).items() if k != "seed"}
    axes = {k: v for k, v in (spec.get("grid") or {}).items() if k != "seed"}
    return json.dumps({"fixed": fixed, "grid": axes}, sort_keys=True, default=str)


def mixed_grids_text(grids):
    """"'smoke' (a/grid.json: 12 trials), ..." of `Sweep.grids`."""
    return "; ".join(f"{label} ({plural(n, 'trial')})" for label, n in grids)


def load_sweep(sweep_dir, strict=False, allow_mixed_grids=False):
    """Reads every results.json below `sweep_dir` (a sweep's trial_* folders,
    or any folder of keras-egf-train outputs).

    Each is read and checked as the sweep reads it (`keras_egf.results`).
    An unreadable or invalid results.json is listed in `Sweep.incomplete`
    as failed and the rest is read; with `strict` it raises ValueError
    instead. Results of different grids (the grid.json of the sweep folder
    each lies in, seeds aside; results outside any sweep count as one more)
    are refused, naming each grid and its trial count, unless
    `allow_mixed_grids` (then `Sweep.grids` lists them).
    """
    from keras_egf import files

    if not os.path.isdir(sweep_dir):
        raise ValueError(f"sweep_dir={sweep_dir!r}: not a folder")
    trials, incomplete = [], []
    grid_of = {}  # folder -> (identity, label) of the sweep it lies in
    counts = {}  # identity -> [label, trials]
    for root, dirs, names in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if d != "tensorboard")
        name = os.path.relpath(root, sweep_dir)
        grid = grid_of.get(os.path.dirname(root)) if root != sweep_dir else None
        if files.GRID_FILE in names:
            where = os.path.join(name, files.GRID_FILE) if name != "." else files.GRID_FILE
            try:
                spec = files.read_json(os.path.join(root, files.GRID_FILE))
                label = f"grid {spec.get('name')!r} ({where})"
                grid = (_grid_identity(spec), label)
            except (ValueError, AttributeError):
                grid = (f"unreadable {where}", f"an unreadable {where}")
        grid_of[root] = grid
        if "results.json" in names:
            path = os.path.join(root, "results.json")
            try:
                results = _read_results(path)
            except ValueError as e:
                if strict:
                    raise
                kind = "invalid" if isinstance(e, _Invalid) else "unreadable"
                why = str(e).split(": not a keras-egf results file ", 1)[-1]
                if why.startswith("(") and why.endswith(")"):
                    why = why[1:-1]
                incomplete.append(f"{name} (failed: {kind} results.json: {why})")
                continue
            trials.append(Trial(name, path, results["config"], results["models"],
                                (results.get("dataset") or {}).get("num_classes"),
                                library_version(results)))
            key, label = grid or (None, "outside any sweep (no grid.json)")
            counts.setdefault(key, [label, 0])[1] += 1
        elif "trial.json" in names:  # a Keras Tuner trial without results
            try:
                with open(os.path.join(root, "trial.json")) as f:
                    status = json.load(f).get("status") or "RUNNING"
            except (OSError, ValueError, AttributeError):
                status = "RUNNING"
            incomplete.append(name if status == "RUNNING" else f"{name} ({status.lower()})")
    if not trials:
        failed = [i for i in incomplete if "(failed: " in i]
        if failed:
            raise ValueError(f"sweep_dir={sweep_dir!r}: no readable results.json "
                             f"found; unreadable or invalid: {'; '.join(failed)}")
        raise ValueError(f"sweep_dir={sweep_dir!r}: no results.json found "
                         "(has the sweep run? keras-egf-sweep --output_dir=...)")
    grids = [tuple(v) for v in counts.values()] if len(counts) > 1 else []
    if grids and not allow_mixed_grids:
        raise ValueError(
            f"sweep_dir={sweep_dir!r} holds the results of {len(grids)} different "
            f"grids: {mixed_grids_text(grids)}. They are not one experiment: "
            "point --sweep_dir at one sweep's folder, or pass "
            "--allow_mixed_grids to report them together")
    return Sweep(sweep_dir, trials, incomplete, grids)


def plot_heatmap(rows, cols, cells, path, title, min_pairs):
    """p-value heatmap of `wilcoxon_cells`, the value (or "n<k") in each cell."""
    from keras_egf.plots import plot_p_value_heatmap

    values = {k: c["p_value"] for k, c in cells.items() if c["status"] == "ok"}
    labels = {(r, c): cell_label(cells.get((r, c)), min_pairs)
              for r in rows for c in cols}
    plot_p_value_heatmap(rows, cols, values, labels, path, title)


def plot_width(sweep, optimizer, path, measure="egf_2"):
    """Average `measure` and test accuracy against dense width, sparse vs
    dense, for one optimizer (mean over the other settings, trials dotted)."""
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


def _by_setting_sections(sweep, output_dir, files):
    """Mean accuracies per regulariser / activation / optimizer and the
    per-optimizer τ of gradient flow with test loss (by_setting.csv,
    sensitivity.csv)."""
    sections = ["## Sparse and dense test accuracy by setting", "",
                "Matched pairs (both models finished); difference = sparse − "
                "dense, per pair; wins = pairs where sparse is better.", ""]
    means = []
    for axis in ("regularizer", "activation", "optimizer"):
        rows = setting_means(sweep, axis)
        means += rows
        if len({t.axis(axis) for t in sweep.trials}) < 2:
            continue
        sections += [f"| {axis} | pairs | sparse acc | dense acc | mean diff | "
                     "median diff | sparse wins |", "|---|---|---|---|---|---|---|"]
        sections += [f"| {r['value']} | {r['pairs']} | {r['sparse_accuracy']:.4f} | "
                     f"{r['dense_accuracy']:.4f} | {r['mean_difference']:+.4f} | "
                     f"{r['median_difference']:+.4f} | {r['sparse_wins']} |" for r in rows]
        sections.append("")
    _write_csv(os.path.join(output_dir, "by_setting.csv"), means,
               ["axis", "value", "pairs", "sparse_accuracy", "dense_accuracy",
                "mean_difference", "median_difference", "sparse_wins"])
    files.append("by_setting.csv")
    corr = per_setting_correlations(sweep, "optimizer", "test_loss")
    _write_csv(os.path.join(output_dir, "sensitivity.csv"), corr,
               ["axis", "value", "model", "measure", "target", "kendall_tau",
                "kendall_p", "n"])
    files.append("sensitivity.csv")
    sections += ["## Sensitivity to gradient flow, per optimizer", "",
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
            sections.append(f"| {value} | {model} | " + " | ".join(
                f"{cells[m]['kendall_tau']:+.3f} ({cells[m]['kendall_p']:.3g}, "
                f"{cells[m]['n']})" for m in MEASURES) + " |")
    return sections + [""]


# Every file `write_report` writes (names, or patterns where the name comes
# from the sweep). A previous report's files are removed before a new one is
# written, so that a folder never mixes two reports; nothing else is touched.
REPORT_FILES = ("report.md", "correlations.md", "correlations.csv", "wilcoxon.csv",
                "by_setting.csv", "sensitivity.csv", "wilcoxon_optimizer_x_*.png",
                "width_*.png")


def report_files(output_dir):
    """Sorted names of the report files (`REPORT_FILES`) in `output_dir`."""
    import fnmatch

    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir)
                  if any(fnmatch.fnmatchcase(n, p) for p in REPORT_FILES)
                  and os.path.isfile(os.path.join(output_dir, n)))


def write_report(sweep_dir, output_dir, min_pairs=DEFAULT_MIN_PAIRS,
                 width_measure="egf_2", diverged="loss", strict=False,
                 allow_mixed_grids=False):
    """Writes the report files into `output_dir`; returns the markdown text.

    A previous report's files there (`REPORT_FILES`, e.g. the width plot of
    an optimizer this sweep does not have) are removed first; other files
    are left alone.

    `diverged`: "loss" (a diverged model counts at chance accuracy in the
    Wilcoxon pairs) or "exclude". `strict`: fail on an unreadable
    results.json instead of listing it as failed. `allow_mixed_grids`:
    report the results of different grids together, naming them, instead
    of refusing (`load_sweep`).
    """
    from keras_egf.files import check_output_dir, write_text_atomic

    if width_measure not in MEASURES:
        raise ValueError(f"width_measure={width_measure!r}: must be one of {list(MEASURES)}")
    if diverged not in DIVERGED_TREATMENTS:
        raise ValueError(f"diverged={diverged!r}: must be one of "
                         f"{list(DIVERGED_TREATMENTS)}")
    sweep = load_sweep(sweep_dir, strict=strict, allow_mixed_grids=allow_mixed_grids)
    check_output_dir(output_dir)
    for name in report_files(output_dir):
        os.remove(os.path.join(output_dir, name))
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
        "(Tessera et al.; 600 MLPs × 500 epochs; see docs/method.md §5 of keras-egf):", "",
        paper_reference_markdown(), ""]
    sections += ["## H1: Sparse > Dense (one-sided Wilcoxon signed-rank on "
                 "matched pairs, test accuracy)", "",
                 f"Wilcoxon drops pairs with equal accuracy: a cell with fewer "
                 f"than {min_pairs} non-zero differences (effective n) shows "
                 f"n<{min_pairs}; wilcoxon.csv has n, n_effective and "
                 "n_diverged per cell. " + diverged_treatment_text(diverged), ""]
    wilcoxon_rows = []
    col_axes = ["regularizer", "activation"]
    if len({t.config.get("pruning", "random") for t in sweep.trials}) > 1:
        col_axes.append("pruning")  # a sweep over pruning methods
    for col_axis in col_axes:
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
    sections += _by_setting_sections(sweep, output_dir, files)
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
